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
// - With limits.stream_grpc_requests, a gRPC request (content-type application/grpc...) whose
//   HEADERS do not end the stream goes to the handler at once, its body in Request::source as
//   it arrives (DATA, then the trailers; an error if the peer resets the stream, closes the
//   connection or stalls past stream_idle_timeout, or the body breaks its Content-Length or
//   its trailers are refused). Its stream window is given back only as the handler reads, so a
//   handler that does not read holds its sender back (the connection window is given back at
//   once: an unread stream never holds up the others); its unread bytes count against
//   max_connection_body_bytes, and the stream whose DATA would pass it is reset
//   (ENHANCE_YOUR_CALM). The answer may start before the request has ended (a bidirectional
//   stream). A handler that drops the source early has the rest dropped as it arrives.
// - With limits.stream_bodies_after (not 0), any request whose body grows past that many bytes
//   goes to the handler then, with what arrived in Request::body and the rest in
//   Request::source, as above; max_body_bytes no longer bounds it.
// - Responses: :status + headers (hop-by-hop removed, names lower-cased), DATA, and trailers
//   as a final HEADERS frame when present (gRPC). A streamed response (Response::source) sends
//   its head at once and each piece as the source yields it; the next piece is pulled only
//   once less than 64 KiB of the body waits for the peer's window, so a slow reader holds back
//   the source (and, through its window, the upstream sender). A source that fails resets the
//   stream (INTERNAL_ERROR); a stream that ends first (reset by the peer, connection gone)
//   drops its source, which gives the upstream stream up.
// - Flow control is nghttp2's with bounded windows (1 MiB per stream, 4 MiB per connection in
//   flight); a slow reader is not buffered beyond them. Request bodies held at once on one
//   connection (all streams; a body counts until its handler returns, even if the peer resets
//   the stream) are capped by limits.max_connection_body_bytes: the stream whose DATA would
//   pass it is reset with REFUSED_STREAM (never processed, so safe to retry); the others go on.
// - Timeouts (Limits; zero disables one): from a stream's first HEADERS frame to the end of its
//   header block `request_headers_timeout`; a request that makes no progress (no frame for
//   the stream) for `stream_idle_timeout`: 408 on that stream (then RST_STREAM(NO_ERROR) as for
//   any early answer). A response the peer takes nothing of for `stream_idle_timeout`:
//   RST_STREAM(CANCEL); if even that cannot leave within another `stream_idle_timeout`, the
//   connection ends. No stream open for `idle_timeout`: GOAWAY(NO_ERROR), then close (PINGs
//   and SETTINGS do not count as activity). A running handler is not timed here; a streamed
//   response is, like any answer going out: no frame on it for `stream_idle_timeout` (a
//   silent source) resets it, as Envoy's stream idle timeout does.
// Details of this implementation (server.cc):
// - nghttp2's own HTTP checks are off so that a bad head gets a status like HTTP/1.1 does: 400
//   for connection-specific fields (connection, keep-alive, proxy-connection,
//   transfer-encoding, upgrade), `te` other than "trailers", upper-case names, unknown,
//   repeated or late pseudo-headers, a missing :method/:scheme/:path, Host differing from
//   :authority, pseudo-headers in trailers, Content-Length differing from the DATA received;
//   then http::check_request_head(kHttp2). A Host field fills head.authority when :authority
//   is absent and is never in head.headers. Refused requests never reach the handler.
// - A downstream that goes away before its whole answer is out (the peer resets the stream,
//   the connection ends, the stream idle timeout or a broken body ends the stream) is told to
//   the handler: Request::gone gets Envoy's flag (DR, DC, SI, DPE), and the handler is then
//   cancelled (terminal; posted, never from inside an nghttp2 callback). Its answer, if it
//   still gives one, is dropped. After the peer only half-closes, the handlers of whole
//   requests run on (their answers are still sent). A local answer (Response::local: the
//   codec's refusals, or a handler's) to a gRPC request goes out as a gRPC status
//   (to_grpc_local_reply). A handler that throws is answered 500; a 1xx
//   answer (an upgrade) is answered 502 (no extended CONNECT). Content-Length is corrected to the
//   body's size (except for HEAD).
// - Cancelling the coroutine (a drain) sends GOAWAY(NO_ERROR) before it ends. After the peer
//   half-closes, answers still being computed are sent, then the session ends.
// - `limits` is a reference: it must outlive the coroutine.
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

  // One request on a new stream; waits for the whole response (headers, body, trailers), or,
  // with request.stream_response, for the final head only when the body is still coming: the
  // body then follows through Response::source, the stream window held until the reader takes
  // each piece (at most 1 MiB waits per stream), and dropping the source resets the stream.
  // With request.stream_response_after, a body that grows past that many bytes is answered
  // then the same way, with what arrived in Response::body (else it is buffered whole, up to
  // limits.max_body_bytes).
  // A request.source is sent after request.body as it yields (the next piece pulled once less
  // than 64 KiB waits for the peer's window); a source that fails resets the stream (CANCEL),
  // and a response that ends first resets it (NO_ERROR) and drops the source: the rest of a
  // gRPC request is not needed once its status is in.
  // Pseudo-headers come from request.head (:scheme defaults to "http"; :authority is the
  // authority, else a Host field; CONNECT has neither :scheme nor :path); regular headers are
  // sent as given with lower-cased names and Host removed: hop-by-hop fields are the caller's
  // to strip (http::strip_hop_by_hop with keep_te_trailers for gRPC). Cancelling the awaiting
  // coroutine resets the stream (CANCEL) and leaves the connection usable.
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
