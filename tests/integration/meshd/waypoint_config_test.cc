// meshd serves each waypoint's L7 configuration (ambientmesh.waypoint.v1.WaypointConfig) on the
// Delta xDS stream: the real build/bin/meshd on a manifest directory with a waypoint Gateway, a
// Service that uses it, an HTTPRoute, a DestinationRule and AuthorizationPolicies; a client
// subscribed to the type gets one resource per waypoint and an update when the route changes. An
// update a waypoint would refuse keeps the object's last good version.
#include <filesystem>
#include <random>
#include <regex>

#include <gtest/gtest.h>
#include <signal.h>
#include <yaml-cpp/yaml.h>

#include "ambientmesh/waypoint/v1/waypoint.pb.h"
#include "common/net/address.h"
#include "tests/integration/meshd/ads_test_client.h"
#include "tests/support/cluster_manifests.h"
#include "tests/support/daemon.h"
#include "tests/support/jwt_signer.h"
#include "tests/support/servers.h"
#include "waypoint/authz/request_authn.h"
#include "waypoint/state/config_store.h"

namespace zt::meshd {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::AdsTestClient;

constexpr const char* kWaypointUrl = "type.googleapis.com/ambientmesh.waypoint.v1.WaypointConfig";

constexpr const char* kBase = R"(apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {istio.io/dataplane-mode: ambient}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: idle-waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: shop
  labels: {istio.io/use-waypoint: waypoint}
spec:
  selector: {app: reviews}
  clusterIP: 10.96.5.1
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  selector: {app: ratings}
  clusterIP: 10.96.5.2
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: shop}
spec:
  host: ratings.shop.svc.cluster.local
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ztunnel-only, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ratings, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: ratings, port: 9080}]
  rules: [{backendRefs: [{name: ratings, port: 9080}]}]
)";

std::string route(const std::string& backend) {
  return fmt::format(R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
  namespace: shop
  creationTimestamp: "2026-01-02T03:04:05Z"
  labels: {{dropped: "yes"}}
spec:
  parentRefs: [{{group: "", kind: Service, name: reviews, port: 9080}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /v2}}}}]
    backendRefs: [{{name: {0}, port: 9080}}]
    timeouts: {{request: 5s}}
)",
                     backend);
}

struct Doc {
  std::string kind, name;
  YAML::Node node;
};

std::vector<Doc> documents(const std::string& yaml) {
  std::vector<Doc> out;
  for (const auto& n : YAML::LoadAll(yaml)) {
    out.push_back({n["kind"].as<std::string>(), n["metadata"]["name"].as<std::string>(), n});
  }
  return out;
}

std::map<std::string, std::pair<std::string, std::string>> configs(
    const envoy::service::discovery::v3::DeltaDiscoveryResponse& r) {
  std::map<std::string, std::pair<std::string, std::string>> out;  // name -> (version, yaml)
  for (const auto& res : r.resources()) {
    ambientmesh::waypoint::v1::WaypointConfig c;
    EXPECT_EQ(res.resource().type_url(), kWaypointUrl);
    EXPECT_TRUE(res.resource().UnpackTo(&c));
    out[res.name()] = {res.version(), c.yaml()};
  }
  return out;
}

class MeshdWaypointConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("meshd-waypoint-{:x}", rd());
    fs::create_directories(dir_ / "manifests");
    zt::testing::write_manifest_file(dir_ / "manifests" / "base.yaml", kBase);
    zt::testing::write_manifest_file(dir_ / "manifests" / "route.yaml", route("reviews-v2"));
    auto d =
        zt::testing::Daemon::start(zt::testing::bin_path("meshd"),
                                   {"--manifests", (dir_ / "manifests").string(), "--grpc-address",
                                    "127.0.0.1:0", "--ca-dir", (dir_ / "ca").string()});
    ASSERT_TRUE(d) << d.error().describe();
    meshd_ = std::move(*d);
    ASSERT_TRUE(meshd_->wait_for(std::regex("meshd ready"), 20s)) << meshd_->output();
    auto ep = meshd_->listening("grpc");
    ASSERT_TRUE(ep) << meshd_->output();
    target_ = net::format_endpoint(*ep);
  }
  void TearDown() override {
    if (meshd_) meshd_->stop(SIGTERM);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Subscribes `c` to the waypoint type and takes (and acknowledges) the first answer.
  void take_first(AdsTestClient& c) {
    ASSERT_TRUE(c.subscribe(kWaypointUrl));
    auto first = c.next(10s);
    ASSERT_TRUE(first) << meshd_->output();
    c.apply(*first);
  }

  fs::path dir_;
  std::unique_ptr<zt::testing::Daemon> meshd_;
  std::string target_;
};

