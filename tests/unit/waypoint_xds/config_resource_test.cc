#include "waypoint/xds/config_resource.h"

#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include "ambientmesh/waypoint/v1/waypoint.pb.h"

namespace zt::waypoint::xds {
namespace {

constexpr const char* kRoute = R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: default, creationTimestamp: "2026-01-02T03:04:05Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - backendRefs: [{name: reviews-v1, port: 9080}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: default}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE]}}]
)";

zt::xds::Resource resource(std::string name, std::string version, std::string yaml) {
  ambientmesh::waypoint::v1::WaypointConfig message;
  message.set_yaml(std::move(yaml));
  zt::xds::Resource r;
  r.name = std::move(name);
  r.version = std::move(version);
  // By hand: PackFrom would build the message's descriptor, which
  // WaypointXds.DecodingBuildsNoDescriptors checks the cache never does.
  r.body.set_type_url(std::string(kWaypointConfigType));
  r.body.set_value(message.SerializeAsString());
  return r;
}

zt::xds::DeltaUpdate added(zt::xds::Resource r) {
  zt::xds::DeltaUpdate u;
  u.type_url = std::string(kWaypointConfigType);
  u.added.push_back(std::move(r));
  return u;
}

TEST(WaypointXds, ResourceNameIsNamespaceSlashName) {
  EXPECT_EQ(resource_name("default", "waypoint"), "default/waypoint");
}

TEST(WaypointXds, TypeUrlIsThePackedMessageType) {
  google::protobuf::Any body;
  body.PackFrom(ambientmesh::waypoint::v1::WaypointConfig{});
  EXPECT_EQ(body.type_url(), kWaypointConfigType);
}

// The body's type is checked by name and its bytes parsed: the cache never builds the
// WaypointConfig descriptor, which would load the generated descriptor pool (heap and code pages
// that stay resident).
TEST(WaypointXds, DecodingBuildsNoDescriptors) {
  state::ConfigStore store;
  WaypointConfigCache cache("default", "waypoint");
  EXPECT_TRUE(cache.apply(added(resource("default/waypoint", "1", kRoute)), store).empty());
  ASSERT_EQ(store.current()->config->routes.size(), 1u);
  EXPECT_FALSE(google::protobuf::DescriptorPool::generated_pool()->InternalIsFileLoaded(
      "ambientmesh/waypoint/v1/waypoint.proto"));
}

TEST(WaypointXds, ValidResourceIsPublishedWithItsVersion) {
  state::ConfigStore store;
  WaypointConfigCache cache("default", "waypoint");
  auto rejected = cache.apply(added(resource("default/waypoint", "abc", kRoute)), store);
  EXPECT_TRUE(rejected.empty());
  auto snap = store.current();
  EXPECT_EQ(snap->origin, "xds version abc");
  EXPECT_EQ(snap->generation, 1u);
  ASSERT_EQ(snap->config->routes.size(), 1u);
  EXPECT_EQ(snap->config->routes[0].name, "reviews");
  ASSERT_EQ(snap->policies.size(), 1u);
  EXPECT_EQ(snap->policies[0].key(), "default/deny-delete");
}

TEST(WaypointXds, InvalidResourceIsRejectedWithTheParseErrorAndTheLastGoodStays) {
  state::ConfigStore store;
  WaypointConfigCache cache("default", "waypoint");
  ASSERT_TRUE(cache.apply(added(resource("default/waypoint", "v1", kRoute)), store).empty());
  const std::string bad = R"(apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: default}
spec:
  parentRefs: [{kind: Service, name: reviews}]
  rules:
  - matches: [{path: {type: Glob, value: /x}}]
)";
  auto rejected = cache.apply(added(resource("default/waypoint", "v2", bad)), store);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].name, "default/waypoint");
  EXPECT_NE(rejected[0].reason.find("Glob"), std::string::npos) << rejected[0].reason;
  auto snap = store.current();
  EXPECT_EQ(snap->origin, "xds version v1");
  ASSERT_EQ(snap->config->routes.size(), 1u);
  EXPECT_EQ(snap->config->routes[0].name, "reviews");
}

TEST(WaypointXds, ABodyOfAnotherTypeIsRejected) {
  state::ConfigStore store;
  WaypointConfigCache cache("default", "waypoint");
  auto r = resource("default/waypoint", "v1", kRoute);
  r.body.set_type_url("type.googleapis.com/istio.workload.Address");
  auto rejected = cache.apply(added(std::move(r)), store);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(store.current()->generation, 0u);
}

TEST(WaypointXds, RemovalPublishesAnEmptyConfiguration) {
  state::ConfigStore store;
  WaypointConfigCache cache("default", "waypoint");
  ASSERT_TRUE(cache.apply(added(resource("default/waypoint", "v1", kRoute)), store).empty());
  zt::xds::DeltaUpdate removal;
  removal.type_url = std::string(kWaypointConfigType);
  removal.removed.push_back("default/waypoint");
  EXPECT_TRUE(cache.apply(removal, store).empty());
  auto snap = store.current();
  EXPECT_EQ(snap->generation, 2u);
  EXPECT_TRUE(snap->config->routes.empty());
  EXPECT_TRUE(snap->policies.empty());
}

TEST(WaypointXds, OtherWaypointsAndOtherTypesAreIgnored) {
  state::ConfigStore store;
  WaypointConfigCache cache("default", "waypoint");
  // Another waypoint's resource, even an invalid one, is neither applied nor rejected.
  EXPECT_TRUE(cache.apply(added(resource("other/waypoint", "v1", kRoute)), store).empty());
  EXPECT_TRUE(cache.apply(added(resource("default/other", "v1", "not: [valid")), store).empty());
  zt::xds::DeltaUpdate removal;
  removal.type_url = std::string(kWaypointConfigType);
  removal.removed.push_back("default/other");
  EXPECT_TRUE(cache.apply(removal, store).empty());
  auto wrong_type = added(resource("default/waypoint", "v1", kRoute));
  wrong_type.type_url = "type.googleapis.com/istio.workload.Address";
  EXPECT_TRUE(cache.apply(wrong_type, store).empty());
  EXPECT_EQ(store.current()->generation, 0u);
  EXPECT_EQ(store.current()->origin, "empty");
}

}  // namespace
}  // namespace zt::waypoint::xds
