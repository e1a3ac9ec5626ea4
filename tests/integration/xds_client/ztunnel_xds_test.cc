// End to end: the real ztunnel binary configured over Delta xDS by an in-test server (FakeAds).
// Readiness waits for both types and for the proxy's own workload; /config_dump shows what was
// pushed; a bad resource is NACKed alone; a dropped stream is survived.
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "common/xds/delta_types.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "tests/integration/xds_client/fake_ads.h"
#include "tests/support/daemon.h"
#include "tests/support/mesh.h"
#include "tests/support/test_pki.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;

const std::string kAddress(xds::kAddressType);
const std::string kAuthz(xds::kAuthorizationType);

discovery::Resource* add_workload(discovery::DeltaDiscoveryResponse& r, const std::string& name,
                                  const std::string& ip_bytes, const std::string& version) {
  istio::workload::Address a;
  auto* w = a.mutable_workload();
  w->set_uid("cluster1//v1/Pod/default/" + name);
  w->set_name(name);
  w->set_namespace_("default");
  w->set_service_account(name);
  w->add_addresses(ip_bytes);
  w->set_tunnel_protocol(istio::workload::HBONE);
  w->set_node("node-a");
  auto* res = r.add_resources();
  res->set_name(w->uid());
  res->set_version(version);
  res->mutable_resource()->PackFrom(a);
  return res;
}

std::string ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return std::string(
      {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c), static_cast<char>(d)});
}

