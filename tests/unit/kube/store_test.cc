#include "meshd/kube/store.h"

#include <gtest/gtest.h>

#include "meshd/manifest/parse.h"

namespace zt::meshd::kube {
namespace {

const ResourceType& type_of(const std::string& plural) {
  for (const auto& t : resource_types()) {
    if (t.plural == plural) return t;
  }
  throw std::runtime_error("no type " + plural);
}

// A pod as a LIST item (no kind/apiVersion, as the API server sends them).
std::string pod_json(const std::string& name, const std::string& node, const std::string& rv,
                     const std::string& ip = "10.0.0.1") {
  return fmt::format(
      R"({{"metadata":{{"name":"{}","namespace":"apps","uid":"u-{}","resourceVersion":"{}"}},)"
      R"("spec":{{"nodeName":"{}","containers":[{{"name":"c"}}]}},)"
      R"("status":{{"phase":"Running","podIP":"{}"}}}})",
      name, name, rv, node, ip);
}

WatchEvent event(const std::string& line) {
  auto ev = parse_watch_event(line);
  if (!ev) throw std::runtime_error(ev.error().describe());
  return *ev;
}

std::string watch_line(const std::string& type, const std::string& object_json) {
  // Watch objects carry kind and apiVersion.
  return fmt::format(R"({{"type":"{}","object":{{"kind":"Pod","apiVersion":"v1",{}}}}})", type,
                     object_json.substr(1, object_json.size() - 2));
}

TEST(ObjectStore, ListGivesTheSameObjectsAsTheManifestParser) {
  ObjectStore store;
  auto errors = store.apply_list(type_of("pods"), {YAML::Load(pod_json("a", "n0", "1")),
                                                   YAML::Load(pod_json("b", "n1", "2"))});
  EXPECT_TRUE(errors.empty());
  EXPECT_TRUE(store.dirty());
  auto set = store.snapshot();
  EXPECT_FALSE(store.dirty());
  ASSERT_EQ(set->pods.size(), 2u);
  const auto& a = set->pods.at("apps/a");
  EXPECT_EQ(a.node_name, "n0");
  EXPECT_EQ(a.meta.uid, "u-a");
  EXPECT_EQ(a.ips, std::vector<std::string>{"10.0.0.1"});

  // The same object through the manifest parser (a YAML file) is equal.
  auto parsed =
      manifest::parse_manifest("apiVersion: v1\nkind: Pod\n" +
                                   std::string("metadata: {name: a, namespace: apps, uid: u-a}\n") +
                                   "spec: {nodeName: n0, containers: [{name: c}]}\n"
                                   "status: {phase: Running, podIP: 10.0.0.1}\n",
                               "pod.yaml");
  ASSERT_EQ(parsed.objects.size(), 1u);
  EXPECT_EQ(std::get<manifest::Pod>(parsed.objects[0]), a);
}

TEST(ObjectStore, EventsAddModifyAndDelete) {
  ObjectStore store;
  store.apply_list(type_of("pods"), {YAML::Load(pod_json("a", "n0", "1"))});
  store.snapshot();
  EXPECT_TRUE(
      store.apply_event(type_of("pods"), event(watch_line("ADDED", pod_json("b", "n0", "2"))))
          .empty());
  EXPECT_TRUE(store.dirty());
  store.snapshot();
  // A MODIFIED that changes nothing meshd keeps (only resourceVersion) is not a change.
  store.apply_event(type_of("pods"), event(watch_line("MODIFIED", pod_json("b", "n0", "3"))));
  EXPECT_FALSE(store.dirty());
  store.apply_event(type_of("pods"),
                    event(watch_line("MODIFIED", pod_json("b", "n0", "4", "10.0.0.9"))));
  EXPECT_TRUE(store.dirty());
  EXPECT_EQ(store.objects().pods.at("apps/b").ips, std::vector<std::string>{"10.0.0.9"});
  store.apply_event(type_of("pods"), event(watch_line("DELETED", pod_json("a", "n0", "5"))));
  EXPECT_EQ(store.objects().pods.count("apps/a"), 0u);
  EXPECT_EQ(store.objects().pods.size(), 1u);
  // BOOKMARK changes nothing.
  store.snapshot();
  store.apply_event(type_of("pods"),
                    event(R"({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1",)"
                          R"("metadata":{"resourceVersion":"9"}}})"));
  EXPECT_FALSE(store.dirty());
}

TEST(ObjectStore, InvalidObjectIsReportedAndItsLastGoodVersionKept) {
  ObjectStore store;
  store.apply_list(type_of("pods"), {YAML::Load(pod_json("a", "n0", "1"))});
  auto bad = R"({"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":)"
             R"({"name":"a","namespace":"apps","resourceVersion":"2"},"spec":{"nodeName":[1]}}})";
  auto errors = store.apply_event(type_of("pods"), event(bad));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "/api/v1/pods: Pod apps/a: spec.nodeName: must be a string");
  ASSERT_TRUE(errors[0].object);
  EXPECT_EQ(errors[0].object->describe(), "Pod apps/a");
  EXPECT_EQ(store.objects().pods.at("apps/a").node_name, "n0");

