#include "meshd/manifest/parse.h"

#include <gtest/gtest.h>

namespace zt::meshd::manifest {
namespace {

template <class T>
const T& only(const ParsedManifest& parsed) {
  EXPECT_TRUE(parsed.errors.empty()) << parsed.errors.front().message;
  EXPECT_EQ(parsed.objects.size(), 1u);
  return std::get<T>(parsed.objects.at(0));
}

std::string first_error(const ParsedManifest& parsed) {
  return parsed.errors.empty() ? std::string("<no error>") : parsed.errors.front().message;
}

TEST(ManifestParse, PodFieldsAreRead) {
  auto parsed = parse_manifest(R"(
apiVersion: v1
kind: Pod
metadata:
  name: web-7d9f8-abcde
  generateName: web-7d9f8-
  namespace: shop
  labels: {app: web, version: v2}
  annotations: {note: x}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f8, controller: true}
spec:
  nodeName: node-1
  serviceAccountName: web-sa
  containers:
  - name: a
    command: ["/usr/local/bin/waypoint", "--x"]
    ports:
    - {name: http, containerPort: 8080}
    - {containerPort: 9090, protocol: UDP}
  - name: b
    ports: [{name: metrics, containerPort: 15020}]
  - {name: c, command: not-a-list}
status:
  phase: Running
  podIP: 10.0.0.5
  podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]
  conditions: [{type: Initialized, status: "True"}, {type: Ready, status: "False"}]
)",
                               "pods.yaml");
  const auto& pod = only<Pod>(parsed);
  EXPECT_EQ(pod.meta.name, "web-7d9f8-abcde");
  EXPECT_EQ(pod.meta.generate_name, "web-7d9f8-");
  EXPECT_EQ(pod.meta.namespace_, "shop");
  EXPECT_EQ(pod.meta.labels.at("version"), "v2");
  ASSERT_EQ(pod.meta.owner_references.size(), 1u);
  EXPECT_TRUE(pod.meta.owner_references[0].controller);
  EXPECT_EQ(pod.node_name, "node-1");
  EXPECT_EQ(pod.service_account_name, "web-sa");
  ASSERT_EQ(pod.ports.size(), 3u);
  EXPECT_EQ(pod.ports[0].name, "http");
  EXPECT_EQ(pod.ports[1].protocol, "UDP");
  EXPECT_EQ(pod.ports[2].container_port, 15020u);
  // Each container's program (only the simulator reads it): a malformed command is not an error.
  EXPECT_EQ(pod.commands, (std::vector<std::string>{"/usr/local/bin/waypoint", "", ""}));
  EXPECT_EQ(pod.ips, (std::vector<std::string>{"10.0.0.5", "fd00::5"}));
  EXPECT_EQ(pod.phase, "Running");
  EXPECT_EQ(pod.ready, std::optional<bool>(false));
}

TEST(ManifestParse, DefaultsFillWhatTheApiServerWould) {
  auto parsed = parse_manifest("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "p.yaml");
  const auto& pod = only<Pod>(parsed);
  EXPECT_EQ(pod.meta.namespace_, "default");
  EXPECT_EQ(pod.service_account_name, "default");
  EXPECT_TRUE(pod.ips.empty());
  EXPECT_FALSE(pod.ready.has_value());
}

TEST(ManifestParse, ServicePortsKeepNumericNamedAndDefaultTargets) {
  auto parsed = parse_manifest(R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.1
  clusterIPs: [10.96.0.1, "fd00:96::1"]
  selector: {app: web}
  internalTrafficPolicy: Local
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: grpc, port: 9000, targetPort: 9090}
  - {name: plain, port: 7000}
)",
                               "svc.yaml");
  const auto& svc = only<Service>(parsed);
  EXPECT_EQ(svc.cluster_ips, (std::vector<std::string>{"10.96.0.1", "fd00:96::1"}));
  ASSERT_TRUE(svc.selector);
  EXPECT_EQ(svc.selector->at("app"), "web");
  ASSERT_EQ(svc.ports.size(), 3u);
  EXPECT_EQ(svc.ports[0].target_port_name, "http");
  EXPECT_EQ(svc.ports[0].target_port, 0u);
  EXPECT_EQ(svc.ports[1].target_port, 9090u);
  EXPECT_EQ(svc.ports[2].target_port, 7000u);
  EXPECT_EQ(svc.internal_traffic_policy, "Local");
}

