#include "meshd/manifest/source.h"

#include <gtest/gtest.h>

#include "tests/support/cluster_manifests.h"
#include "tests/support/mesh.h"

namespace zt::meshd::manifest {
namespace {

using testing::write_manifest_file;

std::string pod_yaml(const std::string& name, const std::string& node, const std::string& ip) {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: shop}\n" +
         "spec: {nodeName: " + node + "}\nstatus: {podIP: " + ip + "}\n";
}

std::vector<std::string> messages(const LoadResult& r) {
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.message);
  return out;
}

class Source : public ::testing::Test {
 protected:
  void write(const std::string& rel, const std::string& content) {
    write_manifest_file(dir_.path() / rel, content);
  }
  testing::TempDir dir_;
  ManifestSource source_{dir_.path()};
};

TEST_F(Source, ReadsYamlAndYmlRecursivelyInSortedOrderSkippingHidden) {
  write("b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n");
  write("a/deeper/c.yml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n");
  write("notes.txt", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ignored}\n");
  write("..2024_01_01/d.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: hidden}\n");
  write(".e.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: hidden2}\n");
  auto loaded = source_.reload();
  EXPECT_TRUE(loaded.errors.empty()) << messages(loaded).front();
  EXPECT_TRUE(loaded.changed);
  ASSERT_EQ(loaded.objects->namespaces.size(), 2u);
  EXPECT_TRUE(loaded.objects->namespaces.count("b"));
  EXPECT_TRUE(loaded.objects->namespaces.count("c"));
}

TEST_F(Source, ConfigMapVolumeLayoutIsReadOnce) {
  // kubelet: files in a hidden timestamped directory, "..data" links to it, and each visible
  // file is a link through "..data".
  write("..2024_01_01_00_00_00.1/p.yaml", pod_yaml("web", "node-a", "10.0.0.1"));
  std::filesystem::create_directory_symlink("..2024_01_01_00_00_00.1", dir_.path() / "..data");
  std::filesystem::create_symlink("..data/p.yaml", dir_.path() / "p.yaml");
  auto loaded = source_.reload();
  EXPECT_TRUE(loaded.errors.empty()) << messages(loaded).front();
  EXPECT_EQ(loaded.objects->pods.size(), 1u);
}

TEST_F(Source, SecondLoadWithoutChangesReportsUnchanged) {
  write("p.yaml", pod_yaml("web", "node-a", "10.0.0.1"));
  EXPECT_TRUE(source_.reload().changed);
  auto again = source_.reload();
  EXPECT_FALSE(again.changed);
  EXPECT_EQ(again.objects->pods.size(), 1u);
}

TEST_F(Source, BadEditKeepsTheLastGoodVersionOfThatObject) {
  write("p.yaml",
        pod_yaml("web", "node-a", "10.0.0.1") + "---\n" + pod_yaml("db", "node-b", "10.0.0.2"));
  ASSERT_TRUE(source_.reload().errors.empty());
  // web becomes invalid; db changes validly.
  write("p.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n"
        "spec: {nodeName: [x]}\nstatus: {podIP: 10.0.0.9}\n---\n" +
            pod_yaml("db", "node-c", "10.0.0.2"));
  auto loaded = source_.reload();
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_EQ(loaded.errors[0].message, "p.yaml: Pod shop/web: spec.nodeName: must be a string");
  EXPECT_TRUE(loaded.changed);
  ASSERT_EQ(loaded.objects->pods.size(), 2u);
  EXPECT_EQ(loaded.objects->pods.at("shop/web").node_name, "node-a");  // last good
  EXPECT_EQ(loaded.objects->pods.at("shop/web").ips[0], "10.0.0.1");
  EXPECT_EQ(loaded.objects->pods.at("shop/db").node_name, "node-c");  // new good
  // Fixing it takes the fix.
  write("p.yaml",
        pod_yaml("web", "node-z", "10.0.0.1") + "---\n" + pod_yaml("db", "node-c", "10.0.0.2"));
  auto fixed = source_.reload();
  EXPECT_TRUE(fixed.errors.empty());
  EXPECT_EQ(fixed.objects->pods.at("shop/web").node_name, "node-z");
}

TEST_F(Source, UnnamedBrokenDocumentKeepsWhatThatDocumentHeld) {
  write("p.yaml", pod_yaml("web", "node-a", "10.0.0.1"));
  ASSERT_TRUE(source_.reload().errors.empty());
  write("p.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {namespace: shop}\n");
  auto loaded = source_.reload();
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_EQ(loaded.errors[0].message, "p.yaml: document 1 (Pod): metadata.name: is required");
  EXPECT_EQ(loaded.objects->pods.size(), 1u);
  EXPECT_FALSE(loaded.changed);
}

