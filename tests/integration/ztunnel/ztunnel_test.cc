// End to end on loopback: two real ztunnel processes (dedicated mode), a client using ztunnel
// A's SOCKS5 listener, servers behind ztunnel B, HBONE (mTLS + HTTP/2 CONNECT) between them.
// Each test uses its own 127.0.<n>.x addresses so tests can run in parallel.
#include <sys/resource.h>

#include <regex>

#include <gtest/gtest.h>

#include "common/async/task_group.h"
#include "common/h2/connection.h"
#include "common/net/address.h"
#include "tests/support/coro.h"
#include "tests/support/hbone_client.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"
#include "tests/support/two_ztunnels.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;

class TwoZtunnels : public TwoZtunnelsTest {
 protected:
  // Starts ztunnel A (client) and B (server) on 127.0.<subnet>.2 and .3.
  void start(int subnet, int workers = 2) {
    auto client_ip = fmt::format("127.0.{}.2", subnet);
    auto server_ip = fmt::format("127.0.{}.3", subnet);
    start_pair(client_ip, server_ip, two_workload_mesh_yaml(client_ip, server_ip), workers,
               workers);
  }
};

TEST_F(TwoZtunnels, CurlThroughSocks5ReachesServerAndServerSideLogsClientIdentity) {
  ASSERT_NO_FATAL_FAILURE(start(21));
  auto http = HttpHelloServer::start(server(8080), "server");
  auto [rc, out] = run_command(fmt::format("curl -sS -m 10 --socks5 {} http://{}:8080/hello",
                                           net::format_endpoint(a_->socks5), server_ip_));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("hello from server"), std::string::npos) << out;

  // B saw the client's SPIFFE identity, proven by mTLS, on the inbound HBONE stream.
  auto inbound =
      b_->daemon().wait_for(std::regex("access connection complete.*direction=\"inbound\".*"));
  ASSERT_TRUE(inbound) << b_->daemon().output();
  EXPECT_NE(inbound->find("src.identity=\"spiffe://cluster.local/ns/default/sa/client\""),
            std::string::npos)
      << *inbound;
  // A went over HBONE: TCP to the pod's 15008, CONNECT authority = the original destination.
  auto outbound =
      a_->daemon().wait_for(std::regex("access connection complete.*direction=\"outbound\".*"));
  ASSERT_TRUE(outbound) << a_->daemon().output();
  EXPECT_NE(outbound->find(fmt::format("dst.addr=\"{}:15008\"", server_ip_)), std::string::npos);
  EXPECT_NE(outbound->find(fmt::format("dst.hbone_addr=\"{}:8080\"", server_ip_)),
            std::string::npos);
  EXPECT_NE(outbound->find("dst.identity=\"spiffe://cluster.local/ns/default/sa/server\""),
            std::string::npos);
}

TEST_F(TwoZtunnels, HboneListenerNegotiatesOnlyTls13WithAesGcmAndH2) {
  ASSERT_NO_FATAL_FAILURE(start(22, 1));
  auto cert = pki_.issue(pki_.id("default", "client"));
  write_file(dir_.path() / "client.pem", cert.chain_pem());
  write_file(dir_.path() / "client.key", cert.key_pem());
  write_file(dir_.path() / "root.pem", pki_.root_pem());
  auto s_client = [&](const std::string& extra) {
    return run_command(fmt::format(
        "openssl s_client -connect {}:15008 -cert {} -key {} -CAfile {} -alpn h2 -brief {} "
        "</dev/null 2>&1",
        server_ip_, (dir_.path() / "client.pem").string(), (dir_.path() / "client.key").string(),
        (dir_.path() / "root.pem").string(), extra));
  };
  auto [rc13, out13] = s_client("-tls1_3");
  EXPECT_NE(out13.find("Protocol version: TLSv1.3"), std::string::npos) << out13;
  EXPECT_TRUE(out13.find("Ciphersuite: TLS_AES_256_GCM_SHA384") != std::string::npos ||
              out13.find("Ciphersuite: TLS_AES_128_GCM_SHA256") != std::string::npos)
      << out13;
  auto [rca, full] = run_command(fmt::format(
      "openssl s_client -connect {}:15008 -cert {} -key {} -CAfile {} -alpn h2 </dev/null 2>&1",
      server_ip_, (dir_.path() / "client.pem").string(), (dir_.path() / "client.key").string(),
      (dir_.path() / "root.pem").string()));
  EXPECT_NE(full.find("ALPN protocol: h2"), std::string::npos) << full;
  // The peer's certificate is the server workload's SPIFFE identity.
  auto [rcx, x509] = run_command(fmt::format(
      "openssl s_client -connect {}:15008 -cert {} -key {} -CAfile {} -alpn h2 -showcerts "
      "</dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName",
      server_ip_, (dir_.path() / "client.pem").string(), (dir_.path() / "client.key").string(),
      (dir_.path() / "root.pem").string()));
  EXPECT_NE(x509.find("URI:spiffe://cluster.local/ns/default/sa/server"), std::string::npos)
      << x509;

  auto [rc12, out12] = s_client("-tls1_2");
  EXPECT_EQ(out12.find("Protocol version: TLSv1.2"), std::string::npos) << out12;
  auto [rcc, outc] = s_client("-tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256");
  EXPECT_EQ(outc.find("Protocol version"), std::string::npos) << outc;
}

