// ztunnel routes through waypoints (facts §1.4 steps 4 and 7), end to end on loopback: a real
// ztunnel (dedicated mode, SOCKS5) for "client"; test-owned HBONE servers play the waypoint
// (127.0.71.10:15008, identity sa/waypoint) and the destination pod (127.0.71.3:15008, sa/server)
// and record each CONNECT's authority and the client's proven identity.
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/async/task_group.h"
#include "common/h2/connection.h"
#include "common/net/address.h"
#include "common/tls/context.h"
#include "tests/support/coro.h"
#include "tests/support/hbone_server.h"
#include "tests/support/mesh.h"
#include "tests/support/test_pki.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;

// Each test uses its own block of 127.0.71.0/24 (ctest runs test cases in parallel).
struct Ips {
  explicit Ips(int block) : base(block * 40) {}
  std::string ip(int offset) const { return fmt::format("127.0.71.{}", base + offset); }
  int base;
  std::string client = ip(2), server = ip(3), pod_with_waypoint = ip(4), waypoint = ip(10),
              waypoint_vip = ip(11), missing_waypoint = ip(19),
              reviews_vip = ip(20),  // service with a waypoint named by IP
      ratings_vip = ip(21),          // service with a waypoint named by hostname
      details_vip = ip(22),          // service without a waypoint
      broken_vip = ip(23);           // service whose waypoint does not exist
};

std::string mesh_yaml(const Ips& ips) {
  return fmt::format(R"(workloads:
- {{uid: client, name: client, namespace: default, serviceAccount: client,
   workloadIps: ["{client}"], protocol: HBONE}}
- {{uid: server, name: server, namespace: default, serviceAccount: server,
   workloadIps: ["{server}"], protocol: HBONE,
   services: {{"default/reviews.default.svc.cluster.local": {{}},
              "default/ratings.default.svc.cluster.local": {{}},
              "default/details.default.svc.cluster.local": {{}},
              "default/broken.default.svc.cluster.local": {{}}}}}}
- {{uid: pod-with-waypoint, name: pod-with-waypoint, namespace: default,
   workloadIps: ["{pod}"], protocol: HBONE, waypoint: {{destination: "/{waypoint}"}}}}
- {{uid: waypoint, name: waypoint, namespace: default, serviceAccount: waypoint,
   workloadIps: ["{waypoint}"], protocol: HBONE,
   services: {{"default/waypoint.default.svc.cluster.local": {{}}}}}}
services:
- {{name: waypoint, namespace: default, hostname: waypoint.default.svc.cluster.local,
   vips: ["/{waypoint_vip}"], ports: {{15008: 15008}}}}
- {{name: reviews, namespace: default, hostname: reviews.default.svc.cluster.local,
   vips: ["/{reviews}"], ports: {{9080: 8080}}, waypoint: {{destination: "/{waypoint}"}}}}
- {{name: ratings, namespace: default, hostname: ratings.default.svc.cluster.local,
   vips: ["/{ratings}"], ports: {{9080: 8080}},
   waypoint: {{destination: {{namespace: default, hostname: waypoint.default.svc.cluster.local}}}}}}
- {{name: details, namespace: default, hostname: details.default.svc.cluster.local,
   vips: ["/{details}"], ports: {{9080: 8080}}}}
- {{name: broken, namespace: default, hostname: broken.default.svc.cluster.local,
   vips: ["/{broken}"], ports: {{9080: 8080}}, waypoint: {{destination: "/{missing}"}}}}
)",
                     fmt::arg("client", ips.client), fmt::arg("server", ips.server),
                     fmt::arg("pod", ips.pod_with_waypoint), fmt::arg("waypoint", ips.waypoint),
                     fmt::arg("waypoint_vip", ips.waypoint_vip),
                     fmt::arg("reviews", ips.reviews_vip), fmt::arg("ratings", ips.ratings_vip),
                     fmt::arg("details", ips.details_vip), fmt::arg("broken", ips.broken_vip),
                     fmt::arg("missing", ips.missing_waypoint));
}

tcp::endpoint at(const std::string& ip, uint16_t port) {
  return tcp::endpoint(asio::ip::make_address(ip), port);
}

