// KubeApiSource against FakeApiServer (the documented list/watch protocol on loopback): it
// converges to exactly the ObjectSet the manifest source reads from the same objects as YAML
// files, follows edits, and survives 500s, dropped connections, ERROR 410 (relist), expired
// continue tokens and error events; it sends the bearer token (re-read when it rotates), uses the
// pod field selector, and publishes a burst of events as one update only after every type synced.
#include "meshd/kube/kube_source.h"

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "meshd/manifest/source.h"
#include "tests/integration/kube/fake_api_server.h"
#include "tests/support/cluster_manifests.h"

namespace zt::meshd::kube {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using manifest::ObjectSet;
using zt::testing::FakeApiServer;

// Istio and Gateway API objects next to the generated cluster.
constexpr const char* kPolicies = R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-web
  namespace: apps-0
spec:
  selector:
    matchLabels:
      app: app-0
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/apps-1/sa/app-1"]
    to:
    - operation:
        ports: ["8080"]
        methods: ["GET"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: strict
  namespace: apps-1
spec:
  mtls:
    mode: STRICT
  portLevelMtls:
    "9090":
      mode: PERMISSIVE
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: apps-2
  labels:
    istio.io/waypoint-for: service
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: route
  namespace: apps-2
spec:
  parentRefs:
  - name: waypoint
    kind: Gateway
    group: gateway.networking.k8s.io
  hostnames: ["app-4.apps-2.svc.cluster.local"]
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /api
    backendRefs:
    - name: app-4
      port: 80
      weight: 3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: app-4
  namespace: apps-2
spec:
  host: app-4
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10}
    outlierDetection: {consecutive5xxErrors: 3, interval: 10s, baseEjectionTime: 30s}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: app-4
  namespace: apps-2
spec:
  hosts: [app-4]
  http:
  - fault: {delay: {fixedDelay: 1s, percentage: {value: 10}}}
    route:
    - destination: {host: app-4}
)";

std::string pod_yaml(const std::string& name, const std::string& ns, const std::string& node,
                     const std::string& ip) {
  return fmt::format(R"(apiVersion: v1
kind: Pod
metadata:
  name: {0}
  namespace: {1}
  labels:
    app: {0}
spec:
  nodeName: {2}
  containers:
  - name: main
    ports:
    - name: http
      containerPort: 8080
status:
  phase: Running
  podIP: {3}
  conditions:
  - type: Ready
    status: "True"
)",
                     name, ns, node, ip);
}

class KubeSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("kube-source-{:x}", rd());
    manifests_ = dir_ / "manifests";
    zt::testing::ClusterManifestOptions opts;
    opts.pods = 12;
    cluster_ = zt::testing::write_cluster_manifests(manifests_, opts);
    write_both("policies.yaml", kPolicies);
    for (const auto& file : cluster_.files) server_.put_yaml(read(file));
    token_file_ = dir_ / "token";
    set_token("token-1");
  }

  void TearDown() override {
    if (source_) {
      asio::post(io_, [this] { source_->stop(); });
      io_.stop();
    }
    if (thread_.joinable()) thread_.join();
    source_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  void set_token(const std::string& token) {
    std::ofstream(token_file_, std::ios::trunc) << token << "\n";
  }

  // The same edit to the manifest directory and to the API server.
  void write_both(const std::string& file, const std::string& yaml) {
    zt::testing::write_manifest_file(manifests_ / file, yaml);
    server_.put_yaml(yaml);
  }

  ObjectSet from_manifests() {
    manifest::ManifestSource source(manifests_);
    auto loaded = source.reload();
    EXPECT_TRUE(loaded.errors.empty()) << loaded.errors[0].message;
    return *loaded.objects;
  }

  KubeConfig config() {
    KubeConfig c;
    c.server = *parse_server_url(server_.url());
    c.token_file = token_file_.string();
    c.page_size = 4;
    c.watch_timeout_seconds = 30;
    c.backoff_initial = 20ms;
    c.backoff_max = 200ms;
    return c;
  }

  void start(KubeConfig c) {
    source_ = std::make_unique<KubeApiSource>(io_.get_executor(), std::move(c));
    asio::post(io_, [this] {
      auto st = source_->start([this](const manifest::LoadResult& u) {
        std::lock_guard lock(mu_);
        latest_ = u.objects;
        ++updates_;
        for (const auto& e : u.errors) errors_.push_back(e.message);
        cv_.notify_all();
      });
      EXPECT_TRUE(st);
    });
    thread_ = std::thread([this] { io_.run(); });
  }

  // Waits until the published set satisfies `pred`.
  bool wait_until(const std::function<bool(const ObjectSet&)>& pred,
                  std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return latest_ && pred(*latest_); });
  }
  // Started with a short recheck of kinds not served (or forbidden).
  void start_rechecking() {
    auto c = config();
    c.not_served_recheck = 100ms;
    start(std::move(c));
  }
  bool converges_to(const ObjectSet& want, std::chrono::milliseconds timeout = 10s) {
    return wait_until([&](const ObjectSet& s) { return s == want; }, timeout);
  }
  // Polls a condition on the server's side (not signalled by an update).
  static bool poll_until(const std::function<bool()>& pred,
                         std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }
  // The WATCH requests the server received after the first `since` requests.
  std::vector<std::string> watches_since(size_t since) {
    std::vector<std::string> out;
    auto all = server_.requests();
    for (size_t i = since; i < all.size(); ++i) {
      if (all[i].target.find("watch=1") != std::string::npos) out.push_back(all[i].target);
    }
    return out;
  }
  size_t updates() {
    std::lock_guard lock(mu_);
    return updates_;
  }
  SourceStats stats() {
    std::promise<SourceStats> p;
    asio::post(io_, [&] { p.set_value(source_->stats()); });
    return p.get_future().get();
  }

  fs::path dir_, manifests_, token_file_;
  zt::testing::ClusterManifests cluster_;
  FakeApiServer server_;
  asio::io_context io_;
  std::unique_ptr<KubeApiSource> source_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const ObjectSet> latest_;
  size_t updates_ = 0;
  std::vector<std::string> errors_;
};