TEST_F(MeshdWaypointConfig, SubscriberGetsEachWaypointsObjectsAndAnUpdateWhenTheRouteChanges) {
  AdsTestClient c(target_, "waypoint~10.244.0.20~waypoint-0.shop~shop.svc");
  ASSERT_TRUE(c.subscribe(kWaypointUrl));
  auto first = c.next(10s);
  ASSERT_TRUE(first) << meshd_->output();
  EXPECT_EQ(first->type_url(), kWaypointUrl);
  auto got = configs(*first);
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(got.contains("shop/waypoint"));
  ASSERT_TRUE(got.contains("shop/idle-waypoint"));
  EXPECT_EQ(got["shop/idle-waypoint"].second, "");  // no service uses it

  auto docs = documents(got["shop/waypoint"].second);
  ASSERT_EQ(docs.size(), 3u) << got["shop/waypoint"].second;
  // The route of the service that uses the waypoint; not ratings' (ratings has no waypoint).
  EXPECT_EQ(docs[0].kind, "HTTPRoute");
  EXPECT_EQ(docs[0].name, "reviews");
  EXPECT_EQ(docs[0].node["apiVersion"].as<std::string>(), "gateway.networking.k8s.io/v1");
  EXPECT_EQ(docs[0].node["metadata"]["namespace"].as<std::string>(), "shop");
  EXPECT_EQ(docs[0].node["metadata"]["creationTimestamp"].as<std::string>(),
            "2026-01-02T03:04:05Z");
  EXPECT_FALSE(docs[0].node["metadata"]["labels"]);
  EXPECT_EQ(docs[0].node["spec"]["rules"][0]["backendRefs"][0]["name"].as<std::string>(),
            "reviews-v2");
  EXPECT_EQ(docs[0].node["spec"]["rules"][0]["timeouts"]["request"].as<std::string>(), "5s");
  // The DestinationRule for reviews (short host), not the one for ratings.
  EXPECT_EQ(docs[1].kind, "DestinationRule");
  EXPECT_EQ(docs[1].name, "reviews");
  EXPECT_EQ(docs[1].node["spec"]["trafficPolicy"]["loadBalancer"]["simple"].as<std::string>(),
            "ROUND_ROBIN");
  // The policy targeting the Gateway; the selector policy is ztunnel's.
  EXPECT_EQ(docs[2].kind, "AuthorizationPolicy");
  EXPECT_EQ(docs[2].name, "deny-delete");
  EXPECT_EQ(docs[2].node["spec"]["action"].as<std::string>(), "DENY");
  c.apply(*first);
  auto old_version = got["shop/waypoint"].first;
  EXPECT_FALSE(old_version.empty());

  // The route changes: only that waypoint's resource is pushed, with a new version.
  zt::testing::write_manifest_file(dir_ / "manifests" / "route.yaml", route("reviews-v3"));
  auto update = c.next(10s);
  ASSERT_TRUE(update) << meshd_->output();
  auto changed = configs(*update);
  ASSERT_EQ(changed.size(), 1u);
  ASSERT_TRUE(changed.contains("shop/waypoint"));
  EXPECT_NE(changed["shop/waypoint"].first, old_version);
  auto new_docs = documents(changed["shop/waypoint"].second);
  ASSERT_EQ(new_docs.size(), 3u);
  EXPECT_EQ(new_docs[0].node["spec"]["rules"][0]["backendRefs"][0]["name"].as<std::string>(),
            "reviews-v3");
  c.apply(*update);

  // Removing the route leaves the DestinationRule and the policy.
  fs::remove(dir_ / "manifests" / "route.yaml");
  auto removed = c.next(10s);
  ASSERT_TRUE(removed) << meshd_->output();
  auto after = configs(*removed);
  ASSERT_TRUE(after.contains("shop/waypoint"));
  auto rest = documents(after["shop/waypoint"].second);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].kind, "DestinationRule");
  EXPECT_EQ(rest[1].kind, "AuthorizationPolicy");
}