TEST(ManifestParse, HeadlessServiceAndNoSelector) {
  auto parsed = parse_manifest(
      "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {clusterIP: None, ports: [{port: "
      "5432}]}\n",
      "svc.yaml");
  const auto& svc = only<Service>(parsed);
  EXPECT_TRUE(svc.headless);
  EXPECT_TRUE(svc.cluster_ips.empty());
  EXPECT_FALSE(svc.selector.has_value());
}

TEST(ManifestParse, AuthorizationPolicyV1AndV1beta1) {
  for (std::string version : {"security.istio.io/v1", "security.istio.io/v1beta1"}) {
    auto parsed = parse_manifest("apiVersion: " + version + R"(
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/a/sa/b"], notNamespaces: [x], ipBlocks: [10.0.0.0/8],
               serviceAccounts: [a/b]}
    to:
    - operation: {ports: ["80", "8080"], methods: [GET]}
    when:
    - {key: source.ip, values: [1.2.3.4]}
)",
                                 "ap.yaml");
    const auto& ap = only<AuthorizationPolicy>(parsed);
    EXPECT_EQ(ap.action, "DENY");
    ASSERT_TRUE(ap.selector);
    ASSERT_EQ(ap.rules.size(), 1u);
    EXPECT_EQ(ap.rules[0].from[0].principals[0], "cluster.local/ns/a/sa/b");
    EXPECT_EQ(ap.rules[0].from[0].service_accounts[0], "a/b");
    EXPECT_EQ(ap.rules[0].to[0].ports, (std::vector<std::string>{"80", "8080"}));
    EXPECT_EQ(ap.rules[0].to[0].methods[0], "GET");
    EXPECT_EQ(ap.rules[0].when[0].key, "source.ip");
  }
}

TEST(ManifestParse, PeerAuthenticationGatewayAndHttpRoute) {
  auto parsed = parse_manifest(R"(
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: PERMISSIVE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop, labels: {istio.io/waypoint-for: all}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
status:
  addresses: [{type: Hostname, value: waypoint.shop.svc.cluster.local}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  hostnames: [web.shop]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}, method: GET,
               headers: [{name: x-user, value: a}]}]
    backendRefs: [{name: web-v2, port: 80, weight: 90}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: a, value: b}]}}]
)",
                               "mixed.yaml");
  ASSERT_TRUE(parsed.errors.empty()) << first_error(parsed);
  ASSERT_EQ(parsed.objects.size(), 3u);
  EXPECT_EQ(parsed.documents, (std::vector<size_t>{0, 1, 2}));
  const auto& pa = std::get<PeerAuthentication>(parsed.objects[0]);
  EXPECT_EQ(pa.mode, "STRICT");
  EXPECT_EQ(pa.port_level_mtls.at(8080), "PERMISSIVE");
  const auto& gw = std::get<Gateway>(parsed.objects[1]);
  EXPECT_EQ(gw.gateway_class_name, "istio-waypoint");
  ASSERT_EQ(gw.listeners.size(), 1u);
  EXPECT_EQ(gw.listeners[0].port, 15008u);
  ASSERT_EQ(gw.status_addresses.size(), 1u);
  EXPECT_EQ(gw.status_addresses[0].type, "Hostname");
  const auto& route = std::get<HttpRoute>(parsed.objects[2]);
  ASSERT_EQ(route.parent_refs.size(), 1u);
  EXPECT_EQ(route.parent_refs[0].kind, "Service");
  EXPECT_EQ(route.parent_refs[0].namespace_, "shop");
  EXPECT_EQ(route.parent_refs[0].port, 80u);
  ASSERT_EQ(route.rules.size(), 1u);
  EXPECT_EQ(route.rules[0].matches[0].path_value, "/api");
  EXPECT_EQ(route.rules[0].matches[0].headers[0].name, "x-user");
  EXPECT_EQ(route.rules[0].backend_refs[0].weight, 90u);
  EXPECT_NE(route.rules[0].filters_yaml.find("RequestHeaderModifier"), std::string::npos);
}

