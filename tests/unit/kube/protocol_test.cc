#include "meshd/kube/protocol.h"

#include <set>

#include <gtest/gtest.h>

namespace zt::meshd::kube {
namespace {

using namespace std::chrono_literals;

const ResourceType& type_of(const std::string& plural) {
  for (const auto& t : resource_types()) {
    if (t.plural == plural) return t;
  }
  throw std::runtime_error("no type " + plural);
}

TEST(ResourceTypes, CoverEveryKindMeshdUsesWithTheirApiPaths) {
  std::set<std::string> paths;
  for (const auto& t : resource_types()) paths.insert(t.path());
  EXPECT_EQ(paths, (std::set<std::string>{
                       "/api/v1/namespaces",
                       "/api/v1/pods",
                       "/api/v1/services",
                       "/api/v1/serviceaccounts",
                       "/apis/security.istio.io/v1/authorizationpolicies",
                       "/apis/security.istio.io/v1/peerauthentications",
                       "/apis/security.istio.io/v1/requestauthentications",
                       "/apis/gateway.networking.k8s.io/v1/gateways",
                       "/apis/gateway.networking.k8s.io/v1/httproutes",
                       "/apis/gateway.networking.k8s.io/v1/grpcroutes",
                       "/apis/networking.istio.io/v1/destinationrules",
                       "/apis/networking.istio.io/v1/virtualservices",
                       "/api/v1/namespaces/istio-system/configmaps",
                   }));
  // Of ConfigMaps, only Istio's MeshConfig is read (and all RBAC grants).
  EXPECT_EQ(
      list_target("", type_of("configmaps"), {.field = "", .label = "app=x"}, 500, ""),
      "/api/v1/namespaces/istio-system/configmaps?limit=500&fieldSelector=metadata.name%3Distio")
      << "in the root namespace, and no label selector hides it";
  EXPECT_EQ(watch_target("", type_of("configmaps"), {}, "7", 60),
            "/api/v1/namespaces/istio-system/"
            "configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=60&"
            "resourceVersion=7&fieldSelector=metadata.name%3Distio");
}

// Kinds a cluster may lack (their CRDs not installed) against Kubernetes' own, and the discovery
// document that tells which resources a group version serves.
TEST(ResourceTypes, CustomResourcesAndDiscovery) {
  EXPECT_FALSE(type_of("pods").custom());
  EXPECT_EQ(type_of("pods").group(), "");
  EXPECT_TRUE(type_of("authorizationpolicies").custom());
  EXPECT_EQ(type_of("authorizationpolicies").group(), "security.istio.io");
  EXPECT_TRUE(type_of("gateways").custom());
  EXPECT_TRUE(type_of("destinationrules").custom());
  // Routing only: an older Istio (no networking.istio.io/v1) or older RBAC means none.
  EXPECT_TRUE(type_of("virtualservices").custom());
  EXPECT_TRUE(type_of("virtualservices").older_version_is_none);
  EXPECT_TRUE(type_of("virtualservices").forbidden_is_none);
  EXPECT_FALSE(type_of("destinationrules").forbidden_is_none);
  EXPECT_FALSE((ResourceType{"Deployment", "apps/v1", "deployments"}.custom()));
  EXPECT_FALSE((ResourceType{"Ingress", "networking.k8s.io/v1", "ingresses"}.custom()));

  auto names = parse_resource_names(
      R"({"kind":"APIResourceList","groupVersion":"security.istio.io/v1","resources":[)"
      R"({"name":"authorizationpolicies","kind":"AuthorizationPolicy"},)"
      R"({"name":"authorizationpolicies/status","kind":"AuthorizationPolicy"}]})");
  ASSERT_TRUE(names) << names.error().describe();
  EXPECT_EQ(*names,
            (std::vector<std::string>{"authorizationpolicies", "authorizationpolicies/status"}));
  EXPECT_FALSE(parse_resource_names(R"({"kind":"Status","code":404})"));
  EXPECT_FALSE(parse_resource_names("{not json"));
}

TEST(Targets, ListPaginatesAndOnlyPodsGetTheFieldSelector) {
  Selectors sel{"spec.nodeName=node-0", ""};
  EXPECT_EQ(list_target("", type_of("pods"), sel, 500, ""),
            "/api/v1/pods?limit=500&fieldSelector=spec.nodeName%3Dnode-0");
  EXPECT_EQ(list_target("/prefix", type_of("services"), sel, 2, "abc=/+"),
            "/prefix/api/v1/services?limit=2&continue=abc%3D%2F%2B");
  Selectors labels{"", "app in (a,b)"};
  EXPECT_EQ(list_target("", type_of("namespaces"), labels, 10, ""),
            "/api/v1/namespaces?limit=10&labelSelector=app%20in%20%28a%2Cb%29");
}

TEST(Targets, WatchStartsFromTheResourceVersionWithBookmarks) {
  Selectors sel{"spec.nodeName=n", ""};
  EXPECT_EQ(watch_target("", type_of("pods"), sel, "1234", 300),
            "/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&"
            "resourceVersion=1234&fieldSelector=spec.nodeName%3Dn");
  EXPECT_EQ(watch_target("", type_of("gateways"), sel, "7", 5),
            "/apis/gateway.networking.k8s.io/v1/gateways?watch=1&allowWatchBookmarks=true&"
            "timeoutSeconds=5&resourceVersion=7");
}

TEST(ParseList, ReadsItemsResourceVersionAndContinue) {
  auto page = parse_list(
      R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"42","continue":"c1"},)"
      R"("items":[{"metadata":{"name":"a","namespace":"x"}},{"metadata":{"name":"b"}}]})");
  ASSERT_TRUE(page) << page.error().describe();
  EXPECT_EQ(page->resource_version, "42");
  EXPECT_EQ(page->continue_token, "c1");
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[1]["metadata"]["name"].as<std::string>(), "b");

  auto last = parse_list(R"({"metadata":{"resourceVersion":"43"},"items":null})");
  ASSERT_TRUE(last);
  EXPECT_EQ(last->continue_token, "");
  EXPECT_TRUE(last->items.empty());
}

