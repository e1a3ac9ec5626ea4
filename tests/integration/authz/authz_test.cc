// L4 authorization end to end (DESIGN §7). Two real ztunnel processes on loopback, like
// tests/integration/ztunnel: a denied HBONE CONNECT gets 401 and the destination logs the
// policy; an open connection is closed within a second of a matching DENY being written to the
// local config file. Plus inbound plaintext at its seam (serve_plaintext with the worker's
// connection tracker): a STRICT-style DENY refuses it, and a published DENY closes an open one.
// Addresses: 127.0.41.x, a pair per test so the tests can run in parallel.
#include <regex>

#include <gtest/gtest.h>

#include "common/async/task_group.h"
#include "common/async/timeout.h"
#include "common/h2/connection.h"
#include "common/identity/certificate_manager.h"
#include "common/identity/certificate_provider.h"
#include "common/net/address.h"
#include "common/stats/registry.h"
#include "common/tls/context.h"
#include "tests/support/coro.h"
#include "tests/support/hbone_client.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"
#include "tests/support/two_ztunnels.h"
#include "ztunnel/proxy/authz_guard.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/inbound_plaintext.h"
#include "ztunnel/state/local_config.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;

// The two-workload mesh plus `policies` (YAML list items under `policies:`, may be empty) and
// the server workload's selector-policy keys.
std::string mesh_with_policies(const std::string& client_ip, const std::string& server_ip,
                               const std::string& policies,
                               const std::string& server_policy_keys = "[]") {
  // The extra lines continue the server's list item, then start `policies:`.
  return two_workload_mesh_yaml(
      client_ip, server_ip,
      fmt::format("  authorizationPolicies: {}\npolicies:{}", server_policy_keys,
                  policies.empty() ? std::string(" []\n") : "\n" + policies));
}

// A Namespace-scoped DENY of the client's identity on `port`.
std::string deny_client_on(uint16_t port) {
  return fmt::format(R"(- name: deny-client
  namespace: default
  scope: Namespace
  action: Deny
  dryRun: false
  rules:
  - - - principals: [{{Exact: "cluster.local/ns/default/sa/client"}}]
        destinationPorts: [{}]
)",
                     port);
}

class AuthzZtunnels : public TwoZtunnelsTest {
 protected:
  void start(int host, const std::string& policies) {
    auto client_ip = fmt::format("127.0.41.{}", host);
    auto server_ip = fmt::format("127.0.41.{}", host + 1);
    start_pair(client_ip, server_ip, mesh_with_policies(client_ip, server_ip, policies), 1, 2);
  }
};

TEST_F(AuthzZtunnels, DeniedHboneConnectGets401AndTheDestinationLogsThePolicy) {
  ASSERT_NO_FATAL_FAILURE(start(2, deny_client_on(8080)));
  auto denied_app = HttpHelloServer::start(server(8080), "server");
  auto allowed_app = HttpHelloServer::start(server(8081), "server");
  auto client = tls::make_hbone_client_context(pki_.issue(pki_.id("default", "client")));
  ASSERT_TRUE(client) << client.error().describe();
  auto other = tls::make_hbone_client_context(pki_.issue(pki_.id("default", "other")));
  ASSERT_TRUE(other) << other.error().describe();

  asio::io_context io;
  run_coroutine(io, [&]() -> awaitable<void> {
    auto hbone = server(15008);
    auto denied = co_await hbone_request(hbone, **client, "CONNECT", server_ip_ + ":8080");
    EXPECT_TRUE(denied && *denied == 401)
        << (denied ? std::to_string(*denied) : denied.error().describe());
    // Same client, another port; same port, another identity: the DENY does not match.
    auto port_ok = co_await hbone_request(hbone, **client, "CONNECT", server_ip_ + ":8081");
    EXPECT_TRUE(port_ok && *port_ok == 200)
        << (port_ok ? std::to_string(*port_ok) : port_ok.error().describe());
    auto id_ok = co_await hbone_request(hbone, **other, "CONNECT", server_ip_ + ":8080");
    EXPECT_TRUE(id_ok && *id_ok == 200)
        << (id_ok ? std::to_string(*id_ok) : id_ok.error().describe());
  });

  // The destination says which policy denied whom, and its access log line carries the error.
  auto why = b_->daemon().wait_for(std::regex("connection denied by authorization policy.*"));
  ASSERT_TRUE(why) << b_->daemon().output();
  EXPECT_NE(why->find("policy=\"default/deny-client\""), std::string::npos) << *why;
  EXPECT_NE(why->find("spiffe://cluster.local/ns/default/sa/client"), std::string::npos) << *why;
  auto access =
      b_->daemon().wait_for(std::regex("access.*explicitly denied by: default/deny-client.*"));
  ASSERT_TRUE(access) << b_->daemon().output();
  EXPECT_NE(access->find("direction=\"inbound\""), std::string::npos) << *access;
  EXPECT_GE(metric_sum(b_->metrics_text(), "ztunnel_errors_total", {"kind=\"policy_denied\""}), 1);

  // Through the client ztunnel: the app never sees the request, curl fails, A saw the 401.
  auto [rc, out] = run_command(fmt::format("curl -sS -m 10 --socks5 {} http://{}:8080/hello 2>&1",
                                           net::format_endpoint(a_->socks5), server_ip_));
  EXPECT_NE(rc, 0) << out;
  EXPECT_EQ(out.find("hello from server"), std::string::npos) << out;
  EXPECT_TRUE(a_->daemon().wait_for(std::regex(".*status: 401.*"))) << a_->daemon().output();
  auto [rc2, out2] = run_command(fmt::format("curl -sS -m 10 --socks5 {} http://{}:8081/hello",
                                             net::format_endpoint(a_->socks5), server_ip_));
  EXPECT_NE(out2.find("hello from server"), std::string::npos) << out2;
}

