// HTTP/1.1 for the waypoint, on Boost.Beast, with waypoint/http's checks in front of the parser.
//
// Server side: serve_http1() reads requests from a downstream Duplex one after another
// (keep-alive, pipelining: bytes of the next request already read are kept), hands each complete
// request to the handler and writes its response. Client side: Http1Client sends requests on one
// upstream connection and reads the responses.
#pragma once

#include <memory>
#include <string>

#include "common/base/result.h"
#include "waypoint/message/message.h"

namespace zt::waypoint::http1 {

// Serves until the peer closes, a request or response says `Connection: close` (or HTTP/1.0
// without keep-alive), a request is rejected, or a response was an upgrade.
// - `already_read`: bytes read from `downstream` before (protocol sniffing); parsed first.
// - Before Beast sees a head, http::check_raw_head runs on the raw bytes; after it,
//   http::check_request_head on the fields. A rejection is answered with its status (400, 413,
//   431, 501) and `Connection: close`, and the session ends without calling the handler.
// - `Expect: 100-continue` with a body: "100 Continue" is sent before the body is read; the
//   Expect header is not passed on.
// - Request bodies (Content-Length or chunked, trailers kept) are read whole, at most
//   limits.max_body_bytes (413); with limits.stream_bodies_after (not 0), a body that grows past
//   that size goes to the handler then, with what arrived in Request::body and the rest read
//   from the downstream as the handler pulls Request::source (its trailers at its end; it fails
//   on a broken body, the downstream's end (DC) or the stream idle timeout (SI), which also
//   cancel the handler: no answer is written then, not even a 408; a cancelled pull takes
//   nothing and the body goes on). The next request is read only after such a body was read
//   to its end; if the handler answers without that, the connection ends after the answer (and
//   is cut, unanswered, if a pull is still waiting for the downstream then).
// - Responses are written with Content-Length (or no body for HEAD, 1xx, 204, 304); the
//   response's hop-by-hop headers are removed first. A response with `upgraded` set is written
//   as it is (101 with its Upgrade/Connection headers), then `upgraded` runs. A streamed
//   response (Response::source) is written as it comes: under the Content-Length it declares,
//   else chunked (with its trailers), or for HTTP/1.0 delimited by the close. While it comes
//   a watched downstream (an HBONE stream) is watched as while a handler runs (its end: DC),
//   and a piece that takes longer than stream_idle_timeout cuts it (SI); a source that fails,
//   or a body that breaks its Content-Length, aborts the connection (the only way HTTP/1.1 can
//   tell the client).
// - An `Upgrade` request header (WebSocket) reaches the handler with its Upgrade and Connection
//   headers intact (the proxy decides); an upgrade request with a body is refused (400).
// - `limits` is copied when serve_http1 is called (a temporary is fine).
// - Timeouts (Limits; zero disables one): between requests (and before the first byte of the
//   first, when `already_read` is empty) `idle_timeout`, then the session ends without an
//   answer. From the first byte of a head to its end `request_headers_timeout`, and while a
//   head or body is read, `stream_idle_timeout` without a byte: 408 with `Connection: close`,
//   the handler is not called. A response the peer takes no 64 KiB piece of for
//   `stream_idle_timeout`: the stream is aborted. The handler's time and an upgrade's relay are
//   not timed here (route timeouts, the relay's own).
// - A downstream whose peer ends while a handler runs has gone away, as Envoy takes a FIN from
//   an HTTP/1.1 client: the handler's Request::gone says so (flag DC, status 0), the handler is
//   cancelled, and the session ends without an answer. An end seen before the handler starts
//   cancels it at its first wait; one that arrived with the request may go unseen by a handler
//   that answers without waiting (a local reply), and that answer is written. Only a
//   downstream that can tell without a read is watched (Duplex::on_peer_end: an HBONE stream,
//   which is every production downstream); over a TCP socket a client may still half-close and
//   read its answer.
awaitable<void> serve_http1(Duplex downstream, std::string already_read, const Limits& limits,
                            RequestHandler handler);

// One upstream HTTP/1.1 connection. Not thread-safe; one request at a time.
class Http1Client {
 public:
  explicit Http1Client(Duplex upstream, Limits limits = {});

  // Writes `request` (HTTP/1.1, Host from head.authority, body with Content-Length, or chunked
  // when it has trailers; a request.source after request.body as it yields, under the
  // Content-Length the request declares, else chunked with the source's trailers; a source that
  // fails or breaks that length fails the exchange and aborts the connection; the response is
  // read after the whole request was sent, or once the upstream stopped taking the body (a write
  // failed, or took nothing for limits.stream_idle_timeout): an answer it sent first, such as
  // a 413, is returned then, and the connection is not used again) and
  // reads the response: 1xx other than 101 skipped, body read whole (Content-Length, chunked,
  // or until close), at most limits.max_body_bytes, unless it streams (below). Errors: the
  // connection failed or closed before a complete response ("upstream connection closed"), or
  // the response was malformed or too large. After an error the client is not reusable.
  // With request.stream_response_after (not 0), a body that grows past that many bytes is not
  // bounded: the answer comes then, with what arrived in Response::body and the rest read from
  // the connection through Response::source as the reader pulls it (its failures: "upstream
  // connection closed in mid-body", "malformed upstream response: ..."). The connection is
  // busy (not reusable) until that body has ended; the source keeps it open, so the client may
  // go first. Dropping the source before the end leaves the connection unusable. With
  // limits.stream_late_bodies_after as well, a body not ended that long after the head streams
  // whatever its size.
  awaitable<Result<Response>> send(const Request& request);

  // True when the last exchange left the connection open for another request (keep-alive on
  // both sides, complete response, no error, no upgrade; a streamed body read to its end).
  bool reusable() const;

  // After a 101: the upstream stream and bytes read past the response head, for the relay.
  Duplex& stream();
  std::string take_already_read();

  void abort();

  // The connection, shared with a streamed response body.
  struct Wire;

 private:
  std::shared_ptr<Wire> wire_;
  Limits limits_;
};

}  // namespace zt::waypoint::http1
