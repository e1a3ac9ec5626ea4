// A byte stream in both directions, whatever carries it: an HBONE CONNECT stream (h2::Stream),
// a TCP socket, or anything else that satisfies net::DuplexStream. The waypoint's codecs and
// proxy take a Duplex so the same code serves HBONE in production and plain sockets in tests.
//
// A Duplex shares ownership of what it wraps (copies are cheap handles to the same stream).
#pragma once

#include <memory>
#include <tuple>
#include <utility>

#include "common/async/asio.h"
#include "common/net/copy.h"

namespace zt::waypoint {

class Duplex {
 public:
  Duplex() = default;

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
  awaitable<error_code> shutdown_write() { return impl_->shutdown_write(); }
  void abort() { impl_->abort(); }

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) = 0;
    virtual awaitable<error_code> write_all(asio::const_buffer b) = 0;
    virtual awaitable<error_code> shutdown_write() = 0;
    virtual void abort() = 0;
  };
  template <class S>
  struct Model final : Concept {
    explicit Model(std::shared_ptr<S> s) : s_(std::move(s)) {}
    awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) override {
      return s_->read_some(b);
    }
    awaitable<error_code> write_all(asio::const_buffer b) override { return s_->write_all(b); }
    awaitable<error_code> shutdown_write() override { return s_->shutdown_write(); }
    void abort() override { s_->abort(); }
    std::shared_ptr<S> s_;
  };
  struct SocketModel final : Concept {
    explicit SocketModel(tcp::socket s) : socket_(std::move(s)), duplex_(socket_) {}
    awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer b) override {
      return duplex_.read_some(b);
    }
    awaitable<error_code> write_all(asio::const_buffer b) override {
      return duplex_.write_all(b);
    }
    awaitable<error_code> shutdown_write() override { return duplex_.shutdown_write(); }
    void abort() override { duplex_.abort(); }
    tcp::socket socket_;
    net::TcpDuplex duplex_;
  };

  std::shared_ptr<Concept> impl_;
};

static_assert(net::DuplexStream<Duplex>);

}  // namespace zt::waypoint
