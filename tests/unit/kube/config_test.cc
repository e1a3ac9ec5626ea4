#include "meshd/kube/config.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <gtest/gtest.h>

namespace zt::meshd::kube {
namespace {

namespace fs = std::filesystem;

TEST(ServerUrl, ParsesSchemesHostsPortsAndPrefix) {
  auto a = parse_server_url("https://10.96.0.1:6443");
  ASSERT_TRUE(a) << a.error().describe();
  EXPECT_TRUE(a->tls);
  EXPECT_EQ(a->host, "10.96.0.1");
  EXPECT_EQ(a->port, 6443);
  EXPECT_EQ(a->base_path, "");
  auto b = parse_server_url("http://127.0.0.1:8001/k8s/");
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->tls);
  EXPECT_EQ(b->base_path, "/k8s");
  EXPECT_EQ(b->describe(), "http://127.0.0.1:8001/k8s");
  auto c = parse_server_url("https://[fd00::1]");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "fd00::1");
  EXPECT_EQ(c->port, 443);
  EXPECT_EQ(c->describe(), "https://[fd00::1]:443");
  auto d = parse_server_url("https://kubernetes.default.svc");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->host, "kubernetes.default.svc");
}

TEST(ServerUrl, RejectsWhatItCannotUse) {
  for (const char* bad : {"ftp://x", "10.0.0.1:443", "https://", "https://h:0", "https://h:99999",
                          "https://h:x", "https://u:p@h", "https://h/a?b=c", "https://[::1"}) {
    auto r = parse_server_url(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message.find("server URL"), std::string::npos) << bad;
    }
  }
}

TEST(InClusterConfig, UsesTheEnvironmentAndTheServiceAccountFiles) {
  std::random_device rd;
  auto dir = fs::temp_directory_path() / fmt::format("kube-sa-{:x}", rd());
  fs::create_directories(dir);
  std::map<std::string, std::string> env = {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                            {"KUBERNETES_SERVICE_PORT", "443"}};
  auto getenv = [&](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  auto missing = in_cluster_config(getenv, dir.string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("token"), std::string::npos);
  std::ofstream(dir / "token") << "abc\n";
  std::ofstream(dir / "ca.crt") << "pem";
  auto c = in_cluster_config(getenv, dir.string());
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_EQ(c->server.describe(), "https://10.96.0.1:443");
  EXPECT_EQ(c->token_file, (dir / "token").string());
  EXPECT_EQ(c->ca_file, (dir / "ca.crt").string());

  env["KUBERNETES_SERVICE_HOST"] = "fd00::1";
  auto v6 = in_cluster_config(getenv, dir.string());
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->server.host, "fd00::1");

  env.erase("KUBERNETES_SERVICE_PORT");
  auto outside = in_cluster_config(getenv, dir.string());
  ASSERT_FALSE(outside);
  EXPECT_NE(outside.error().message.find("KUBERNETES_SERVICE_HOST"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace zt::meshd::kube
