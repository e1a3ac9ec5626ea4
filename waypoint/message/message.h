// The waypoint's HTTP messages, the same for HTTP/1.1 and HTTP/2 (gRPC included): the codecs
// (waypoint/http1, waypoint/http2) turn bytes into these and back; the proxy (waypoint/proxy)
// routes, filters and forwards them.
//
// Bodies are buffered whole up to Limits::stream_bodies_after (the waypoint: 64 KiB), so that a
// retry or a mirror has the request body again; past that a body is streamed (Envoy streams
// every body). Streaming: after a 101 (WebSocket) the bytes are relayed; a response can be
// streamed (Response::source): its head comes first, which is all a retry decision looks at (as
// in Envoy), and its body follows piece by piece after what Response::body holds; a request can
// be streamed (Request::source), kept for a retry only up to Limits::retry_buffer_bytes. gRPC
// streams both ways from its head (HTTP/2 to HTTP/2), so client-, server- and
// bidirectional-streaming calls work through the waypoint; any other body streams once it
// passes stream_bodies_after, over HTTP/1.1 and HTTP/2.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "common/async/asio.h"
#include "waypoint/http/headers.h"
#include "waypoint/message/duplex.h"

namespace zt::waypoint {

enum class HttpVersion { kHttp10, kHttp11, kHttp2 };

// What one downstream peer may hold. The sizes apply to both sides (server and client); the
// timeouts and the connection budget only to the servers (serve_http1, serve_http2). A zero
// duration disables that timeout.
struct Limits {
  size_t max_header_bytes = 60 * 1024;      // request or response head (Envoy's 60 KiB): 431
  size_t max_headers = 100;                 // header count (Envoy's 100): 431
  size_t max_body_bytes = 8 * 1024 * 1024;  // request: 413; buffered response: 502

