// A byte stream in both directions, whatever carries it: an HBONE CONNECT stream (h2::Stream),
// a TCP socket, or anything else that satisfies net::DuplexStream. The waypoint's codecs and
// proxy take a Duplex so the same code serves HBONE in production and plain sockets in tests.
//
// A Duplex shares ownership of what it wraps (copies are cheap handles to the same stream).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <tuple>
#include <utility>

#include "common/async/asio.h"
#include "common/async/timeout.h"
#include "common/net/copy.h"

namespace zt::waypoint {

class Duplex {
 public:
  Duplex() = default;

  using Deadline = std::chrono::steady_clock::time_point;

  // Whether `S` waits for deadlines itself (else the *_until calls run under a second timer).
  template <class S>
  static constexpr bool kNativeDeadlines = requires(S& s, asio::mutable_buffer mb,
                                                    asio::const_buffer cb, Deadline d) {
    s.read_some_until(mb, d);
    s.write_all_until(cb, d);
  };

  // Shares `stream`.
  template <net::DuplexStream S>
  static Duplex of(std::shared_ptr<S> stream) {
    Duplex d;
    d.impl_ = std::make_shared<Model<S>>(std::move(stream));
    return d;
  }
  // Owns a TCP socket.
  static Duplex of_socket(tcp::socket socket) {
    Duplex d;
    d.impl_ = std::make_shared<SocketModel>(std::move(socket));
    return d;
  }

  explicit operator bool() const { return impl_ != nullptr; }

  awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) {
    return impl_->read_some(b);
  }
  awaitable<error_code> write_all(asio::const_buffer b) { return impl_->write_all(b); }
  // The same, ending with asio::error::timed_out when nothing was read (or the write did not
  // finish) by `deadline`, and with timed_out for nothing else. A stream with its own deadline
  // support (h2::Stream: read_some_until / write_all_until) waits on its own timer and stays
  // usable (an h2 write is taken whole or not at all); any other stream runs the operation
  // under async::with_timeout, and a write cut short may have sent part of the data.
  awaitable<std::tuple<error_code, size_t>> read_some_until(asio::mutable_buffer b, Deadline d) {
    return impl_->read_some_until(b, d);
  }
  awaitable<error_code> write_all_until(asio::const_buffer b, Deadline d) {
    return impl_->write_all_until(b, d);
  }
  awaitable<error_code> shutdown_write() { return impl_->shutdown_write(); }
  void abort() { impl_->abort(); }
  // Calls `fn` once (posted) when nothing more can come from the peer, with no read pending
  // (h2::Stream::on_peer_end); an empty `fn` drops it. False, and `fn` dropped, when the
  // stream cannot tell without a read (a TCP socket).
  bool on_peer_end(std::function<void()> fn) { return impl_->on_peer_end(std::move(fn)); }

