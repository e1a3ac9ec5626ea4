// Http1Client: one request at a time on one upstream connection, the response parsed by Beast.
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

Result<std::string> serialize_request(const Request& request) {
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
  const bool chunked = !request.trailers.empty();
  if (chunked) {
    out.append("transfer-encoding: chunked\r\n\r\n");
    if (!request.body.empty()) {
      append_hex(out, request.body.size());
      out.append("\r\n");
      out.append(request.body);
      out.append("\r\n");
    }
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

Http1Client::Http1Client(Duplex upstream, Limits limits)
    : upstream_(std::move(upstream)), limits_(limits) {}

std::string Http1Client::take_already_read() { return std::exchange(buffer_, std::string()); }

awaitable<Result<Response>> Http1Client::send(const Request& request) {
  if (!reusable_) co_return fail("upstream connection is not reusable");
  reusable_ = false;  // until this exchange completes cleanly
  auto wire = serialize_request(request);
  if (!wire) co_return tl::unexpected(wrap(wire.error(), "writing upstream request"));
  if (auto ec = co_await upstream_.write_all(asio::buffer(*wire))) {
    co_return fail(ec, "writing upstream request");
  }
  const bool head_request = request.head.method == "HEAD";
  const bool request_close = header_has_token(request.head.headers, "connection", "close");

  for (;;) {
    ResponseParser parser(limits_.max_headers);
    parser.header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    parser.body_limit(limits_.max_body_bytes);
    parser.eager(true);
    parser.skip(head_request);
    // Beast takes any three digits. A status below 100 is no HTTP status: the exchange fails
    // like any other malformed upstream response, as soon as the head is read (not after a
    // body that may only end with the connection).
    const auto invalid_status = [&] { return parser.is_header_done() && parser.status < 100; };
    for (;;) {
      const error_code ec = feed(parser, buffer_);
      if (invalid_status()) {
        co_return failf("malformed upstream response: status {:03d}", parser.status);
      }
      if (!ec) break;
      if (ec == bhttp::error::header_limit) co_return fail("upstream response head too large");
      if (ec == bhttp::error::body_limit) co_return fail("upstream response body too large");
      if (ec != bhttp::error::need_more) {
        co_return failf("malformed upstream response: {}", ec.message());
      }
      if (buffer_.size() > limits_.max_header_bytes) {
        co_return fail(parser.is_header_done() ? "upstream chunk line or trailers too large"
                                               : "upstream response head too large");
      }
      const error_code rec = co_await read_more(upstream_, buffer_);
      if (rec == asio::error::eof && parser.is_header_done()) {
        error_code eof_ec;
        parser.put_eof(eof_ec);
        if (!eof_ec && parser.is_done()) break;  // a close-delimited body
      }
      if (rec == asio::error::eof) co_return fail("upstream connection closed");
      if (rec) co_return fail(rec, "reading upstream response");
    }
    if (parser.status >= 100 && parser.status < 200 && parser.status != 101) continue;

    Response res;
    res.status = parser.status;
    res.headers = std::move(parser.headers);
    http::remove_header(res.headers, "transfer-encoding");  // the body is no longer chunked
    res.body = std::move(parser.body);
    res.trailers = std::move(parser.trailers);
    reusable_ = res.status != 101 && parser.keep_alive() && !parser.need_eof() && !request_close;
    co_return res;
  }
}

}  // namespace zt::waypoint::http1
