// Fuzzes the waypoint's HTTP/1.1 codec on both sides, over an in-memory stream that hands it the
// input in pieces of a size the input's first byte picks (1-64 bytes), then the end of the
// stream. The same byte's top bit picks the side:
// - server, serve_http1(): the code that reads every meshed client's requests (keep-alive and
//   pipelining, Content-Length and chunked bodies with trailers, Expect: 100-continue, upgrades,
//   the head checks and their rejections, the response writer); the handler echoes each body
//   and accepts each upgrade;
// - client, Http1Client: the code that reads the upstream's responses (1xx, bodies to the end of
//   the stream, chunked, HEAD), for up to three requests on one connection.
// Bit 6 of that byte streams bodies past 64 bytes (Limits::stream_bodies_after,
// Request::stream_response_after): the server's handler then reads a long request body from
// Request::source and answers it as a streamed response (under a Content-Length that is right
// for an even size and one byte too long for an odd one), and the client sends its POST body
// from a source and reads long response bodies to their end.
// Besides crashes, sanitizer reports and hangs it traps when:
// - the server writes anything that does not start with a status line;
// - a request reaches the handler with a body larger than the limit or a head the checks refuse;
// - the client returns a response with a status outside 100-999, a 1xx other than 101, or a
//   body larger than the limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "tests/fuzz/scripted_stream.h"
#include "waypoint/http/request_checks.h"
#include "waypoint/http1/http1.h"

namespace {

using namespace zt;
using namespace zt::waypoint;
using fuzz::ScriptedStream;
using fuzz::small_limits;

void require(bool ok) {
  if (!ok) std::abort();
}

constexpr size_t kStreamAfter = 64;

// `body` in two pieces, then its end.
class TwoPieces final : public BodySource {
 public:
  explicit TwoPieces(std::string body) : body_(std::move(body)) {}
  awaitable<Piece> next() override {
    Piece p;
    if (given_ < 2) {
      const size_t half = body_.size() / 2;
      p.data = given_ == 0 ? body_.substr(0, half) : body_.substr(half);
    } else {
      p.end = true;
    }
    ++given_;
    co_return p;
  }

 private:
  std::string body_;
  int given_ = 0;
};

// Reads the rest of a streamed body into `body`; false when it failed.
awaitable<bool> read_rest(BodySource& source, std::string& body) {
  for (;;) {
    auto piece = co_await source.next();
    body += piece.data;
    if (piece.end) co_return true;
    if (!piece.error.empty()) {
      auto again = co_await source.next();
      require(!again.error.empty());
      co_return false;
    }
  }
}

void serve(std::string_view input, size_t piece, bool stream_bodies) {
  Limits limits = small_limits();
  if (stream_bodies) limits.stream_bodies_after = kStreamAfter;
  http::HeadLimits head_limits;
  head_limits.max_head_bytes = limits.max_header_bytes;
  head_limits.max_headers = limits.max_headers;

  asio::io_context io;
  auto stream = std::make_shared<ScriptedStream>(input, piece);
  RequestHandler echo = [&](Request request) -> awaitable<Response> {
    require(request.body.size() <= limits.max_body_bytes);
    require(!request.source || request.body.size() <= kStreamAfter + 64);
    // What reached the handler passes the checks again, once Host is put back among the fields
    // (the server moved it to the authority; it also took Expect out, which they ignore).
    http::RequestHead head = request.head;
    const http::Version version =
        request.version == HttpVersion::kHttp10 ? http::Version::kHttp10 : http::Version::kHttp11;
    if (version == http::Version::kHttp11 || !head.authority.empty()) {
      head.headers.push_back({"host", head.authority});
    }
    require(http::check_request_head(head, version, head_limits).has_value());
    Response response;
    if (http::find_header(request.head.headers, "upgrade")) {
      // Accepted: the codec writes the 101, then hands over the stream (the relay ends at once).
      response.status = 101;
      response.headers = {{"upgrade", "websocket"}, {"connection", "Upgrade"}};
      response.upgraded = [](Duplex, std::string) -> awaitable<void> { co_return; };
      co_return response;
    }
    response.status = 200;
    if (request.source) {
      if (!co_await read_rest(*request.source, request.body)) co_return response;
      const size_t declared = request.body.size() + request.body.size() % 2;
      response.headers.push_back({"content-length", std::to_string(declared)});
      response.source = std::make_shared<TwoPieces>(std::move(request.body));
      co_return response;
    }
    response.body = std::move(request.body);
    co_return response;
  };
  asio::co_spawn(io, http1::serve_http1(Duplex::of(stream), std::string(), limits, echo),
                 fuzz::rethrow_escaped);
  io.run();

  const std::string& out = stream->written();
  require(out.empty() || out.starts_with("HTTP/1.1 ") || out.starts_with("HTTP/1.0 "));
}

void fetch(std::string_view input, size_t piece, bool stream_bodies) {
  const Limits limits = small_limits();

  asio::io_context io;
  auto stream = std::make_shared<ScriptedStream>(input, piece);
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        http1::Http1Client client(Duplex::of(stream), limits);
        for (const char* method : {"GET", "HEAD", "POST"}) {
          Request request;
          request.head.method = method;
          request.head.target = "/";
          request.head.authority = "svc";
          if (std::string_view(method) == "POST") {
            request.body = "hello";
            if (stream_bodies) request.source = std::make_shared<TwoPieces>(" world");
          }
          if (stream_bodies) request.stream_response_after = kStreamAfter;
          auto response = co_await client.send(request);
          if (!response) break;
          require(response->status >= 100 && response->status <= 999);
          require(response->status >= 200 || response->status == 101);
          require(response->body.size() <= limits.max_body_bytes);
          if (response->source && !co_await read_rest(*response->source, response->body)) break;
          if (!client.reusable()) break;
        }
      },
      fuzz::rethrow_escaped);
  io.run();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 64;  // heads and bodies cut anywhere
  const bool stream_bodies = (data[0] & 0x40) != 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 0x80) {
    fetch(input, piece, stream_bodies);
  } else {
    serve(input, piece, stream_bodies);
  }
  return 0;
}