// An edit the waypoint's reader refuses (the DestinationRule takes a field Istio removed) is
// reported and the rule's last good version kept, so the next route change still reaches the
// waypoint in a configuration it accepts. Before, the edit went out and the waypoint refused
// that configuration and every later one until the rule was fixed.
TEST_F(MeshdWaypointConfig, AnEditTheWaypointWouldRefuseKeepsTheLastGoodVersion) {
  AdsTestClient c(target_, "waypoint~10.244.0.20~waypoint-0.shop~shop.svc");
  ASSERT_NO_FATAL_FAILURE(take_first(c));

  std::string bad = kBase;
  const std::string good_policy = "trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}";
  auto at = bad.find(good_policy);
  ASSERT_NE(at, std::string::npos);
  bad.replace(at, good_policy.size(),
              "trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}, "
              "outlierDetection: {consecutiveErrors: 5}}");
  zt::testing::write_manifest_file(dir_ / "manifests" / "base.yaml", bad);
  ASSERT_TRUE(
      meshd_->wait_for(std::regex("DestinationRule shop/reviews: "
                                  "spec\\.trafficPolicy\\.outlierDetection\\.consecutiveErrors: .*"
                                  "\\(a waypoint would refuse it\\)"),
                       10s))
      << meshd_->output();

  zt::testing::write_manifest_file(dir_ / "manifests" / "route.yaml", route("reviews-v3"));
  std::string yaml;
  while (yaml.find("reviews-v3") == std::string::npos) {
    auto update = c.next(10s);
    ASSERT_TRUE(update) << meshd_->output();
    auto got = configs(*update);
    ASSERT_TRUE(got.contains("shop/waypoint"));
    yaml = got["shop/waypoint"].second;
    // Every configuration sent is one the waypoint accepts.
    auto snapshot = waypoint::state::build_config_snapshot(yaml, "test");
    ASSERT_TRUE(snapshot) << snapshot.error().message << "\n" << yaml;
    c.apply(*update);
  }
  auto docs = documents(yaml);
  ASSERT_EQ(docs.size(), 3u) << yaml;
  EXPECT_EQ(docs[1].kind, "DestinationRule");
  EXPECT_EQ(docs[1].node["spec"]["trafficPolicy"]["loadBalancer"]["simple"].as<std::string>(),
            "ROUND_ROBIN");
  EXPECT_FALSE(docs[1].node["spec"]["trafficPolicy"]["outlierDetection"]);
}

