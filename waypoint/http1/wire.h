// Private to waypoint/http1: the Beast parser both sides use (fields kept as received, trailers
// apart from the head, body into a string) and the small I/O helpers around a Duplex.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include "common/async/asio.h"
#include "waypoint/http/headers.h"
#include "waypoint/message/duplex.h"

namespace zt::waypoint::http1::detail {

namespace bhttp = boost::beast::http;

inline std::string to_string(boost::beast::string_view s) {
  return std::string(s.data(), s.size());
}

// A Beast parser that keeps what the waypoint needs: the start line, every field as received
// (names in their original case, duplicates in order), trailer fields separately, the body.
template <bool isRequest>
class MessageParser final : public bhttp::basic_parser<isRequest> {
 public:
  // At most `max_fields` fields in the head and again in the trailers; more is a header_limit
  // error (431 on the server side).
  explicit MessageParser(size_t max_fields) : max_fields_(max_fields) {}

  static constexpr size_t kFieldsReserved = 12;

  std::string method;
  std::string target;
  int version = 11;  // 10 or 11
  int status = 0;
  http::HeaderList headers;
  http::HeaderList trailers;
  std::string body;

 private:
  void on_request_impl(bhttp::verb, boost::beast::string_view method_str,
                       boost::beast::string_view target_str, int v,
                       boost::system::error_code&) override {
    method = to_string(method_str);
    target = to_string(target_str);
    version = v;
  }
  void on_response_impl(int code, boost::beast::string_view, int v,
                        boost::system::error_code&) override {
    status = code;
    version = v;
  }
  void on_field_impl(bhttp::field, boost::beast::string_view name, boost::beast::string_view value,
                     boost::system::error_code& ec) override {
    http::HeaderList& list = header_done_ ? trailers : headers;
    if (list.size() >= max_fields_) {
      ec = bhttp::error::header_limit;
      return;
    }
    if (list.empty()) list.reserve(kFieldsReserved);  // one allocation for a typical message
    list.push_back({to_string(name), to_string(value)});
  }
  void on_header_impl(boost::system::error_code&) override { header_done_ = true; }
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                         boost::system::error_code&) override {
    if (content_length)
      body.reserve(static_cast<size_t>(std::min<uint64_t>(*content_length, 1 << 20)));
  }
  size_t on_body_impl(boost::beast::string_view data, boost::system::error_code&) override {
    body.append(data.data(), data.size());
    return data.size();
  }
  void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                            boost::system::error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view data,
                            boost::system::error_code&) override {
    body.append(data.data(), data.size());
    return data.size();
  }
  void on_finish_impl(boost::system::error_code&) override {}

  size_t max_fields_;
  bool header_done_ = false;
};

using RequestParser = MessageParser<true>;
using ResponseParser = MessageParser<false>;

// Feeds `buffer` to `parser` until the message is done, erasing what was consumed. Returns
// bhttp::error::need_more when more bytes are needed, another error when the input is bad.
template <bool isRequest>
boost::system::error_code feed(MessageParser<isRequest>& parser, std::string& buffer) {
  boost::system::error_code ec;
  while (!parser.is_done()) {
    if (buffer.empty()) return bhttp::error::need_more;
    const size_t n = parser.put(asio::buffer(buffer), ec);
    buffer.erase(0, n);
    if (ec) return ec;
    if (n == 0) return bhttp::error::need_more;
  }
  return {};
}

// Appends what one read from `stream` returns to `buffer`: at most the buffer's spare capacity,
// clamped to 4..16 KiB (a read that fills a small chunk makes room for 16 KiB next time).
// Returns the read error only when no byte arrived (eof included).
awaitable<error_code> read_more(Duplex& stream, std::string& buffer);

// read_more, waiting at most `wait` (nullopt: no limit; zero or less: already expired).
// nullopt when the time ran out first (the read is given up; nothing is appended).
awaitable<std::optional<error_code>> read_more_within(
    Duplex& stream, std::string& buffer, std::optional<std::chrono::steady_clock::duration> wait);

// Writes `data` in pieces of at most 64 KiB; each piece must be taken within `idle` (zero: no
// limit), so a peer that reads slowly but steadily is served and one that stopped is not.
// asio::error::timed_out when a piece was not taken in time (the stream is then unusable).
awaitable<error_code> write_all_within(Duplex& stream, std::string_view data,
                                       std::chrono::milliseconds idle);

// Shuts down our sending side, then reads and drops what the peer still sends (at most 1 MiB,
// at most 1 s, after which the stream is aborted): closing with unread bytes would make the
// kernel send a reset that can destroy the response the peer has not read yet.
awaitable<void> linger_close(Duplex stream);

// True when the comma-separated `list` names `token` (case-insensitive).
bool list_has_token(std::string_view list, std::string_view token);
// True when any `name` field's list names `token`.
bool header_has_token(const http::HeaderList& headers, std::string_view name,
                      std::string_view token);

// A field that can be written on the wire as it is (token name, no CR/LF/NUL in the value).
bool writable_field(const http::Header& h);

// "Not Found" for 404; "Unknown" for a status Beast has no phrase for.
std::string_view reason_phrase(int status);

// Writes `headers` as "name: value\r\n" lines, skipping unwritable fields.
void append_fields(std::string& out, const http::HeaderList& headers);
// The bytes append_fields writes at most for `headers` (to reserve a message once).
size_t fields_bytes(const http::HeaderList& headers);

}  // namespace zt::waypoint::http1::detail