// Drives `bytes` each way through ztunnel A's SOCKS5 to a BulkServer; the client half-closes
// and must still receive the server's second half, sent only after the client's FIN.
TEST_F(TwoZtunnels, TwoHundredMegabytesEachWayAreByteExactWithHalfClose) {
  ASSERT_NO_FATAL_FAILURE(start(23));
  constexpr uint64_t kBytes = 200ull << 20;
  auto bulk = BulkServer::start(server(9000), kBytes, /*seed=*/2);
  asio::io_context io;
  std::string received_digest;
  uint64_t received = 0;
  run_coroutine(io, [&]() -> awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto sock = co_await socks5_connect(a_->socks5, server(9000));
    if (!sock) {
      ADD_FAILURE() << sock.error().describe();
      co_return;
    }
    tcp::socket& s = *sock;
    Sha256 hash;
    auto writer = [&]() -> awaitable<void> {
      ByteStream bs(1);
      std::vector<uint8_t> buf(256 * 1024);
      uint64_t left = kBytes;
      while (left > 0) {
        size_t k = std::min<uint64_t>(left, buf.size());
        bs.fill(buf.data(), k);
        auto [ec, n] = co_await asio::async_write(s, asio::buffer(buf.data(), k), kTuple);
        if (ec) {
          ADD_FAILURE() << "write: " << ec.message();
          co_return;
        }
        left -= k;
      }
      s.shutdown(tcp::socket::shutdown_send);
    };
    auto reader = [&]() -> awaitable<void> {
      std::vector<uint8_t> buf(256 * 1024);
      for (;;) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
        hash.update(buf.data(), n);
        received += n;
        if (ec) {
          EXPECT_EQ(ec, asio::error::eof) << ec.message();
          co_return;
        }
      }
    };
    co_await (writer() && reader());
    received_digest = hash.hex();
  });
  EXPECT_EQ(received, kBytes);
  EXPECT_EQ(received_digest, stream_digest(2, kBytes));
  // The server got every byte the client sent, in order.
  auto digests = bulk->received_digests();
  ASSERT_EQ(digests.size(), 1u);
  EXPECT_EQ(bulk->received_sizes()[0], kBytes);
  EXPECT_EQ(digests[0], stream_digest(1, kBytes));
}

// One client of the concurrency test: SOCKS5, 1 KiB echoed, then held open until all are open.
awaitable<void> echo_client(int i, int total, tcp::endpoint proxy, tcp::endpoint dst, int& exact,
                            int& established, async::Event& all_open) {
  auto sock = co_await socks5_connect(proxy, dst);
  if (!sock) co_return;
  std::vector<uint8_t> out(1024), in(1024);
  ByteStream(1000 + i).fill(out.data(), out.size());
  auto [wec, wn] = co_await asio::async_write(*sock, asio::buffer(out), kTuple);
  auto [rec, rn] = co_await asio::async_read(*sock, asio::buffer(in), kTuple);
  if (!wec && !rec && in == out) ++exact;
  if (++established == total) all_open.notify();
  while (established < total) {
    if (!co_await all_open.wait()) break;
  }
}

TEST_F(TwoZtunnels, ThousandConcurrentConnectionsAreByteExactAndThePoolCapsStreamsPerConnection) {
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);
  ASSERT_GE(nofile.rlim_cur, 4200u) << "needs 4200 file descriptors";

  ASSERT_NO_FATAL_FAILURE(start(24));
  auto echo = EchoServer::start(server(7000));
  constexpr int kConnections = 1000;
  asio::io_context io;
  int exact = 0;
  int established = 0;
  async::Event all_open(io.get_executor());
  run_coroutine(io, [&]() -> awaitable<void> {
    async::TaskGroup group(co_await asio::this_coro::executor);
    for (int i = 0; i < kConnections; ++i) {
      group.spawn(
          echo_client(i, kConnections, a_->socks5, server(7000), exact, established, all_open),
          "client");
    }
    co_await group.wait_empty(100s);
  });
  EXPECT_EQ(exact, kConnections);
  auto metrics = a_->metrics_text();
  double hbone_conns =
      metric_sum(metrics, "ztunnel_hbone_connections_opened_total", {"direction=\"outbound\""});
  double streams =
      metric_sum(metrics, "ztunnel_hbone_streams_opened_total", {"direction=\"outbound\""});
  EXPECT_EQ(streams, kConnections);
  // At most 100 streams per connection: 1000 concurrent streams need at least 10 connections,
  // and pooling means far fewer than one per stream.
  EXPECT_GE(hbone_conns, 10) << metrics;
  EXPECT_LE(hbone_conns, 40) << metrics;
}

