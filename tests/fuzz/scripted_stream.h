// What the waypoint codec fuzzers (fuzz_http1, fuzz_http2) share: an in-memory stream that plays
// the fuzzer's input, limits small enough to reach, and a completion that surfaces exceptions.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <tuple>

#include "waypoint/message/duplex.h"
#include "waypoint/message/message.h"

namespace zt::waypoint::fuzz {

// The completion of a codec coroutine the fuzzer spawns: an exception that escapes it is a
// finding (the waypoint's task group would only log it and drop the connection), so it is
// rethrown out of io.run() and libFuzzer reports it, instead of vanishing as with
// asio::detached.
inline void rethrow_escaped(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

// Plays `input` to the codec `piece` bytes at a time, then end of stream; keeps what it writes.
// Reads and writes complete at once (with yield_between_reads, each read first lets whatever
// else is ready run: handlers then see a request's body arrive piece by piece). After abort()
// nothing more is read or written, after shutdown_write() nothing more is written, as with a
// socket.
class ScriptedStream {
 public:
  ScriptedStream(std::string_view input, size_t piece) : input_(input), piece_(piece) {}

  awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) {
    if (yield_between_reads) {
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    }
    if (aborted_) co_return std::tuple{error_code(asio::error::connection_aborted), size_t{0}};
    if (pos_ >= input_.size()) co_return std::tuple{error_code(asio::error::eof), size_t{0}};
    const size_t n = std::min({b.size(), piece_, input_.size() - pos_});
    std::memcpy(b.data(), input_.data() + pos_, n);
    pos_ += n;
    co_return std::tuple{error_code{}, n};
  }
  awaitable<error_code> write_all(asio::const_buffer b) {
    if (aborted_) co_return error_code(asio::error::connection_aborted);
    if (shut_) co_return error_code(asio::error::broken_pipe);
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
  awaitable<error_code> shutdown_write() {
    shut_ = true;
    co_return error_code{};
  }
  void abort() { aborted_ = true; }

  const std::string& written() const { return written_; }
  bool yield_between_reads = false;

 private:
  std::string_view input_;
  size_t piece_;
  size_t pos_ = 0;
  bool aborted_ = false;
  bool shut_ = false;
  std::string written_;
};

// Small enough that inputs of libFuzzer's default length (4 KiB) reach every limit; no timeouts,
// so a slow run cannot turn into a 408 and every run of an input does the same.
inline Limits small_limits() {
  Limits limits;
  limits.max_header_bytes = 512;
  limits.max_headers = 16;
  limits.max_body_bytes = 1024;
  limits.request_headers_timeout = std::chrono::milliseconds(0);
  limits.stream_idle_timeout = std::chrono::milliseconds(0);
  limits.idle_timeout = std::chrono::milliseconds(0);
  return limits;
}

}  // namespace zt::waypoint::fuzz
