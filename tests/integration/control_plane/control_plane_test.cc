// The control plane end to end (issue 3's acceptance): the real build/bin/meshd reads generated
// Kubernetes manifests (3 namespaces, 20 pods on 2 nodes) and serves them over Delta ADS and the
// Istio CA service to two real ztunnels, one per node, each acting for one pod. The pods' IPs are
// loopback addresses so the ztunnels can bind them: ctest runs the cases as parallel processes, so
// each case has its own pair of /24s (pods 127.0.51/53/55.x, services 127.0.52/54/56.x).
//
// What is proven: both ztunnels hold exactly the workloads and services the manifests describe
// (through /config_dump) and got their certificates from meshd's CA with node-scoped tokens;
// traffic flows between them over HBONE; labelling a namespace ambient flips its pods to HBONE in
// every ztunnel within a second and back; a meshd restart is survived (traffic keeps flowing on
// the last state) and a change made while meshd was down arrives after it returns.
#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "common/net/address.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/daemon.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"

namespace zt::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

// The third octet of this test case's pod addresses (its services use the next one).
int pod_subnet_for_this_test() {
  const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  if (name.rfind("Labelling", 0) == 0) return 53;
  if (name.rfind("ZtunnelKeepsServing", 0) == 0) return 55;
  return 51;
}

std::string read_file(const fs::path& p) {
  auto [rc, out] = run_command("cat '" + p.string() + "'");
  return rc == 0 ? out : std::string();
}

class ControlPlane : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterManifestOptions o;
    const int subnet = pod_subnet_for_this_test();
    o.pod_ip_start = fmt::format("127.0.{}.10", subnet);
    o.service_ip_start = fmt::format("127.0.{}.10", subnet + 1);
    o.ambient_namespaces = {"apps-0", "apps-1"};  // apps-2 starts plain
    cluster_ = write_cluster_manifests(manifests_.path(), o);
    write_file(tokens_, "token-node-0: node-0\ntoken-node-1: node-1\n");
    write_file(token_file_[0], "token-node-0\n");
    write_file(token_file_[1], "token-node-1\n");
  }

  // Starts meshd (on `port`, 0 = any) and waits for its first publish.
  void start_meshd(uint16_t port = 0) {
    auto d = Daemon::start(bin_path("meshd"),
                           {"--manifests", manifests_.path().string(), "--grpc-address",
                            fmt::format("127.0.0.1:{}", port), "--ca-dir",
                            (state_.path() / "ca").string(), "--tokens", tokens_.string()});
    ASSERT_TRUE(d) << d.error().message;
    meshd_ = std::move(*d);
    ASSERT_TRUE(meshd_->wait_for(std::regex("meshd ready"), 20s)) << meshd_->output();
    auto ep = meshd_->listening("grpc");
    ASSERT_TRUE(ep) << meshd_->output();
    grpc_ = *ep;
  }

  // The first pod on `node` in an ambient namespace: the workload that node's ztunnel acts for.
  const GeneratedPod& pod_on(const std::string& node) {
    for (const auto& p : cluster_.pods) {
      if (p.node == node && p.namespace_ != "apps-2") return p;
    }
    throw std::runtime_error("no ambient pod on " + node);
  }

  void start_ztunnel(int node) {
    const auto& pod = pod_on(fmt::format("node-{}", node));
    std::string url = "http://" + net::format_endpoint(grpc_);
    ZtunnelOptions o;
    o.ns = pod.namespace_;
    o.name = pod.name;
    o.service_account = pod.service_account;
    o.env = {"XDS_ADDRESS=" + url, "CA_ADDRESS=" + url, "AUTH_TOKEN=" + token_file_[node].string(),
             fmt::format("NODE_NAME=node-{}", node)};
    auto z = ZtunnelProcess::start(o);
    ASSERT_TRUE(z) << z.error().message;
    ztunnels_[node] = std::move(*z);
  }

  json dump(int node) {
    auto r = http_request(ztunnels_[node]->admin, "GET", "/config_dump");
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  }

  // "namespace/name" -> protocol ("HBONE" or "TCP") of every workload ztunnel `node` holds.
  std::map<std::string, std::string> protocols(int node) {
    std::map<std::string, std::string> out;
    auto d = dump(node);
    if (!d.is_object()) return out;
    for (const auto& w : d["workloads"]) {
      out[w["namespace"].get<std::string>() + "/" + w["name"].get<std::string>()] =
          w["protocol"].get<std::string>();
    }
    return out;
  }

  // Waits until every pod of namespace `ns` has `protocol` in both ztunnels; returns how long
  // that took, or nullopt after `limit`.
  std::optional<std::chrono::milliseconds> wait_for_protocol(const std::string& ns,
                                                             const std::string& protocol,
                                                             std::chrono::milliseconds limit) {
    auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < limit) {
      bool all = true;
      for (int node = 0; node < 2 && all; ++node) {
        auto got = protocols(node);
        for (const auto& p : cluster_.pods) {
          if (p.namespace_ != ns) continue;
          auto it = got.find(p.namespace_ + "/" + p.name);
          if (it == got.end() || it->second != protocol) {
            all = false;
            break;
          }
        }
      }
      if (all) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
      }
      std::this_thread::sleep_for(10ms);
    }
    return std::nullopt;
  }

  // curl from node 0's pod, through its ztunnel, to node 1's pod's HTTP server.
  void expect_traffic_flows() {
    const auto& server = pod_on("node-1");
    auto [rc, out] =
        run_command(fmt::format("curl -sS -m 10 --socks5 {} http://{}:8080/hello",
                                net::format_endpoint(ztunnels_[0]->socks5), server.ip));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("hello from server"), std::string::npos) << out;
  }

  void set_namespace_ambient(const std::string& ns, bool ambient) {
    auto path = manifests_.path() / ns / "namespace.yaml";
    auto text = read_file(path);
    auto plain = namespace_manifest(ns);
    auto labelled = namespace_manifest(ns, {{"istio.io/dataplane-mode", "ambient"}});
    const auto& from = ambient ? plain : labelled;
    const auto& to = ambient ? labelled : plain;
    auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << text;
    text.replace(at, from.size(), to);
    write_manifest_file(path, text);
  }

  TempDir manifests_, state_;
  fs::path tokens_ = state_.path() / "tokens";
  fs::path token_file_[2] = {state_.path() / "token-0", state_.path() / "token-1"};
  ClusterManifests cluster_;
  std::unique_ptr<Daemon> meshd_;
  tcp::endpoint grpc_;
  std::unique_ptr<ZtunnelProcess> ztunnels_[2];
};