  // In a relist too: the invalid item keeps its previous version, missing ones go.
  auto relist_errors = store.apply_list(
      type_of("pods"),
      {YAML::Load(R"({"metadata":{"name":"a","namespace":"apps"},"spec":{"nodeName":[1]}})"),
       YAML::Load(pod_json("c", "n1", "7"))});
  EXPECT_EQ(relist_errors.size(), 1u);
  EXPECT_EQ(store.objects().pods.at("apps/a").node_name, "n0");
  EXPECT_EQ(store.objects().pods.count("apps/c"), 1u);
  // A new invalid object is simply not there.
  store.apply_list(type_of("pods"),
                   {YAML::Load(R"({"metadata":{"name":"z","namespace":"apps"},"spec":[]})")});
  EXPECT_TRUE(store.objects().pods.empty());
}

// An AuthorizationPolicy that cannot be read and has no good version is there as its stand-in,
// failing closed; one with a good version keeps it.
TEST(ObjectStore, AnUnreadablePolicyFailsClosedUntilItHasAGoodVersion) {
  ObjectStore store;
  const auto& policies = type_of("authorizationpolicies");
  auto item = [](const std::string& name, const std::string& ports) {
    return YAML::Load(
        R"({"metadata":{"name":")" + name +
        R"(","namespace":"apps"},"spec":{"action":"DENY","rules":[{"to":[{"operation":{"ports":[)" +
        ports + "]}}]}]}}");
  };
  EXPECT_EQ(store.apply_list(policies, {item("bad", "\"nope\""), item("good", "\"80\"")}).size(),
            1u);
  const auto& stand_in = store.objects().authorization_policies.at("apps/bad");
  EXPECT_EQ(stand_in.action, "DENY");
  ASSERT_EQ(stand_in.rules.size(), 1u);
  EXPECT_TRUE(stand_in.rules[0].to.empty());
  // A watch event that breaks the good one keeps it; one for a new name fails closed.
  auto modified = [&](const std::string& name) {
    WatchEvent ev;
    ev.type = EventType::kModified;
    ev.object = item(name, "\"nope\"");
    ev.object["kind"] = "AuthorizationPolicy";
    ev.object["apiVersion"] = "security.istio.io/v1";
    return ev;
  };
  EXPECT_EQ(store.apply_event(policies, modified("good")).size(), 1u);
  EXPECT_EQ(store.objects().authorization_policies.at("apps/good").rules[0].to.size(), 1u);
  EXPECT_EQ(store.apply_event(policies, modified("new")).size(), 1u);
  EXPECT_TRUE(store.objects().authorization_policies.at("apps/new").rules[0].to.empty());

  // A stand-in is no good version: it follows the latest document, and goes with a dry run.
  auto as = [&](const std::string& action, bool dry_run) {
    auto ev = modified("new");
    ev.object["spec"]["action"] = action;
    if (dry_run) ev.object["metadata"]["annotations"]["istio.io/dry-run"] = "true";
    return ev;
  };
  store.apply_event(policies, as("ALLOW", false));
  EXPECT_EQ(store.objects().authorization_policies.at("apps/new").action, "ALLOW");
  EXPECT_TRUE(store.objects().authorization_policies.at("apps/new").rules.empty());
  // A half-typed action says nothing about what should stand in: the stand-in stays.
  store.apply_event(policies, as("DEN", false));
  EXPECT_EQ(store.objects().authorization_policies.at("apps/new").action, "ALLOW");
  store.apply_event(policies, as("DENY", true));
  EXPECT_EQ(store.objects().authorization_policies.count("apps/new"), 0u);
  // In a relist too.
  store.apply_event(policies, as("DENY", false));
  ASSERT_EQ(store.objects().authorization_policies.at("apps/new").action, "DENY");
  auto allow = item("new", "\"nope\"");
  allow["spec"]["action"] = "ALLOW";
  store.apply_list(policies, {allow});
  EXPECT_EQ(store.objects().authorization_policies.at("apps/new").action, "ALLOW");
}

TEST(ObjectStore, RelistReplacesOnlyThatType) {
  ObjectStore store;
  store.apply_list(type_of("namespaces"),
                   {YAML::Load(R"({"metadata":{"name":"apps","labels":{"x":"y"}}})")});
  store.apply_list(type_of("pods"), {YAML::Load(pod_json("a", "n0", "1"))});
  store.apply_list(type_of("pods"), {});
  EXPECT_TRUE(store.objects().pods.empty());
  ASSERT_EQ(store.objects().namespaces.size(), 1u);
  EXPECT_EQ(store.objects().namespaces.at("apps").meta.labels.at("x"), "y");
  // Istio and Gateway API kinds get their apiVersion from the type too.
  auto errors = store.apply_list(
      type_of("authorizationpolicies"),
      {YAML::Load(R"({"metadata":{"name":"deny","namespace":"apps"},"spec":{"action":"DENY",)"
                  R"("rules":[{"from":[{"source":{"namespaces":["x"]}}]}]}})")});
  EXPECT_TRUE(errors.empty()) << errors[0].message;
  EXPECT_EQ(store.objects().authorization_policies.at("apps/deny").action, "DENY");
}

}  // namespace
}  // namespace zt::meshd::kube
