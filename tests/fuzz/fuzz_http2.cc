// Fuzzes the waypoint's HTTP/2 server, serve_http2(), with nghttp2 taking the frames and the
// waypoint doing HTTP's own checks (nghttp2's are off: pseudo-headers, connection-specific
// fields, Content-Length against DATA, trailers, then http::check_request_head). The input,
// after its first byte, follows the client preface and is played in pieces of 1-64 bytes (the
// first byte's low six bits pick the size) by an in-memory stream, then the stream ends; the
// handler echoes each request's body, streamed (Response::source, in pieces of up to 7 bytes
// with a yield before each, ending with trailers, or failing when the body's size is odd) when
// the request is gRPC. The first byte's top bit turns on Limits::stream_grpc_requests: a gRPC
// request then arrives at its head with its body in Request::source, which the handler either
// reads whole first (bit 6) or sends straight back as the response body (a bidirectional echo);
// every read of the input then yields first, so handlers run between the frames. The same bit
// sets Limits::stream_bodies_after to 256 bytes: any longer request body arrives the same way,
// its first bytes in Request::body (echoed before the rest).
// Besides crashes, sanitizer reports and hangs it traps when a request reaches the handler with
// a buffered body larger than the limit or a head the checks refuse, when a streamed body is
// pulled again after it ended, and when a request body source yields after its end.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "tests/fuzz/scripted_stream.h"
#include "waypoint/http/request_checks.h"
#include "waypoint/http2/http2.h"

namespace {

using namespace zt;
using namespace zt::waypoint;

void require(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// An echoed body given out in small pieces, each after a yield to the io_context, so the
// peer's frames (resets, window updates, GOAWAY, the end of input) land between them.
class PiecewiseBody final : public BodySource {
 public:
  PiecewiseBody(std::string data, http::HeaderList trailers, bool fail)
      : data_(std::move(data)), trailers_(std::move(trailers)), fail_(fail) {}
  awaitable<Piece> next() override {
    require(!ended_);  // nobody pulls a body past its end
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    Piece piece;
    if (at_ < data_.size()) {
      piece.data = data_.substr(at_, 7);
      at_ += piece.data.size();
      co_return piece;
    }
    ended_ = true;
    if (fail_) {
      piece.error = "upstream reset";
    } else {
      piece.end = true;
      piece.trailers = std::move(trailers_);
    }
    co_return piece;
  }

 private:
  std::string data_;
  http::HeaderList trailers_;
  bool fail_;
  size_t at_ = 0;
  bool ended_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 64;
  std::string input(kPreface);
  input.append(reinterpret_cast<const char*>(data) + 1, size - 1);

  Limits limits = fuzz::small_limits();
  limits.stream_grpc_requests = (data[0] & 0x80) != 0;
  if (limits.stream_grpc_requests) limits.stream_bodies_after = 256;
  const bool read_first = (data[0] & 0x40) != 0;
  http::HeadLimits head_limits;
  head_limits.max_head_bytes = limits.max_header_bytes;
  head_limits.max_headers = limits.max_headers;

  asio::io_context io;
  auto stream = std::make_shared<fuzz::ScriptedStream>(input, piece);
  stream->yield_between_reads = limits.stream_grpc_requests;
  RequestHandler echo = [&](Request request) -> awaitable<Response> {
    require(request.version == HttpVersion::kHttp2);
    require(request.body.size() <= limits.max_body_bytes);
    require(http::check_request_head(request.head, http::Version::kHttp2, head_limits).has_value());
    Response response;
    response.status = 200;
    auto type = http::find_header(request.head.headers, "content-type");
    if (request.source) {
      require(limits.stream_grpc_requests && request.body.size() <= limits.stream_bodies_after);
      if (!read_first) {
        response.body = std::move(request.body);
        response.source = std::move(request.source);
        co_return response;
      }
      for (;;) {
        auto got = co_await request.source->next();
        request.body += got.data;
        if (got.end) request.trailers = std::move(got.trailers);
        if (got.end || !got.error.empty()) break;
      }
      auto again = co_await request.source->next();
      require(again.data.empty() && !again.end && !again.error.empty());
    }
    if (type && type->starts_with("application/grpc")) {
      const bool fail = request.body.size() % 2 == 1;
      response.source = std::make_shared<PiecewiseBody>(std::move(request.body),
                                                        std::move(request.trailers), fail);
      co_return response;
    }
    response.body = std::move(request.body);
    response.trailers = std::move(request.trailers);
    co_return response;
  };
  asio::co_spawn(io, http2::serve_http2(Duplex::of(stream), std::string(), limits, echo),
                 fuzz::rethrow_escaped);
  io.run();
  return 0;
}
