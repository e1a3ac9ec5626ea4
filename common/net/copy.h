// Bidirectional copy between two duplex byte streams (TCP sockets, HBONE streams).
//
// Invariants:
// - Each direction owns one buffer, reused for the life of the copy and grown for bulk
//   transfers (1 KiB -> 16 KiB after 128 KiB -> 256 KiB after 10 MiB), so an idle connection
//   costs little and a bulk one makes few syscalls.
// - A direction writes everything it read before reading again: a slow reader slows its writer
//   (backpressure), memory never grows beyond the buffer.
// - End of stream in one direction is passed on as a half-close (shutdown of the write side);
//   the other direction keeps flowing until it ends too.
// - An error in either direction aborts both streams, so neither side waits forever.
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <tuple>
#include <vector>

#include "common/async/asio.h"

namespace zt::net {

template <class S>
concept DuplexStream = requires(S& s, asio::mutable_buffer mb, asio::const_buffer cb) {
  { s.read_some(mb) } -> std::same_as<awaitable<std::tuple<error_code, size_t>>>;
  { s.write_all(cb) } -> std::same_as<awaitable<error_code>>;
  { s.shutdown_write() } -> std::same_as<awaitable<error_code>>;
  { s.abort() } -> std::same_as<void>;
};

// A TCP socket seen as a DuplexStream. Does not own the socket.
class TcpDuplex {
 public:
  explicit TcpDuplex(tcp::socket& s) : s_(s) {}
  awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) {
    return s_.async_read_some(b, kTuple);
  }
  awaitable<error_code> write_all(asio::const_buffer b) {
    auto [ec, n] = co_await asio::async_write(s_, b, kTuple);
    co_return ec;
  }
  awaitable<error_code> shutdown_write() {
    error_code ec;
    s_.shutdown(tcp::socket::shutdown_send, ec);
    co_return ec;
  }
  void abort() {
    error_code ec;
    // RST rather than FIN: the peer must not take an aborted stream for a complete one.
    s_.set_option(asio::socket_base::linger(true, 0), ec);
    s_.close(ec);
  }

 private:
  tcp::socket& s_;
};

// Grows in steps with the bytes moved so far.
class AdaptiveBuffer {
 public:
  static constexpr size_t kSmall = 1024;
  static constexpr size_t kMedium = 16 * 1024;
  static constexpr size_t kLarge = 256 * 1024;
  static constexpr uint64_t kMediumAfter = 128 * 1024;
  static constexpr uint64_t kLargeAfter = 10 * 1024 * 1024;

  asio::mutable_buffer next(uint64_t moved_so_far) {
    size_t want = moved_so_far >= kLargeAfter ? kLarge : moved_so_far >= kMediumAfter ? kMedium : kSmall;
    if (buf_.size() < want) buf_.resize(want);
    return asio::buffer(buf_);
  }
  size_t capacity() const { return buf_.size(); }

 private:
  std::vector<uint8_t> buf_;
};

struct CopyResult {
  uint64_t a_to_b = 0;
  uint64_t b_to_a = 0;
  error_code error;  // first error that was not an orderly end of stream
};

namespace detail {

inline bool is_orderly_end(const error_code& ec) {
  return ec == asio::error::eof;
}

// `first_error` keeps the error that ended the copy; the other direction then only sees the
// abort it caused, which is not worth reporting.
template <DuplexStream From, DuplexStream To>
awaitable<error_code> copy_one_way(From& from, To& to, std::atomic<uint64_t>& moved, bool& failed,
                                   error_code& first_error) {
  AdaptiveBuffer buf;
  uint64_t total = 0;
  for (;;) {
    auto [rec, n] = co_await from.read_some(buf.next(total));
    if (n > 0) {
      auto wec = co_await to.write_all(asio::buffer(buf.next(total).data(), n));
      if (wec) {
        if (!failed) first_error = wec;
        failed = true;
        from.abort();
        to.abort();
        co_return wec;
      }
      total += n;
      moved.fetch_add(n, std::memory_order_relaxed);
    }
    if (rec) {
      if (is_orderly_end(rec) && !failed) {
        co_return co_await to.shutdown_write();
      }
      if (!failed) first_error = rec;
      failed = true;
      from.abort();
      to.abort();
      co_return rec;
    }
  }
}

}  // namespace detail

// Copies a->b and b->a until both directions have ended. Byte counts are published live in
// the two counters (metrics read them while the connection is open).
template <DuplexStream A, DuplexStream B>
awaitable<CopyResult> copy_bidirectional(A& a, B& b, std::atomic<uint64_t>& a_to_b,
                                         std::atomic<uint64_t>& b_to_a) {
  using namespace asio::experimental::awaitable_operators;
  bool failed = false;
  error_code first_error;
  auto [e1, e2] = co_await (detail::copy_one_way(a, b, a_to_b, failed, first_error) &&
                            detail::copy_one_way(b, a, b_to_a, failed, first_error));
  CopyResult r;
  r.a_to_b = a_to_b.load(std::memory_order_relaxed);
  r.b_to_a = b_to_a.load(std::memory_order_relaxed);
  // A failed shutdown_write (after an orderly end) is an error too.
  r.error = first_error ? first_error : (e1 ? e1 : e2);
  co_return r;
}

}  // namespace zt::net
