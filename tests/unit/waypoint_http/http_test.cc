// HTTP/1.1 head checks against smuggling and oversized heads, hop-by-hop removal and the
// forwarding headers (x-forwarded-for, x-request-id, traceparent).
#include <regex>
#include <string>

#include <gtest/gtest.h>

#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/http/request_checks.h"

namespace zt::waypoint::http {
namespace {

RequestHead head_with(HeaderList headers, std::string method = "POST", std::string target = "/") {
  RequestHead h;
  h.method = std::move(method);
  h.target = std::move(target);
  h.authority = "svc";
  h.headers = std::move(headers);
  return h;
}

struct FramingCase {
  const char* name;
  HeaderList headers;
  Version version;
  int status;  // 0 = accepted
};

TEST(RequestHeadTest, RefusesAmbiguousFramingAndBadFields) {
  const std::vector<FramingCase> cases = {
      {"plain", {{"Host", "svc"}}, Version::kHttp11, 0},
      {"content-length", {{"Host", "svc"}, {"Content-Length", "5"}}, Version::kHttp11, 0},
      {"chunked", {{"Host", "svc"}, {"Transfer-Encoding", "chunked"}}, Version::kHttp11, 0},
      {"chunked any case",
       {{"Host", "svc"}, {"transfer-encoding", " Chunked "}},
       Version::kHttp11,
       0},
      {"CL and TE",
       {{"Host", "svc"}, {"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}},
       Version::kHttp11,
       400},
      {"TE and CL",
       {{"Host", "svc"}, {"Transfer-Encoding", "chunked"}, {"Content-Length", "0"}},
       Version::kHttp11,
       400},
      {"TE gzip only", {{"Host", "svc"}, {"Transfer-Encoding", "gzip"}}, Version::kHttp11, 400},
      {"TE chunked then gzip",
       {{"Host", "svc"}, {"Transfer-Encoding", "chunked, gzip"}},
       Version::kHttp11,
       400},
      {"TE gzip then chunked",
       {{"Host", "svc"}, {"Transfer-Encoding", "gzip, chunked"}},
       Version::kHttp11,
       501},
      {"TE chunked twice",
       {{"Host", "svc"}, {"Transfer-Encoding", "chunked, chunked"}},
       Version::kHttp11,
       400},
      {"TE split over lines",
       {{"Host", "svc"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "identity"}},
       Version::kHttp11,
       400},
      {"TE empty", {{"Host", "svc"}, {"Transfer-Encoding", ""}}, Version::kHttp11, 400},
      {"TE in HTTP/1.0", {{"Transfer-Encoding", "chunked"}}, Version::kHttp10, 400},
      {"TE in HTTP/2", {{"transfer-encoding", "chunked"}}, Version::kHttp2, 400},
      {"duplicate CL equal",
       {{"Host", "svc"}, {"Content-Length", "5"}, {"Content-Length", "5"}},
       Version::kHttp11,
       400},
      {"duplicate CL differing",
       {{"Host", "svc"}, {"Content-Length", "5"}, {"Content-Length", "6"}},
       Version::kHttp11,
       400},
      {"CL list", {{"Host", "svc"}, {"Content-Length", "5, 5"}}, Version::kHttp11, 400},
      {"CL sign", {{"Host", "svc"}, {"Content-Length", "+5"}}, Version::kHttp11, 400},
      {"CL negative", {{"Host", "svc"}, {"Content-Length", "-1"}}, Version::kHttp11, 400},
      {"CL hex", {{"Host", "svc"}, {"Content-Length", "0x10"}}, Version::kHttp11, 400},
      {"CL empty", {{"Host", "svc"}, {"Content-Length", ""}}, Version::kHttp11, 400},
      {"CL overflow",
       {{"Host", "svc"}, {"Content-Length", "99999999999999999999999"}},
       Version::kHttp11,
       400},
      {"missing Host", {}, Version::kHttp11, 400},
      {"duplicate Host", {{"Host", "a"}, {"Host", "b"}}, Version::kHttp11, 400},
      {"HTTP/1.0 without Host", {}, Version::kHttp10, 0},
      {"space in name", {{"Host", "svc"}, {"Bad Name", "x"}}, Version::kHttp11, 400},
      {"colon in name", {{"Host", "svc"}, {"a:b", "x"}}, Version::kHttp11, 400},
      {"empty name", {{"Host", "svc"}, {"", "x"}}, Version::kHttp11, 400},
      {"CR in value", {{"Host", "svc"}, {"X", "a\rb"}}, Version::kHttp11, 400},
      {"LF in value",
       {{"Host", "svc"}, {"X", "a\nTransfer-Encoding: chunked"}},
       Version::kHttp11,
       400},
      {"NUL in value", {{"Host", "svc"}, {"X", std::string("a\0b", 3)}}, Version::kHttp11, 400},
      {"tab in value", {{"Host", "svc"}, {"X", "a\tb"}}, Version::kHttp11, 0},
      {"obs-text in value", {{"Host", "svc"}, {"X", "caf\xc3\xa9"}}, Version::kHttp11, 0},
  };
  for (const auto& c : cases) {
    auto r = check_request_head(head_with(c.headers), c.version, HeadLimits{});
    if (c.status == 0) {
      EXPECT_TRUE(r.has_value()) << c.name << ": " << (r ? "" : r.error().reason);
    } else {
      ASSERT_FALSE(r.has_value()) << c.name;
      EXPECT_EQ(r.error().status, c.status) << c.name << ": " << r.error().reason;
    }
  }
}

TEST(RequestHeadTest, ReportsBodyFraming) {
  auto cl = check_request_head(head_with({{"Host", "s"}, {"Content-Length", "42"}}),
                               Version::kHttp11, {});
  ASSERT_TRUE(cl);
  EXPECT_EQ(cl->kind, BodyFraming::Kind::kContentLength);
  EXPECT_EQ(cl->content_length, 42u);
  auto chunked = check_request_head(head_with({{"Host", "s"}, {"Transfer-Encoding", "chunked"}}),
                                    Version::kHttp11, {});
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->kind, BodyFraming::Kind::kChunked);
  auto none = check_request_head(head_with({{"Host", "s"}}, "GET"), Version::kHttp11, {});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->kind, BodyFraming::Kind::kNone);
  auto h2 = check_request_head(head_with({{"content-length", "3"}}), Version::kHttp2, {});
  ASSERT_TRUE(h2);
  EXPECT_EQ(h2->kind, BodyFraming::Kind::kHttp2Stream);
  EXPECT_TRUE(h2->has_content_length);
}

TEST(RequestHeadTest, ChecksMethodAndTarget) {
  struct Case {
    const char* method;
    const char* target;
    bool ok;
  };
  const Case cases[] = {
      {"GET", "/a?b=c", true},      {"get", "/", false},       {"GE T", "/", false},
      {"OPTIONS", "*", true},       {"GET", "*", false},       {"GET", "", false},
      {"GET", "http://x/", false},  {"GET", "/a b", false},    {"GET", "/a#frag", false},
      {"CONNECT", "svc:443", true}, {"GET", "svc:443", false}, {"PURGE", "/x", true},
  };
  for (const auto& c : cases) {
    auto r =
        check_request_head(head_with({{"Host", "s"}}, c.method, c.target), Version::kHttp11, {});
    EXPECT_EQ(r.has_value(), c.ok) << c.method << " " << c.target;
    if (!r) {
      EXPECT_EQ(r.error().status, 400);
    }
  }
}

TEST(RequestHeadTest, OversizedHeadIs431) {
  HeadLimits limits{.max_head_bytes = 1024, .max_headers = 10};
  HeaderList big = {{"Host", "s"}, {"X-Big", std::string(2000, 'a')}};
  auto r = check_request_head(head_with(big), Version::kHttp11, limits);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().status, 431);
  HeaderList many = {{"Host", "s"}};
  for (int i = 0; i < 10; ++i) many.push_back({"X-" + std::to_string(i), "v"});
  r = check_request_head(head_with(many), Version::kHttp11, limits);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().status, 431);
}