 private:
  // Deadlines for a stream without their own support: the operation under a timer.
  template <class S>
  static awaitable<std::tuple<error_code, size_t>> read_with_timer(std::shared_ptr<S> s,
                                                                   asio::mutable_buffer b,
                                                                   Deadline d) {
    const auto left = d - std::chrono::steady_clock::now();
    if (left <= Deadline::duration::zero()) {
      co_return std::tuple{error_code(asio::error::timed_out), size_t{0}};
    }
    // Both results are kept: a read that completes in the turn the timer fires has already
    // put its bytes into `b`, and they must not be lost with it.
    const auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex, left);
    // Locals, not temporaries, across the suspension (g++ 12 coroutine pitfall).
    auto group = asio::experimental::make_parallel_group(
        asio::co_spawn(ex, s->read_some(b), asio::deferred), timer.async_wait(asio::deferred));
    auto both = group.async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    auto [order, failure, read, timer_ec] = co_await std::move(both);
    (void)timer_ec;
    if (failure) std::rethrow_exception(failure);
    const auto [ec, n] = read;
    if (order[0] == 1 && n == 0) {
      co_return std::tuple{error_code(asio::error::timed_out), size_t{0}};
    }
    co_return std::tuple{n > 0 ? error_code{} : not_a_deadline(ec), n};
  }
  template <class S>
  static awaitable<error_code> write_with_timer(std::shared_ptr<S> s, asio::const_buffer b,
                                                Deadline d) {
    const auto left = d - std::chrono::steady_clock::now();
    if (left <= Deadline::duration::zero()) co_return asio::error::timed_out;
    auto op = s->write_all(b);
    auto r = co_await async::with_timeout(std::move(op), left);
    co_return r ? not_a_deadline(*r) : error_code(asio::error::timed_out);
  }
  // A socket's own ETIMEDOUT (keepalive or retransmission gave up) is a dead connection, not
  // our deadline: reported as a reset, so that timed_out keeps one meaning.
  static error_code not_a_deadline(error_code ec) {
    return ec == asio::error::timed_out ? error_code(asio::error::connection_reset) : ec;
  }

  struct Concept {
    virtual ~Concept() = default;
    virtual awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) = 0;
    virtual awaitable<error_code> write_all(asio::const_buffer b) = 0;
    virtual awaitable<std::tuple<error_code, size_t>> read_some_until(asio::mutable_buffer b,
                                                                      Deadline d) = 0;
    virtual awaitable<error_code> write_all_until(asio::const_buffer b, Deadline d) = 0;
    virtual awaitable<error_code> shutdown_write() = 0;
    virtual void abort() = 0;
    virtual bool on_peer_end(std::function<void()> fn) = 0;
  };
  template <class S>
  struct Model final : Concept {
    explicit Model(std::shared_ptr<S> s) : s_(std::move(s)) {}
    awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) override {
      return s_->read_some(b);
    }
    awaitable<error_code> write_all(asio::const_buffer b) override { return s_->write_all(b); }
    awaitable<std::tuple<error_code, size_t>> read_some_until(asio::mutable_buffer b,
                                                              Deadline d) override {
      if constexpr (kNativeDeadlines<S>) {
        return s_->read_some_until(b, d);
      } else {
        return read_with_timer(s_, b, d);
      }
    }
    awaitable<error_code> write_all_until(asio::const_buffer b, Deadline d) override {
      if constexpr (kNativeDeadlines<S>) {
        return s_->write_all_until(b, d);
      } else {
        return write_with_timer(s_, b, d);
      }
    }
    awaitable<error_code> shutdown_write() override { return s_->shutdown_write(); }
    void abort() override { s_->abort(); }
    bool on_peer_end(std::function<void()> fn) override {
      if constexpr (requires(S & s, std::function<void()> f) { s.on_peer_end(std::move(f)); }) {
        s_->on_peer_end(std::move(fn));
        return true;
      } else {
        return false;
      }
    }
    std::shared_ptr<S> s_;
  };
  struct SocketModel final : Concept, std::enable_shared_from_this<SocketModel> {
    explicit SocketModel(tcp::socket s) : socket_(std::move(s)), duplex_(socket_) {}
    awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) override {
      return duplex_.read_some(b);
    }
    awaitable<error_code> write_all(asio::const_buffer b) override { return duplex_.write_all(b); }
    awaitable<std::tuple<error_code, size_t>> read_some_until(asio::mutable_buffer b,
                                                              Deadline d) override {
      return read_with_timer(shared_from_this(), b, d);
    }
    awaitable<error_code> write_all_until(asio::const_buffer b, Deadline d) override {
      return write_with_timer(shared_from_this(), b, d);
    }
    awaitable<error_code> shutdown_write() override { return duplex_.shutdown_write(); }
    void abort() override { duplex_.abort(); }
    bool on_peer_end(std::function<void()>) override { return false; }
    tcp::socket socket_;
    net::TcpDuplex duplex_;
  };

  std::shared_ptr<Concept> impl_;
};

static_assert(net::DuplexStream<Duplex>);

}  // namespace zt::waypoint