TEST(ManifestParse, UnknownKindsAndGroupsAreIgnored) {
  auto parsed = parse_manifest(R"(
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress}
---
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
)",
                               "other.yaml");
  EXPECT_TRUE(parsed.errors.empty()) << first_error(parsed);
  EXPECT_TRUE(parsed.objects.empty());
}

TEST(ManifestParse, ListWrapperItemsAreObjects) {
  auto parsed = parse_manifest(R"(
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: a}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: s, namespace: a}}
)",
                               "list.yaml");
  ASSERT_TRUE(parsed.errors.empty()) << first_error(parsed);
  ASSERT_EQ(parsed.objects.size(), 2u);
  EXPECT_EQ(key_of(parsed.objects[0]).describe(), "Namespace a");
  EXPECT_EQ(key_of(parsed.objects[1]).describe(), "ServiceAccount a/s");
}

TEST(ManifestParse, JsonIsAccepted) {
  auto doc =
      YAML::Load(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},)"
                 R"("spec":{"nodeName":"node-a"},"status":{"podIP":"10.1.1.1"}})");
  auto converted = convert(doc);
  ASSERT_TRUE(converted) << converted.error().message;
  ASSERT_TRUE(converted->has_value());
  const auto& pod = std::get<Pod>(**converted);
  EXPECT_EQ(pod.node_name, "node-a");
  EXPECT_EQ(pod.ips, std::vector<std::string>{"10.1.1.1"});
}

struct ErrorCase {
  const char* name;
  const char* yaml;
  const char* message;  // the whole message
  bool has_key;
};

class ManifestErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ManifestErrors, NameFileObjectAndField) {
  const auto& c = GetParam();
  auto parsed = parse_manifest(c.yaml, "pods.yaml");
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].message, c.message);
  EXPECT_EQ(parsed.errors[0].file, "pods.yaml");
  EXPECT_EQ(parsed.errors[0].object.has_value(), c.has_key);
  EXPECT_TRUE(parsed.objects.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Table, ManifestErrors,
    ::testing::Values(
        ErrorCase{"NodeNameNotString",
                  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {nodeName: [a]}\n",
                  "pods.yaml: Pod default/web: spec.nodeName: must be a string", true},
        ErrorCase{"PodIpNotIp",
                  "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: x}\n"
                  "status: {podIP: 10.0.0.300}\n",
                  "pods.yaml: Pod x/web: status.podIP: must be an IP address, got \"10.0.0.300\"",
                  true},
        ErrorCase{"ContainerPortOutOfRange",
                  "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n"
                  "  - ports: [{containerPort: 70000}]\n",
                  "pods.yaml: Pod default/web: spec.containers[0].ports[0].containerPort: must be "
                  "an integer from 1 to 65535",
                  true},
        ErrorCase{"LabelsNotStrings",
                  "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: [x]}}\n",
                  "pods.yaml: Pod default/web: metadata.labels.app: must be a string", true},
        ErrorCase{"MissingName", "---\napiVersion: v1\nkind: Pod\nmetadata: {}\n",
                  "pods.yaml: document 1 (Pod): metadata.name: is required", false},
        ErrorCase{"MissingKind", "apiVersion: v1\nmetadata: {name: x}\n",
                  "pods.yaml: document 1: kind: is required", false},
        ErrorCase{"BadAction",
                  "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                  "metadata: {name: ap, namespace: n}\nspec: {action: MAYBE}\n",
                  "pods.yaml: AuthorizationPolicy n/ap: spec.action: must be one of ALLOW, DENY, "
                  "AUDIT, CUSTOM (got \"MAYBE\")",
                  true},
        ErrorCase{"BadIpBlock",
                  "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                  "metadata: {name: ap, namespace: n}\n"
                  "spec: {rules: [{from: [{source: {ipBlocks: [10.0.0.0/40]}}]}]}\n",
                  "pods.yaml: AuthorizationPolicy n/ap: spec.rules[0].from[0].source.ipBlocks[0]: "
                  "must be an IP address or CIDR, got \"10.0.0.0/40\"",
                  true},
        ErrorCase{"BadPolicyPort",
                  "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                  "metadata: {name: ap, namespace: n}\n"
                  "spec: {rules: [{to: [{operation: {ports: [http]}}]}]}\n",
                  "pods.yaml: AuthorizationPolicy n/ap: spec.rules[0].to[0].operation.ports[0]: "
                  "must be an integer from 0 to 65535",
                  true},
        ErrorCase{"BadMtlsMode",
                  "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n"
                  "metadata: {name: pa, namespace: n}\nspec: {mtls: {mode: strict}}\n",
                  "pods.yaml: PeerAuthentication n/pa: spec.mtls.mode: must be one of UNSET, "
                  "STRICT, PERMISSIVE, DISABLE (got \"strict\")",
                  true},
        ErrorCase{"GatewayWithoutClass",
                  "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
                  "metadata: {name: w, namespace: n}\nspec: {listeners: []}\n",
                  "pods.yaml: Gateway n/w: spec.gatewayClassName: is required", true},
        ErrorCase{
            "ServicePortMissing",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{name: a}]}\n",
            "pods.yaml: Service default/s: spec.ports[0].port: is required", true},
        ErrorCase{"SpecNotMap", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: 3\n",
                  "pods.yaml: Service default/s: spec: must be a map", true}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ManifestParse, BadDocumentDoesNotHideItsNeighbours) {
  auto parsed = parse_manifest(R"(
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: bad, namespace: a}
spec: {hostNetwork: maybe}
---
apiVersion: v1
kind: Pod
metadata: {name: good, namespace: a}
)",
                               "pods.yaml");
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].message,
            "pods.yaml: Pod a/bad: spec.hostNetwork: must be true or false");
  EXPECT_EQ(parsed.errors[0].document, 1u);
  ASSERT_EQ(parsed.objects.size(), 2u);
  EXPECT_EQ(parsed.documents, (std::vector<size_t>{0, 2}));
}

TEST(ManifestParse, InvalidYamlNamesFileAndLine) {
  auto parsed = parse_manifest("apiVersion: v1\nkind: Pod\nmetadata: {name: [unclosed\n", "x.yaml");
  EXPECT_TRUE(parsed.unreadable);
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].message.rfind("x.yaml: not valid YAML at line ", 0), 0u)
      << parsed.errors[0].message;
}

// yaml-cpp 0.7's LoadAll read a document starting with "," as empty without consuming it, and
// added such documents until memory ran out.
TEST(ManifestParse, AStrayCommaIsInvalidYamlNotAnEndlessLoop) {
  auto parsed =
      parse_manifest("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n,\n", "x.yaml");
  EXPECT_TRUE(parsed.unreadable);
  ASSERT_EQ(parsed.errors.size(), 1u);
  EXPECT_EQ(parsed.errors[0].message.rfind("x.yaml: not valid YAML at line 5, column 1", 0), 0u)
      << parsed.errors[0].message;
}

}  // namespace
}  // namespace zt::meshd::manifest
