// CUSTOM authorization's providers without the network: MeshConfig extensionProviders (the
// waypoint document and the `istio` ConfigMap), header patterns, the HTTP check request, and how
// HTTP and gRPC answers become verdicts (tests/integration/waypoint_chain sends them for real).
#include "waypoint/authz/ext_authz.h"

#include <gtest/gtest.h>

#include "common/yaml/load.h"
#include "envoy/service/auth/v3/external_auth.pb.h"
#include "waypoint/authz/parse.h"

namespace zt::waypoint::authz {
namespace {

namespace auth = envoy::service::auth::v3;

Result<std::vector<ExtAuthzProvider>> providers_of(const std::string& yaml) {
  return parse_extension_providers(zt::yaml::load_all(yaml));
}

// Istio's MeshConfig ConfigMap with `mesh` (lines indented 4) as its data.mesh.
std::string mesh_config_map(const std::string& mesh) {
  return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
         "data:\n  mesh: |-\n" +
         mesh;
}

ExtAuthzProvider one(const std::string& yaml) {
  auto p = providers_of(yaml);
  EXPECT_TRUE(p) << p.error().describe();
  if (!p || p->size() != 1) {
    ADD_FAILURE() << "want one provider";
    return {};
  }
  return (*p)[0];
}

TEST(ExtAuthzProviders, EveryFieldOfBothKindsIsRead) {
  auto p = providers_of(R"(extensionProviders:
- name: http
  envoyExtAuthzHttp:
    service: foo/ext-authz.foo.svc.cluster.local
    port: 8000
    timeout: 2s
    pathPrefix: /check
    failOpen: true
    clearRouteCache: false
    statusOnError: "503"
    includeRequestHeadersInCheck: ["x-ext-authz", "x-b3-*", "*-token"]
    includeAdditionalHeadersInCheck: {X-Added: "yes"}
    includeRequestBodyInCheck: {maxRequestBytes: 4096, allowPartialMessage: true}
    headersToUpstreamOnAllow: ["x-user"]
    headersToDownstreamOnAllow: ["x-decision"]
    headersToDownstreamOnDeny: ["x-reason"]
- name: grpc
  envoyExtAuthzGrpc:
    service: authz.default.svc.cluster.local
    port: 9000
    includeRequestBodyInCheck: {maxRequestBytes: 10, packAsBytes: true}
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
)");
  ASSERT_TRUE(p) << p.error().describe();
  ASSERT_EQ(p->size(), 2u) << "a tracing provider is not an authorizer";
  const auto& h = (*p)[0];
  EXPECT_EQ(h.name, "http");
  EXPECT_EQ(h.kind, ExtAuthzProvider::Kind::kHttp);
  EXPECT_EQ(h.service, "ext-authz.foo.svc.cluster.local");
  EXPECT_EQ(h.service_namespace, "foo");
  EXPECT_EQ(h.port, 8000);
  EXPECT_EQ(h.timeout, std::chrono::seconds(2));
  EXPECT_EQ(h.path_prefix, "/check");
  EXPECT_TRUE(h.fail_open);
  EXPECT_EQ(h.status_on_error, 503);
  ASSERT_EQ(h.include_request_headers.size(), 3u);
  EXPECT_TRUE(any_matches(h.include_request_headers, "X-Ext-Authz"));
  EXPECT_TRUE(any_matches(h.include_request_headers, "x-b3-traceid"));
  EXPECT_TRUE(any_matches(h.include_request_headers, "my-token"));
  EXPECT_FALSE(any_matches(h.include_request_headers, "x-ext-authz-2"));
  ASSERT_EQ(h.include_additional_headers.size(), 1u);
  EXPECT_EQ(h.include_additional_headers[0].first, "x-added");
  ASSERT_TRUE(h.body);
  EXPECT_EQ(h.body->max_bytes, 4096u);
  EXPECT_TRUE(h.body->allow_partial);
  const auto& g = (*p)[1];
  EXPECT_EQ(g.kind, ExtAuthzProvider::Kind::kGrpc);
  EXPECT_EQ(g.service_namespace, "");
  EXPECT_EQ(g.timeout, std::chrono::seconds(600)) << "Istio's default";
  EXPECT_EQ(g.status_on_error, 403);
  EXPECT_FALSE(g.fail_open);
  ASSERT_TRUE(g.body);
  EXPECT_TRUE(g.body->pack_as_bytes);
}

TEST(ExtAuthzProviders, TheIstioConfigMapCarriesThemInItsMeshConfig) {
  auto p = providers_of(mesh_config_map(R"(    accessLogFile: /dev/stdout
    extensionProviders:
    - name: sample
      envoyExtAuthzHttp: {service: a.b.svc.cluster.local, port: 80}
)") + R"(---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: istio-system}
data:
  mesh: "extensionProviders: [{name: other, envoyExtAuthzHttp: {service: x, port: 1}}]"
)");
  ASSERT_TRUE(p) << p.error().describe();
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0].name, "sample");
}

