// Bidirectional copy between two duplex byte streams (TCP sockets, HBONE streams).
//
// Invariants:
// - Each direction owns one buffer, reused for the life of the copy. It starts at 1 KiB and
//   doubles each time a read fills it (more was waiting), up to 16 KiB, and up to 256 KiB once
//   10 MiB have gone through: a bulk transfer makes few syscalls, while a request/response
//   connection keeps the next power of two above its largest read however many bytes it moves.
//   Buffers do not shrink: a connection keeps the size its largest burst reached.
// - A direction writes everything it read before reading again: a slow reader slows its writer
//   (backpressure), memory never grows beyond the buffer.
// - End of stream in one direction is passed on as a half-close (shutdown of the write side);
//   the other direction keeps flowing until it ends too.
// - An error in either direction aborts both streams, so neither side waits forever.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <tuple>

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

// The buffer of one copy direction (see the invariants above).
class AdaptiveBuffer {
 public:
  static constexpr size_t kSmall = 1024;
  static constexpr size_t kMedium = 16 * 1024;
  static constexpr size_t kLarge = 256 * 1024;
  static constexpr uint64_t kLargeAfter = 10 * 1024 * 1024;

  AdaptiveBuffer() { resize(kSmall); }

  // Where the next read goes.
  asio::mutable_buffer get() { return {buf_.get(), size_}; }
  // After a read of `n` bytes was passed on; `moved` counts every byte so far, these included.
  void used(size_t n, uint64_t moved) {
    if (n < size_) return;
    const size_t cap = moved >= kLargeAfter ? kLarge : kMedium;
    if (size_ < cap) resize(std::min(size_ * 2, cap));
  }
  size_t capacity() const { return size_; }

 private:
  void resize(size_t n) {
    buf_ = std::make_unique_for_overwrite<uint8_t[]>(n);
    size_ = n;
  }

  std::unique_ptr<uint8_t[]> buf_;
  size_t size_ = 0;
};

struct CopyResult {
  uint64_t a_to_b = 0;
  uint64_t b_to_a = 0;
  error_code error;  // first error that was not an orderly end of stream
  // Each direction's buffer size at the end (AdaptiveBuffer::capacity()).
  size_t a_to_b_buffer = 0;
  size_t b_to_a_buffer = 0;
};

namespace detail {

inline bool is_orderly_end(const error_code& ec) {
  return ec == asio::error::eof;
}

// `first_error` keeps the error that ended the copy; the other direction then only sees the
// abort it caused, which is not worth reporting.
template <DuplexStream From, DuplexStream To>
awaitable<error_code> copy_one_way(From& from, To& to, std::atomic<uint64_t>& moved, bool& failed,
                                   error_code& first_error, size_t& buffer_size) {
  AdaptiveBuffer buf;
  buffer_size = buf.capacity();
  uint64_t total = 0;
  for (;;) {
    auto [rec, n] = co_await from.read_some(buf.get());
    if (n > 0) {
      auto wec = co_await to.write_all(asio::buffer(buf.get().data(), n));
      if (wec) {
        if (!failed) first_error = wec;
        failed = true;
        from.abort();
        to.abort();
        co_return wec;
      }
      total += n;
      moved.fetch_add(n, std::memory_order_relaxed);
      buf.used(n, total);
      buffer_size = buf.capacity();
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
  CopyResult r;
  auto [e1, e2] =
      co_await (detail::copy_one_way(a, b, a_to_b, failed, first_error, r.a_to_b_buffer) &&
                detail::copy_one_way(b, a, b_to_a, failed, first_error, r.b_to_a_buffer));
  r.a_to_b = a_to_b.load(std::memory_order_relaxed);
  r.b_to_a = b_to_a.load(std::memory_order_relaxed);
  // A failed shutdown_write (after an orderly end) is an error too.
  r.error = first_error ? first_error : (e1 ? e1 : e2);
  co_return r;
}

}  // namespace zt::net