// Reads until the connection ends; true when it did (EOF or reset) within `limit`.
awaitable<bool> ends_within(tcp::socket& s, std::chrono::milliseconds limit) {
  std::array<char, 256> buf{};
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) co_return false;
    auto r = co_await async::with_timeout(s.async_read_some(asio::buffer(buf), kTuple), left);
    if (!r) co_return false;
    if (std::get<0>(*r)) co_return true;
  }
}

TEST_F(AuthzZtunnels, OpenConnectionIsClosedWithinASecondOfAMatchingDenyBeingWritten) {
  ASSERT_NO_FATAL_FAILURE(start(4, ""));
  auto echo = EchoServer::start(server(7000));
  auto other_echo = EchoServer::start(server(7001));
  asio::io_context io;
  std::chrono::milliseconds took{-1};
  bool other_still_open = false;
  run_coroutine(io, [&]() -> awaitable<void> {
    auto s = co_await socks5_connect(a_->socks5, server(7000));
    auto t = co_await socks5_connect(a_->socks5, server(7001));
    if (!s || !t) {
      ADD_FAILURE() << "socks5 connect failed";
      co_return;
    }
    // Both relay before the change.
    for (tcp::socket* sock : {&*s, &*t}) {
      std::string ping = "ping", back(4, '\0');
      co_await asio::async_write(*sock, asio::buffer(ping), kTuple);
      auto [ec, n] = co_await asio::async_read(*sock, asio::buffer(back), kTuple);
      EXPECT_FALSE(ec);
      EXPECT_EQ(back, ping);
    }
    write_file(config_, mesh_with_policies(client_ip_, server_ip_, deny_client_on(7000)));
    auto t0 = std::chrono::steady_clock::now();
    bool ended = co_await ends_within(*s, 5s);
    EXPECT_TRUE(ended) << "the denied connection stayed open";
    if (ended) {
      took = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - t0);
    }
    // The connection to the other port is not denied and still relays.
    std::string ping = "pong", back(4, '\0');
    co_await asio::async_write(*t, asio::buffer(ping), kTuple);
    auto r = co_await async::with_timeout(asio::async_read(*t, asio::buffer(back), kTuple), 5s);
    other_still_open = r && !std::get<0>(*r) && back == ping;
  });
  EXPECT_GE(took.count(), 0);
  EXPECT_LT(took.count(), 1000) << "closed after " << took.count() << " ms";
  EXPECT_TRUE(other_still_open);
  auto why = b_->daemon().wait_for(std::regex("connection closed due to policy change.*"));
  ASSERT_TRUE(why) << b_->daemon().output();
  EXPECT_NE(why->find("policy=\"default/deny-client\""), std::string::npos) << *why;
  EXPECT_NE(why->find(":7000"), std::string::npos) << *why;
  // A new connection to the denied port is now refused.
  auto [rc, out] = run_command(fmt::format("curl -sS -m 10 --socks5 {} http://{}:7000/ 2>&1",
                                           net::format_endpoint(a_->socks5), server_ip_));
  EXPECT_NE(rc, 0) << out;
}

