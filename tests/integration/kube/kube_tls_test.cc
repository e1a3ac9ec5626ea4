// KubeApiSource over https: a TLS front (the test's own, generated certificate with IP SAN
// 127.0.0.1) before FakeApiServer. The source syncs when the configured CA verifies the server,
// and refuses a server its CA does not vouch for.
#include <sys/wait.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <boost/asio/ssl.hpp>
#include <gtest/gtest.h>

#include "meshd/kube/kube_source.h"
#include "tests/integration/kube/fake_api_server.h"

namespace zt::meshd::kube {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A self-signed P-256 certificate for 127.0.0.1, made by the openssl tool for this run.
void make_cert(const fs::path& cert, const fs::path& key) {
  auto cmd = fmt::format(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "
      "/CN=kube-apiserver -addext subjectAltName=IP:127.0.0.1 -days 1 -keyout {} -out {} "
      ">/dev/null 2>&1",
      key.string(), cert.string());
  int rc = std::system(cmd.c_str());
  if (rc != 0 || !fs::exists(cert)) throw std::runtime_error("openssl could not make a cert");
}

// Terminates TLS on 127.0.0.1:port() and pipes the bytes to a plain backend port.
class TlsFront {
 public:
  TlsFront(const fs::path& cert, const fs::path& key, uint16_t backend)
      : ctx_(asio::ssl::context::tls_server), backend_(backend) {
    ctx_.use_certificate_chain_file(cert.string());
    ctx_.use_private_key_file(key.string(), asio::ssl::context::pem);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TlsFront() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return port_; }
  int handshakes_failed() const { return failed_; }

 private:
  using Tls = asio::ssl::stream<tcp::socket>;

  awaitable<void> accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      asio::co_spawn(io_, serve(std::make_shared<Tls>(std::move(socket), ctx_)), asio::detached);
    }
  }
  static awaitable<void> pipe_tls_to_tcp(std::shared_ptr<Tls> tls,
                                         std::shared_ptr<tcp::socket> out) {
    std::array<char, 8192> buf;
    for (;;) {
      auto [ec, n] = co_await tls->async_read_some(asio::buffer(buf), kTuple);
      if (ec) break;
      auto [wec, wn] = co_await asio::async_write(*out, asio::buffer(buf.data(), n), kTuple);
      if (wec) break;
    }
    error_code ignored;
    out->shutdown(tcp::socket::shutdown_send, ignored);
  }
  static awaitable<void> pipe_tcp_to_tls(std::shared_ptr<tcp::socket> in,
                                         std::shared_ptr<Tls> tls) {
    std::array<char, 8192> buf;
    for (;;) {
      auto [ec, n] = co_await in->async_read_some(asio::buffer(buf), kTuple);
      if (ec) break;
      auto [wec, wn] = co_await asio::async_write(*tls, asio::buffer(buf.data(), n), kTuple);
      if (wec) break;
    }
    error_code ignored;
    tls->next_layer().close(ignored);
  }
  awaitable<void> serve(std::shared_ptr<Tls> tls) {
    auto [hec] = co_await tls->async_handshake(asio::ssl::stream_base::server, kTuple);
    if (hec) {
      ++failed_;
      co_return;
    }
    auto backend = std::make_shared<tcp::socket>(io_);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), backend_);
    auto [cec] = co_await backend->async_connect(ep, kTuple);
    if (cec) co_return;
    asio::co_spawn(io_, pipe_tls_to_tcp(tls, backend), asio::detached);
    asio::co_spawn(io_, pipe_tcp_to_tls(backend, tls), asio::detached);
  }

  asio::io_context io_;
  asio::ssl::context ctx_;
  tcp::acceptor acceptor_{io_};
  uint16_t backend_;
  uint16_t port_ = 0;
  std::atomic<int> failed_{0};
  std::thread thread_;
};

class KubeTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("kube-tls-{:x}", rd());
    fs::create_directories(dir_);
    make_cert(dir_ / "server.crt", dir_ / "server.key");
    make_cert(dir_ / "other.crt", dir_ / "other.key");
    std::ofstream(dir_ / "token") << "tls-token\n";
    server_.put_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
    front_ = std::make_unique<TlsFront>(dir_ / "server.crt", dir_ / "server.key", server_.port());
  }
  void TearDown() override {
    if (source_) {
      asio::post(io_, [this] { source_->stop(); });
      io_.stop();
    }
    if (thread_.joinable()) thread_.join();
    source_.reset();
    front_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void start(const std::string& ca_file) {
    KubeConfig c;
    c.server = *parse_server_url(fmt::format("https://127.0.0.1:{}", front_->port()));
    c.token_file = (dir_ / "token").string();
    c.ca_file = ca_file;
    c.backoff_initial = 20ms;
    c.backoff_max = 100ms;
    source_ = std::make_unique<KubeApiSource>(io_.get_executor(), c);
    asio::post(io_, [this] {
      EXPECT_TRUE(source_->start([this](const manifest::LoadResult& u) {
        std::lock_guard lock(mu_);
        latest_ = u.objects;
        cv_.notify_all();
      }));
    });
    thread_ = std::thread([this] { io_.run(); });
  }

  fs::path dir_;
  zt::testing::FakeApiServer server_;
  std::unique_ptr<TlsFront> front_;
  asio::io_context io_;
  std::unique_ptr<KubeApiSource> source_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const manifest::ObjectSet> latest_;
};

TEST_F(KubeTlsTest, SyncsOverTlsWhenTheCaVerifiesTheServer) {
  start((dir_ / "server.crt").string());
  std::unique_lock lock(mu_);
  ASSERT_TRUE(cv_.wait_for(lock, 10s, [&] { return latest_ != nullptr; }));
  EXPECT_EQ(latest_->namespaces.count("apps"), 1u);
  for (const auto& r : server_.requests()) EXPECT_EQ(r.authorization, "Bearer tls-token");
}

TEST_F(KubeTlsTest, RefusesAServerItsCaDoesNotVouchFor) {
  start((dir_ / "other.crt").string());
  // Handshakes fail (the client rejects the chain); nothing reaches the API server, nothing is
  // published, and the source keeps retrying.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (front_->handshakes_failed() < 10 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(front_->handshakes_failed(), 10);
  EXPECT_TRUE(server_.requests().empty());
  std::lock_guard lock(mu_);
  EXPECT_EQ(latest_, nullptr);
}

}  // namespace
}  // namespace zt::meshd::kube
