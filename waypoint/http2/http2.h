// HTTP/2 (and so gRPC) for the waypoint, on nghttp2, over any Duplex (h2c: the waypoint's inner
// streams are already inside mTLS, so HTTP/2 runs in the clear inside the HBONE tunnel, with
// prior knowledge, as Istio's waypoint sees it).
#pragma once

#include <memory>
#include <string>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "waypoint/message/message.h"

namespace zt::waypoint::http2 {

// The client connection preface; a downstream whose first bytes are this speaks HTTP/2.
inline constexpr std::string_view kClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Serves one downstream HTTP/2 connection until the peer closes it or a protocol error.
// - `already_read` (sniffed bytes, starting with the preface) is fed to nghttp2 first.
// - Every stream whose request (headers, DATA, trailers) is complete becomes a Request
//   (version kHttp2; head.authority from :authority, head.target from :path, head.scheme from
//   :scheme; regular headers only) and the handler runs for it in its own coroutine on the
//   calling executor, so streams are served concurrently.
// - Requests whose headers break http::check_request_head(kHttp2) get the check's status;
//   oversized header lists 431; bodies larger than limits.max_body_bytes 413 (RST after).
// - Responses: :status + headers (hop-by-hop removed, names lower-cased), DATA, and trailers
//   as a final HEADERS frame when present (gRPC).
// - Flow control is nghttp2's with a bounded window; a slow reader is not buffered beyond it.
awaitable<void> serve_http2(Duplex downstream, std::string already_read, const Limits& limits,
                            RequestHandler handler);

// One upstream HTTP/2 connection (h2c, prior knowledge) carrying concurrent requests.
// Lives on one executor; every member is called from it.
class Http2Client : public std::enable_shared_from_this<Http2Client> {
 public:
  // Sends the preface and SETTINGS and starts the connection's loops on `ex`.
  static std::shared_ptr<Http2Client> start(asio::any_io_executor ex, Duplex upstream,
                                            Limits limits = {});
  ~Http2Client();

  // One request on a new stream; waits for the whole response (headers, body, trailers).
  // Errors: the connection ended, the stream was reset (message names the HTTP/2 error code,
  // e.g. "stream reset: REFUSED_STREAM"), the response was malformed or too large.
  awaitable<Result<Response>> send(Request request);

  // False once the connection ended or the peer sent GOAWAY: take a new one.
  bool usable() const;
  size_t active_streams() const;
  // GOAWAY and close (streams in flight end with an error).
  void close();

 private:
  struct Impl;
  explicit Http2Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::waypoint::http2