TEST_F(TwoZtunnels, RefusesUntrustedClientsAndKeepsServingGoodOnes) {
  ASSERT_NO_FATAL_FAILURE(start(25, 1));
  auto http = HttpHelloServer::start(server(8080), "server");
  auto hbone = server(15008);
  auto authority = fmt::format("{}:8080", server_ip_);
  asio::io_context io;

  auto client_ctx = [](const tls::WorkloadCertificate& cert) {
    auto ctx = tls::make_hbone_client_context(cert);
    EXPECT_TRUE(ctx) << ctx.error().describe();
    return *ctx;
  };
  TestPki other_domain("other.domain");
  TestPki unknown_ca("cluster.local");
  auto now = std::chrono::system_clock::now();
  struct Case {
    std::string name;
    std::shared_ptr<asio::ssl::context> ctx;
  };
  // The client must still trust B's CA, so each bad certificate is paired with the real roots.
  auto with_roots = [&](tls::WorkloadCertificate cert) {
    cert.roots.clear();
    for (auto& c : pki_.issue(pki_.id("x")).roots) cert.roots.push_back(std::move(c));
    return cert;
  };
  std::vector<Case> bad = {
      {"other trust domain (other CA)",
       client_ctx(with_roots(other_domain.issue(other_domain.id("default", "client"))))},
      {"other trust domain (same CA)", client_ctx(pki_.issue(*tls::SpiffeId::parse(
                                           "spiffe://clusterset.local/ns/default/sa/client")))},
      {"expired", client_ctx(pki_.issue(pki_.id("default", "client"), now - 2h, now - 1h))},
      {"unknown CA", client_ctx(with_roots(unknown_ca.issue(unknown_ca.id("default", "client"))))},
  };
  auto good = client_ctx(pki_.issue(pki_.id("default", "client")));

  for (auto& c : bad) {
    run_coroutine(io, [&]() -> awaitable<void> {
      auto r = co_await hbone_request(hbone, *c.ctx, "CONNECT", authority);
      EXPECT_FALSE(r && *r == 200) << c.name << " was accepted";
      // Still serving: a good client gets through right after.
      auto ok = co_await hbone_request(hbone, *good, "CONNECT", authority);
      EXPECT_TRUE(ok && *ok == 200)
          << "after " << c.name << ": " << (ok ? std::to_string(*ok) : ok.error().describe());
    });
  }

  // Plaintext HTTP/2 on 15008: no TLS, no answer.
  run_coroutine(io, [&]() -> awaitable<void> {
    tcp::socket s(co_await asio::this_coro::executor);
    auto [cec] = co_await s.async_connect(hbone, kTuple);
    EXPECT_FALSE(cec);
    std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    co_await asio::async_write(s, asio::buffer(preface), kTuple);
    std::array<char, 512> buf{};
    auto r = co_await async::with_timeout(s.async_read_some(asio::buffer(buf), kTuple), 15s);
    EXPECT_TRUE(r.has_value()) << "plaintext connection left open";
    if (!r) co_return;
    auto [ec, n] = *r;
    // Whatever comes back is a TLS alert at most, never HTTP.
    EXPECT_TRUE(ec || (n > 0 && buf[0] == 0x15)) << std::string(buf.data(), n);
    auto ok = co_await hbone_request(hbone, *good, "CONNECT", authority);
    EXPECT_TRUE(ok && *ok == 200);
  });
  EXPECT_TRUE(b_->daemon().saw(std::regex("TLS handshake failed"))) << b_->daemon().output();
}

awaitable<void> expect_status(tcp::endpoint hbone, std::shared_ptr<asio::ssl::context> ctx,
                              int want, std::string method, std::string authority,
                              h2::Headers headers, std::string what) {
  auto r = co_await hbone_request(hbone, *ctx, method, authority, headers);
  EXPECT_TRUE(r && *r == want) << what << ": " << (r ? std::to_string(*r) : r.error().describe());
}