TEST(ParseList, RejectsStatusesGarbageAndMissingVersions) {
  auto gone = parse_list(
      R"({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410,)"
      R"("message":"continue token expired"})");
  ASSERT_FALSE(gone);
  EXPECT_NE(gone.error().message.find("410 Expired"), std::string::npos);
  EXPECT_FALSE(parse_list("{not json"));
  EXPECT_FALSE(parse_list("[]"));
  EXPECT_FALSE(parse_list(R"({"items":[]})"));
  EXPECT_FALSE(parse_list(R"({"metadata":{"resourceVersion":"1"},"items":{}})"));
}

TEST(ParseWatchEvent, ReadsEveryEventType) {
  auto added = parse_watch_event(
      R"({"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p",)"
      R"("resourceVersion":"10","annotations":{"x":"\u003cb\u003e"}}}})");
  ASSERT_TRUE(added) << added.error().describe();
  EXPECT_EQ(added->type, EventType::kAdded);
  EXPECT_EQ(added->resource_version, "10");
  EXPECT_EQ(added->object["metadata"]["annotations"]["x"].as<std::string>(), "<b>");

  for (auto [text, type] :
       {std::pair{"MODIFIED", EventType::kModified}, std::pair{"DELETED", EventType::kDeleted},
        std::pair{"BOOKMARK", EventType::kBookmark}}) {
    auto ev = parse_watch_event(fmt::format(
        R"({{"type":"{}","object":{{"kind":"Pod","metadata":{{"resourceVersion":"11"}}}}}})",
        text));
    ASSERT_TRUE(ev) << text << ": " << ev.error().describe();
    EXPECT_EQ(ev->type, type);
    EXPECT_EQ(ev->resource_version, "11");
    EXPECT_EQ(to_string(ev->type), text);
  }

  auto error = parse_watch_event(
      R"({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},)"
      R"j("status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired",)j"
      R"("code":410}})");
  ASSERT_TRUE(error) << error.error().describe();
  EXPECT_EQ(error->type, EventType::kError);
  ASSERT_TRUE(error->status);
  EXPECT_EQ(error->status->code, 410);
  EXPECT_EQ(error->status->describe(), "410 Expired: too old resource version: 1 (5)");
}