TEST(RawHeadTest, RefusesMalformedBytes) {
  struct Case {
    const char* name;
    std::string bytes;
    int status;
  };
  const std::vector<Case> cases = {
      {"valid", "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n", 0},
      {"incomplete valid", "GET / HTTP/1.1\r\nHost: a\r\nX: y", 0},
      {"incomplete between CR and LF", "GET / HTTP/1.1\r\nHost: a\r", 0},
      {"incomplete request line", "GET / HTTP/1.1\r", 0},
      {"bare LF", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
      {"bare LF in field", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400},
      {"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400},
      {"NUL", std::string("GET / HTTP/1.1\r\nHost: a\0\r\n\r\n", 27), 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n  z\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
      {"tab before colon", "GET / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n", 400},
      {"no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", 400},
      {"two spaces in request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"bad version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},
      {"missing version", "GET /\r\nHost: a\r\n\r\n", 400},
  };
  for (const auto& c : cases) {
    auto r = check_raw_head(c.bytes, HeadLimits{});
    if (c.status == 0) {
      EXPECT_TRUE(r.has_value()) << c.name << ": " << (r ? "" : r.error().reason);
    } else {
      ASSERT_FALSE(r.has_value()) << c.name;
      EXPECT_EQ(r.error().status, c.status) << c.name;
    }
  }
}

TEST(RawHeadTest, OversizedHeadIs431EvenBeforeItEnds) {
  HeadLimits limits{.max_head_bytes = 100, .max_headers = 3};
  const std::string head = "GET / HTTP/1.1\r\nX: " + std::string(200, 'a');  // no end yet
  auto r = check_raw_head(head, limits);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().status, 431);
  const std::string many = "GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n";
  r = check_raw_head(many, limits);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().status, 431);
  // Bytes after the head (a body) do not count.
  const std::string with_body = "GET / HTTP/1.1\r\nA: 1\r\n\r\n" + std::string(500, 'b');
  EXPECT_TRUE(check_raw_head(with_body, limits));
  EXPECT_EQ(find_head_end(with_body), 24u);
}

TEST(HopByHopTest, RemovesConnectionAndListedFields) {
  HeaderList h = {{"Host", "svc"},
                  {"Connection", "close, X-Secret"},
                  {"X-Secret", "1"},
                  {"Keep-Alive", "timeout=5"},
                  {"Proxy-Connection", "x"},
                  {"TE", "gzip"},
                  {"Transfer-Encoding", "chunked"},
                  {"Upgrade", "websocket"},
                  {"Proxy-Authorization", "Basic x"},
                  {"PROXY-AUTHENTICATE", "Basic"},
                  {"X-Keep", "yes"},
                  {"Keep-Alivf", "same length as Keep-Alive"},
                  {"Tf", "same length as TE"}};
  auto info = strip_hop_by_hop(h);
  EXPECT_TRUE(info.connection_close);
  EXPECT_FALSE(info.upgrade);  // Upgrade without "Connection: upgrade" is not an upgrade
  EXPECT_EQ(h, (HeaderList{{"Host", "svc"},
                           {"X-Keep", "yes"},
                           {"Keep-Alivf", "same length as Keep-Alive"},
                           {"Tf", "same length as TE"}}));
}

TEST(HopByHopTest, ConnectionCannotStripHost) {
  HeaderList h = {{"Host", "svc"}, {"Connection", "Host, keep-alive"}};
  auto info = strip_hop_by_hop(h);
  EXPECT_TRUE(info.connection_keep_alive);
  EXPECT_EQ(h, (HeaderList{{"Host", "svc"}}));
}

TEST(HopByHopTest, KeepsUpgradeWhenUpgrading) {
  HeaderList h = {{"Host", "svc"},
                  {"Connection", "Upgrade"},
                  {"Upgrade", "websocket"},
                  {"Sec-WebSocket-Key", "k"}};
  auto info = strip_hop_by_hop(h, {.keep_upgrade = true});
  ASSERT_TRUE(info.upgrade);
  EXPECT_EQ(*info.upgrade, "websocket");
  EXPECT_EQ(find_header(h, "upgrade"), "websocket");
  EXPECT_EQ(find_header(h, "connection"), "upgrade");
  HeaderList plain = {{"Connection", "Upgrade"}, {"Upgrade", "websocket"}};
  strip_hop_by_hop(plain);
  EXPECT_TRUE(plain.empty());
}

TEST(HopByHopTest, TeTrailersForGrpc) {
  HeaderList h = {{"te", "trailers"}, {"content-type", "application/grpc"}};
  auto info = strip_hop_by_hop(h, {.keep_te_trailers = true});
  EXPECT_TRUE(info.te_trailers);
  EXPECT_EQ(find_header(h, "te"), "trailers");
  HeaderList dropped = {{"te", "trailers, deflate"}};
  strip_hop_by_hop(dropped);
  EXPECT_FALSE(find_header(dropped, "te"));
}

TEST(ForwardingTest, AppendsForwardedFor) {
  HeaderList h;
  append_forwarded_for(h, "10.0.0.1");
  EXPECT_EQ(find_header(h, "x-forwarded-for"), "10.0.0.1");
  append_forwarded_for(h, "10.0.0.2");
  EXPECT_EQ(find_header(h, "x-forwarded-for"), "10.0.0.1, 10.0.0.2");
  HeaderList repeated = {{"X-Forwarded-For", "1.1.1.1"}, {"x-forwarded-for", "2.2.2.2"}};
  append_forwarded_for(repeated, "3.3.3.3");
  EXPECT_EQ(repeated.size(), 1u);
  EXPECT_EQ(find_header(repeated, "x-forwarded-for"), "1.1.1.1,2.2.2.2, 3.3.3.3");
}

TEST(ForwardingTest, RequestIdKeptOrGenerated) {
  SeededRandom random(7);
  HeaderList h = {{"X-Request-Id", "abc"}};
  EXPECT_EQ(ensure_request_id(h, random), "abc");
  HeaderList empty = {{"x-request-id", ""}};
  const std::string id = ensure_request_id(empty, random);
  const std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  EXPECT_TRUE(std::regex_match(id, uuid)) << id;
  EXPECT_EQ(find_header(empty, "x-request-id"), id);
  HeaderList none;
  const std::string other = ensure_request_id(none, random);
  EXPECT_NE(other, id);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(std::regex_match(uuid_v4(random), uuid));
}

TEST(TraceParentTest, ParsesPerSpec) {
  const std::string good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto tp = TraceParent::parse(good);
  ASSERT_TRUE(tp);
  EXPECT_TRUE(tp->sampled());
  EXPECT_EQ(tp->format(), good);
  const char* bad[] = {
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  // v00 must be 55 chars
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",        // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",        // zero parent id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",        // version ff
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",        // upper case
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",           // short
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",        // separator
  };
  for (const char* b : bad) EXPECT_FALSE(TraceParent::parse(b)) << b;
  EXPECT_TRUE(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"));
}

TEST(TraceParentTest, PropagatesOrCreates) {
  SeededRandom random(1);
  const std::string incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  HeaderList h = {{"traceparent", incoming}, {"tracestate", "a=b"}};
  auto r = ensure_traceparent(h, random);
  EXPECT_EQ(r.action, TraceAction::kPropagated);
  EXPECT_EQ(find_header(h, "traceparent"), incoming);
  EXPECT_EQ(find_header(h, "tracestate"), "a=b");

  auto span = ensure_traceparent(h, random, /*new_span=*/true);
  EXPECT_EQ(span.action, TraceAction::kNewSpan);
  auto now = TraceParent::parse(*find_header(h, "traceparent"));
  ASSERT_TRUE(now);
  EXPECT_EQ(now->trace_id, TraceParent::parse(incoming)->trace_id);
  EXPECT_NE(now->parent_id, TraceParent::parse(incoming)->parent_id);
  EXPECT_EQ(now->flags, 1);

  HeaderList invalid = {{"traceparent", "garbage"}, {"tracestate", "a=b"}};
  auto created = ensure_traceparent(invalid, random);
  EXPECT_EQ(created.action, TraceAction::kCreated);
  EXPECT_TRUE(TraceParent::parse(*find_header(invalid, "traceparent")));
  EXPECT_FALSE(find_header(invalid, "tracestate"));

  HeaderList twice = {{"traceparent", incoming}, {"traceparent", incoming}};
  EXPECT_EQ(ensure_traceparent(twice, random).action, TraceAction::kCreated);
  EXPECT_EQ(count_header(twice, "traceparent"), 1u);

  HeaderList none;
  auto fresh = ensure_traceparent(none, random, false, /*sampled=*/true);
  EXPECT_EQ(fresh.action, TraceAction::kCreated);
  EXPECT_TRUE(fresh.context.sampled());
}

TEST(HeaderListTest, SetAddRemoveAreCaseInsensitive) {
  HeaderList h = {{"X-A", "1"}, {"x-a", "2"}, {"Y", "y"}};
  EXPECT_EQ(joined_header(h, "X-a"), "1,2");
  set_header(h, "x-A", "3");
  EXPECT_EQ(h, (HeaderList{{"X-A", "3"}, {"Y", "y"}}));
  add_header(h, "y", "z");
  EXPECT_EQ(find_header(h, "Y"), "y,z");
  add_header(h, "new", "v");
  EXPECT_EQ(find_header(h, "NEW"), "v");
  EXPECT_EQ(remove_header(h, "x-a"), 1u);
  EXPECT_FALSE(find_header(h, "X-A"));
  RequestHead r;
  r.target = "/p/q?x=1&y";
  EXPECT_EQ(r.path(), "/p/q");
  EXPECT_EQ(r.query(), "x=1&y");
}

TEST(GrpcLocalReplyTest, ContentTypesStatusesAndMessages) {
  auto ct = [](std::string v) { return HeaderList{{"Content-Type", std::move(v)}}; };
  EXPECT_TRUE(is_native_grpc(ct("application/grpc")));
  EXPECT_TRUE(is_native_grpc(ct("application/grpc+proto")));
  EXPECT_TRUE(is_native_grpc(ct("application/grpc;charset=utf-8")));
  EXPECT_FALSE(is_native_grpc(ct("application/grpc-web")));
  EXPECT_FALSE(is_native_grpc(ct("application/grpc-web-text+proto")));
  EXPECT_FALSE(is_native_grpc(ct("application/json")));
  EXPECT_FALSE(is_native_grpc({}));
  EXPECT_TRUE(is_grpc(ct("application/grpc-web")));  // (still streamed as gRPC)

  // gRPC's table for answers without grpc-status.
  const std::pair<int, int> table[] = {{400, 13}, {401, 16}, {403, 7},  {404, 12}, {429, 14},
                                       {502, 14}, {503, 14}, {504, 14}, {500, 2},  {408, 2}};
  for (auto [http, grpc] : table) EXPECT_EQ(grpc_status_for_http(http), grpc) << http;

  EXPECT_EQ(grpc_message_encoded("RBAC: access denied"), "RBAC: access denied");
  EXPECT_EQ(grpc_message_encoded("50% off\r\n\xc3\xa9~"), "50%25 off%0D%0A%C3%A9~");
  EXPECT_EQ(grpc_message_encoded(""), "");
}

TEST(WaypointStrings, AppendsNumbersInDecimalAndLowerCaseHex) {
  // The framing numbers of serialized messages: status codes, content-length, chunk sizes.
  std::string s = "x";
  append_decimal(s, 0);
  s += ' ';
  append_decimal(s, UINT64_MAX);
  s += ' ';
  append_hex(s, 0xabc0);
  s += ' ';
  append_hex(s, 0);
  EXPECT_EQ(s, "x0 18446744073709551615 abc0 0");
}

}  // namespace
}  // namespace zt::waypoint::http