// An HBONE server: mTLS with `creds`, answers every CONNECT with 200 and echoes the stream;
// records (authority, client SPIFFE id) per stream.
class RecordingHboneServer {
 public:
  struct Seen {
    std::string authority;
    std::string client_identity;
  };

  RecordingHboneServer(asio::io_context& io, async::TaskGroup& tasks, tcp::endpoint where,
                       std::shared_ptr<identity::WorkloadCredentials> creds)
      : server_(io, tasks, where, std::move(creds),
                [this, &tasks](std::shared_ptr<h2::Stream> st, const std::string& client) {
                  seen.push_back({st->authority(), client});
                  streams_.push_back(st);
                  tasks.spawn(echo(std::move(st)), "echo");
                }) {}

  void close() { server_.close(); }

  std::vector<Seen> seen;

 private:
  static awaitable<void> echo(std::shared_ptr<h2::Stream> st) {
    st->respond(200);
    std::vector<uint8_t> buf(16 * 1024);
    for (;;) {
      auto [ec, n] = co_await st->read_some(asio::buffer(buf));
      if (n > 0 && co_await st->write_all(asio::buffer(buf.data(), n))) co_return;
      if (ec) break;
    }
    co_await st->shutdown_write();
  }

  HboneTestServer server_;
  std::vector<std::shared_ptr<h2::Stream>> streams_;
};

// Sends a line through SOCKS5 to `dst`, half-closes and reads the echo to EOF.
awaitable<Result<std::string>> round_trip(tcp::endpoint socks, tcp::endpoint dst) {
  auto sock = co_await socks5_connect(socks, dst);
  if (!sock) co_return tl::unexpected(sock.error());
  const std::string msg = "hello waypoint\n";
  auto [wec, wn] = co_await asio::async_write(*sock, asio::buffer(msg), kTuple);
  if (wec) co_return fail(wec, "write");
  sock->shutdown(tcp::socket::shutdown_send);
  std::string got;
  std::vector<char> buf(4096);
  for (;;) {
    auto [ec, n] = co_await sock->async_read_some(asio::buffer(buf), kTuple);
    got.append(buf.data(), n);
    if (ec) break;
  }
  co_return got;
}

class ZtunnelWaypoint : public ::testing::Test {
 protected:
  // Starts the HBONE servers and the client's ztunnel on block `block` of 127.0.71.0/24.
  void start(int block) {
    ips_.emplace(block);
    ca_ = pki_.write_ca_files(dir_.path());
    config_ = dir_.path() / "mesh.yaml";
    write_file(config_, mesh_yaml(*ips_));
    waypoint_.emplace(io_, tasks_, at(ips_->waypoint, 15008),
                      pki_.credentials(pki_.id("default", "waypoint")));
    server_.emplace(io_, tasks_, at(ips_->server, 15008),
                    pki_.credentials(pki_.id("default", "server")));
    auto a = ZtunnelProcess::start(
        {.name = "client", .config = config_, .ca_cert = ca_.cert_path, .ca_key = ca_.key_path});
    ASSERT_TRUE(a) << a.error().describe();
    client_ = std::move(*a);
  }
  void TearDown() override {
    if (!ips_) return;
    if (waypoint_) waypoint_->close();
    if (server_) server_->close();
    tasks_.cancel_all();
    io_.restart();
    io_.run_for(1s);
  }

  Result<std::string> send_through(const std::string& ip, uint16_t port) {
    Result<std::string> out = fail("not run");
    run_coroutine(
        io_, [&]() -> awaitable<void> { out = co_await round_trip(client_->socks5, at(ip, port)); },
        std::chrono::seconds(30));
    return out;
  }

  std::optional<Ips> ips_;
  TempDir dir_;
  TestPki pki_;
  TestPki::CaFiles ca_;
  std::filesystem::path config_;
  asio::io_context io_;
  async::TaskGroup tasks_{io_.get_executor()};
  std::optional<RecordingHboneServer> waypoint_, server_;
  std::unique_ptr<ZtunnelProcess> client_;
};

