// What the waypoint changes in a request's headers when it forwards it: hop-by-hop fields out
// (RFC 9110 §7.6.1), x-forwarded-for, x-request-id and W3C traceparent. Works on HeaderList so the
// same code serves HTTP/1.1 and HTTP/2 on either side.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "waypoint/base/random.h"
#include "waypoint/http/headers.h"

namespace zt::waypoint::http {

// What strip_hop_by_hop found before removing it: what the connection handler needs to know.
struct HopByHop {
  bool connection_close = false;       // "Connection: close"
  bool connection_keep_alive = false;  // "Connection: keep-alive" (HTTP/1.0 persistence)
  bool te_trailers = false;            // "TE" listed "trailers" (gRPC needs it upstream)
  std::optional<std::string> upgrade;  // the Upgrade value when "Connection: upgrade" was sent
};

struct HopByHopOptions {
  // Keep Upgrade and re-add "Connection: upgrade" when the request asks to upgrade (WebSocket
  // passthrough); otherwise Upgrade is removed like any hop-by-hop field.
  bool keep_upgrade = false;
  // Forward "te: trailers" when the client sent it (HTTP/2 and gRPC upstreams).
  bool keep_te_trailers = false;
};

// Removes Connection and every field it names, Keep-Alive, Proxy-Connection, TE (kept as
// "trailers" when asked and offered), Transfer-Encoding (the proxy re-frames bodies), Upgrade
// (unless upgrading), and Proxy-Authenticate/Proxy-Authorization. Host and pseudo-headers are never
// removed even when Connection names them (a client must not strip what routing relies on).
HopByHop strip_hop_by_hop(HeaderList& headers, const HopByHopOptions& options = {});

// Host or a pseudo-header (":path"): what no header edit may remove or set.
bool is_protected_header(std::string_view name);
// The hop-by-hop names strip_hop_by_hop always removes (RFC 9110 7.6.1, and the proxy-* ones).
bool is_hop_by_hop(std::string_view name);

// Appends `client_ip` to x-forwarded-for ("a, b" when one exists, merging repeated fields).
void append_forwarded_for(HeaderList& headers, std::string_view client_ip);

// A random (version 4, RFC 9562) UUID in lower-case 8-4-4-4-12 form.
std::string uuid_v4(Random& random);

// Keeps a non-empty x-request-id, else sets a new UUID v4. Returns the id in use.
std::string ensure_request_id(HeaderList& headers, Random& random);

// A W3C trace context (https://www.w3.org/TR/trace-context/) traceparent.
struct TraceParent {
  uint8_t version = 0;
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> parent_id{};
  uint8_t flags = 0;

  bool sampled() const { return (flags & 1) != 0; }
  // "00-<32 hex>-<16 hex>-<2 hex>" (always written as version 00).
  std::string format() const;
  // Valid per the spec: hex lower-case, version != ff, ids not all zero, version 00 exactly 55
  // characters, later versions at least 55 with '-' after the flags.
  static std::optional<TraceParent> parse(std::string_view text);
};

enum class TraceAction {
  kPropagated,  // a valid traceparent was passed through unchanged
  kNewSpan,     // valid, and the parent id was replaced by our span's id
  kCreated,     // none (or invalid, or repeated): a new trace was started; tracestate dropped
};

struct TraceResult {
  TraceAction action = TraceAction::kCreated;
  TraceParent context;
};

// Propagates a valid traceparent (replacing its parent-id when `new_span`, as a tracing proxy
// does) or creates one with random ids when absent or invalid; `sampled` sets the flag of a new
// trace. A repeated traceparent is invalid.
TraceResult ensure_traceparent(HeaderList& headers, Random& random, bool new_span = false,
                               bool sampled = false);

}  // namespace zt::waypoint::http
