#include "agent/config/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

namespace zt::agent {
namespace {

std::optional<std::string> no_env(std::string_view) { return std::nullopt; }

Result<Config> parse(std::vector<std::string> args, const EnvLookup& env = no_env) {
  std::vector<char*> argv;
  static std::string name = "node-agent";
  argv.push_back(name.data());
  for (auto& a : args) argv.push_back(a.data());
  return parse_config(static_cast<int>(argv.size()), argv.data(), env);
}

TEST(AgentConfig, DefaultsAndRequiredFlags) {
  auto c = parse({"--manifests", "/m", "--node-name", "n1"});
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_EQ(c->manifests_dir, "/m");
  EXPECT_EQ(c->node_name, "n1");
  EXPECT_EQ(c->bpf_pin_root, "/sys/fs/bpf/ambient-mesh");
  EXPECT_EQ(c->zds_socket, "/var/run/ztunnel/ztunnel.sock");
  EXPECT_TRUE(c->cgroup_root.empty());
  EXPECT_TRUE(c->probe_sources.empty());
  EXPECT_FALSE(c->release_all_on_exit);

  auto no_manifests = parse({"--node-name", "n1"});
  ASSERT_FALSE(no_manifests);
  EXPECT_NE(no_manifests.error().message.find("--manifests"), std::string::npos);
  auto no_node = parse({"--manifests", "/m"});
  ASSERT_FALSE(no_node);
  EXPECT_NE(no_node.error().message.find("--node-name"), std::string::npos);
}

TEST(AgentConfig, NodeNameFromEnvironmentUnlessFlagGiven) {
  auto env = [](std::string_view n) -> std::optional<std::string> {
    if (n == "NODE_NAME") return "from-env";
    return std::nullopt;
  };
  EXPECT_EQ(parse({"--manifests=/m"}, env)->node_name, "from-env");
  EXPECT_EQ(parse({"--manifests=/m", "--node-name=flag"}, env)->node_name, "flag");
}

TEST(AgentConfig, RepeatableProbeSourcesAndErrorsNameTheFlag) {
  auto c = parse({"--manifests=/m", "--node-name=n", "--probe-source", "10.0.0.1",
                  "--probe-source=fd00::1", "--release-all-on-exit", "--log-format=json",
                  "--ztunnel-cgroup=/sys/fs/cgroup/zt", "--ready-file=/tmp/r"});
  ASSERT_TRUE(c) << c.error().describe();
  ASSERT_EQ(c->probe_sources.size(), 2u);
  EXPECT_EQ(c->probe_sources[0].to_string(), "10.0.0.1");
  EXPECT_EQ(c->probe_sources[1].to_string(), "fd00::1");
  EXPECT_TRUE(c->release_all_on_exit);
  EXPECT_EQ(c->log_format, log::Format::kJson);
  EXPECT_EQ(c->ztunnel_cgroup, "/sys/fs/cgroup/zt");
  EXPECT_EQ(c->ready_file, "/tmp/r");

  struct Case {
    std::vector<std::string> args;
    std::string flag;
  };
  for (const auto& [args, flag] : std::vector<Case>{
           {{"--probe-source=nope"}, "--probe-source"},
           {{"--log-format=xml"}, "--log-format"},
           {{"--bpf-pin-root=relative"}, "--bpf-pin-root"},
           {{"--zds-socket"}, "--zds-socket"},
           {{"--bogus=1"}, "--bogus"},
           {{"--cgroup-root=/a", "--cgroup-root=/b"}, "--cgroup-root"},
           {{"--release-all-on-exit=maybe"}, "--release-all-on-exit"},
       }) {
    std::vector<std::string> full = {"--manifests=/m", "--node-name=n"};
    full.insert(full.end(), args.begin(), args.end());
    auto r = parse(full);
    ASSERT_FALSE(r) << flag;
    EXPECT_NE(r.error().message.find(flag), std::string::npos) << r.error().message;
  }
}

TEST(AgentConfig, KubeApiInClusterInsteadOfManifests) {
  auto c = parse({"--kube-api", "--node-name=n1"});
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_TRUE(c->kube_in_cluster);
  EXPECT_TRUE(c->manifests_dir.empty());
  EXPECT_TRUE(c->kube_server.empty());
  EXPECT_FALSE(c->kube_token_file);
  EXPECT_FALSE(c->kube_ca_file);
  // As the DaemonSet runs it (deploy/daemonset/ztunnel.yaml): node name from the environment.
  auto env = [](std::string_view n) -> std::optional<std::string> {
    if (n == "NODE_NAME") return "node-7";
    return std::nullopt;
  };
  auto d = parse({"--kube-api", "--cgroup-root=/host/sys/fs/cgroup", "--log-format=json"}, env);
  ASSERT_TRUE(d) << d.error().describe();
  EXPECT_TRUE(d->kube_in_cluster);
  EXPECT_EQ(d->node_name, "node-7");
  EXPECT_FALSE(parse({"--kube-api=false", "--node-name=n1"})) << "no source left";
  auto no_node = parse({"--kube-api"});
  ASSERT_FALSE(no_node);
  EXPECT_NE(no_node.error().message.find("--node-name"), std::string::npos);
}

TEST(AgentConfig, KubeServerWithTokenAndCaFiles) {
  auto c = parse({"--kube-server", "https://10.0.0.1:6443", "--kube-token-file", "/t",
                  "--kube-ca-file=/ca.pem", "--node-name", "n1"});
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_EQ(c->kube_server, "https://10.0.0.1:6443");
  EXPECT_EQ(c->kube_token_file, "/t");
  EXPECT_EQ(c->kube_ca_file, "/ca.pem");
  EXPECT_FALSE(c->kube_in_cluster);
  auto plain = parse({"--kube-server=http://127.0.0.1:8080", "--node-name=n1"});
  ASSERT_TRUE(plain) << plain.error().describe();
  EXPECT_FALSE(plain->kube_token_file);
  EXPECT_FALSE(plain->kube_ca_file);
}

TEST(AgentConfig, ExactlyOneSourceAndErrorsNameTheFlags) {
  auto expect_error = [](std::vector<std::string> args, std::vector<std::string> words) {
    auto c = parse(args);
    ASSERT_FALSE(c) << fmt::format("{}", fmt::join(args, " "));
    for (const auto& w : words) {
      EXPECT_NE(c.error().message.find(w), std::string::npos)
          << fmt::format("{}", fmt::join(args, " ")) << " -> " << c.error().message;
    }
  };
  expect_error({"--node-name=n"}, {"--manifests", "--kube-api", "--kube-server"});
  expect_error({"--manifests=/m", "--kube-api", "--node-name=n"},
               {"--manifests", "--kube-api", "--kube-server"});
  expect_error({"--manifests=/m", "--kube-server=http://h:1", "--node-name=n"},
               {"--manifests", "--kube-server"});
  expect_error({"--kube-api", "--kube-server=http://h:1", "--node-name=n"},
               {"--kube-api", "--kube-server"});
  expect_error({"--kube-server=", "--node-name=n"}, {"--kube-server"});
  expect_error({"--kube-api", "--kube-token-file=/t", "--node-name=n"},
               {"--kube-token-file", "--kube-server"});
  expect_error({"--manifests=/m", "--kube-ca-file=/ca", "--node-name=n"},
               {"--kube-ca-file", "--kube-server"});
  expect_error({"--kube-server=http://h:1", "--kube-token-file=", "--node-name=n"},
               {"--kube-token-file"});
  expect_error({"--kube-server=http://h:1", "--kube-ca-file=", "--node-name=n"},
               {"--kube-ca-file"});
  expect_error({"--kube-api=yes", "--node-name=n"}, {"--kube-api"});
  expect_error({"--kube-api", "--kube-api", "--node-name=n"}, {"--kube-api"});
  expect_error({"--manifests=", "--node-name=n"}, {"--manifests"});
}

TEST(AgentConfig, HelpListsEveryFlag) {
  EXPECT_TRUE(parse({"--help"})->help);
  auto help = help_text();
  for (const char* flag :
       {"--manifests", "--node-name", "--cgroup-root", "--bpf-pin-root", "--zds-socket",
        "--probe-source", "--ztunnel-cgroup", "--log-level", "--log-format", "--ready-file",
        "--release-all-on-exit", "NODE_NAME", "--kube-api", "--kube-server", "--kube-token-file",
        "--kube-ca-file", "spec.nodeName"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace zt::agent