TEST_F(KubeSourceTest, ConvergesToTheManifestSourcesObjectsAndFollowsEdits) {
  auto want = from_manifests();
  ASSERT_EQ(want.pods.size(), 12u);
  ASSERT_EQ(want.authorization_policies.size(), 1u);
  ASSERT_EQ(want.http_routes.size(), 1u);
  ASSERT_EQ(want.destination_rules.size(), 1u);
  ASSERT_EQ(want.virtual_services.size(), 1u);
  start(config());
  ASSERT_TRUE(converges_to(want)) << "objects: " << (latest_ ? latest_->size() : 0);
  // The first update was the complete state: nothing is published before every type synced.
  EXPECT_EQ(updates(), 1u);

  // Pagination: 12 pods with limit=4 take three pages.
  size_t continued = 0;
  for (const auto& r : server_.requests()) {
    EXPECT_EQ(r.authorization, "Bearer token-1") << r.target;
    if (r.target.find("/api/v1/pods?") == 0 && r.target.find("continue=") != std::string::npos) {
      ++continued;
    }
    if (r.target.find("watch=1") != std::string::npos) {
      EXPECT_NE(r.target.find("allowWatchBookmarks=true"), std::string::npos) << r.target;
      EXPECT_NE(r.target.find("resourceVersion="), std::string::npos) << r.target;
    }
  }
  EXPECT_EQ(continued, 2u);

  // Edits: a new pod, a relabelled namespace, a changed policy, a deleted service.
  write_both("extra.yaml", pod_yaml("extra", "apps-0", "node-1", "10.244.9.9"));
  auto ns_doc = zt::testing::namespace_manifest("apps-1", {{"istio.io/dataplane-mode", "none"}});
  auto ns_text = read(manifests_ / "apps-1" / "namespace.yaml");
  zt::testing::write_manifest_file(manifests_ / "apps-1" / "namespace.yaml",
                                   ns_doc + ns_text.substr(ns_text.find("---")));
  server_.put_yaml(ns_doc);
  std::string policy = kPolicies;
  policy.replace(policy.find("action: ALLOW"), 13, "action: DENY");
  write_both("policies.yaml", policy);
  const auto& svc = cluster_.services.front();
  auto text = read(manifests_ / svc.namespace_ / "workloads.yaml");
  // Drop the service's document from the manifests; delete it on the server.
  size_t pos = 0;
  std::string kept;
  while (pos <= text.size()) {
    auto next = text.find("\n---", pos);
    auto doc = text.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    bool is_svc = doc.find("kind: Service\n") != std::string::npos &&
                  doc.find("name: " + svc.name + "\n") != std::string::npos;
    if (!is_svc) kept += doc + "\n---";
    if (next == std::string::npos) break;
    pos = next + 4;
  }
  zt::testing::write_manifest_file(manifests_ / svc.namespace_ / "workloads.yaml", kept);
  server_.remove("Service", svc.namespace_, svc.name);
  auto edited = from_manifests();
  ASSERT_EQ(edited.services.size(), want.services.size() - 1);
  ASSERT_EQ(edited.pods.size(), want.pods.size() + 1);
  ASSERT_EQ(edited.namespaces.at("apps-1").meta.labels.at("istio.io/dataplane-mode"), "none");
  EXPECT_TRUE(converges_to(edited));
}

// Of ConfigMaps, the source asks only for Istio's MeshConfig (`istio`, by a field selector: all
// its RBAC rule grants), which carries the ext_authz providers of CUSTOM policies; it follows
// edits to it like any object.
TEST_F(KubeSourceTest, ReadsIstiosMeshConfigMapAndNoOtherConfigMap) {
  const std::string mesh = R"(apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: "extensionProviders: [{name: authz, envoyExtAuthzHttp: {service: authz.a, port: 80}}]"
)";
  write_both("mesh.yaml", mesh);
  write_both("other.yaml",
             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-settings, namespace: "
             "istio-system}\ndata: {a: b}\n");
  auto want = from_manifests();
  ASSERT_EQ(want.mesh_configs.size(), 1u);
  start(config());
  ASSERT_TRUE(converges_to(want));
  size_t configmap_requests = 0;
  for (const auto& r : server_.requests()) {
    if (r.target.find("/api/v1/namespaces/istio-system/configmaps?") != 0) continue;
    ++configmap_requests;
    EXPECT_NE(r.target.find("fieldSelector=metadata.name%3Distio"), std::string::npos) << r.target;
  }
  EXPECT_GE(configmap_requests, 2u) << "a list and a watch";
  EXPECT_EQ(server_.requests().back().target.find("labelSelector"), std::string::npos);

  std::string edited = mesh;
  edited.replace(edited.find("port: 80"), 8, "port: 81");
  write_both("mesh.yaml", edited);
  auto want_edited = from_manifests();
  ASSERT_NE(want_edited.mesh_configs.begin()->second.yaml, want.mesh_configs.begin()->second.yaml);
  EXPECT_TRUE(converges_to(want_edited));
}

// RBAC older than meshd (no configmaps rule): the MeshConfig counts as none, so everything else
// is still published (a CUSTOM policy then denies what it matches), and it is read once granted.
TEST_F(KubeSourceTest, AForbiddenMeshConfigIsNoneUntilGranted) {
  write_both("mesh.yaml",
             "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
             "data:\n  mesh: \"extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: a.b, "
             "port: 9000}}]\"\n");
  auto want = from_manifests();
  ASSERT_EQ(want.mesh_configs.size(), 1u);
  server_.set_forbidden("ConfigMap", true);
  start_rechecking();
  ASSERT_TRUE(
      wait_until([](const ObjectSet& s) { return s.mesh_configs.empty() && s.size() > 0; }, 10s))
      << "published without it";
  server_.set_forbidden("ConfigMap", false);
  EXPECT_TRUE(converges_to(want)) << "read once the API server grants it";
}

