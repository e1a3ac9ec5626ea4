#include "agent/enroll/enroll.h"

#include <gtest/gtest.h>

namespace zt::agent {
namespace {

namespace manifest = meshd::manifest;

manifest::Namespace ns(const std::string& name, const std::string& mode) {
  manifest::Namespace n;
  n.meta.name = name;
  if (!mode.empty()) n.meta.labels[std::string(kDataplaneModeLabel)] = mode;
  return n;
}

manifest::Pod pod(const std::string& namespace_name, const std::string& name,
                  const std::string& node = "node-a") {
  manifest::Pod p;
  p.meta.name = name;
  p.meta.namespace_ = namespace_name;
  p.meta.uid = "uid-" + name;
  p.node_name = node;
  p.service_account_name = "sa-" + name;
  p.ips = {"10.0.0.7"};
  p.phase = "Running";
  return p;
}

class Enroll : public ::testing::Test {
 protected:
  void SetUp() override {
    objects_.put(ns("shop", "ambient"));
    objects_.put(ns("plain", ""));
  }
  Decision decide_pod(const manifest::Pod& p) { return decide(p, objects_, "node-a"); }
  manifest::ObjectSet objects_;
};

TEST_F(Enroll, PodInAmbientNamespaceOnThisNodeIsEnrolled) {
  auto d = decide_pod(pod("shop", "web"));
  EXPECT_TRUE(d.enroll) << d.reason;
  objects_.put(pod("shop", "web"));
  auto desired = desired_pods(objects_, "node-a");
  ASSERT_EQ(desired.size(), 1u);
  const auto& w = desired.at("uid-web");
  EXPECT_EQ(w.uid, "uid-web");
  EXPECT_EQ(w.describe(), "shop/web");
  EXPECT_EQ(w.service_account, "sa-web");
  EXPECT_EQ(w.ips, std::vector<std::string>{"10.0.0.7"});
}

TEST_F(Enroll, NamespaceWithoutAmbientLabelIsNotEnrolled) {
  auto d = decide_pod(pod("plain", "web"));
  EXPECT_FALSE(d.enroll);
  EXPECT_EQ(d.reason, "namespace not ambient");
  objects_.put(ns("other", "none"));
  EXPECT_FALSE(decide_pod(pod("other", "web")).enroll);
  EXPECT_EQ(decide_pod(pod("missing", "web")).reason, "namespace missing not found");
}

TEST_F(Enroll, PodOptOutLabelWinsOverNamespace) {
  auto p = pod("shop", "web");
  p.meta.labels[std::string(kDataplaneModeLabel)] = "none";
  auto d = decide_pod(p);
  EXPECT_FALSE(d.enroll);
  EXPECT_EQ(d.reason, "pod label istio.io/dataplane-mode=none");
}

TEST_F(Enroll, PodLabelOtherThanNoneIsIgnored) {
  auto p = pod("plain", "web");
  p.meta.labels[std::string(kDataplaneModeLabel)] = "ambient";
  EXPECT_FALSE(decide_pod(p).enroll) << "only the namespace label enrolls";
  auto q = pod("shop", "web");
  q.meta.labels[std::string(kDataplaneModeLabel)] = "sidecar";
  EXPECT_TRUE(decide_pod(q).enroll);
}

TEST_F(Enroll, PodOnOtherNodeOrUnscheduledIsNotEnrolled) {
  EXPECT_EQ(decide_pod(pod("shop", "web", "node-b")).reason, "on node node-b");
  EXPECT_EQ(decide_pod(pod("shop", "web", "")).reason, "not scheduled");
  objects_.put(pod("shop", "web", "node-b"));
  EXPECT_TRUE(desired_pods(objects_, "node-a").empty());
  EXPECT_EQ(desired_pods(objects_, "node-b").size(), 1u);
}

TEST_F(Enroll, HostNetworkPodIsNotEnrolled) {
  auto p = pod("shop", "web");
  p.host_network = true;
  EXPECT_EQ(decide_pod(p).reason, "hostNetwork");
}

TEST_F(Enroll, TerminatingPodIsNotEnrolled) {
  auto p = pod("shop", "web");
  p.terminating = true;
  EXPECT_EQ(decide_pod(p).reason, "terminating");
}

TEST_F(Enroll, FinishedPhasesAreNotEnrolledOthersAre) {
  for (const char* phase : {"Succeeded", "Failed"}) {
    auto p = pod("shop", "web");
    p.phase = phase;
    EXPECT_EQ(decide_pod(p).reason, std::string("phase ") + phase);
  }
  for (const char* phase : {"Running", "Pending", ""}) {
    auto p = pod("shop", "web");
    p.phase = phase;
    EXPECT_TRUE(decide_pod(p).enroll) << phase;
  }
}

TEST_F(Enroll, NamespaceLabelFlipEnrollsAndReleasesBothWays) {
  objects_.put(pod("plain", "a"));
  objects_.put(pod("plain", "b"));
  EXPECT_TRUE(desired_pods(objects_, "node-a").empty());

  objects_.put(ns("plain", "ambient"));
  auto on = desired_pods(objects_, "node-a");
  EXPECT_EQ(on.size(), 2u);
  EXPECT_TRUE(on.count("uid-a") && on.count("uid-b"));

  objects_.put(ns("plain", "none"));
  EXPECT_TRUE(desired_pods(objects_, "node-a").empty());
  EXPECT_EQ(release_reason(objects_, "uid-a", "node-a"), "namespace not ambient");
}

TEST_F(Enroll, PodLabelFlipReleasesAndReenrolls) {
  auto p = pod("shop", "web");
  objects_.put(p);
  EXPECT_EQ(desired_pods(objects_, "node-a").size(), 1u);
  p.meta.labels[std::string(kDataplaneModeLabel)] = "none";
  objects_.put(p);
  EXPECT_TRUE(desired_pods(objects_, "node-a").empty());
  EXPECT_EQ(release_reason(objects_, "uid-web", "node-a"),
            "pod label istio.io/dataplane-mode=none");
  p.meta.labels.erase(std::string(kDataplaneModeLabel));
  objects_.put(p);
  EXPECT_EQ(desired_pods(objects_, "node-a").size(), 1u);
}

TEST_F(Enroll, PodWithoutUidIsKeyedByDerivedUid) {
  auto p = pod("shop", "web");
  p.meta.uid.clear();
  objects_.put(p);
  auto desired = desired_pods(objects_, "node-a");
  ASSERT_EQ(desired.size(), 1u);
  auto uid = manifest::kube_uid("Pod", p.meta);
  EXPECT_EQ(desired.begin()->first, uid);
  EXPECT_EQ(uid.size(), 36u);
}

TEST_F(Enroll, ReleaseReasonOfAnUnknownUidIsPodDeleted) {
  EXPECT_EQ(release_reason(objects_, "nope", "node-a"), "pod deleted");
}

}  // namespace
}  // namespace zt::agent
