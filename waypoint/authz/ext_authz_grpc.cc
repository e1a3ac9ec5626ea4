// The gRPC provider's messages (envoy.service.auth.v3): apart from ext_authz.cc, so that what
// needs no protobuf (the parsers, the HTTP provider) builds without it.
#include <fmt/format.h>

#include "common/base/utf8.h"
#include "envoy/service/auth/v3/external_auth.pb.h"
#include "waypoint/authz/ext_authz.h"
#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/http/request_checks.h"

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

std::string grpc_check_request(const ExtAuthzProvider& provider, const CheckInput& input) {
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
  // Text goes into proto3 `string` fields, which must be UTF-8 (an authorizer refuses the whole
  // message otherwise): other bytes become '!', as Envoy sanitizes them.
  auto text = [](std::string_view v) { return utf8_sanitized(v, "!"); };
  auto* http = request->mutable_http();
  http->set_id(text(input.request_id));
  http->set_method(text(head.method));
  http->set_path(text(head.target));
  http->set_host(text(head.authority));
  http->set_scheme(text(head.scheme));
  http->set_protocol(std::string(input.protocol));
  auto& map = *http->mutable_headers();
  map[":authority"] = http->host();
  map[":method"] = http->method();
  map[":path"] = http->path();
  map[":scheme"] = http->scheme();
  for (const auto& h : head.headers) {
    if (iequals(h.name, kPartialBody)) continue;
    auto [it, fresh] = map.try_emplace(text(to_lower(h.name)), text(h.value));
    if (!fresh) it->second += "," + text(h.value);
  }
  http->set_size(input.body_included ? static_cast<int64_t>(input.body.size()) : -1);
  if (input.body_included) {
    map[std::string(kPartialBody)] = input.body_partial ? "true" : "false";
    if (provider.body && provider.body->pack_as_bytes) {
      http->set_raw_body(std::string(input.body));
    } else {
      http->set_body(text(input.body));
    }
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
  // Header options as Envoy applies them: `append` when set (deprecated), else append_action.
  auto add_options = [](const auto& options, HeaderEdits& out) {
    for (const auto& o : options) {
      http::Header h{to_lower(o.header().key()), option_value(o.header())};
      if (!usable_provider_header(h.name, h.value)) continue;
      auto action = o.append_action();
      if (o.has_append()) {
        action = o.append().value() ? core::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD
                                    : core::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD;
      }
      switch (action) {
        case core::HeaderValueOption::ADD_IF_ABSENT:
          out.if_absent.push_back(std::move(h));
          break;
        case core::HeaderValueOption::OVERWRITE_IF_EXISTS:
          out.if_present.push_back(std::move(h));
          break;
        case core::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD:
          out.set.push_back(std::move(h));
          break;
        default:
          out.append.push_back(std::move(h));
          break;
      }
    }
  };
  if (resp.status().code() == 0) {
    v.kind = ExtAuthzVerdict::Kind::kAllowed;
    if (resp.has_ok_response()) {
      const auto& ok = resp.ok_response();
      add_options(ok.headers(), v.upstream);
      for (const auto& name : ok.headers_to_remove()) {
        if (http::is_token(name) && !http::is_protected_header(name))
          v.upstream.remove.push_back(name);
      }
      add_options(ok.response_headers_to_add(), v.downstream);
    }
    return v;
  }
  v.kind = ExtAuthzVerdict::Kind::kDenied;
  v.status = resp.status().code() == kUnauthenticated ? 401 : 403;
  if (resp.has_denied_response()) {
    const auto& denied = resp.denied_response();
    // (Only a status Envoy's enum names, and an answer's: 1xx would leave the client expecting
    // another, 200 would read as allowed.)
    const int code = denied.has_status() ? denied.status().code() : 0;
    if (code >= 201 && is_envoy_status_code(code)) v.status = code;
    // (on the refusal, each as given: the answer has no headers of its own to keep)
    HeaderEdits edits;
    add_options(denied.headers(), edits);
    for (auto* list : {&edits.set, &edits.append, &edits.if_absent, &edits.if_present}) {
      v.headers.insert(v.headers.end(), list->begin(), list->end());
    }
    v.body = denied.body();
  }
  v.reason = fmt::format("denied by ext_authz (grpc status {})", resp.status().code());
  return v;
}

}  // namespace zt::waypoint::authz
