// Fuzzes the waypoint's HTTP/1.1 server, serve_http1(), the code that reads every meshed
// client's requests: keep-alive and pipelining, Content-Length and chunked bodies with
// trailers, Expect: 100-continue, upgrades, the head checks and their rejections, the response
// writer. The downstream is an in-memory stream that hands the server the input in pieces of a
// size the input's first byte picks, then the end of the stream; the handler echoes each
// request's body. Besides crashes, sanitizer reports and hangs it traps when:
// - the server writes anything that does not start with a status line;
// - a request reaches the handler with a body larger than the limit or a head the checks refuse.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

#include "waypoint/http/request_checks.h"
#include "waypoint/http1/http1.h"

namespace {

using namespace zt;
using namespace zt::waypoint;

void require(bool ok) {
  if (!ok) std::abort();
}

// Plays `input` to the server `piece` bytes at a time, then end of stream; keeps what it writes.
// Reads and writes complete at once, so deadlines never expire.
class ScriptedStream {
 public:
  ScriptedStream(std::string_view input, size_t piece) : input_(input), piece_(piece) {}

  awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) {
    if (pos_ >= input_.size()) co_return std::tuple{error_code(asio::error::eof), size_t{0}};
    const size_t n = std::min({b.size(), piece_, input_.size() - pos_});
    std::memcpy(b.data(), input_.data() + pos_, n);
    pos_ += n;
    co_return std::tuple{error_code{}, n};
  }
  awaitable<error_code> write_all(asio::const_buffer b) {
    if (aborted_) co_return error_code(asio::error::connection_aborted);
    written_.append(static_cast<const char*>(b.data()), b.size());
    co_return error_code{};
  }
  awaitable<std::tuple<error_code, size_t>> read_some_until(asio::mutable_buffer b,
                                                            Duplex::Deadline) {
    return read_some(b);
  }
  awaitable<error_code> write_all_until(asio::const_buffer b, Duplex::Deadline) {
    return write_all(b);
  }
  awaitable<error_code> shutdown_write() { co_return error_code{}; }
  void abort() { aborted_ = true; }

  const std::string& written() const { return written_; }

 private:
  std::string_view input_;
  size_t piece_;
  size_t pos_ = 0;
  bool aborted_ = false;
  std::string written_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 64;  // 1..64 bytes per read: heads and bodies cut anywhere
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  Limits limits;
  limits.max_header_bytes = 4 * 1024;
  limits.max_headers = 32;
  limits.max_body_bytes = 16 * 1024;
  http::HeadLimits head_limits;
  head_limits.max_head_bytes = limits.max_header_bytes;
  head_limits.max_headers = limits.max_headers;

  asio::io_context io;
  auto stream = std::make_shared<ScriptedStream>(input, piece);
  RequestHandler echo = [&](Request request) -> awaitable<Response> {
    require(request.body.size() <= limits.max_body_bytes);
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
    response.status = 200;
    response.body = std::move(request.body);
    co_return response;
  };
  asio::co_spawn(io, http1::serve_http1(Duplex::of(stream), std::string(), limits, echo),
                 asio::detached);
  io.run();

  const std::string& out = stream->written();
  require(out.empty() || out.starts_with("HTTP/1.1 ") || out.starts_with("HTTP/1.0 "));
  return 0;
}
