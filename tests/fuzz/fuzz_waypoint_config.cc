// Fuzzes the waypoint's L7 configuration as an operator or a controller writes it (HTTPRoute,
// GRPCRoute, VirtualService, DestinationRule and AuthorizationPolicy YAML), then routes and
// authorizes requests made from what it accepted: each match's own path, method, headers and query,
// and the same requests with the path cut or lengthened, so the matchers, the rewrites, the
// redirects and the policies all see fuzzer-made values. Besides crashes and sanitizer reports it
// traps when routing breaks its contract:
// - a request forwarded has a backend and an origin-form target;
// - a redirect has one of the five redirect statuses and a Location;
// - a request denied or allowed by a policy names one of that action that matches it, and one
//   decided by no policy names none;
// - RequestAuthentication (with keys from the input's `jwks`) given the token on the input's
//   last "#token " comment line either refuses it with a reason and no identity, or passes it,
//   and then the output headers it sets come only from a verified token;
// - an ext_authz provider (MeshConfig extensionProviders, in the document or the `istio`
//   ConfigMap) builds a check with its path prefix and no framing header, and its verdicts on
//   answers carrying the token line as header names and values decide as Envoy's (only 200
//   allows, a 5xx fails) and hand on only valid, non-framing headers.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/yaml/load.h"
#include "waypoint/authz/ext_authz.h"
#include "waypoint/authz/normalize.h"
#include "waypoint/authz/parse.h"
#include "waypoint/authz/policy.h"
#include "waypoint/authz/request_authn.h"
#include "waypoint/base/random.h"
#include "waypoint/config/parse.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/route/route.h"

