// Inbound plaintext (15006) at its seam: the handler is given an accepted socket and the
// original destination (what eBPF capture will preserve as the socket's local address) and must
// forward to the local workload's app, byte-exact with half-close, and refuse loops and
// destinations that are not the local workload.
#include <gtest/gtest.h>

#include "common/identity/certificate_manager.h"
#include "common/identity/certificate_provider.h"
#include "common/stats/registry.h"
#include "tests/support/coro.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/inbound_plaintext.h"
#include "ztunnel/state/local_config.h"

namespace zt::proxy {
namespace {

using namespace std::chrono_literals;

class InboundPlaintext : public ::testing::Test {
 protected:
  void SetUp() override {
    auto state = state::parse_local_config(testing::two_workload_mesh_yaml("127.0.35.2", "127.0.35.3"));
    ASSERT_TRUE(state) << state.error().describe();
    store_.publish(*state);
    ctx_ = std::make_unique<ProxyContext>(ProxyContext{
        .settings = {},
        .local = {.ns = "default",
                  .name = "server",
                  .identity = pki_.id("default", "server"),
                  .ips = {asio::ip::make_address("127.0.35.3")}},
        .state = store_,
        .certs = certs_,
        .metrics = metrics_});
    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.35.3"), 0});
    acceptor_.listen();
  }

  // Connects a client to the test's listener and hands the accepted side to serve_plaintext
  // with `original_dst`; returns the client socket.
  awaitable<tcp::socket> captured_connection(tcp::endpoint original_dst) {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket client(ex);
    co_await client.async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    auto accepted = co_await acceptor_.async_accept(asio::use_awaitable);
    async::spawn_logged(ex, serve_plaintext(std::move(accepted), original_dst, *ctx_), "plaintext");
    co_return client;
  }

  testing::TestPki pki_;
  stats::Registry registry_;
  ProxyMetrics metrics_{registry_};
  identity::CertificateManager certs_{std::make_shared<identity::BuiltinCaProvider>(
      *identity::CertificateAuthority::generate("cluster.local"))};
  state::StateStore store_;
  std::unique_ptr<ProxyContext> ctx_;
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
};

TEST_F(InboundPlaintext, ForwardsToTheAppAtTheOriginalDestinationWithHalfClose) {
  constexpr uint64_t kBytes = 8 << 20;
  auto bulk = testing::BulkServer::start({asio::ip::make_address("127.0.35.3"), 9000}, kBytes, 5);
  std::string digest;
  uint64_t received = 0;
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto s = co_await captured_connection(bulk->endpoint());
    auto writer = [&]() -> awaitable<void> {
      testing::ByteStream bs(6);
      std::vector<uint8_t> buf(64 * 1024);
      for (uint64_t left = kBytes; left > 0;) {
        size_t k = std::min<uint64_t>(left, buf.size());
        bs.fill(buf.data(), k);
        co_await asio::async_write(s, asio::buffer(buf.data(), k), kTuple);
        left -= k;
      }
      s.shutdown(tcp::socket::shutdown_send);
    };
    auto reader = [&]() -> awaitable<void> {
      testing::Sha256 h;
      std::vector<uint8_t> buf(64 * 1024);
      for (;;) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
        h.update(buf.data(), n);
        received += n;
        if (ec) break;
      }
      digest = h.hex();
    };
    co_await (writer() && reader());
  });
  EXPECT_EQ(received, kBytes);
  EXPECT_EQ(digest, testing::stream_digest(5, kBytes));
  ASSERT_EQ(bulk->received_digests().size(), 1u);
  EXPECT_EQ(bulk->received_digests()[0], testing::stream_digest(6, kBytes));
  auto text = registry_.render_prometheus();
  EXPECT_EQ(testing::metric_sum(text, "istio_tcp_connections_opened_total",
                                {"reporter=\"destination\"", "connection_security_policy=\"unknown\""}),
            1);
}

// The client sees its connection closed without a byte relayed.
awaitable<bool> closed_without_data(tcp::socket& s) {
  std::array<char, 16> buf{};
  auto r = co_await async::with_timeout(s.async_read_some(asio::buffer(buf), kTuple), 5s);
  co_return r && std::get<0>(*r) && std::get<1>(*r) == 0;
}

TEST_F(InboundPlaintext, RefusesCallsToTheProxysOwnPortsAndToOtherAddresses) {
  auto echo = testing::EchoServer::start({asio::ip::make_address("127.0.35.9"), 0});
  testing::run_coroutine(io_, [&]() -> awaitable<void> {
    for (uint16_t port : {15001, 15006, 15008, 15080}) {
      auto s = co_await captured_connection({asio::ip::make_address("127.0.35.3"), port});
      EXPECT_TRUE(co_await closed_without_data(s)) << "port " << port << " was not refused";
    }
    // An address that is not the local workload's, even with a live server behind it.
    auto s = co_await captured_connection(echo->endpoint());
    EXPECT_TRUE(co_await closed_without_data(s)) << "a foreign destination was relayed";
  });
  auto text = registry_.render_prometheus();
  EXPECT_EQ(testing::metric_sum(text, "ztunnel_errors_total", {"kind=\"self_call\""}), 4);
  EXPECT_EQ(testing::metric_sum(text, "ztunnel_errors_total", {"kind=\"unknown_target\""}), 1);
}

}  // namespace
}  // namespace zt::proxy