Result<HttpReply> ready(const tcp::endpoint& at) {
  return http_request(at, "GET", "/healthz/ready");
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

TEST(ZtunnelOverXds, ReadyOnlyAfterBothTypesAndItsOwnWorkloadThenSurvivesADroppedStream) {
  FakeAds ads;
  TempDir dir;
  TestPki pki;
  auto ca = pki.write_ca_files(dir.path());
  write_file(dir.path() / "token", "node-token");
  auto d = Daemon::start(
      bin_path("ztunnel"),
      {"--admin-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--readiness-address",
       "127.0.0.1:0", "--worker-threads", "1", "--ca-cert", ca.cert_path.string(), "--ca-key",
       ca.key_path.string()},
      {"XDS_ADDRESS=" + ads.address(), "PROXY_MODE=dedicated",
       "PROXY_WORKLOAD_INFO=default/server/server", "AUTH_TOKEN=" + (dir.path() / "token").string(),
       "CLUSTER_ID=cluster1", "INSTANCE_IP=127.0.0.1", "POD_NAME=ztunnel-x",
       "POD_NAMESPACE=istio-system", "NODE_NAME=node-a", "ISTIO_META_MESH_ID=mesh1"});
  ASSERT_TRUE(d) << d.error().describe();
  auto& zt = **d;
  auto readiness = zt.listening("readiness");
  ASSERT_TRUE(readiness) << zt.output();
  auto admin = zt.listening("admin");
  ASSERT_TRUE(admin) << zt.output();

  // Before anything is pushed: not ready, waiting for xDS (and the proxy behind it).
  auto r = ready(*readiness);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("xds"), std::string::npos) << r->body;

  auto reqs = ads.wait_requests(2);
  ASSERT_TRUE(reqs) << zt.output();
  for (const auto& q : *reqs) {
    EXPECT_EQ(q.request.node().id(),
              "ztunnel~127.0.0.1~ztunnel-x.istio-system~istio-system.svc.cluster.local");
    const auto& md = q.request.node().metadata().fields();
    EXPECT_EQ(md.at("NODE_NAME").string_value(), "node-a");
    EXPECT_EQ(md.at("CLUSTER_ID").string_value(), "cluster1");
    EXPECT_EQ(md.at("MESH_ID").string_value(), "mesh1");
    auto auth = q.headers.find("authorization");
    ASSERT_NE(auth, q.headers.end());
    EXPECT_EQ(auth->second, "Bearer node-token");
    EXPECT_EQ(q.headers.find("clusterid")->second, "cluster1");
  }

  // Addresses: one good workload (not ours) and one with a 5-byte address.
  discovery::DeltaDiscoveryResponse addresses;
  addresses.set_type_url(kAddress);
  addresses.set_nonce("a1");
  add_workload(addresses, "client", ipv4(127, 0, 77, 2), "1");
  add_workload(addresses, "broken", "12345", "1");
  ASSERT_TRUE(ads.push(addresses));
  reqs = ads.wait_requests(3);
  ASSERT_TRUE(reqs);
  const auto& nack = reqs->back().request;
  EXPECT_EQ(nack.response_nonce(), "a1");
  EXPECT_NE(nack.error_detail().message().find("cluster1//v1/Pod/default/broken"),
            std::string::npos)
      << nack.error_detail().message();
  EXPECT_EQ(nack.error_detail().message().find("default/client"), std::string::npos);
  r = ready(*readiness);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500) << "only one of the two types was pushed";

  // Authorization is ACKed, but Address has only been NACKed: still waiting for xDS.
  discovery::DeltaDiscoveryResponse policies;
  policies.set_type_url(kAuthz);
  policies.set_nonce("p1");
  istio::security::Authorization p;
  p.set_name("deny-nothing");
  p.set_namespace_("default");
  p.set_scope(istio::security::NAMESPACE);
  p.set_action(istio::security::DENY);
  auto* res = policies.add_resources();
  res->set_name("default/deny-nothing");
  res->set_version("1");
  res->mutable_resource()->PackFrom(p);
  ASSERT_TRUE(ads.push(policies));
  reqs = ads.wait_requests(4);
  ASSERT_TRUE(reqs);
  EXPECT_FALSE(reqs->back().request.has_error_detail())
      << reqs->back().request.error_detail().message();
  r = ready(*readiness);
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("xds"), std::string::npos) << r->body;

  // An Address response that is ACKed: the first full set is complete, but our own workload is
  // not in it yet.
  discovery::DeltaDiscoveryResponse more;
  more.set_type_url(kAddress);
  more.set_nonce("a1b");
  add_workload(more, "other", ipv4(127, 0, 77, 4), "1");
  ASSERT_TRUE(ads.push(more));
  reqs = ads.wait_requests(5);
  ASSERT_TRUE(reqs);
  EXPECT_FALSE(reqs->back().request.has_error_detail())
      << reqs->back().request.error_detail().message();
  ASSERT_TRUE(zt.wait_for(std::regex("waiting for workload default/server"), 5s)) << zt.output();
  r = ready(*readiness);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("proxy"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("xds"), std::string::npos) << r->body;

  // Our workload arrives: listeners start, readiness flips.
  discovery::DeltaDiscoveryResponse ours;
  ours.set_type_url(kAddress);
  ours.set_nonce("a2");
  add_workload(ours, "server", ipv4(127, 0, 77, 3), "2");
  ASSERT_TRUE(ads.push(ours));
  // Its ACK is in before the stream is dropped below, so every request after that is the new
  // stream's (the ACK can come after "ztunnel ready" and readiness).
  reqs = ads.wait_requests(6);
  ASSERT_TRUE(reqs);
  EXPECT_EQ(reqs->back().request.response_nonce(), "a2");
  EXPECT_FALSE(reqs->back().request.has_error_detail())
      << reqs->back().request.error_detail().message();
  ASSERT_TRUE(zt.wait_for(std::regex("ztunnel ready"), 10s)) << zt.output();
  EXPECT_TRUE(eventually([&] {
    auto rr = ready(*readiness);
    return rr && rr->status == 200;
  }));

  auto dump = http_request(*admin, "GET", "/config_dump");
  ASSERT_TRUE(dump);
  EXPECT_NE(dump->body.find("cluster1//v1/Pod/default/client"), std::string::npos) << dump->body;
  EXPECT_NE(dump->body.find("cluster1//v1/Pod/default/server"), std::string::npos) << dump->body;
  EXPECT_NE(dump->body.find("127.0.77.3"), std::string::npos) << dump->body;
  EXPECT_NE(dump->body.find("deny-nothing"), std::string::npos) << dump->body;
  EXPECT_EQ(dump->body.find("broken"), std::string::npos) << dump->body;

  // The server drops the stream: ztunnel reconnects, offers what it holds, keeps serving.
  size_t before = ads.requests().size();
  ads.drop();
  reqs = ads.wait_requests(before + 2);
  ASSERT_TRUE(reqs) << zt.output();
  for (size_t i = before; i < reqs->size(); ++i) {
    const auto& q = (*reqs)[i];
    EXPECT_EQ(q.stream, 2);
    if (q.request.type_url() == kAddress) {
      const auto& v = q.request.initial_resource_versions();
      EXPECT_EQ(v.size(), 3u);
      EXPECT_EQ(v.at("cluster1//v1/Pod/default/client"), "1");
      EXPECT_EQ(v.at("cluster1//v1/Pod/default/server"), "2");
    } else {
      EXPECT_EQ(q.request.initial_resource_versions().at("default/deny-nothing"), "1");
    }
  }
  r = ready(*readiness);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  dump = http_request(*admin, "GET", "/config_dump");
  ASSERT_TRUE(dump);
  EXPECT_NE(dump->body.find("cluster1//v1/Pod/default/server"), std::string::npos);

  EXPECT_EQ(zt.stop(SIGTERM), 0) << zt.output();
}

TEST(ZtunnelOverXds, StopsCleanlyWhileStillWaitingForTheControlPlane) {
  // Nothing listens at this address: ztunnel keeps retrying, stays not ready, and SIGTERM ends it.
  uint16_t port;
  {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    port = a.local_endpoint().port();
  }
  auto d = Daemon::start(bin_path("ztunnel"),
                         {"--admin-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
                          "--readiness-address", "127.0.0.1:0", "--worker-threads", "1"},
                         {"XDS_ADDRESS=http://127.0.0.1:" + std::to_string(port),
                          "PROXY_MODE=dedicated", "PROXY_WORKLOAD_INFO=default/server/server"});
  ASSERT_TRUE(d) << d.error().describe();
  auto& zt = **d;
  auto readiness = zt.listening("readiness");
  ASSERT_TRUE(readiness) << zt.output();
  ASSERT_TRUE(zt.wait_for(std::regex("reconnecting to"), 5s)) << zt.output();
  auto r = ready(*readiness);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("pending: proxy, xds"), std::string::npos) << r->body;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(zt.stop(SIGTERM, 5s), 0) << zt.output();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

}  // namespace
}  // namespace zt::testing
