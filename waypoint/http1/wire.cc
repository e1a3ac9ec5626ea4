#include "waypoint/http1/wire.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <tuple>

#include <boost/beast/http/status.hpp>

#include "common/async/timeout.h"
#include "waypoint/base/strings.h"
#include "waypoint/http/request_checks.h"

namespace zt::waypoint::http1::detail {

namespace {

// A read asks for the buffer's spare capacity, at least 4 KiB and at most 16 KiB: resize()
// zero-fills what it adds, so a connection of small messages does not write 16 KiB per read
// (twice per request), and a read that filled its chunk makes room for 16 KiB next time.
constexpr size_t kMinReadChunk = 4 * 1024;
constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kWritePiece = 64 * 1024;
constexpr size_t kMaxLingerBytes = 1024 * 1024;
constexpr auto kMaxLinger = std::chrono::seconds(1);

// Reads once into `buffer`'s end; `deadline` max() waits without limit.
awaitable<error_code> read_into(Duplex& stream, std::string& buffer, Duplex::Deadline deadline) {
  const size_t old = buffer.size();
  const size_t chunk = std::clamp(buffer.capacity() - old, kMinReadChunk, kReadChunk);
  buffer.resize(old + chunk);
  const asio::mutable_buffer into(buffer.data() + old, chunk);
  error_code ec;
  size_t n = 0;
  if (deadline == Duplex::Deadline::max()) {
    std::tie(ec, n) = co_await stream.read_some(into);
  } else {
    std::tie(ec, n) = co_await stream.read_some_until(into, deadline);
  }
  buffer.resize(old + n);
  if (n == chunk && chunk < kReadChunk) buffer.reserve(old + n + kReadChunk);
  if (n > 0) co_return error_code{};
  if (!ec) ec = asio::error::eof;  // a zero-byte read without an error is an end of stream
  co_return ec;
}

}  // namespace

awaitable<error_code> read_more(Duplex& stream, std::string& buffer) {
  return read_into(stream, buffer, Duplex::Deadline::max());
}

awaitable<std::optional<error_code>> read_more_within(
    Duplex& stream, std::string& buffer, std::optional<std::chrono::steady_clock::duration> wait) {
  if (!wait) co_return co_await read_into(stream, buffer, Duplex::Deadline::max());
  if (*wait <= std::chrono::steady_clock::duration::zero()) co_return std::nullopt;
  const error_code ec =
      co_await read_into(stream, buffer, std::chrono::steady_clock::now() + *wait);
  if (ec == asio::error::timed_out) co_return std::nullopt;
  co_return ec;
}

awaitable<error_code> write_all_within(Duplex& stream, std::string_view data,
                                       std::chrono::milliseconds idle) {
  if (idle.count() <= 0) co_return co_await stream.write_all(asio::buffer(data));
  size_t offset = 0;
  while (offset < data.size()) {
    const size_t n = std::min(kWritePiece, data.size() - offset);
    const error_code ec = co_await stream.write_all_until(asio::buffer(data.data() + offset, n),
                                                          std::chrono::steady_clock::now() + idle);
    if (ec) co_return ec;  // asio::error::timed_out when the peer took nothing for `idle`
    offset += n;
  }
  co_return error_code{};
}

awaitable<void> linger_close(Duplex stream) {
  if (co_await stream.shutdown_write()) {
    stream.abort();
    co_return;
  }
  auto executor = co_await asio::this_coro::executor;
  auto finished = std::make_shared<bool>(false);
  auto timer = std::make_shared<asio::steady_timer>(executor, kMaxLinger);
  timer->async_wait([stream, finished, timer](error_code ec) mutable {
    if (!ec && !*finished) stream.abort();
  });
  std::array<char, 4096> scratch;
  size_t total = 0;
  while (total < kMaxLingerBytes) {
    auto [ec, n] = co_await stream.read_some(asio::buffer(scratch));
    if (ec || n == 0) break;
    total += n;
  }
  *finished = true;
  timer->cancel();
}

bool list_has_token(std::string_view list, std::string_view token) {
  for (auto item : split_list(list)) {
    if (iequals(trim_ows(item), token)) return true;
  }
  return false;
}

bool header_has_token(const http::HeaderList& headers, std::string_view name,
                      std::string_view token) {
  for (const auto& h : headers) {
    if (iequals(h.name, name) && list_has_token(h.value, token)) return true;
  }
  return false;
}

bool writable_field(const http::Header& h) {
  if (!http::is_token(h.name)) return false;
  for (unsigned char c : h.value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

std::string_view reason_phrase(int status) {
  if (status < 100 || status > 999) return "Unknown";
  const auto s = bhttp::int_to_status(static_cast<unsigned>(status));
  if (s == bhttp::status::unknown) return "Unknown";
  const auto r = bhttp::obsolete_reason(s);
  return {r.data(), r.size()};
}

void append_fields(std::string& out, const http::HeaderList& headers) {
  for (const auto& h : headers) {
    if (!writable_field(h)) continue;
    out.append(h.name);
    out.append(": ");
    out.append(h.value);
    out.append("\r\n");
  }
}

size_t fields_bytes(const http::HeaderList& headers) {
  size_t n = 0;
  for (const auto& h : headers) n += h.name.size() + h.value.size() + 4;  // ": " and CRLF
  return n;
}

}  // namespace zt::waypoint::http1::detail
