// Http1Client: one request at a time on one upstream connection, the response parsed by Beast.
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "waypoint/base/strings.h"
#include "waypoint/http/request_checks.h"
#include "waypoint/http1/http1.h"
#include "waypoint/http1/wire.h"

namespace zt::waypoint::http1 {

using namespace detail;  // NOLINT(google-build-using-namespace): private helpers of this folder

namespace {

bool valid_target(std::string_view target) {
  if (target.empty()) return false;
  for (unsigned char c : target) {
    if (c <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Methods whose requests carry a body by definition: they always get a Content-Length.
bool method_has_body(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

// How a streamed request body (Request::source) goes out after the head.
struct StreamedFraming {
  std::optional<uint64_t> length;  // the Content-Length it declared; else chunked
};

// A valid Content-Length field of `headers`.
std::optional<uint64_t> declared_length(const http::HeaderList& headers) {
  auto v = http::find_header(headers, "content-length");
  if (!v) return std::nullopt;
  const std::string_view t = trim_ows(*v);
  if (t.empty() || t.size() > 19 || t.find_first_not_of("0123456789") != t.npos) {
    return std::nullopt;
  }
  return std::stoull(std::string(t));
}

// One chunk of a chunked body (nothing for empty data: a zero-size chunk would end it).
void append_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  append_hex(out, data.size());
  out.append("\r\n");
  out.append(data);
  out.append("\r\n");
}

Result<std::string> serialize_request(const Request& request,
                                      const std::optional<StreamedFraming>& streamed) {
  const auto& head = request.head;
  if (!http::is_token(head.method)) return failf("invalid request method \"{}\"", head.method);
  if (!valid_target(head.target)) return failf("invalid request target \"{}\"", head.target);
  if (!writable_field({"host", head.authority})) return fail("invalid request authority");

  // One allocation: the head's fields, the framing lines and the body.
  std::string out;
  out.reserve(head.method.size() + head.target.size() + head.authority.size() + 128 +
              fields_bytes(head.headers) + fields_bytes(request.trailers) + request.body.size());
  out.append(head.method).append(" ").append(head.target).append(" HTTP/1.1\r\n");
  if (!head.authority.empty()) out.append("host: ").append(head.authority).append("\r\n");
  bool had_length = false;
  for (const auto& h : head.headers) {
    if (iequals(h.name, "host") || iequals(h.name, "transfer-encoding")) continue;
    if (iequals(h.name, "content-length")) {
      had_length = true;
      continue;
    }
    if (!writable_field(h)) continue;
    out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  if (streamed) {
    // The head and the body's first bytes; the rest follows as the source yields it.
    if (streamed->length) {
      out.append("content-length: ");
      append_decimal(out, *streamed->length);
      out.append("\r\n\r\n");
      out.append(request.body);
    } else {
      out.append("transfer-encoding: chunked\r\n\r\n");
      append_chunk(out, request.body);
    }
    return out;
  }
  const bool chunked = !request.trailers.empty();
  if (chunked) {
    out.append("transfer-encoding: chunked\r\n\r\n");
    append_chunk(out, request.body);
    out.append("0\r\n");
    append_fields(out, request.trailers);
    out.append("\r\n");
    return out;
  }
  if (!request.body.empty() || had_length || method_has_body(head.method)) {
    out.append("content-length: ");
    append_decimal(out, request.body.size());
    out.append("\r\n");
  }
  out.append("\r\n");
  out.append(request.body);
  return out;
}

}  // namespace

struct Http1Client::Wire {
  explicit Wire(Duplex d) : upstream(std::move(d)) {}
  Duplex upstream;
  std::string buffer;    // bytes read and not yet parsed
  bool reusable = true;  // see reusable()
};

namespace {

// The rest of a response body past Request::stream_response_after, read from the connection as
// it is pulled. The parser goes on where send() left it.
class StreamedResponseBody final : public BodySource {
 public:
  StreamedResponseBody(std::shared_ptr<Http1Client::Wire> wire,
                       std::unique_ptr<ResponseParser> parser, Limits limits, bool keep_alive)
      : wire_(std::move(wire)),
        parser_(std::move(parser)),
        limits_(limits),
        keep_alive_(keep_alive) {}

  awaitable<Piece> next() override {
    Piece piece;
    if (finished_) {
      piece.error = "body already ended";
      co_return piece;
    }
    for (;;) {
      if (!parser_->body.empty()) {
        piece.data = std::exchange(parser_->body, std::string());
        co_return piece;
      }
      if (parser_->is_done()) {
        finished_ = true;
        piece.end = true;
        piece.trailers = std::move(parser_->trailers);
        wire_->reusable = keep_alive_ && parser_->keep_alive() && !parser_->need_eof();
        co_return piece;
      }
      const error_code ec = feed(*parser_, wire_->buffer);
      if (!ec || !parser_->body.empty()) continue;  // what it parsed goes out first
      if (ec != bhttp::error::need_more) {
        co_return failed(fmt::format("malformed upstream response: {}", ec.message()));
      }
      if (wire_->buffer.size() > limits_.max_header_bytes) {
        co_return failed("upstream chunk line or trailers too large");
      }
      const error_code rec = co_await read_more(wire_->upstream, wire_->buffer);
      if (rec == asio::error::eof) {
        error_code eof_ec;
        parser_->put_eof(eof_ec);
        if (!eof_ec && parser_->is_done()) continue;  // a close-delimited body
        co_return failed("upstream connection closed in mid-body");
      }
      if (rec) co_return failed(fmt::format("reading upstream response: {}", rec.message()));
    }
  }

 private:
  Piece failed(std::string why) {
    finished_ = true;
    wire_->upstream.abort();
    Piece piece;
    piece.error = std::move(why);
    return piece;
  }

  std::shared_ptr<Http1Client::Wire> wire_;
  std::unique_ptr<ResponseParser> parser_;
  Limits limits_;
  bool keep_alive_;  // the request did not ask to close
  bool finished_ = false;
};

// Sends the rest of a streamed request body as `source` yields it: raw up to the declared
// `length` (`already` bytes of it sent), else as chunks, then the last chunk and its trailers.
awaitable<Status> send_rest(Http1Client::Wire& w, BodySource& source,
                            std::optional<uint64_t> length, uint64_t already,
                            std::chrono::milliseconds idle, bool& write_failed) {
  uint64_t sent = already;
  std::string out;
  for (;;) {
    BodySource::Piece piece = co_await source.next();
    if (!piece.error.empty()) co_return failf("request body failed: {}", piece.error);
    sent += piece.data.size();
    if (length && sent > *length) co_return fail("request body longer than its content-length");
    out.clear();
    if (length) {
      out = std::move(piece.data);
    } else {
      append_chunk(out, piece.data);
      if (piece.end) {
        out.append("0\r\n");
        append_fields(out, piece.trailers);
        out.append("\r\n");
      }
    }
    if (piece.end && length && sent != *length) {
      co_return fail("request body shorter than its content-length");
    }
    if (!out.empty()) {
      // An upstream that takes nothing for the stream idle timeout is given up.
      if (auto ec = co_await write_all_within(w.upstream, out, idle)) {
        write_failed = true;
        co_return fail(ec, "writing upstream request body");
      }
    }
    if (piece.end) co_return Status{};
  }
}

// Reads the answer to a request written on `wire_ref` (see Http1Client::send).
awaitable<Result<Response>> read_response(std::shared_ptr<Http1Client::Wire> wire_ref,
                                          Limits limits, bool head_request, bool request_close,
                                          size_t stream_after) {
  Http1Client::Wire& w = *wire_ref;
  for (;;) {
    auto parser = std::make_unique<ResponseParser>(limits.max_headers);
    parser->header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    if (stream_after > 0) {
      parser->body_limit(boost::none);  // a long body streams
    } else {
      parser->body_limit(limits.max_body_bytes);
    }
    parser->eager(true);
    parser->skip(head_request);
    // Beast takes any three digits. A status below 100 is no HTTP status: the exchange fails
    // like any other malformed upstream response, as soon as the head is read (not after a
    // body that may only end with the connection).
    const auto invalid_status = [&] { return parser->is_header_done() && parser->status < 100; };
    // A final answer whose body is too long to buffer: answered now, the rest streamed.
    const auto streams_now = [&] {
      return stream_after > 0 && parser->is_header_done() && parser->status >= 200 &&
             parser->body.size() > stream_after;
    };
    bool streamed = false;
    // With limits.stream_late_bodies_after: when a final answer's body streams even if short.
    std::optional<std::chrono::steady_clock::time_point> late_at;
    for (;;) {
      const error_code ec = feed(*parser, w.buffer);
      if (invalid_status()) {
        co_return failf("malformed upstream response: status {:03d}", parser->status);
      }
      if (!ec) break;
      if (streams_now()) {
        streamed = true;
        break;
      }
      if (ec == bhttp::error::header_limit) co_return fail("upstream response head too large");
      if (ec == bhttp::error::body_limit) co_return fail("upstream response body too large");
      if (ec != bhttp::error::need_more) {
        co_return failf("malformed upstream response: {}", ec.message());
      }
      if (w.buffer.size() > limits.max_header_bytes) {
        co_return fail(parser->is_header_done() ? "upstream chunk line or trailers too large"
                                                : "upstream response head too large");
      }
      if (!late_at && stream_after > 0 && limits.stream_late_bodies_after.count() > 0 &&
          parser->is_header_done() && parser->status >= 200) {
        late_at = std::chrono::steady_clock::now() + limits.stream_late_bodies_after;
      }
      error_code rec;
      if (late_at) {
        const auto got = co_await read_more_within(w.upstream, w.buffer,
                                                   *late_at - std::chrono::steady_clock::now());
        if (!got) {
          streamed = true;  // a body still coming: streamed from now on
          break;
        }
        rec = *got;
      } else {
        rec = co_await read_more(w.upstream, w.buffer);
      }
      if (rec == asio::error::eof && parser->is_header_done()) {
        error_code eof_ec;
        parser->put_eof(eof_ec);
        if (!eof_ec && parser->is_done()) break;  // a close-delimited body
      }
      if (rec == asio::error::eof) co_return fail("upstream connection closed");
      if (rec) co_return fail(rec, "reading upstream response");
    }
    if (parser->status >= 100 && parser->status < 200 && parser->status != 101) continue;

    Response res;
    res.status = parser->status;
    res.headers = std::move(parser->headers);
    http::remove_header(res.headers, "transfer-encoding");  // the body is no longer chunked
    res.body = std::exchange(parser->body, std::string());
    if (streamed) {
      res.source = std::make_shared<StreamedResponseBody>(wire_ref, std::move(parser), limits,
                                                          !request_close);
      co_return res;
    }
    res.trailers = std::move(parser->trailers);
    w.reusable = res.status != 101 && parser->keep_alive() && !parser->need_eof() && !request_close;
    co_return res;
  }
}

}  // namespace

Http1Client::Http1Client(Duplex upstream, Limits limits)
    : wire_(std::make_shared<Wire>(std::move(upstream))), limits_(limits) {}

bool Http1Client::reusable() const { return wire_->reusable; }
Duplex& Http1Client::stream() { return wire_->upstream; }
void Http1Client::abort() { wire_->upstream.abort(); }

std::string Http1Client::take_already_read() { return std::exchange(wire_->buffer, std::string()); }

awaitable<Result<Response>> Http1Client::send(const Request& request) {
  // (The wire stays alive across the suspensions even if this client is dropped meanwhile.)
  const auto wire_ref = wire_;
  Wire& w = *wire_ref;
  const Limits limits = limits_;
  if (!w.reusable) co_return fail("upstream connection is not reusable");
  w.reusable = false;  // until this exchange completes cleanly
  std::optional<StreamedFraming> streamed_body;
  if (request.source) {
    streamed_body = StreamedFraming{declared_length(request.head.headers)};
    // (A Content-Length the body already passes would let its rest be read upstream as
    // another request: a header filter may have set it.)
    if (streamed_body->length && request.body.size() > *streamed_body->length) {
      co_return fail("request body longer than its content-length");
    }
  }
  auto out = serialize_request(request, streamed_body);
  if (!out) co_return tl::unexpected(wrap(out.error(), "writing upstream request"));
  if (auto ec = co_await w.upstream.write_all(asio::buffer(*out))) {
    co_return fail(ec, "writing upstream request");
  }
  // An upstream that stops taking a body often answers first (a 413 or 401, then its close):
  // that answer is read if it is there, and the connection is not used again.
  std::optional<Status> cut;
  if (streamed_body) {
    bool write_failed = false;
    auto sent = co_await send_rest(w, *request.source, streamed_body->length, request.body.size(),
                                   limits.stream_idle_timeout, write_failed);
    if (!sent && !write_failed) {
      w.upstream.abort();  // the upstream must not take a cut body for a whole one
      co_return tl::unexpected(sent.error());
    }
    if (!sent) cut = std::move(sent);
  }
  const bool head_request = request.head.method == "HEAD";
  const bool request_close = header_has_token(request.head.headers, "connection", "close");
  const size_t stream_after = head_request ? 0 : request.stream_response_after;
  auto answer = co_await read_response(wire_ref, limits, head_request, request_close, stream_after);
  if (cut) {
    w.reusable = false;
    if (!answer) {
      w.upstream.abort();
      co_return tl::unexpected(cut->error());
    }
  }
  co_return answer;
}

}  // namespace zt::waypoint::http1