// A custom resource the server does not serve (its CRD not installed: 404 on LIST, and discovery
// does not list it) is not an error for the rest: the source syncs and publishes without it, and
// picks it up once served. Once listed, a 404 never empties it: an API server can answer 404 for
// a moment, and dropping AuthorizationPolicies would fail open.
TEST_F(KubeSourceTest, AKindWhoseCrdIsNotInstalledIsEmptyUntilItIsServed) {
  auto want = from_manifests();
  ASSERT_EQ(want.destination_rules.size(), 1u);
  auto without = want;
  without.destination_rules.clear();
  server_.set_served("DestinationRule", false);
  start_rechecking();
  ASSERT_TRUE(converges_to(without)) << "objects: " << (latest_ ? latest_->size() : 0);
  const std::string rules = "/apis/networking.istio.io/v1/destinationrules";
  auto count = [&](const std::string& prefix) {  // LISTs only
    size_t n = 0;
    for (const auto& r : server_.requests()) {
      n += r.target.starts_with(prefix) && r.target.find("watch=") == std::string::npos ? 1 : 0;
    }
    return n;
  };
  // It lists the kind again, asking discovery after each 404, and never watches what is not
  // served. (VirtualService shares the group version, so discovery is asked for it too.)
  auto discovery = [&] {
    size_t n = 0;
    for (const auto& r : server_.requests()) n += r.target == "/apis/networking.istio.io/v1";
    return n;
  };
  ASSERT_TRUE(poll_until([&] { return count(rules + "?") >= 3 && discovery() >= 3; }));
  for (const auto& r : server_.requests()) {
    if (r.target.starts_with(rules)) {
      EXPECT_EQ(r.target.find("watch="), std::string::npos) << r.target;
    }
  }

  server_.set_served("DestinationRule", true);
  EXPECT_TRUE(converges_to(want));

  // Not served again after it was listed: kept, while the source keeps asking.
  const auto before = count(rules + "?");
  server_.set_served("DestinationRule", false);
  server_.drop_watches(false);
  ASSERT_TRUE(poll_until([&] { return count(rules + "?") >= before + 2; }));
  // (An absence: no event can show it. A publish follows a change within the 100 ms debounce.)
  EXPECT_FALSE(wait_until([&](const ObjectSet& s) { return !(s == want); }, 1s))
      << "the kind's objects were dropped";
}

// Discovery tells a kind served only in an older version (CRDs older than the version meshd
// reads) from one not installed: the first holds the source back, loudly, rather than publishing
// no AuthorizationPolicies; the second, PeerAuthentication here, is none while another kind of
// its group version is served.
TEST_F(KubeSourceTest, AKindServedOnlyInAnOlderVersionIsAFailureNotNone) {
  auto want = from_manifests();
  ASSERT_EQ(want.authorization_policies.size(), 1u);
  ASSERT_EQ(want.peer_authentications.size(), 1u);
  auto without = want;
  without.peer_authentications.clear();
  server_.set_served_only_in("AuthorizationPolicy", "security.istio.io/v1beta1");
  server_.set_served("PeerAuthentication", false);
  start_rechecking();
  ASSERT_TRUE(poll_until([&] { return stats().failures >= 3; }));
  EXPECT_EQ(updates(), 0u) << "published without the AuthorizationPolicies";

  server_.set_served_only_in("AuthorizationPolicy", "");
  EXPECT_TRUE(converges_to(without));
  EXPECT_EQ(updates(), 1u);
}