// Inbound plaintext at its seam, as the worker runs it: serve_plaintext with a tracker
// subscribed to the state store.
class PlaintextAuthz : public ::testing::Test {
 protected:
  static constexpr const char* kServerIp = "127.0.41.7";
  // STRICT as istiod converts it: deny anything without a principal, selected by the server.
  static constexpr const char* kStrict = R"(- name: strict
  namespace: default
  scope: WorkloadSelector
  action: Deny
  dryRun: false
  rules:
  - - - notPrincipals: [Presence]
)";

  void SetUp() override {
    publish("");
    ctx_ = std::make_unique<proxy::ProxyContext>(
        proxy::ProxyContext{.settings = {},
                            .local = {.ns = "default",
                                      .name = "server",
                                      .identity = pki_.id("default", "server"),
                                      .ips = {asio::ip::make_address(kServerIp)}},
                            .state = store_,
                            .certs = certs_,
                            .metrics = metrics_});
    tracker_ = proxy::ConnectionTracker::create(io_.get_executor(), store_);
    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::make_address(kServerIp), 0});
    acceptor_.listen();
  }
  void TearDown() override { tracker_->stop(); }

  void publish(const std::string& policies) {
    auto state = state::parse_local_config(
        mesh_with_policies("127.0.41.6", kServerIp, policies, "[default/strict]"));
    ASSERT_TRUE(state) << state.error().describe();
    store_.publish(*state);
  }

  awaitable<tcp::socket> captured_connection(tcp::endpoint original_dst) {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket client(ex);
    co_await client.async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    auto accepted = co_await acceptor_.async_accept(asio::use_awaitable);
    async::spawn_logged(
        ex, proxy::serve_plaintext(std::move(accepted), original_dst, *ctx_, tracker_.get()),
        "plaintext");
    co_return client;
  }

  TestPki pki_;
  stats::Registry registry_;
  proxy::ProxyMetrics metrics_{registry_};
  identity::CertificateManager certs_{std::make_shared<identity::BuiltinCaProvider>(
      *identity::CertificateAuthority::generate("cluster.local"))};
  state::StateStore store_;
  std::unique_ptr<proxy::ProxyContext> ctx_;
  asio::io_context io_;
  std::shared_ptr<proxy::ConnectionTracker> tracker_;
  tcp::acceptor acceptor_{io_};
};

awaitable<bool> echoes(tcp::socket& s) {
  std::string ping = "ping", back(4, '\0');
  co_await asio::async_write(s, asio::buffer(ping), kTuple);
  auto r = co_await async::with_timeout(asio::async_read(s, asio::buffer(back), kTuple), 5s);
  co_return r && !std::get<0>(*r) && back == ping;
}

TEST_F(PlaintextAuthz, StrictStyleDenyClosesPlaintextAndAPublishedDenyClosesAnOpenOne) {
  auto echo = EchoServer::start({asio::ip::make_address(kServerIp), 7000});
  run_coroutine(io_, [&]() -> awaitable<void> {
    // No policy: relayed, and tracked while open.
    auto open = co_await captured_connection(echo->endpoint());
    EXPECT_TRUE(co_await echoes(open));
    EXPECT_EQ(tracker_->size(), 1u);

    // STRICT published: the open connection is closed (the re-check is posted to this
    // executor), and a new one is refused.
    publish(kStrict);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(co_await ends_within(open, 1s)) << "open plaintext connection not closed";
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    EXPECT_EQ(tracker_->size(), 0u);
    auto refused = co_await captured_connection(echo->endpoint());
    EXPECT_TRUE(co_await ends_within(refused, 5s)) << "plaintext allowed under STRICT";

    // Back to no policy: allowed again.
    publish("");
    auto again = co_await captured_connection(echo->endpoint());
    EXPECT_TRUE(co_await echoes(again));
  });
  auto text = registry_.render_prometheus();
  EXPECT_EQ(metric_sum(text, "ztunnel_errors_total",
                       {"component=\"inbound_plaintext\"", "kind=\"policy_denied\""}),
            1)
      << text;
  EXPECT_EQ(metric_sum(text, "ztunnel_errors_total",
                       {"component=\"inbound_plaintext\"", "kind=\"policy_revoked\""}),
            1)
      << text;
}

}  // namespace
}  // namespace zt::testing