namespace {

using namespace zt::waypoint;

constexpr size_t kLimit = 24;  // requests per input, so one input stays cheap however big

void require(bool ok) {
  if (!ok) std::abort();
}

// Requests made from one match: its values as given, then the path cut and lengthened.
std::vector<http::RequestHead> requests_for(const config::RouteMatch& match) {
  http::RequestHead head;
  head.method = match.method.value_or("GET");
  head.target = match.path.value.empty() || match.path.value[0] != '/' ? "/" + match.path.value
                                                                       : match.path.value;
  for (const auto& h : match.headers) head.headers.push_back({h.name, h.value});
  std::string query;
  for (const auto& q : match.query_params) {
    query += (query.empty() ? "?" : "&") + q.name + "=" + q.value;
  }
  std::vector<http::RequestHead> out;
  out.push_back(head);
  out.back().target += query;
  out.push_back(head);
  out.back().target += "/x/../y" + query;
  out.push_back(head);
  out.back().target = head.target.substr(0, head.target.size() / 2 + 1);
  return out;
}

void check_route(const route::RouteTable& table, const std::string& host, uint16_t port,
                 http::RequestHead head, Random& random) {
  const route::RouteDecision d = route::route_request(table, host, port, head, random);
  switch (d.kind) {
    case route::RouteDecision::Kind::kForward:
      require(d.backend != nullptr && d.selection);
      require(!head.target.empty() && head.target[0] == '/');
      break;
    case route::RouteDecision::Kind::kRedirect: {
      const int s = d.redirect.status;
      require(s == 301 || s == 302 || s == 303 || s == 307 || s == 308);
      require(!d.redirect.location.empty());
      break;
    }
    case route::RouteDecision::Kind::kDirect:
      require(d.selection && d.selection.rule->direct_response.has_value());
      break;
    case route::RouteDecision::Kind::kNoRoute:
      require(!d.selection);
      break;
    case route::RouteDecision::Kind::kNoBackend:
      require(d.selection && d.backend == nullptr);
      break;
  }
}

// Authorizes as the waypoint does: on the normalised path, without the query.
void check_authz(const std::vector<authz::Policy>& policies, const http::RequestHead& head,
                 const std::string& host, uint16_t port) {
  auto normalised = authz::normalize_target(head.target);
  if (!normalised) return;  // answered 400 before authorization
  http::RequestHead checked = head;
  checked.target = std::move(*normalised);
  authz::RequestInfo info;
  info.method = checked.method;
  info.path = checked.path();
  info.host = host;
  info.destination_port = port;
  info.headers = &checked.headers;
  info.principal = "cluster.local/ns/default/sa/client";
  info.source_ip = zt::asio::ip::make_address_v4("10.0.0.1");
  info.destination_ip = zt::asio::ip::make_address_v4("10.0.0.2");
  const authz::Decision decision = authz::evaluate(policies, info);
  using Outcome = authz::Decision::Outcome;
  std::optional<authz::Action> by;
  if (decision.outcome == Outcome::kDenied) by = authz::Action::kDeny;
  if (decision.outcome == Outcome::kAllowed) by = authz::Action::kAllow;
  if (decision.outcome == Outcome::kDeniedByCustom) by = authz::Action::kCustom;
  if (!by) {
    require(decision.policy.empty());
    return;
  }
  bool found = false;
  for (const auto& p : policies) {
    found = found || (p.key() == decision.policy && p.action == *by && !p.dry_run &&
                      authz::policy_matches(p, info));
  }
  require(found);
}

// The token on the input's last "#token " line ("" when there is none).
std::string_view token_of(std::string_view input) {
  const size_t at = input.rfind("#token ");
  if (at == std::string_view::npos) return {};
  std::string_view t = input.substr(at + 7);
  return t.substr(0, t.find('\n'));
}

void check_authn(const std::vector<authz::RequestAuthentication>& authns, std::string_view token) {
  std::vector<const authz::RequestAuthentication*> attached;
  for (const auto& a : authns) attached.push_back(&a);
  http::RequestHead head{
      .method = "GET", .target = "/p?access_token=x", .authority = "svc", .headers = {}};
  head.headers.push_back({"authorization", "Bearer " + std::string(token)});
  head.headers.push_back({"cookie", "session=" + std::string(token)});
  for (const auto& a : authns) {
    for (const auto& rule : a.rules) {
      if (!rule.output_payload_to_header.empty()) {
        head.headers.push_back({rule.output_payload_to_header, "forged"});
      }
    }
  }
  const auto r = authz::authenticate(attached, head, std::chrono::system_clock::now());
  if (r.rejected) {
    require(!r.reason.empty() && !r.identity);
    return;
  }
  if (!r.identity) {
    for (const auto& h : head.headers) require(h.value != "forged");
  }
  // Decoding alone never throws, whatever the bytes.
  if (auto jwt = authz::decode_jwt(token)) require(jwt->payload.is_object());
}

bool all_usable(const http::HeaderList& headers) {
  for (const auto& h : headers) {
    if (!authz::usable_provider_header(h.name, h.value)) return false;
  }
  return true;
}

void check_ext_authz(std::string_view yaml, std::string_view token) {
  std::vector<YAML::Node> docs;
  try {
    docs = zt::yaml::load_all(yaml);
  } catch (const std::exception&) {
    return;
  }
  auto providers = authz::parse_extension_providers(docs);
  if (!providers) return;
  const std::string t(token);
  http::RequestHead head{.method = "POST", .target = "/a?b=1", .authority = "svc", .headers = {}};
  head.headers.push_back({"authorization", t});
  head.headers.push_back({"content-length", "3"});
  head.headers.push_back({"x-fuzz", t});
  const http::HeaderList answer = {{"x-fuzz", t},
                                   {t.empty() ? "x-empty" : t, "v"},
                                   {"x-envoy-auth-headers-to-remove", t},
                                   {"transfer-encoding", "chunked"},
                                   {"host", "evil"}};
  for (const auto& p : *providers) {
    require(!p.name.empty() && p.port > 0 && !p.service.empty());
    authz::CheckInput in{.head = &head, .body = "abc", .body_included = p.body.has_value()};
    const auto check = authz::http_check_head(p, in);
    require(check.target.starts_with(p.path_prefix) && check.method == "POST");
    for (const auto& h : check.headers) require(!authz::framing_header(h.name));
    for (int status : {200, 201, 403, 503}) {
      auto v = authz::read_http_check_answer(p, status, answer, t);
      using Kind = authz::ExtAuthzVerdict::Kind;
      if (status == 200) require(v.kind == Kind::kAllowed);
      if (status == 201 || status == 403) require(v.kind == Kind::kDenied && v.status == status);
      if (status == 503) require(v.kind == (p.fail_open ? Kind::kAllowed : Kind::kError));
      require(all_usable(v.headers) && all_usable(v.upstream.set) && all_usable(v.downstream.set));
      for (const auto& name : v.upstream.remove) require(!http::is_protected_header(name));
      http::HeaderList request = head.headers;
      v.upstream.apply(request);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  auto parsed = config::parse_waypoint_config(yaml);
  auto policies = authz::parse_authorization_policies(yaml);
  if (auto authns = authz::parse_request_authentications(yaml); authns && !authns->empty()) {
    check_authn(*authns, token_of(yaml));
  }
  check_ext_authz(yaml, token_of(yaml));
  std::vector<authz::Policy> no_policies;
  const std::vector<authz::Policy>& enforced = policies ? *policies : no_policies;
  if (!parsed) {
    if (policies) {
      http::RequestHead head{.method = "GET", .target = "/", .authority = "svc", .headers = {}};
      check_authz(enforced, head, "svc", 80);
    }
    return 0;
  }
  auto config = std::make_shared<const config::WaypointConfig>(std::move(*parsed));
  const route::RouteTable table(config);
  SeededRandom random(size);
  size_t budget = kLimit;
  for (const auto& r : config->routes) {
    for (const auto& parent : r.parents) {
      config::BackendRef service{.name = parent.name, .namespace_name = parent.namespace_name};
      const std::string host = service.hostname(config->cluster_domain);
      const uint16_t port = parent.port.value_or(80);
      for (const auto& rule : r.rules) {
        for (const auto& match : rule.matches) {
          for (auto& head : requests_for(match)) {
            if (budget-- == 0) return 0;
            check_authz(enforced, head, host, port);
            check_route(table, host, port, std::move(head), random);
          }
        }
      }
    }
  }
  return 0;
}
