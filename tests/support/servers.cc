#include "tests/support/servers.h"

#include <openssl/evp.h>

#include "common/async/timeout.h"
#include "common/net/address.h"

namespace zt::testing {

void ByteStream::fill(uint8_t* p, size_t n) {
  for (size_t i = 0; i < n;) {
    // xorshift64*
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    uint64_t v = state_ * 2685821657736338717ull;
    for (int b = 0; b < 8 && i < n; ++b, ++i) p[i] = static_cast<uint8_t>(v >> (b * 8));
  }
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}
Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }
void Sha256::update(const void* p, size_t n) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), p, n);
}
std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md, &len);
  std::string out;
  for (unsigned i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

std::string stream_digest(uint64_t seed, uint64_t n) {
  ByteStream bs(seed);
  Sha256 h;
  std::vector<uint8_t> buf(64 * 1024);
  while (n > 0) {
    size_t k = std::min<uint64_t>(n, buf.size());
    bs.fill(buf.data(), k);
    h.update(buf.data(), k);
    n -= k;
  }
  return h.hex();
}

LoopbackServer::LoopbackServer(const tcp::endpoint& at) : acceptor_(io_) {
  acceptor_.open(at.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(at);
  acceptor_.listen();
  endpoint_ = acceptor_.local_endpoint();
}

LoopbackServer::~LoopbackServer() {
  asio::post(io_, [this] {
    error_code ec;
    acceptor_.close(ec);
    tasks_.cancel_all();
  });
  if (thread_.joinable()) thread_.join();
}

void LoopbackServer::start() {
  tasks_.spawn(accept_loop(), "test-server-accept");
  thread_ = std::thread([this] { io_.run(); });
}

awaitable<void> LoopbackServer::accept_loop() {
  for (;;) {
    auto [ec, s] = co_await acceptor_.async_accept(kTuple);
    if (ec) co_return;
    tasks_.spawn(serve(std::move(s)), "test-server-connection");
  }
}

std::unique_ptr<HttpHelloServer> HttpHelloServer::start(const tcp::endpoint& at, std::string name) {
  std::unique_ptr<HttpHelloServer> s(new HttpHelloServer(at, std::move(name)));
  s->LoopbackServer::start();
  return s;
}

std::vector<std::string> HttpHelloServer::peers() const {
  std::lock_guard lock(mu_);
  return peers_;
}

awaitable<void> HttpHelloServer::serve(tcp::socket s) {
  error_code ec;
  auto peer = net::format_endpoint(s.remote_endpoint(ec));
  {
    std::lock_guard lock(mu_);
    peers_.push_back(peer);
  }
  std::string buf;
  for (;;) {
    // One request at a time; bodies are not expected.
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      char tmp[4096];
      auto [rec, n] = co_await s.async_read_some(asio::buffer(tmp), kTuple);
      if (rec) co_return;
      buf.append(tmp, n);
      if (buf.size() > 64 * 1024) co_return;
    }
    buf.erase(0, end + 4);
    std::string body = fmt::format("hello from {}; you are {}\n", name_, peer);
    std::chrono::milliseconds delay{0};
    {
      std::lock_guard lock(mu_);
      ++requests_;
      if (body_) body = *body_;
      delay = delay_;
    }
    if (delay.count() > 0) {
      asio::steady_timer t(s.get_executor(), delay);
      co_await t.async_wait(kTuple);
    }
    std::string resp =
        fmt::format("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
                    body.size(), body);
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(resp), kTuple);
    if (wec) co_return;
  }
}

void HttpHelloServer::set_body(std::string body, std::chrono::milliseconds delay) {
  std::lock_guard lock(mu_);
  body_ = std::move(body);
  delay_ = delay;
}

int HttpHelloServer::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

std::unique_ptr<BulkServer> BulkServer::start(const tcp::endpoint& at, uint64_t send_bytes,
                                              uint64_t seed) {
  std::unique_ptr<BulkServer> s(new BulkServer(at, send_bytes, seed));
  s->LoopbackServer::start();
  return s;
}

std::vector<std::string> BulkServer::received_digests() const {
  std::lock_guard lock(mu_);
  return digests_;
}

std::vector<uint64_t> BulkServer::received_sizes() const {
  std::lock_guard lock(mu_);
  return sizes_;
}

awaitable<void> BulkServer::serve(tcp::socket s) {
  using namespace asio::experimental::awaitable_operators;
  auto ex = co_await asio::this_coro::executor;
  async::Event client_done(ex);
  bool eof = false;
  Sha256 hash;
  uint64_t received = 0;

  auto reader = [&]() -> awaitable<void> {
    std::vector<uint8_t> buf(256 * 1024);
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
      hash.update(buf.data(), n);
      received += n;
      if (ec) break;
    }
    eof = true;
    client_done.notify();
  };
  auto writer = [&]() -> awaitable<void> {
    ByteStream bs(seed_);
    std::vector<uint8_t> buf(256 * 1024);
    uint64_t left = send_bytes_;
    uint64_t half = send_bytes_ / 2;
    bool waited = false;
    while (left > 0) {
      if (!waited && send_bytes_ - left >= half) {
        // Send the second half only after the client's FIN.
        while (!eof) {
          if (!co_await client_done.wait()) co_return;
        }
        waited = true;
      }
      size_t k = std::min<uint64_t>(left, buf.size());
      if (!waited) k = std::min<uint64_t>(k, half - (send_bytes_ - left));
      bs.fill(buf.data(), k);
      auto [ec, n] = co_await asio::async_write(s, asio::buffer(buf.data(), k), kTuple);
      if (ec) co_return;
      left -= k;
    }
    while (!eof) {
      if (!co_await client_done.wait()) co_return;
    }
    error_code sec;
    s.shutdown(tcp::socket::shutdown_send, sec);
  };
  co_await (reader() && writer());
  std::lock_guard lock(mu_);
  digests_.push_back(hash.hex());
  sizes_.push_back(received);
}

std::unique_ptr<EchoServer> EchoServer::start(const tcp::endpoint& at) {
  std::unique_ptr<EchoServer> s(new EchoServer(at));
  s->LoopbackServer::start();
  return s;
}

awaitable<void> EchoServer::serve(tcp::socket s) {
  std::vector<uint8_t> buf(16 * 1024);
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
    if (n > 0) {
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer(buf.data(), n), kTuple);
      if (wec) co_return;
    }
    if (ec) break;
  }
  error_code sec;
  s.shutdown(tcp::socket::shutdown_send, sec);
}

}  // namespace zt::testing