// As protobuf's JSON reader (istiod's), a field's proto name is read like its JSON name.
TEST(ExtAuthzProviders, ProtoFieldNamesAreReadToo) {
  auto p = one(mesh_config_map(R"(    extension_providers:
    - name: snake
      envoy_ext_authz_http:
        service: a.b
        port: 80
        path_prefix: /check
        fail_open: true
        status_on_error: "503"
        include_request_headers_in_check: [x-a]
        include_request_body_in_check: {max_request_bytes: 9, allow_partial_message: true}
)"));
  EXPECT_EQ(p.name, "snake");
  EXPECT_EQ(p.kind, ExtAuthzProvider::Kind::kHttp);
  EXPECT_EQ(p.path_prefix, "/check");
  EXPECT_TRUE(p.fail_open);
  EXPECT_EQ(p.status_on_error, 503);
  EXPECT_TRUE(any_matches(p.include_request_headers, "x-a"));
  ASSERT_TRUE(p.body);
  EXPECT_EQ(p.body->max_bytes, 9u);
  EXPECT_TRUE(p.body->allow_partial);
}

TEST(ExtAuthzProviders, BadProvidersAreRefusedWithTheirField) {
  struct Case {
    std::string yaml;
    std::string error;
  };
  const std::string head = "extensionProviders:\n- name: p\n  envoyExtAuthzHttp: ";
  const std::vector<Case> cases = {
      {head + "{port: 80}", "missing required field \"service\""},
      {head + "{service: a}", "missing required field \"port\""},
      {head + "{service: a, port: 0}", "extensionProviders[0].envoyExtAuthzHttp.port"},
      {head + "{service: a, port: 70000}", "must be a port number"},
      {head + "{service: a, port: 80, timeout: soon}", "invalid duration"},
      {head + "{service: a, port: 80, pathPrefix: check}", "must start with \"/\""},
      {head + "{service: a, port: 80, pathPrefix: \"/a b\"}", "without spaces"},
      {head + "{service: a, port: 80, statusOnError: \"999\"}", "statusOnError"},
      {head + "{service: a, port: 80, statusOnError: \"100\"}", "200 or more"},
      {head + "{service: a, port: 80, headersToUpstreamOnAllow: [\"*\"]}", "not a header pattern"},
      {head + "{service: a, port: 80, headersToUpstreamOnAllow: [\"a*b\"]}", "one end"},
      {head + "{service: a, port: 80, includeAdditionalHeadersInCheck: {\"a b\": x}}",
       "HTTP header name"},
      {head + "{service: a, port: 80, includeAdditionalHeadersInCheck: {a: \"x\\r\\ny: z\"}}",
       "no line breaks"},
      {head + "{service: a, port: 80, pathPrefx: /x}", "unknown or unsupported field"},
      {head + "{service: /a, port: 80}", "<namespace>/<hostname>"},
      {"extensionProviders:\n- name: p\n  envoyExtAuthzGrpc: {service: a, port: 80, pathPrefix: "
       "/x}",
       "unknown or unsupported field"},
      {"extensionProviders:\n- name: p\n  envoyExtAuthzHttp: {service: a, port: 80}\n  "
       "envoyExtAuthzGrpc: {service: a, port: 80}",
       "not both"},
      {"extensionProviders:\n- name: p\n  envoyExtAuthzHttp: {service: a, port: 80}\n- name: p\n  "
       "envoyExtAuthzHttp: {service: b, port: 80}",
       "names another provider too"},
      {"extensionProviders:\n- envoyExtAuthzHttp: {service: a, port: 80}",
       "missing required field \"name\""},
      {"kind: ConfigMap\nmetadata: {name: istio}\ndata: {mesh: \"a: [\"}", "data.mesh"},
      {head + "{service: a, port: 80, pathPrefix: /a, path_prefix: /b}",
       "envoyExtAuthzHttp.pathPrefix: is set more than once"},
      {head + "{service: a, port: 80, timeout: 1s, timeout: 2s}", "timeout: is set more than once"},
      {head + "{service: a, port: 80, path_Prefix: /a}", "path_Prefix: unknown or unsupported"},
      {head + "{service: a, port: \" 80\"}", "must be a port number"},
      {head + "{service: a, port: \"+80\"}", "must be a port number"},
      {head + "{service: a, port: 80, statusOnError: \"4294967699\"}", "statusOnError"},
      {head + "{service: a, port: 80, includeRequestBodyInCheck: {maxRequestBytes: 0}}",
       "1 or more"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    auto p = providers_of(c.yaml);
    ASSERT_FALSE(p);
    EXPECT_NE(p.error().describe().find(c.error), std::string::npos) << p.error().describe();
  }
}

TEST(ExtAuthzHttp, TheCheckCarriesTheMethodPrefixedPathAuthorityAndTheHeadersNamed) {
  auto p = one(R"(extensionProviders:
- name: p
  envoyExtAuthzHttp:
    service: a
    port: 80
    pathPrefix: /check
    includeRequestHeadersInCheck: ["x-ext-*"]
    includeAdditionalHeadersInCheck: {x-ext-fixed: "1"}
    includeRequestBodyInCheck: {maxRequestBytes: 3, allowPartialMessage: true}
)");
  http::RequestHead head;
  head.method = "POST";
  head.target = "/orders?id=7";
  head.authority = "shop:80";
  head.headers = {{"Authorization", "Bearer t"}, {"X-Ext-Authz", "allow"},
                  {"x-ext-fixed", "client's"},   {"cookie", "secret"},
                  {"content-length", "10"},      {"x-envoy-auth-partial-body", "forged"}};
  CheckInput in{.head = &head, .body = "abc", .body_partial = true, .body_included = true};
  auto check = http_check_head(p, in);
  EXPECT_EQ(check.method, "POST");
  EXPECT_EQ(check.target, "/check/orders?id=7");
  EXPECT_EQ(check.authority, "shop:80");
  const http::HeaderList want = {{"Authorization", "Bearer t"},
                                 {"X-Ext-Authz", "allow"},
                                 {"x-ext-fixed", "1"},
                                 {"x-envoy-auth-partial-body", "true"}};
  EXPECT_EQ(check.headers, want);
}

TEST(ExtAuthzHttp, OnlyTwoHundredAllowsAndAFiveHundredIsAnError) {
  auto p = one(R"(extensionProviders:
- name: p
  envoyExtAuthzHttp:
    service: a
    port: 80
    headersToUpstreamOnAllow: ["x-user", "x-group-*"]
    headersToDownstreamOnAllow: ["x-decision"]
)");
  const http::HeaderList answer = {{"x-user", "alice"},
                                   {"x-group-a", "1"},
                                   {"x-decision", "ok"},
                                   {"x-other", "no"},
                                   {"host", "evil"},
                                   {"content-length", "0"},
                                   {"x-envoy-auth-headers-to-remove", "cookie, :path,host , x-b"}};
  auto v = read_http_check_answer(p, 200, answer, "");
  ASSERT_EQ(v.kind, ExtAuthzVerdict::Kind::kAllowed);
  EXPECT_EQ(v.upstream.set, (http::HeaderList{{"x-user", "alice"}, {"x-group-a", "1"}}));
  EXPECT_EQ(v.downstream.set, (http::HeaderList{{"x-decision", "ok"}}));
  EXPECT_EQ(v.upstream.remove, (std::vector<std::string>{"cookie", "x-b"}))
      << "pseudo-headers and Host cannot be removed";
  http::HeaderList request = {{"cookie", "c"}, {"x-user", "mallory"}, {"x-b", "1"}, {"x-c", "2"}};
  v.upstream.apply(request);
  EXPECT_EQ(request, (http::HeaderList{{"x-c", "2"}, {"x-user", "alice"}, {"x-group-a", "1"}}))
      << "removed, then replaced";

  for (int status : {201, 204, 302, 401, 403, 429}) {
    SCOPED_TRACE(status);
    auto d = read_http_check_answer(p, status, answer, "no");
    EXPECT_EQ(d.kind, ExtAuthzVerdict::Kind::kDenied);
    EXPECT_EQ(d.status, status);
    EXPECT_EQ(d.body, "no");
  }
  for (int status : {100, 101, 500, 503, 599}) {
    SCOPED_TRACE(status);
    auto e = read_http_check_answer(p, status, answer, "boom");
    EXPECT_EQ(e.kind, ExtAuthzVerdict::Kind::kError);
    EXPECT_EQ(e.status, 403) << "statusOnError";
    EXPECT_EQ(e.body, "");
  }
  p.fail_open = true;
  EXPECT_EQ(read_http_check_answer(p, 503, answer, "").kind, ExtAuthzVerdict::Kind::kAllowed);
  EXPECT_EQ(check_failed(p, "timeout").kind, ExtAuthzVerdict::Kind::kAllowed);
}

TEST(ExtAuthzHttp, ADenialPassesEveryHeaderButHostOrOnlyThoseNamed) {
  auto all = one("extensionProviders: [{name: p, envoyExtAuthzHttp: {service: a, port: 80}}]");
  const http::HeaderList answer = {
      {"x-reason", "nope"}, {"www-authenticate", "Bearer"},   {"location", "/login"},
      {"host", "h"},        {"transfer-encoding", "chunked"}, {"x-other", "1"}};
  auto d = read_http_check_answer(all, 401, answer, "");
  EXPECT_EQ(d.headers, (http::HeaderList{{"x-reason", "nope"},
                                         {"www-authenticate", "Bearer"},
                                         {"location", "/login"},
                                         {"x-other", "1"}}));
  auto named =
      one("extensionProviders: [{name: p, envoyExtAuthzHttp: {service: a, port: 80, "
          "headersToDownstreamOnDeny: [x-reason]}}]");
  d = read_http_check_answer(named, 401, answer, "");
  EXPECT_EQ(d.headers,
            (http::HeaderList{
                {"x-reason", "nope"}, {"www-authenticate", "Bearer"}, {"location", "/login"}}))
      << "WWW-Authenticate and Location always go";
}

TEST(ExtAuthzGrpc, TheCheckRequestDescribesPeersAndRequest) {
  http::RequestHead head;
  head.method = "GET";
  head.target = "/a?b=1";
  head.authority = "reviews:80";
  head.headers = {{"X-Ext-Authz", "allow"}, {"accept", "a"}, {"accept", "b"}};
  CheckInput in{.head = &head,
                .body = "xyz",
                .body_partial = false,
                .body_included = true,
                .protocol = "HTTP/2",
                .request_id = "rid",
                .source_ip = asio::ip::make_address("10.0.0.1"),
                .source_principal = "spiffe://cluster.local/ns/a/sa/b",
                .destination_ip = asio::ip::make_address("10.96.0.9"),
                .destination_port = 80,
                .destination_principal = "spiffe://cluster.local/ns/a/sa/waypoint",
                .now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000))};
  auto provider =
      one("extensionProviders: [{name: g, envoyExtAuthzGrpc: {service: a, port: 80, "
          "includeRequestBodyInCheck: {maxRequestBytes: 10, allowPartialMessage: true}}}]");
  auth::CheckRequest req;
  ASSERT_TRUE(req.ParseFromString(grpc_check_request(provider, in)));
  const auto& a = req.attributes();
  EXPECT_EQ(a.source().address().socket_address().address(), "10.0.0.1");
  EXPECT_EQ(a.source().principal(), "spiffe://cluster.local/ns/a/sa/b");
  EXPECT_EQ(a.destination().address().socket_address().port_value(), 80u);
  EXPECT_EQ(a.destination().principal(), "spiffe://cluster.local/ns/a/sa/waypoint");
  EXPECT_EQ(a.request().time().seconds(), 1700000000);
  const auto& h = a.request().http();
  EXPECT_EQ(h.id(), "rid");
  EXPECT_EQ(h.method(), "GET");
  EXPECT_EQ(h.path(), "/a?b=1");
  EXPECT_EQ(h.host(), "reviews:80");
  EXPECT_EQ(h.protocol(), "HTTP/2");
  EXPECT_EQ(h.body(), "xyz");
  EXPECT_EQ(h.size(), 3);
  EXPECT_EQ(h.headers().at("x-ext-authz"), "allow");
  EXPECT_EQ(h.headers().at("accept"), "a,b");
  EXPECT_EQ(h.headers().at(":path"), "/a?b=1");
  EXPECT_EQ(h.headers().at("x-envoy-auth-partial-body"), "false");

  // packAsBytes: raw_body; without allowPartialMessage, no partial-body header.
  auto packed =
      one("extensionProviders: [{name: g, envoyExtAuthzGrpc: {service: a, port: 80, "
          "includeRequestBodyInCheck: {maxRequestBytes: 10, packAsBytes: true}}}]");
  ASSERT_TRUE(req.ParseFromString(grpc_check_request(packed, in)));
  EXPECT_EQ(req.attributes().request().http().raw_body(), "xyz");
  EXPECT_EQ(req.attributes().request().http().body(), "");
  EXPECT_EQ(req.attributes().request().http().headers().at("x-envoy-auth-partial-body"), "false")
      << "whenever a body is included, as Envoy";

  // Text fields must be UTF-8: other bytes become '!' (an authorizer would refuse the message).
  head.headers.push_back({"x-bin",
                          "a\xff\xc0\x80"
                          "b\xc3\xa9"});
  in.body = "\xfe";
  ASSERT_TRUE(req.ParseFromString(grpc_check_request(provider, in)));
  EXPECT_EQ(req.attributes().request().http().headers().at("x-bin"), "a!!!b\xc3\xa9");
  EXPECT_EQ(req.attributes().request().http().body(), "!");
}