TEST_F(ControlPlane, ZtunnelsHoldTheManifestsAndCarryTrafficWithCertificatesFromMeshd) {
  ASSERT_NO_FATAL_FAILURE(start_meshd());
  ASSERT_NO_FATAL_FAILURE(start_ztunnel(0));
  ASSERT_NO_FATAL_FAILURE(start_ztunnel(1));
  ASSERT_EQ(cluster_.pods.size(), 20u);
  ASSERT_EQ(cluster_.namespaces.size(), 3u);

  // With CA_ADDRESS the certificate is fetched behind readiness (connections wait for it):
  // give meshd's CA a moment to answer before the dump is read.
  auto available = [&](int node) {
    const auto& pod = pod_on(fmt::format("node-{}", node));
    auto id =
        fmt::format("spiffe://cluster.local/ns/{}/sa/{}", pod.namespace_, pod.service_account);
    auto d = dump(node);
    if (!d.is_object() || !d.contains("certificates")) return false;
    for (const auto& c : d["certificates"]) {
      if (c["identity"] == id && c["state"] == "Available") return true;
    }
    return false;
  };
  for (int node = 0; node < 2; ++node) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!available(node) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  for (int node = 0; node < 2; ++node) {
    SCOPED_TRACE(fmt::format("ztunnel on node-{}", node));
    auto d = dump(node);
    ASSERT_TRUE(d.is_object());

    // Every pod, and nothing else, with its IP, node, service account and protocol.
    std::map<std::string, json> workloads;
    for (const auto& w : d["workloads"]) {
      workloads[w["namespace"].get<std::string>() + "/" + w["name"].get<std::string>()] = w;
    }
    EXPECT_EQ(workloads.size(), cluster_.pods.size());
    for (const auto& p : cluster_.pods) {
      auto it = workloads.find(p.namespace_ + "/" + p.name);
      ASSERT_NE(it, workloads.end()) << p.namespace_ << "/" << p.name;
      const auto& w = it->second;
      EXPECT_EQ(w["workloadIps"], json::array({p.ip})) << p.name;
      EXPECT_EQ(w["node"], p.node) << p.name;
      EXPECT_EQ(w["serviceAccount"], p.service_account) << p.name;
      EXPECT_EQ(w["protocol"], p.namespace_ == "apps-2" ? "TCP" : "HBONE") << p.name;
      EXPECT_EQ(w["identity"],
                fmt::format("spiffe://cluster.local/ns/{}/sa/{}", p.namespace_, p.service_account));
      // The pod is an endpoint of its app's service, named port resolved per endpoint.
      auto key = fmt::format("{}/{}.{}.svc.cluster.local", p.namespace_, p.app, p.namespace_);
      ASSERT_TRUE(w["services"].contains(key)) << w.dump();
      EXPECT_EQ(w["services"][key]["80"], 8080) << w.dump();
    }

    // Every service with its VIP and port.
    std::map<std::string, json> services;
    for (const auto& s : d["services"]) services[s["hostname"].get<std::string>()] = s;
    EXPECT_EQ(services.size(), cluster_.services.size());
    for (const auto& s : cluster_.services) {
      auto it = services.find(fmt::format("{}.{}.svc.cluster.local", s.name, s.namespace_));
      ASSERT_NE(it, services.end()) << s.name;
      EXPECT_EQ(it->second["namespace"], s.namespace_);
      EXPECT_EQ(it->second["vips"], json::array({"/" + s.cluster_ip})) << it->second.dump();
      EXPECT_TRUE(it->second["ports"].contains("80")) << it->second.dump();
    }

    // The certificate of the pod this ztunnel acts for came from meshd's CA.
    const auto& pod = pod_on(fmt::format("node-{}", node));
    auto id =
        fmt::format("spiffe://cluster.local/ns/{}/sa/{}", pod.namespace_, pod.service_account);
    bool found = false;
    for (const auto& c : d["certificates"]) {
      if (c["identity"] != id) continue;
      found = true;
      EXPECT_EQ(c["state"], "Available") << c.dump();
      EXPECT_TRUE(c.contains("expirationTime")) << c.dump();
    }
    EXPECT_TRUE(found) << d["certificates"].dump();
  }
  auto ca_root = read_file(state_.path() / "ca" / "root-cert.pem");
  EXPECT_NE(ca_root.find("BEGIN CERTIFICATE"), std::string::npos);

  auto http = HttpHelloServer::start(
      tcp::endpoint(net::parse_ip(pod_on("node-1").ip).value(), 8080), "server");
  ASSERT_TRUE(http);
  expect_traffic_flows();
  // The server side saw the client pod's identity, proven by a certificate from meshd.
  const auto& client = pod_on("node-0");
  auto inbound = ztunnels_[1]->daemon().wait_for(
      std::regex("access connection complete.*direction=\"inbound\".*"));
  ASSERT_TRUE(inbound) << ztunnels_[1]->daemon().output();
  EXPECT_NE(inbound->find(fmt::format("src.identity=\"spiffe://cluster.local/ns/{}/sa/{}\"",
                                      client.namespace_, client.service_account)),
            std::string::npos)
      << *inbound;
}

