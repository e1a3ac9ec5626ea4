// A small gRPC client over HTTP/2 (nghttp2 + OpenSSL), for the two control-plane calls ztunnel
// and the waypoint make (Delta ADS, Istio CA), so that they do not link gRPC.
//
// One Call is one HTTP/2 connection carrying one gRPC call (the protocol of gRPC's
// PROTOCOL-HTTP2.md): "http://host:port" is h2c with prior knowledge, "https://host:port" is
// TLS 1.2+ with ALPN "h2", the server's chain verified against the given PEM roots (or the system
// roots) and its certificate checked against the host of the address (DNS or IP SAN).
//
// Invariants:
// - Blocking: start/write/read/half_close/finish run on the caller's thread and block on the
//   socket; only cancel() may be called from another thread, and it unblocks them promptly.
// - Whatever the server sends (garbage frames, oversize or compressed messages, a missing
//   grpc-status, a dropped connection) ends the call with a non-OK status whose message names
//   the address; nothing throws and nothing waits forever except a read on a healthy idle
//   stream without a deadline.
// - Memory per call is bounded: received bytes of a message are only acknowledged (HTTP/2 flow
//   control) while no complete message waits to be read, and a message over
//   max_receive_message_bytes fails the call as soon as its length prefix arrives.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace zt::grpc {

// google.rpc.Code / gRPC status codes.
enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// "UNAVAILABLE", "PERMISSION_DENIED", ...
std::string_view code_name(StatusCode code);

struct CallStatus {
  StatusCode code = StatusCode::kOk;
  std::string message;

  bool ok() const { return code == StatusCode::kOk; }
  // "NAME (n): message"
  std::string describe() const;
};

// What the gRPC spec maps an HTTP status to when a response has no usable grpc-status.
StatusCode code_for_http_status(int http_status);
// What the gRPC spec maps an RST_STREAM error code to.
StatusCode code_for_rst_stream(uint32_t http2_error);
// grpc-message is percent-encoded: "%XX" becomes the byte, anything malformed is kept as is.
std::string percent_decode(std::string_view s);
// grpc-timeout for a remaining duration: at most 8 digits and a unit ("250m", "30S").
std::string format_timeout(std::chrono::nanoseconds remaining);
// One message as gRPC frames it on the wire: an uncompressed flag (0), its length (4 bytes, big
// endian), its bytes. The message must be shorter than 4 GiB.
std::string frame_message(std::string_view message);
// The message of `body` when it is exactly one uncompressed length-prefixed message (a unary
// answer's body); nullopt for anything else (compressed, truncated, trailing bytes).
std::optional<std::string_view> single_message(std::string_view body);

struct Target {
  bool tls = false;
  std::string host;       // without IPv6 brackets
  std::string port;       // digits
  std::string authority;  // host:port as written in the address (":authority")
};
// "http://host:port" or "https://host:port" (a trailing '/' is allowed; IPv6 as [addr]:port).
Result<Target> parse_target(std::string_view address);

struct ChannelOptions {
  std::string address;  // http(s)://host:port
  // https: trusted roots (PEM). Unset: the system's default roots.
  std::optional<std::string> root_pem;
  // gRPC's default limit; larger for xDS.
  size_t max_receive_message_bytes = 4 * 1024 * 1024;
  std::string user_agent = "zt-grpc/1.0";
  // Bound on TCP connect + TLS handshake (the call's deadline bounds it too).
  std::chrono::milliseconds connect_timeout{20'000};
};

using Metadata = std::vector<std::pair<std::string, std::string>>;

class Call {
 public:
  using Clock = std::chrono::steady_clock;

  // No I/O yet: a Call can be registered for cancel() before it blocks. `path` is
  // "/package.Service/Method"; metadata keys must be lowercase.
  Call(ChannelOptions options, std::string path, Metadata metadata,
       std::optional<Clock::time_point> deadline = std::nullopt);
  ~Call();
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  // Connects and sends the request headers. False when the call failed (see finish()).
  // write/read/half_close start the call themselves when needed.
  bool start();
  // Sends one message; returns once it is handed to the socket. False when the call is over
  // (failed, cancelled, or the server already ended it): finish() tells why.
  bool write(std::string_view message);
  // Ends our side of the stream (END_STREAM).
  bool half_close();
  // The next message; false at the end of the stream or on any error (then finish()).
  bool read(std::string* message);
  // Waits for the call's status (the server's trailers, or the error that ended it).
  CallStatus finish();
  // From any thread: fails the call with CANCELLED and unblocks whatever is waiting.
  void cancel();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A unary call: one request, exactly one response message on OK.
CallStatus unary(const ChannelOptions& options, std::string path, Metadata metadata,
                 std::string_view request, std::string* response,
                 std::optional<Call::Clock::time_point> deadline);

}  // namespace zt::grpc