TEST(ParseWatchEvent, RejectsMalformedEvents) {
  EXPECT_FALSE(parse_watch_event("{\"type\":\"ADDED\""));
  EXPECT_FALSE(parse_watch_event(R"({"type":"SYNC","object":{}})"));
  EXPECT_FALSE(parse_watch_event(R"({"type":"ADDED"})"));
  EXPECT_FALSE(parse_watch_event(R"({"type":"ADDED","object":{"metadata":{"name":"x"}}})"));
  EXPECT_FALSE(parse_watch_event("42"));
}

TEST(LineSplitter, ReassemblesLinesAcrossChunks) {
  LineSplitter s(16);
  std::vector<std::string> lines;
  auto on = [&](std::string_view l) { lines.emplace_back(l); };
  EXPECT_TRUE(s.feed("{\"a\":1}\n{\"b\"", on));
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}"}));
  EXPECT_TRUE(s.feed(":2}\r\n\n{", on));
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
  EXPECT_EQ(s.pending(), 1u);
  EXPECT_FALSE(s.feed(std::string(20, 'x'), on));
}

TEST(Backoff, DoublesWithJitterUpToTheCeilingAndResets) {
  Backoff b(100ms, 1000ms, 7);
  std::vector<std::chrono::milliseconds> bounds = {100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms};
  for (auto bound : bounds) {
    EXPECT_EQ(b.ceiling(), bound);
    auto d = b.next();
    EXPECT_GE(d, bound / 2);
    EXPECT_LE(d, bound);
  }
  b.reset();
  EXPECT_EQ(b.ceiling(), 100ms);
  // Jitter: two agents with different seeds do not retry in step.
  Backoff x(100ms, 30s, 1), y(100ms, 30s, 2);
  bool differ = false;
  for (int i = 0; i < 8; ++i) differ = differ || x.next() != y.next();
  EXPECT_TRUE(differ);
}

TEST(NextStep, GoneRelistsEverythingElseRewatchesFromTheLastVersion) {
  // 410 as an ERROR event (the usual form) or as the HTTP status: list again.
  EXPECT_EQ(next_step({.http_status = 200, .error_event = 410, .events = 1}), NextStep::kRelist);
  EXPECT_EQ(next_step({.http_status = 410}), NextStep::kRelist);
  // Other ERROR events: back off and watch again from the same version.
  EXPECT_EQ(next_step({.http_status = 200, .error_event = 500, .events = 3}),
            NextStep::kWatchAfterBackoff);
  // The server ended the watch (timeoutSeconds) or the connection dropped after progress.
  EXPECT_EQ(next_step({.http_status = 200, .events = 4}), NextStep::kWatch);
  EXPECT_EQ(next_step({.http_status = 200, .events = 2, .transport_error = true}),
            NextStep::kWatch);
  EXPECT_EQ(next_step({.http_status = 200, .duration = 5s}), NextStep::kWatch);
  // No progress: a server that closes at once, refuses, or answers 5xx/401/429 is not hammered.
  EXPECT_EQ(next_step({.http_status = 200, .duration = 10ms}), NextStep::kWatchAfterBackoff);
  EXPECT_EQ(next_step({.http_status = 200, .transport_error = true}), NextStep::kWatchAfterBackoff);
  EXPECT_EQ(next_step({.http_status = 0, .transport_error = true}), NextStep::kWatchAfterBackoff);
  for (int status : {500, 503, 429, 401, 403}) {
    EXPECT_EQ(next_step({.http_status = status}), NextStep::kWatchAfterBackoff) << status;
  }
  EXPECT_TRUE(list_restart_now(410));
  EXPECT_FALSE(list_restart_now(500));
}

}  // namespace
}  // namespace zt::meshd::kube