TEST_F(ControlPlane, LabellingANamespaceFlipsItsPodsToHboneInEveryZtunnelWithinASecond) {
  ASSERT_NO_FATAL_FAILURE(start_meshd());
  ASSERT_NO_FATAL_FAILURE(start_ztunnel(0));
  ASSERT_NO_FATAL_FAILURE(start_ztunnel(1));
  ASSERT_TRUE(wait_for_protocol("apps-2", "TCP", 5s));

  ASSERT_NO_FATAL_FAILURE(set_namespace_ambient("apps-2", true));
  auto took = wait_for_protocol("apps-2", "HBONE", 5s);
  ASSERT_TRUE(took) << "apps-2 never became HBONE";
  std::printf("namespace labelled ambient -> HBONE in both ztunnels after %lld ms\n",
              static_cast<long long>(took->count()));
  EXPECT_LT(took->count(), 1000);

  ASSERT_NO_FATAL_FAILURE(set_namespace_ambient("apps-2", false));
  took = wait_for_protocol("apps-2", "TCP", 5s);
  ASSERT_TRUE(took) << "apps-2 never went back to TCP";
  std::printf("label removed -> TCP in both ztunnels after %lld ms\n",
              static_cast<long long>(took->count()));
  EXPECT_LT(took->count(), 1000);
  // Namespaces that were not touched stayed as they were.
  EXPECT_TRUE(wait_for_protocol("apps-0", "HBONE", 100ms));
}

TEST_F(ControlPlane, ZtunnelKeepsServingWhileMeshdIsDownAndResyncsWhenItReturns) {
  ASSERT_NO_FATAL_FAILURE(start_meshd());
  ASSERT_NO_FATAL_FAILURE(start_ztunnel(0));
  ASSERT_NO_FATAL_FAILURE(start_ztunnel(1));
  auto http = HttpHelloServer::start(
      tcp::endpoint(net::parse_ip(pod_on("node-1").ip).value(), 8080), "server");
  ASSERT_TRUE(http);
  expect_traffic_flows();

  auto port = grpc_.port();
  ASSERT_EQ(meshd_->stop(SIGTERM), 0);
  meshd_.reset();
  // The stream drop is noticed; the last state keeps serving.
  for (int node = 0; node < 2; ++node) {
    EXPECT_TRUE(
        ztunnels_[node]->daemon().wait_for(std::regex("component=xds.*(ended|reconnecting)"), 5s))
        << ztunnels_[node]->daemon().output();
  }
  expect_traffic_flows();
  EXPECT_EQ(protocols(0).size(), cluster_.pods.size());

  // While meshd is down, namespace apps-2 is enrolled; after meshd returns both ztunnels resync.
  ASSERT_NO_FATAL_FAILURE(set_namespace_ambient("apps-2", true));
  ASSERT_NO_FATAL_FAILURE(start_meshd(port));
  EXPECT_TRUE(wait_for_protocol("apps-2", "HBONE", 20s)) << ztunnels_[0]->daemon().output();
  expect_traffic_flows();
}

}  // namespace
}  // namespace zt::testing