TEST(ExtAuthzGrpc, TheStatusDecidesAndTheResponsesCarryHeaders) {
  auth::CheckResponse ok;
  auto* okr = ok.mutable_ok_response();
  auto* set = okr->add_headers();
  set->mutable_header()->set_key("X-User");
  set->mutable_header()->set_value("alice");
  set->set_append_action(envoy::config::core::v3::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
  auto* append = okr->add_headers();
  append->mutable_header()->set_key("x-tag");
  append->mutable_header()->set_value("t");
  append->mutable_append()->set_value(true);
  auto* host = okr->add_headers();
  host->mutable_header()->set_key(":authority");
  host->mutable_header()->set_value("evil");
  okr->add_headers_to_remove("cookie");
  okr->add_headers_to_remove("host");
  auto* down = okr->add_response_headers_to_add();
  down->mutable_header()->set_key("x-decision");
  down->mutable_header()->set_raw_value("raw");
  auto v = read_grpc_check_answer(ok.SerializeAsString());
  ASSERT_EQ(v.kind, ExtAuthzVerdict::Kind::kAllowed);
  EXPECT_EQ(v.upstream.set, (http::HeaderList{{"x-user", "alice"}}));
  EXPECT_EQ(v.upstream.append, (http::HeaderList{{"x-tag", "t"}}));
  EXPECT_EQ(v.upstream.remove, (std::vector<std::string>{"cookie"}));
  EXPECT_EQ(v.downstream.append, (http::HeaderList{{"x-decision", "raw"}}))
      << "response_headers_to_add appends by default";

  // Every append action; names and values that could split a message are dropped.
  auth::CheckResponse actions;
  auto* ar = actions.mutable_ok_response();
  auto add = [&](const char* k, const char* value,
                 envoy::config::core::v3::HeaderValueOption::HeaderAppendAction action) {
    auto* o = ar->add_headers();
    o->mutable_header()->set_key(k);
    o->mutable_header()->set_value(value);
    o->set_append_action(action);
  };
  using Opt = envoy::config::core::v3::HeaderValueOption;
  add("x-if-absent", "new", Opt::ADD_IF_ABSENT);
  add("x-present", "new", Opt::ADD_IF_ABSENT);
  add("x-if-present", "new", Opt::OVERWRITE_IF_EXISTS);
  add("x-present", "over", Opt::OVERWRITE_IF_EXISTS);
  add("x-appended", "2", Opt::APPEND_IF_EXISTS_OR_ADD);
  add("x-evil", "a\r\nx-injected: 1", Opt::OVERWRITE_IF_EXISTS_OR_ADD);
  add("bad name", "v", Opt::OVERWRITE_IF_EXISTS_OR_ADD);
  ar->add_headers_to_remove("bad name\r\n");
  auto av = read_grpc_check_answer(actions.SerializeAsString());
  ASSERT_EQ(av.kind, ExtAuthzVerdict::Kind::kAllowed);
  EXPECT_TRUE(av.upstream.set.empty()) << "unsafe headers are dropped";
  EXPECT_TRUE(av.upstream.remove.empty());
  http::HeaderList edited = {{"x-present", "old"}, {"x-appended", "1"}};
  av.upstream.apply(edited);
  EXPECT_EQ(edited, (http::HeaderList{{"x-present", "over"},
                                      {"x-appended", "1"},
                                      {"x-appended", "2"},
                                      {"x-if-absent", "new"}}));

  auth::CheckResponse denied;
  denied.mutable_status()->set_code(7);
  denied.mutable_denied_response()->mutable_status()->set_code(
      static_cast<envoy::type::v3::StatusCode>(101));
  EXPECT_EQ(read_grpc_check_answer(denied.SerializeAsString()).status, 403)
      << "a 1xx is no answer to the client";
  denied.mutable_denied_response()->mutable_status()->set_code(envoy::type::v3::OK);
  EXPECT_EQ(read_grpc_check_answer(denied.SerializeAsString()).status, 403);
  denied.clear_denied_response();
  EXPECT_EQ(read_grpc_check_answer(denied.SerializeAsString()).status, 403);
  denied.mutable_status()->set_code(16);
  EXPECT_EQ(read_grpc_check_answer(denied.SerializeAsString()).status, 401) << "UNAUTHENTICATED";
  denied.mutable_denied_response()->mutable_status()->set_code(envoy::type::v3::TooManyRequests);
  denied.mutable_denied_response()->set_body("slow down");
  auto d = read_grpc_check_answer(denied.SerializeAsString());
  EXPECT_EQ(d.kind, ExtAuthzVerdict::Kind::kDenied);
  EXPECT_EQ(d.status, 429);
  EXPECT_EQ(d.body, "slow down");

  auth::CheckResponse error;
  error.mutable_status()->set_code(13);
  error.mutable_error_response()->set_body("x");
  EXPECT_EQ(read_grpc_check_answer(error.SerializeAsString()).kind, ExtAuthzVerdict::Kind::kError);
  EXPECT_EQ(read_grpc_check_answer("\xff\xff\xff").kind, ExtAuthzVerdict::Kind::kError)
      << "garbage is an error, not an answer";
}

}  // namespace
}  // namespace zt::waypoint::authz