TEST_F(ZtunnelWaypoint, ServiceWithWaypointGoesToTheWaypointWithTheVipAuthority) {
  ASSERT_NO_FATAL_FAILURE(start(0));
  auto got = send_through(ips_->reviews_vip, 9080);
  ASSERT_TRUE(got) << got.error().describe();
  EXPECT_EQ(*got, "hello waypoint\n");
  ASSERT_EQ(waypoint_->seen.size(), 1u);
  EXPECT_EQ(waypoint_->seen[0].authority, fmt::format("{}:9080", ips_->reviews_vip));
  EXPECT_EQ(waypoint_->seen[0].client_identity, "spiffe://cluster.local/ns/default/sa/client");
  EXPECT_TRUE(server_->seen.empty());
  auto line = client_->daemon().wait_for(std::regex("access connection complete.*"));
  ASSERT_TRUE(line);
  EXPECT_NE(line->find(fmt::format("dst.addr=\"{}:15008\"", ips_->waypoint)), std::string::npos)
      << *line;
  EXPECT_NE(line->find(fmt::format("dst.hbone_addr=\"{}:9080\"", ips_->reviews_vip)),
            std::string::npos)
      << *line;
  EXPECT_NE(line->find(fmt::format("dst.waypoint=\"{}:15008\"", ips_->waypoint)), std::string::npos)
      << *line;
  EXPECT_NE(line->find("dst.identity=\"spiffe://cluster.local/ns/default/sa/waypoint\""),
            std::string::npos)
      << *line;
}

TEST_F(ZtunnelWaypoint, WaypointNamedByHostnameIsReachedThroughItsService) {
  ASSERT_NO_FATAL_FAILURE(start(1));
  auto got = send_through(ips_->ratings_vip, 9080);
  ASSERT_TRUE(got) << got.error().describe();
  EXPECT_EQ(*got, "hello waypoint\n");
  ASSERT_EQ(waypoint_->seen.size(), 1u);
  EXPECT_EQ(waypoint_->seen[0].authority, fmt::format("{}:9080", ips_->ratings_vip));
  EXPECT_TRUE(server_->seen.empty());
}

TEST_F(ZtunnelWaypoint, WorkloadWithWaypointGoesToTheWaypointWithThePodAuthority) {
  ASSERT_NO_FATAL_FAILURE(start(2));
  auto got = send_through(ips_->pod_with_waypoint, 7070);
  ASSERT_TRUE(got) << got.error().describe();
  EXPECT_EQ(*got, "hello waypoint\n");
  ASSERT_EQ(waypoint_->seen.size(), 1u);
  EXPECT_EQ(waypoint_->seen[0].authority, fmt::format("{}:7070", ips_->pod_with_waypoint));
  EXPECT_EQ(waypoint_->seen[0].client_identity, "spiffe://cluster.local/ns/default/sa/client");
}

TEST_F(ZtunnelWaypoint, ServiceWithoutWaypointGoesDirectToTheEndpoint) {
  ASSERT_NO_FATAL_FAILURE(start(3));
  auto got = send_through(ips_->details_vip, 9080);
  ASSERT_TRUE(got) << got.error().describe();
  EXPECT_EQ(*got, "hello waypoint\n");
  EXPECT_TRUE(waypoint_->seen.empty());
  ASSERT_EQ(server_->seen.size(), 1u);
  EXPECT_EQ(server_->seen[0].authority, fmt::format("{}:8080", ips_->server));
  EXPECT_EQ(server_->seen[0].client_identity, "spiffe://cluster.local/ns/default/sa/client");
  auto line = client_->daemon().wait_for(std::regex("access connection complete.*"));
  ASSERT_TRUE(line);
  EXPECT_EQ(line->find("dst.waypoint="), std::string::npos) << *line;
}

TEST_F(ZtunnelWaypoint, UnresolvableWaypointFailsTheConnectionAndNeverBypassesIt) {
  ASSERT_NO_FATAL_FAILURE(start(4));
  auto got = send_through(ips_->broken_vip, 9080);
  EXPECT_FALSE(got);
  EXPECT_TRUE(waypoint_->seen.empty());
  EXPECT_TRUE(server_->seen.empty());
  EXPECT_TRUE(client_->daemon().wait_for(
      std::regex("connection failed.*waypoint " + ips_->missing_waypoint + " not found")))
      << client_->daemon().output();
}

}  // namespace
}  // namespace zt::testing
