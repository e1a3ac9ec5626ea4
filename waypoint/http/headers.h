// The header list every waypoint library works on: names as received (compared
// case-insensitively), values as received, duplicates kept in order. Beast's field containers
// and nghttp2's name/value arrays both convert to and from it without loss, so the same routing,
// policy and forwarding code serves HTTP/1.1 and HTTP/2.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zt::waypoint::http {

struct Header {
  std::string name;
  std::string value;
  friend bool operator==(const Header&, const Header&) = default;
};

using HeaderList = std::vector<Header>;

// First value of `name` (case-insensitive), nullopt when absent.
std::optional<std::string_view> find_header(const HeaderList& headers, std::string_view name);
// All values of `name` joined with "," (how Istio matches repeated headers), nullopt when absent.
std::optional<std::string> joined_header(const HeaderList& headers, std::string_view name);
size_t count_header(const HeaderList& headers, std::string_view name);
// Replaces every `name` header with one `name: value` (appended at the end when absent).
void set_header(HeaderList& headers, std::string_view name, std::string_view value);
// Gateway API `add`: appends ",value" to an existing `name`, else adds the header.
void add_header(HeaderList& headers, std::string_view name, std::string_view value);
// Removes every `name` header; returns how many were removed.
size_t remove_header(HeaderList& headers, std::string_view name);
// A gRPC message: content-type application/grpc (+proto, +json ...).
bool is_grpc(const HeaderList& headers);
// gRPC itself: content-type application/grpc alone, with "+format" or with parameters; not
// gRPC-Web (application/grpc-web...), which carries its status differently.
bool is_native_grpc(const HeaderList& headers);
// gRPC's code for an HTTP status, as a gRPC client maps an answer without grpc-status (gRPC's
// doc/http-grpc-status-mapping.md) and as Envoy maps its local replies: 400 INTERNAL (13), 401
// UNAUTHENTICATED (16), 403 PERMISSION_DENIED (7), 404 UNIMPLEMENTED (12), 429/502/503/504
// UNAVAILABLE (14), anything else UNKNOWN (2).
int grpc_status_for_http(int status);
// A grpc-message value (gRPC over HTTP/2): bytes outside printable ASCII, and '%', as %XX.
std::string grpc_message_encoded(std::string_view text);

// What routing, policy and forwarding see of a request, whatever the HTTP version.
struct RequestHead {
  std::string method;     // "GET"
  std::string target;     // origin-form path with query: "/a/b?x=1"
  std::string authority;  // Host / :authority, e.g. "reviews:9080"
  std::string scheme = "http";
  HeaderList headers;  // regular headers (no pseudo-headers), Host excluded for h2

  // target without the query ("/a/b").
  std::string_view path() const;
  // The query after '?', without it ("x=1"); empty when none.
  std::string_view query() const;
};

}  // namespace zt::waypoint::http
