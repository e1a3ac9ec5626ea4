// Loopback servers for tests, each on its own thread and io_context:
// - HttpHelloServer answers every HTTP/1.1 request with "hello from <name>" and the peer
//   address it saw.
// - BulkServer checks byte-exact bulk transfers with half-close: it hashes everything a client
//   sends until EOF, and sends its own seeded stream, half before and half after the client's
//   EOF (so the test proves data still flows after the client shut down writing).
// - EchoServer echoes until EOF, then closes.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/async/asio.h"
#include "common/async/task_group.h"

namespace zt::testing {

// Deterministic byte stream: the same seed gives the same bytes, fast to produce.
class ByteStream {
 public:
  explicit ByteStream(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  void fill(uint8_t* p, size_t n);

 private:
  uint64_t state_;
};

// SHA-256 of a byte stream, incremental.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* p, size_t n);
  std::string hex();

 private:
  void* ctx_;
};

// Hash of `n` bytes of ByteStream(seed).
std::string stream_digest(uint64_t seed, uint64_t n);

class LoopbackServer {
 public:
  virtual ~LoopbackServer();
  tcp::endpoint endpoint() const { return endpoint_; }

 protected:
  explicit LoopbackServer(const tcp::endpoint& at);
  void start();
  virtual awaitable<void> serve(tcp::socket s) = 0;

  asio::io_context io_;
  async::TaskGroup tasks_{io_.get_executor()};
  tcp::acceptor acceptor_;
  tcp::endpoint endpoint_;

 private:
  awaitable<void> accept_loop();
  std::thread thread_;
};

class HttpHelloServer : public LoopbackServer {
 public:
  static std::unique_ptr<HttpHelloServer> start(const tcp::endpoint& at, std::string name);
  std::vector<std::string> peers() const;
  // From now on every answer's body is `body` (e.g. a JWKS for meshd to fetch), not the hello,
  // sent `delay` after the request.
  void set_body(std::string body, std::chrono::milliseconds delay = {});
  int requests() const;

 private:
  HttpHelloServer(const tcp::endpoint& at, std::string name)
      : LoopbackServer(at), name_(std::move(name)) {}
  awaitable<void> serve(tcp::socket s) override;
  std::string name_;
  mutable std::mutex mu_;
  std::vector<std::string> peers_;
  std::optional<std::string> body_;
  std::chrono::milliseconds delay_{0};
  int requests_ = 0;
};

class BulkServer : public LoopbackServer {
 public:
  static std::unique_ptr<BulkServer> start(const tcp::endpoint& at, uint64_t send_bytes,
                                           uint64_t seed);
  // Digests of what each finished connection received, in completion order.
  std::vector<std::string> received_digests() const;
  std::vector<uint64_t> received_sizes() const;

 private:
  BulkServer(const tcp::endpoint& at, uint64_t send_bytes, uint64_t seed)
      : LoopbackServer(at), send_bytes_(send_bytes), seed_(seed) {}
  awaitable<void> serve(tcp::socket s) override;
  uint64_t send_bytes_;
  uint64_t seed_;
  mutable std::mutex mu_;
  std::vector<std::string> digests_;
  std::vector<uint64_t> sizes_;
};

class EchoServer : public LoopbackServer {
 public:
  static std::unique_ptr<EchoServer> start(const tcp::endpoint& at);

 private:
  explicit EchoServer(const tcp::endpoint& at) : LoopbackServer(at) {}
  awaitable<void> serve(tcp::socket s) override;
};

}  // namespace zt::testing