TEST_F(TwoZtunnels, BadConnectRequestsGet400AndUnreachableTargets503) {
  ASSERT_NO_FATAL_FAILURE(start(26, 1));
  auto http = HttpHelloServer::start(server(8080), "server");
  auto hbone = server(15008);
  auto ctx = tls::make_hbone_client_context(pki_.issue(pki_.id("default", "client")));
  ASSERT_TRUE(ctx);
  asio::io_context io;
  h2::Headers get_headers;
  get_headers.emplace_back(":scheme", "https");
  get_headers.emplace_back(":path", "/");
  const h2::Headers none;
  auto c = *ctx;
  run_coroutine(io, [&]() -> awaitable<void> {
    co_await expect_status(hbone, c, 400, "GET", server_ip_ + ":8080", get_headers,
                           "non-CONNECT method");
    co_await expect_status(hbone, c, 400, "CONNECT", server_ip_, none, "authority without a port");
    co_await expect_status(hbone, c, 400, "CONNECT", server_ip_ + ":http", none,
                           "authority with a bad port");
    co_await expect_status(hbone, c, 400, "CONNECT", "127.0.26.9:8080", none,
                           "authority IP not the pod's");
    co_await expect_status(hbone, c, 503, "CONNECT", server_ip_ + ":9", none, "nothing listening");
    co_await expect_status(hbone, c, 503, "CONNECT", server_ip_ + ":15008", none,
                           "the proxy's own port");
    co_await expect_status(hbone, c, 200, "CONNECT", server_ip_ + ":8080", none, "good request");
  });
}

TEST(ZtunnelConfig, BadLocalConfigIsAClearErrorNamingTheField) {
  TempDir dir;
  auto config = dir.path() / "bad.yaml";
  write_file(config, two_workload_mesh_yaml("127.0.27.2", "not-an-ip"));
  auto d = Daemon::start(
      bin_path("ztunnel"),
      {"--admin-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--readiness-address",
       "127.0.0.1:0"},
      {"LOCAL_XDS_PATH=" + config.string(), "PROXY_WORKLOAD_INFO=default/client/client"});
  ASSERT_TRUE(d) << d.error().describe();
  auto code = (*d)->stop(0, 20s);  // signal 0: only wait for the exit
  ASSERT_TRUE(code.has_value()) << "ztunnel kept running with a bad config";
  EXPECT_NE(*code, 0);
  auto out = (*d)->output();
  EXPECT_NE(out.find("workloads[1].workloadIps[0]"), std::string::npos) << out;
  EXPECT_NE(out.find("not-an-ip"), std::string::npos) << out;
}

TEST_F(TwoZtunnels, BadReloadKeepsThePreviousConfigAndAGoodOneIsApplied) {
  ASSERT_NO_FATAL_FAILURE(start(28, 1));
  auto http = HttpHelloServer::start(server(8080), "server");
  write_file(config_, "workloads: [ {uid: broken, workloadIps: [\"999.1.1.1\"]} ]\n");
  ASSERT_TRUE(a_->daemon().wait_for(std::regex("keeping previous config"), 10s))
      << a_->daemon().output();
  // Traffic still follows the previous config (HBONE to B).
  auto [rc, out] = run_command(fmt::format("curl -sS -m 10 --socks5 {} http://{}:8080/",
                                           net::format_endpoint(a_->socks5), server_ip_));
  EXPECT_NE(out.find("hello from server"), std::string::npos) << out;
  EXPECT_TRUE(a_->daemon().wait_for(
      std::regex("access connection complete.*dst.addr=\"" + server_ip_ + ":15008\"")));
  // A good change is applied: a new workload shows up in /config_dump.
  write_file(config_, two_workload_mesh_yaml(client_ip_, server_ip_,
                                             R"(- uid: cluster1//v1/Pod/default/newcomer
  name: newcomer
  namespace: default
  workloadIps: ["127.0.28.9"]
  protocol: TCP
)"));
  ASSERT_TRUE(a_->daemon().wait_for(std::regex("reloaded .*: 3 workloads"), 10s))
      << a_->daemon().output();
  auto dump = http_request(a_->admin, "GET", "/config_dump");
  ASSERT_TRUE(dump);
  EXPECT_NE(dump->body.find("newcomer"), std::string::npos) << dump->body;
}

TEST(ZtunnelConfig, HelpDocumentsEveryOptionAndItsEnvironmentVariable) {
  auto [rc, out] = run_command(bin_path("ztunnel") + " --help");
  EXPECT_EQ(rc, 0);
  for (const char* s :
       {"--local-xds-path", "LOCAL_XDS_PATH", "--proxy-mode", "PROXY_MODE", "--proxy-workload-info",
        "PROXY_WORKLOAD_INFO", "--node-name", "NODE_NAME", "--trust-domain", "TRUST_DOMAIN",
        "--ca-cert", "--ca-key", "--socks5-address", "UNSTABLE_ENABLE_SOCKS5", "--admin-address",
        "--metrics-address", "--readiness-address"}) {
    EXPECT_NE(out.find(s), std::string::npos) << "--help does not mention " << s;
  }
}

}  // namespace
}  // namespace zt::testing