  // From the first byte of a request head to its end (Envoy's request_headers_timeout): 408.
  std::chrono::milliseconds request_headers_timeout{10'000};
  // A request (head or body) that makes no progress for this long, or a response the peer does
  // not take for this long (Envoy's stream_idle_timeout, 5 min): 408 while no response was
  // started, else the stream is reset. The handler's own time is not counted (route timeouts).
  std::chrono::milliseconds stream_idle_timeout{300'000};
  // A connection without any request in progress for this long is closed (Envoy's
  // idle_timeout, 1 h); HTTP/2 says GOAWAY first.
  std::chrono::milliseconds idle_timeout{3'600'000};
  // HTTP/2: request body bytes held at once on one connection, all streams together (a body
  // counts until its handler returns; a streamed one while unread); a stream whose DATA would
  // pass it is reset with REFUSED_STREAM while it was not handed to its handler (it was not
  // processed), else with ENHANCE_YOUR_CALM.
  size_t max_connection_body_bytes = 32 * 1024 * 1024;
  // HTTP/2 server: a gRPC request (content-type application/grpc...) goes to the handler at
  // its head, its body following through Request::source as it arrives (client and
  // bidirectional streaming calls), not bounded by max_body_bytes; what it holds unread counts
  // against max_connection_body_bytes (the stream that would pass it is reset).
  bool stream_grpc_requests = false;
  // A streamed request body is kept for a retry (or a mirror) up to this size, until the
  // answer has begun or a waiting mirror has it (Envoy's default buffer limit); a longer one is
  // neither retried nor mirrored.
  size_t retry_buffer_bytes = 1024 * 1024;
  // A request body longer than this is streamed instead of buffered whole, so that no size
  // bounds it (Envoy streams every body): serve_http2 and serve_http1 hand such a request to the
  // handler once this much is in, the rest following through Request::source. (Http2Client and
  // Http1Client do the same for a response when the request asks, with
  // Request::stream_response_after.) 0: bodies are buffered whole, up to max_body_bytes.
  size_t stream_bodies_after = 0;
  // Also for a client whose request asks (Request::stream_response_after): a response body not
  // ended this long after its head is streamed from then on, whatever its size, so that a
  // progressive answer (server-sent events, a long poll) reaches the client as it is written,
  // not when it ends. 0: only the size decides.
  std::chrono::milliseconds stream_late_bodies_after{0};
};

// The rest of a message body while it is still arriving (a streamed request or response).
// Whoever sends the message on pulls it with next() until a piece says `end` or `error`. Dropping
// the source before that gives the body up (an upstream stream is reset), so a source that nobody
// reads holds nothing open. One reader at a time, on the executor the source belongs to.
class BodySource {
 public:
  struct Piece {
    std::string data;           // may be empty (a piece that only ends the body)
    bool end = false;           // the body is complete; `trailers` are its trailers
    http::HeaderList trailers;  // with `end`
    std::string error;          // not empty: the body failed (upstream reset, timeout)
  };
  virtual ~BodySource() = default;
  // The next piece; waits while none is there. After `end` or `error`, every call answers
  // the error "body already ended".
  virtual awaitable<Piece> next() = 0;
  // When the body must have ended, if ever (the route timeout). A sender waiting for its peer
  // to take what it has wakes then and pulls anyway, so that the source can answer the timeout.
  virtual std::chrono::steady_clock::time_point deadline() const {
    return std::chrono::steady_clock::time_point::max();
  }
  // Returns once the body's own sender is done with it (it ended or failed: what remains is
  // already here, and next() needs no more from that sender), else waits for ever (or until
  // cancelled). A sender held back by its peer waits for this too and then pulls the rest: a
  // failed body is given up at once, and the end of a streamed request is seen when the
  // downstream sends it (its timeouts start then), not when the upstream next reads.
  virtual awaitable<void> until_done() {
    asio::steady_timer never(co_await asio::this_coro::executor,
                             std::chrono::steady_clock::time_point::max());
    co_await never.async_wait(kTuple);
  }
};

// How a request's downstream went away before its answer was out, in the terms of Envoy's
// access log. serve_http2 fills it in (Request::gone) and then cancels the handler (terminal
// cancellation), so that the work for the request stops (its upstream stream is reset) and the
// request is recorded as the downstream's doing, not as an upstream failure.
struct DownstreamGone {
  // Envoy's response flag: "DR" the downstream reset the stream, "DC" its connection ended,
  // "SI" the stream idle timeout cut it, "DPE" it broke the protocol (a Content-Length it did
  // not keep, refused trailers); empty when none fits (the connection's body budget).
  std::string flag;
  // The status the server itself answered it with (408, 400; 200 for gRPC, whose answer is a
  // grpc-status), else 0: none.
  int status = 0;
  std::string why;  // for the log; not empty once it happened
  bool happened() const { return !why.empty(); }
};

struct Request {
  HttpVersion version = HttpVersion::kHttp11;
  // method, target (origin form), authority (Host or :authority), scheme, regular headers
  // (HTTP/1.1: every field but Host; HTTP/2: no pseudo-headers).
  http::RequestHead head;
  std::string body;
  http::HeaderList trailers;  // HTTP/2 (gRPC) or chunked HTTP/1.1 trailers
  // For an upstream client (Http2Client): answer as soon as the response head is in, with the
  // body to follow through Response::source (gRPC).
  bool stream_response = false;
  // For an upstream client: a response body longer than this is not buffered whole; the answer
  // comes once that much is in, its first bytes in Response::body and the rest through
  // Response::source. 0: buffered whole (up to Limits::max_body_bytes).
  size_t stream_response_after = 0;
  // A streamed request body (from serve_http2 or serve_http1: a gRPC one from its head, any
  // other past Limits::stream_bodies_after; Http2Client and Http1Client send one): the body
  // (and trailers) come from here, after `body`.
  std::shared_ptr<BodySource> source;
  // Set by serve_http2: filled in when the downstream goes away before the answer is out, just
  // before the handler is cancelled.
  std::shared_ptr<DownstreamGone> gone;
};

struct Response {
  int status = 0;
  http::HeaderList headers;  // regular headers only (no :status)
  std::string body;
  http::HeaderList trailers;  // gRPC's grpc-status / grpc-message live here
  // A streamed response: the body (and trailers) come from here, after `body` (serve_http2 and
  // serve_http1 send such a response).
  std::shared_ptr<BodySource> source;

  // Set only on a 101 answer to an upgrade: after the codec has written the response head it
  // calls this with the downstream stream and any bytes it had already read past the request;
  // the callback relays both ways until either side ends. The codec then ends the session.
  std::function<awaitable<void>(Duplex downstream, std::string already_read)> upgraded;

  // Made by the waypoint itself (local_response), not an upstream's answer: to a gRPC request
  // the proxy sends it as a gRPC status (proxy/pipeline.cc), as Envoy does its local replies.
  bool local = false;
};

// What a codec calls for every complete request. Always returns a response (errors are
// responses: 503, 504 ...). Called concurrently for HTTP/2 streams of one connection.
using RequestHandler = std::function<awaitable<Response>(Request)>;

// A local answer with a text/plain body (Envoy style: "no healthy upstream", "upstream request
// timeout", "RBAC: access denied").
inline Response local_response(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.push_back({"content-type", "text/plain"});
  r.body = std::move(body);
  r.local = true;
  return r;
}

// A local answer to a gRPC request, as Envoy sends its local replies then: a trailers-only gRPC
// response (:status 200, content-type application/grpc, grpc-status from the HTTP status by
// gRPC's table unless it has one, grpc-message the text), so that the client sees the code and
// the reason ("RBAC: access denied") instead of an HTTP status it must map itself. Applying it
// twice changes nothing more.
inline void to_grpc_local_reply(Response& r) {
  if (!http::find_header(r.headers, "grpc-status")) {
    r.headers.push_back({"grpc-status", std::to_string(http::grpc_status_for_http(r.status))});
  }
  if (!r.body.empty() && !http::find_header(r.headers, "grpc-message")) {
    r.headers.push_back({"grpc-message", http::grpc_message_encoded(r.body)});
  }
  http::set_header(r.headers, "content-type", "application/grpc");
  http::remove_header(r.headers, "content-length");
  r.body.clear();
  r.status = 200;
}

}  // namespace zt::waypoint