TEST_F(Source, FileThatIsNotYamlKeepsEverythingItHad) {
  write("p.yaml",
        pod_yaml("web", "node-a", "10.0.0.1") + "---\n" + pod_yaml("db", "node-b", "10.0.0.2"));
  write("q.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
  ASSERT_TRUE(source_.reload().errors.empty());
  write("p.yaml", "kind: Pod\nmetadata: {name: [oops\n");
  auto loaded = source_.reload();
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_NE(loaded.errors[0].message.find("p.yaml: not valid YAML at line"), std::string::npos);
  EXPECT_EQ(loaded.objects->pods.size(), 2u);
  EXPECT_EQ(loaded.objects->namespaces.size(), 1u);
  EXPECT_FALSE(loaded.changed);
}

TEST_F(Source, NewObjectThatIsInvalidIsReportedAndAbsent) {
  write("p.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nstatus: {podIP: nope}\n");
  auto loaded = source_.reload();
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_TRUE(loaded.objects->pods.empty());
}

// An AuthorizationPolicy does not vanish when it cannot be read: with no good version, its
// stand-in (failing closed) is there; with one, that stays.
TEST_F(Source, AnUnreadablePolicyFailsClosedUntilItHasAGoodVersion) {
  const std::string head =
      "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
      "metadata: {name: deny-admin, namespace: shop}\nspec:\n  action: DENY\n";
  write("authz.yaml", head + "  rules: [{to: [{operation: {ports: [nope]}}]}]\n");
  auto loaded = source_.reload();
  ASSERT_EQ(loaded.errors.size(), 1u);
  ASSERT_EQ(loaded.objects->authorization_policies.size(), 1u);
  const auto& stand_in = loaded.objects->authorization_policies.at("shop/deny-admin");
  EXPECT_EQ(stand_in.action, "DENY");
  ASSERT_EQ(stand_in.rules.size(), 1u);
  EXPECT_TRUE(stand_in.rules[0].to.empty());  // every request

  write("authz.yaml", head + "  rules: [{to: [{operation: {ports: ['8080']}}]}]\n");
  loaded = source_.reload();
  ASSERT_TRUE(loaded.errors.empty());
  EXPECT_EQ(loaded.objects->authorization_policies.at("shop/deny-admin").rules[0].to.size(), 1u);

  write("authz.yaml", head + "  rules: [{to: [{operation: {ports: [nope]}}]}]\n");
  loaded = source_.reload();
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_EQ(loaded.objects->authorization_policies.at("shop/deny-admin").rules[0].to.size(), 1u)
      << "the last good version stays";
}

// A stand-in is no good version: it follows the policy's latest document.
TEST_F(Source, AStandInFollowsTheLatestDocument) {
  auto broken = [](const std::string& action, const std::string& extra_meta) {
    return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
           "metadata: {name: p, namespace: shop" +
           extra_meta + "}\nspec:\n  action: " + action +
           "\n  selector: {matchLabels: {app: a}}\n"
           "  rules: [{to: [{operation: {ports: [nope]}}]}]\n";
  };
  write("authz.yaml", broken("DENY", ""));
  EXPECT_EQ(source_.reload().objects->authorization_policies.at("shop/p").action, "DENY");
  write("authz.yaml", broken("ALLOW", ""));
  auto loaded = source_.reload();
  EXPECT_EQ(loaded.objects->authorization_policies.at("shop/p").action, "ALLOW");
  EXPECT_TRUE(loaded.objects->authorization_policies.at("shop/p").rules.empty());
  // A file that cannot be parsed at all (an editor's half-written save) keeps the stand-in.
  write("authz.yaml", "kind: [unclosed\n");
  loaded = source_.reload();
  ASSERT_EQ(loaded.objects->authorization_policies.count("shop/p"), 1u);
  EXPECT_EQ(loaded.objects->authorization_policies.at("shop/p").action, "ALLOW");
  write("authz.yaml", broken("DENY", ""));
  EXPECT_EQ(source_.reload().objects->authorization_policies.at("shop/p").action, "DENY");
  // A half-typed action says nothing about what should stand in: the stand-in stays.
  write("authz.yaml", broken("DEN", ""));
  loaded = source_.reload();
  ASSERT_EQ(loaded.objects->authorization_policies.count("shop/p"), 1u);
  EXPECT_EQ(loaded.objects->authorization_policies.at("shop/p").action, "DENY");
  // Marked as a dry run (or AUDIT), the broken policy has nothing to enforce: no stand-in.
  write("authz.yaml", broken("DENY", ", annotations: {istio.io/dry-run: 'true'}"));
  EXPECT_TRUE(source_.reload().objects->authorization_policies.empty());
}

TEST_F(Source, DeletingAFileRemovesItsObjects) {
  write("p.yaml", pod_yaml("web", "node-a", "10.0.0.1"));
  write("n.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
  ASSERT_EQ(source_.reload().objects->size(), 2u);
  std::filesystem::remove(dir_.path() / "p.yaml");
  auto loaded = source_.reload();
  EXPECT_TRUE(loaded.changed);
  EXPECT_TRUE(loaded.objects->pods.empty());
  EXPECT_EQ(loaded.objects->namespaces.size(), 1u);
}

TEST_F(Source, DuplicateDefinitionIsReportedAndTheFirstKept) {
  write("a.yaml", pod_yaml("web", "node-a", "10.0.0.1"));
  write("b.yaml", pod_yaml("web", "node-b", "10.0.0.1"));
  auto loaded = source_.reload();
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_EQ(loaded.errors[0].message,
            "b.yaml: Pod shop/web: already defined in a.yaml; this definition is ignored");
  EXPECT_EQ(loaded.objects->pods.at("shop/web").node_name, "node-a");
}

TEST_F(Source, MissingDirectoryIsAnErrorThatKeepsObjects) {
  write("n.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
  ASSERT_EQ(source_.reload().objects->size(), 1u);
  ManifestSource missing(dir_.path() / "nope");
  auto loaded = missing.reload();
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_NE(loaded.errors[0].message.find("not a directory"), std::string::npos);
  EXPECT_EQ(loaded.objects->size(), 0u);
}

TEST_F(Source, GeneratedClusterLoadsCompletely) {
  auto cluster = testing::write_cluster_manifests(dir_.path());
  auto loaded = source_.reload();
  EXPECT_TRUE(loaded.errors.empty()) << messages(loaded).front();
  EXPECT_EQ(loaded.objects->namespaces.size(), 3u);
  EXPECT_EQ(loaded.objects->pods.size(), 20u);
  EXPECT_EQ(loaded.objects->services.size(), 6u);
  EXPECT_EQ(loaded.objects->service_accounts.size(), 6u);
  EXPECT_EQ(cluster.pods.size(), 20u);
}

TEST_F(Source, FileRewrittenWithSameSizeAndMtimeIsReparsed) {
  // Parses are cached per file; a rewrite that keeps size and mtime (same-tick edit) must still
  // be seen, through the content hash.
  write("p.yaml", pod_yaml("web", "node-a", "10.0.0.1"));
  auto path = dir_.path() / "p.yaml";
  auto mtime = std::filesystem::last_write_time(path);
  auto first = source_.reload();
  ASSERT_EQ(first.objects->pods.size(), 1u);
  write("p.yaml", pod_yaml("web", "node-b", "10.0.0.2"));
  std::filesystem::last_write_time(path, mtime);
  auto second = source_.reload();
  EXPECT_TRUE(second.changed);
  ASSERT_EQ(second.objects->pods.size(), 1u);
  EXPECT_EQ(second.objects->pods.at("shop/web").node_name, "node-b");
}

TEST_F(Source, OnlyChangedFilesChangeAndErrorsOfUnchangedFilesRepeat) {
  write("a.yaml", pod_yaml("a", "node-a", "10.0.0.1"));
  write("bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: shop}\n"
        "spec: {hostNetwork: maybe}\n");
  auto first = source_.reload();
  ASSERT_EQ(first.errors.size(), 1u);
  write("b.yaml", pod_yaml("b", "node-a", "10.0.0.2"));
  auto second = source_.reload();
  EXPECT_TRUE(second.changed);
  EXPECT_EQ(second.objects->pods.size(), 2u);
  EXPECT_EQ(messages(second), messages(first));
  std::filesystem::remove(dir_.path() / "a.yaml");
  auto third = source_.reload();
  EXPECT_TRUE(third.changed);
  ASSERT_EQ(third.objects->pods.size(), 1u);
  EXPECT_TRUE(third.objects->pods.count("shop/b"));
  EXPECT_EQ(messages(third), messages(first));
}

}  // namespace
}  // namespace zt::meshd::manifest