// A mesh VirtualService for a service that uses the waypoint reaches the waypoint, in a
// configuration it accepts; one for a service without the waypoint does not; one the waypoint
// would refuse (a delegate) is reported and kept out.
TEST_F(MeshdWaypointConfig, VirtualServicesReachTheWaypointOfTheirService) {
  AdsTestClient c(target_, "waypoint~10.244.0.20~waypoint-0.shop~shop.svc");
  ASSERT_NO_FATAL_FAILURE(take_first(c));

  zt::testing::write_manifest_file(dir_ / "manifests" / "vs.yaml",
                                   R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-faults, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings]
  http: [{timeout: 1s, route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-delegate, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http: [{delegate: {name: reviews-delegate}}]
)");
  ASSERT_TRUE(meshd_->wait_for(std::regex("VirtualService shop/reviews-delegate: .*delegate: .*"
                                          "\\(a waypoint would refuse it\\)"),
                               10s))
      << meshd_->output();
  auto update = c.next(10s);
  ASSERT_TRUE(update) << meshd_->output();
  auto got = configs(*update);
  ASSERT_TRUE(got.contains("shop/waypoint"));
  const auto& yaml = got["shop/waypoint"].second;
  auto snapshot = waypoint::state::build_config_snapshot(yaml, "test");
  ASSERT_TRUE(snapshot) << snapshot.error().message << "\n" << yaml;
  auto docs = documents(yaml);
  ASSERT_EQ(docs.size(), 4u) << yaml;
  EXPECT_EQ(docs[1].kind, "VirtualService");
  EXPECT_EQ(docs[1].name, "reviews-faults");
  EXPECT_EQ(docs[1].node["spec"]["http"][0]["fault"]["abort"]["httpStatus"].as<int>(), 500);
}

TEST_F(MeshdWaypointConfig, ZtunnelSubscriptionsDoNotReceiveWaypointConfigs) {
  AdsTestClient c(target_, "ztunnel~10.244.0.10~ztunnel-0.istio-system~istio-system.svc");
  ASSERT_TRUE(c.subscribe(testing::kAddressUrl));
  auto first = c.next(10s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->type_url(), testing::kAddressUrl);
  c.apply(*first);
  ASSERT_TRUE(c.subscribe(testing::kAuthorizationUrl));
  auto policies = c.next(10s);
  ASSERT_TRUE(policies);
  EXPECT_EQ(policies->type_url(), testing::kAuthorizationUrl);
  c.apply(*policies);
  EXPECT_FALSE(c.next(500ms));
}

// A RequestAuthentication's jwksUri is fetched by meshd, as istiod fetches it, and the waypoint
// gets the keys inline: in its first configuration (meshd fetches before it serves), again when
// the keys change (here refreshed every 300 ms), and not
// replaced by a body that is no key set (the keys fetched before stay).
TEST(MeshdJwks, TheWaypointGetsTheKeysBehindAJwksUriInline) {
  const zt::testing::JwtSigner first(zt::testing::JwtSigner::Kind::kRsa, "one");
  const zt::testing::JwtSigner second(zt::testing::JwtSigner::Kind::kEcP256, "two");
  auto keys = zt::testing::HttpHelloServer::start(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0), "jwks");
  keys->set_body(first.jwks(), 700ms);  // slow: meshd must wait for it before serving
  const std::string uri =
      fmt::format("http://{}/keys.json", net::format_endpoint(keys->endpoint()));

  std::random_device rd;
  const auto dir = fs::temp_directory_path() / fmt::format("meshd-jwks-{:x}", rd());
  fs::create_directories(dir / "manifests");
  zt::testing::write_manifest_file(dir / "manifests" / "base.yaml", kBase);
  zt::testing::write_manifest_file(dir / "manifests" / "authn.yaml",
                                   fmt::format(R"(apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: shop}}
spec:
  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]
  jwtRules: [{{issuer: https://issuer.example, jwksUri: "{}", forwardOriginalToken: true}}]
)",
                                               uri));
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  auto meshd =
      zt::testing::Daemon::start(zt::testing::bin_path("meshd"),
                                 {"--manifests", (dir / "manifests").string(), "--grpc-address",
                                  "127.0.0.1:0", "--jwks-refresh-interval", "300ms"});
  ASSERT_TRUE(meshd) << meshd.error().describe();
  ASSERT_TRUE((*meshd)->wait_for(std::regex("meshd ready"), 20s)) << (*meshd)->output();
  auto ep = (*meshd)->listening("grpc");
  ASSERT_TRUE(ep) << (*meshd)->output();

  AdsTestClient c(net::format_endpoint(*ep), "waypoint~10.244.0.20~waypoint-0.shop~shop.svc");
  ASSERT_TRUE(c.subscribe(kWaypointUrl));
  // The waypoint's configuration once its rule has keys `jwks` inline.
  int pushes = 0;
  auto until_keys = [&](const std::string& jwks) -> std::optional<YAML::Node> {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = c.next(10s);
      if (!r) return std::nullopt;
      c.apply(*r);
      auto got = configs(*r);
      if (!got.contains("shop/waypoint")) continue;
      ++pushes;
      for (const auto& d : documents(got["shop/waypoint"].second)) {
        if (d.kind != "RequestAuthentication") continue;
        auto rule = d.node["spec"]["jwtRules"][0];
        if (rule["jwks"] && rule["jwks"].as<std::string>() == jwks) {
          return d.node;
        }
      }
    }
    return std::nullopt;
  };
  auto with_first = until_keys(first.jwks());
  ASSERT_TRUE(with_first) << (*meshd)->output();
  EXPECT_EQ(pushes, 1) << "meshd fetches the keys before it serves: the waypoint starts with them";
  EXPECT_FALSE((*with_first)["spec"]["jwtRules"][0]["jwksUri"]);
  EXPECT_TRUE((*with_first)["spec"]["jwtRules"][0]["forwardOriginalToken"].as<bool>());
  // The waypoint reads it and verifies the issuer's tokens with it.
  YAML::Emitter out;
  out << *with_first;
  auto snapshot = waypoint::state::build_config_snapshot(out.c_str(), "test");
  ASSERT_TRUE(snapshot) << snapshot.error().describe();
  ASSERT_EQ((*snapshot)->authentications.size(), 1u);
  const auto* authn = &(*snapshot)->authentications[0];
  waypoint::http::RequestHead head;
  head.target = "/";
  head.headers.push_back(
      {"authorization", "Bearer " + first.sign({{"iss", "https://issuer.example"}, {"sub", "a"}})});
  auto result = waypoint::authz::authenticate({&authn, 1}, head, std::chrono::system_clock::now());
  EXPECT_FALSE(result.rejected) << result.reason;
  EXPECT_TRUE(result.identity);

  // The issuer rotates its keys: the next refresh brings them.
  keys->set_body(second.jwks());
  EXPECT_TRUE(until_keys(second.jwks())) << (*meshd)->output();

  // A body that is no key set is refused and the keys fetched before stay.
  keys->set_body("<html>maintenance</html>");
  EXPECT_TRUE((*meshd)->wait_for(std::regex("jwks fetch failed .*keeping=previous keys"), 10s))
      << (*meshd)->output();
  EXPECT_FALSE(c.next(1s)) << "no push for a refused body";
  EXPECT_EQ((*meshd)->stop(SIGTERM), 0) << (*meshd)->output();
}

}  // namespace
}  // namespace zt::meshd