// GRPCRoute served only as v1alpha2 (Gateway API 1.0) is none, not a failure: routes cannot
// open anything up, and holding the source back would leave a cluster without configuration.
TEST_F(KubeSourceTest, GrpcRoutesServedOnlyInAnOlderVersionAreNone) {
  auto want = from_manifests();
  want.grpc_routes.clear();
  server_.set_served_only_in("GRPCRoute", "gateway.networking.k8s.io/v1alpha2");
  start_rechecking();
  EXPECT_TRUE(converges_to(want));
  EXPECT_EQ(updates(), 1u);
}

// A 404 for a kind that discovery says is served (an API server answering before it caught up)
// is a failure: the source retries, and its first update already has the kind's objects.
TEST_F(KubeSourceTest, AMomentary404ForAServedKindIsRetriedNotTakenAsNone) {
  auto want = from_manifests();
  ASSERT_EQ(want.authorization_policies.size(), 1u);
  server_.fail_next_requests(2, 404, "/apis/security.istio.io/v1/authorizationpolicies?");
  start(config());
  ASSERT_TRUE(converges_to(want));
  EXPECT_EQ(updates(), 1u);
  EXPECT_GE(stats().failures, 2u);
}

TEST_F(KubeSourceTest, SurvivesServerErrorsDropsGoneAndExpiredContinueTokens) {
  auto want = from_manifests();
  server_.fail_next_requests(6, 500);
  server_.set_bookmark_interval(50ms);
  start(config());
  ASSERT_TRUE(converges_to(want));
  EXPECT_GE(stats().failures, 6u);

  // Dropped mid-event: the half line is discarded, the watch resumes from the last version.
  server_.drop_watches(/*mid_event=*/true);
  write_both("extra.yaml", pod_yaml("extra", "apps-0", "node-1", "10.244.9.9"));
  auto with_extra = from_manifests();
  ASSERT_TRUE(converges_to(with_extra));

  // A bookmark moved every type's resourceVersion: re-watches after a drop start from it, not
  // from their list's version.
  auto rv_before = server_.resource_version();
  std::this_thread::sleep_for(200ms);  // a few bookmark intervals
  auto before = server_.requests().size();
  server_.drop_watches(/*mid_event=*/false);
  ASSERT_TRUE(poll_until([&] { return watches_since(before).size() >= 8; }));
  size_t rewatches = 0;
  for (const auto& t : watches_since(before)) {
    auto at = t.find("resourceVersion=");
    ASSERT_NE(at, std::string::npos) << t;
    ++rewatches;
    EXPECT_GE(std::stoll(t.substr(at + 16)), rv_before) << t;
  }
  EXPECT_GE(rewatches, 8u);
  EXPECT_GT(stats().bookmarks, 0u);

  // A change only a LIST can see, then ERROR 410 on every watch: the source relists.
  std::string moved = pod_yaml("extra", "apps-0", "node-0", "10.244.9.10");
  zt::testing::write_manifest_file(manifests_ / "extra.yaml", moved);
  server_.put_silently(zt::testing::yaml_to_json(YAML::Load(moved)));
  server_.send_error_on_watches(410);
  auto moved_want = from_manifests();
  ASSERT_TRUE(converges_to(moved_want));
  EXPECT_GE(stats().relists, 1u);

  // The continue token expires in the middle of a relist: the list starts over and completes.
  server_.expire_next_continue_token();
  std::string again = pod_yaml("extra", "apps-0", "node-1", "10.244.9.11");
  zt::testing::write_manifest_file(manifests_ / "extra.yaml", again);
  server_.put_silently(zt::testing::yaml_to_json(YAML::Load(again)));
  server_.send_error_on_watches(410);
  ASSERT_TRUE(converges_to(from_manifests()));
  EXPECT_GE(server_.continues_expired(), 1u);
  EXPECT_GE(stats().list_restarts, 1u);

  // ERROR events other than 410 and 500s on the re-watch: back off, re-watch, keep up.
  server_.send_error_on_watches(500);
  server_.fail_next_requests(3, 503);
  write_both("extra2.yaml", pod_yaml("extra2", "apps-1", "node-0", "10.244.9.12"));
  ASSERT_TRUE(converges_to(from_manifests()));
}

