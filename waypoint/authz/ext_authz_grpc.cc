// The gRPC provider's messages (envoy.service.auth.v3): apart from ext_authz.cc, so that what
// needs no protobuf (the parsers, the HTTP provider) builds without it.
#include <fmt/format.h>

#include "envoy/service/auth/v3/external_auth.pb.h"
#include "waypoint/authz/ext_authz.h"
#include "waypoint/base/strings.h"

namespace zt::waypoint::authz {
namespace {

namespace auth = envoy::service::auth::v3;
namespace core = envoy::config::core::v3;

// google.rpc.Code UNAUTHENTICATED.
constexpr int kUnauthenticated = 16;

void set_socket_address(core::Address& out, const asio::ip::address& ip, uint16_t port) {
  auto* sa = out.mutable_socket_address();
  sa->set_address(ip.to_string());
  sa->set_port_value(port);
}

// A HeaderValueOption's value (raw_value when set).
std::string option_value(const core::HeaderValue& h) {
  return h.raw_value().empty() ? h.value() : h.raw_value();
}

}  // namespace

std::string grpc_check_request(const CheckInput& input) {
  const http::RequestHead& head = *input.head;
  auth::CheckRequest req;
  auto* attrs = req.mutable_attributes();
  set_socket_address(*attrs->mutable_source()->mutable_address(), input.source_ip, 0);
  attrs->mutable_source()->set_principal(input.source_principal);
  set_socket_address(*attrs->mutable_destination()->mutable_address(), input.destination_ip,
                     input.destination_port);
  attrs->mutable_destination()->set_principal(input.destination_principal);
  auto* request = attrs->mutable_request();
  const auto since_epoch = input.now.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  request->mutable_time()->set_seconds(seconds.count());
  request->mutable_time()->set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count()));
  auto* http = request->mutable_http();
  http->set_id(std::string(input.request_id));
  http->set_method(head.method);
  http->set_path(head.target);
  http->set_host(head.authority);
  http->set_scheme(head.scheme);
  http->set_protocol(std::string(input.protocol));
  auto& map = *http->mutable_headers();
  map[":authority"] = head.authority;
  map[":method"] = head.method;
  map[":path"] = head.target;
  map[":scheme"] = head.scheme;
  for (const auto& h : head.headers) {
    if (iequals(h.name, kPartialBody)) continue;
    auto name = to_lower(h.name);
    auto [it, fresh] = map.try_emplace(name, h.value);
    if (!fresh) it->second += "," + h.value;
  }
  http->set_size(input.body_included ? static_cast<int64_t>(input.body.size()) : -1);
  if (input.body_included) {
    map[std::string(kPartialBody)] = input.body_partial ? "true" : "false";
    http->set_body(std::string(input.body));
  }
  return req.SerializeAsString();
}

ExtAuthzVerdict read_grpc_check_answer(std::string_view message) {
  auth::CheckResponse resp;
  ExtAuthzVerdict v;
  if (!resp.ParseFromArray(message.data(), static_cast<int>(message.size()))) {
    v.reason = "the authorizer's CheckResponse does not parse";
    return v;
  }
  if (resp.has_error_response()) {
    v.reason = fmt::format("the authorizer answered an error ({})", resp.status().code());
    return v;
  }
  auto add_options = [](const auto& options, http::HeaderList& set, http::HeaderList& append) {
    for (const auto& o : options) {
      const auto& name = o.header().key();
      if (name.empty() || framing_header(name) || pseudo_or_host(name)) continue;
      http::Header h{to_lower(name), option_value(o.header())};
      bool appends = o.has_append()
                         ? o.append().value()
                         : o.append_action() == core::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD;
      (appends ? append : set).push_back(std::move(h));
    }
  };
  if (resp.status().code() == 0) {
    v.kind = ExtAuthzVerdict::Kind::kAllowed;
    if (resp.has_ok_response()) {
      const auto& ok = resp.ok_response();
      add_options(ok.headers(), v.upstream_set, v.upstream_append);
      for (const auto& name : ok.headers_to_remove()) {
        if (!name.empty() && !pseudo_or_host(name)) v.upstream_remove.push_back(name);
      }
      http::HeaderList add;
      add_options(ok.response_headers_to_add(), v.downstream_add, add);
      v.downstream_add.insert(v.downstream_add.end(), add.begin(), add.end());
    }
    return v;
  }
  v.kind = ExtAuthzVerdict::Kind::kDenied;
  v.status = resp.status().code() == kUnauthenticated ? 401 : 403;
  if (resp.has_denied_response()) {
    const auto& denied = resp.denied_response();
    if (denied.has_status() && denied.status().code() != 0) v.status = denied.status().code();
    http::HeaderList appended;
    add_options(denied.headers(), v.headers, appended);
    v.headers.insert(v.headers.end(), appended.begin(), appended.end());
    v.body = denied.body();
  }
  v.reason = fmt::format("denied by ext_authz (grpc status {})", resp.status().code());
  return v;
}

}  // namespace zt::waypoint::authz