TEST_F(KubeSourceTest, NodeAgentWatchesOnlyThePodsOfItsNode) {
  auto want = from_manifests();
  for (auto it = want.pods.begin(); it != want.pods.end();) {
    it = it->second.node_name == "node-0" ? std::next(it) : want.pods.erase(it);
  }
  ASSERT_GT(want.pods.size(), 0u);
  auto c = config();
  c.pod_field_selector = "spec.nodeName=node-0";
  start(c);
  ASSERT_TRUE(converges_to(want));
  // A pod on another node never shows up; one on this node does.
  server_.put_yaml(pod_yaml("elsewhere", "apps-0", "node-1", "10.244.8.1"));
  server_.put_yaml(pod_yaml("here", "apps-0", "node-0", "10.244.8.2"));
  ASSERT_TRUE(wait_until([](const ObjectSet& s) { return s.pods.count("apps-0/here") > 0; }));
  EXPECT_EQ(latest_->pods.count("apps-0/elsewhere"), 0u);
  for (const auto& r : server_.requests()) {
    bool pods = r.target.starts_with("/api/v1/pods?");
    EXPECT_EQ(r.target.find("fieldSelector=spec.nodeName%3Dnode-0") != std::string::npos, pods)
        << r.target;
  }
}

TEST_F(KubeSourceTest, RotatedTokenIsUsedForTheNextRequests) {
  start(config());
  ASSERT_TRUE(converges_to(from_manifests()));
  set_token("token-2");
  auto before = server_.requests().size();
  server_.drop_watches(false);
  ASSERT_TRUE(poll_until([&] { return watches_since(before).size() >= 8; }));
  auto after = server_.requests();
  ASSERT_GE(after.size(), before + 8);
  for (size_t i = before; i < after.size(); ++i) {
    EXPECT_EQ(after[i].authorization, "Bearer token-2") << after[i].target;
  }
}

TEST_F(KubeSourceTest, BurstOfEventsIsOneUpdateAndInvalidObjectsKeepTheirLastGoodVersion) {
  auto c = config();
  c.debounce = 300ms;
  start(c);
  ASSERT_TRUE(converges_to(from_manifests()));
  auto first = updates();
  for (int i = 0; i < 30; ++i) {
    server_.put_yaml(pod_yaml(fmt::format("burst-{}", i), "apps-2", "node-0",
                              fmt::format("10.244.7.{}", i + 1)));
  }
  ASSERT_TRUE(wait_until([](const ObjectSet& s) { return s.pods.count("apps-2/burst-29") > 0; }));
  std::this_thread::sleep_for(400ms);
  EXPECT_LE(updates() - first, 2u);

  // An invalid edit: reported with the object and field, the old version stays.
  auto bad = zt::testing::yaml_to_json(YAML::Load(pod_yaml("burst-0", "apps-2", "node-0", "x")));
  bad["spec"]["nodeName"] = nlohmann::json::array({1, 2});
  server_.put(bad);
  {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, 5s, [&] { return !errors_.empty(); }));
    EXPECT_NE(errors_.back().find("Pod apps-2/burst-0: spec.nodeName"), std::string::npos)
        << errors_.back();
    EXPECT_EQ(latest_->pods.at("apps-2/burst-0").node_name, "node-0");
  }
  // Deleting it (the DELETED object is the invalid one) removes it.
  server_.remove("Pod", "apps-2", "burst-0");
  EXPECT_TRUE(wait_until([](const ObjectSet& s) { return s.pods.count("apps-2/burst-0") == 0; }));
}

}  // namespace
}  // namespace zt::meshd::kube
