#include "ztunnel/config/config.h"

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace zt::config {
namespace {

using Env = std::map<std::string, std::string>;

// The minimum a dedicated proxy needs.
const Env kBaseEnv = {{"PROXY_WORKLOAD_INFO", "default/local/default"}};

Result<Config> parse(std::vector<std::string> args, const Env& env = kBaseEnv) {
  args.insert(args.begin(), "ztunnel");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return parse_config(static_cast<int>(argv.size()), argv.data(),
                      [&env](const char* name) -> std::optional<std::string> {
                        auto it = env.find(name);
                        if (it == env.end()) return std::nullopt;
                        return it->second;
                      });
}

TEST(Config, DefaultsMatchTheConstants) {
  auto c = parse({});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_FALSE(c->help);
  EXPECT_EQ(c->proxy_mode, ProxyMode::kDedicated);
  EXPECT_EQ(c->proxy_workload_info, (WorkloadInfo{"default", "local", "default"}));
  EXPECT_FALSE(c->local_xds_path);
  EXPECT_EQ(c->trust_domain, "cluster.local");
  EXPECT_EQ(c->cluster_id, "Kubernetes");
  EXPECT_FALSE(c->ca_cert_path);
  EXPECT_FALSE(c->enable_socks5);
  EXPECT_EQ(net::format_endpoint(c->socks5_address), "127.0.0.1:15080");
  EXPECT_EQ(net::format_endpoint(c->admin_address), "127.0.0.1:15000");
  EXPECT_EQ(net::format_endpoint(c->metrics_address), "0.0.0.0:15020");
  EXPECT_EQ(net::format_endpoint(c->readiness_address), "0.0.0.0:15021");
  EXPECT_EQ(c->worker_threads, 2);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_EQ(c->log_format, log::Format::kText);
  EXPECT_EQ(c->connection_termination_deadline, std::chrono::seconds(5));
  EXPECT_EQ(c->pool_max_streams, 100u);
  EXPECT_EQ(c->pool_unused_release_timeout, std::chrono::minutes(5));
  EXPECT_EQ(c->http2_stream_window, 4194304u);
  EXPECT_EQ(c->http2_connection_window, 16777216u);
  EXPECT_EQ(c->http2_frame_size, 1048576u);
  EXPECT_EQ(c->secret_ttl, std::chrono::hours(24));
  EXPECT_EQ(c->inpod_uds, "/var/run/ztunnel/ztunnel.sock");
  EXPECT_EQ(c->bpf_pin_root, "/sys/fs/bpf/ambient-mesh");
  EXPECT_EQ(c->inpod_mark, 1337u);
  EXPECT_FALSE(c->sidecar_capture);
}

TEST(Config, SidecarCaptureIsADedicatedModeSwitch) {
  auto bare = parse({"--sidecar-capture", "--bpf-pin-root", "/sys/fs/bpf/sc-1"});
  ASSERT_TRUE(bare) << bare.error().message;
  EXPECT_EQ(bare->proxy_mode, ProxyMode::kDedicated);
  EXPECT_TRUE(bare->sidecar_capture);
  EXPECT_EQ(bare->bpf_pin_root, "/sys/fs/bpf/sc-1");

  auto env = parse({}, Env{{"PROXY_MODE", "dedicated"},
                           {"SIDECAR_CAPTURE", "true"},
                           {"PROXY_WORKLOAD_INFO", "sidecar/client/default"},
                           {"INPOD_MARK", "4096"}});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_TRUE(env->sidecar_capture);
  EXPECT_EQ(env->inpod_mark, 4096u);

  auto off = parse({"--sidecar-capture=false"},
                   Env{{"PROXY_WORKLOAD_INFO", "a/b/c"}, {"SIDECAR_CAPTURE", "true"}});
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_FALSE(off->sidecar_capture);

  // Still a dedicated proxy: it needs its workload.
  auto no_workload = parse({"--sidecar-capture"}, Env{});
  ASSERT_FALSE(no_workload);
  EXPECT_NE(no_workload.error().message.find("PROXY_WORKLOAD_INFO"), std::string::npos);
}

TEST(Config, SidecarCaptureIsRefusedInSharedMode) {
  auto c = parse({}, Env{{"PROXY_MODE", "shared"},
                         {"SIDECAR_CAPTURE", "true"},
                         {"NODE_NAME", "n"},
                         {"LOCAL_XDS_PATH", "/m.yaml"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("--sidecar-capture (SIDECAR_CAPTURE)"), std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("dedicated"), std::string::npos) << c.error().message;
  auto flag = parse({"--proxy-mode", "shared", "--sidecar-capture", "--node-name", "n",
                     "--local-xds-path", "/m.yaml"},
                    Env{});
  ASSERT_FALSE(flag);
  EXPECT_NE(flag.error().message.find("--sidecar-capture"), std::string::npos);
  // Explicitly off is fine in shared mode.
  auto off = parse({"--proxy-mode", "shared", "--sidecar-capture=false", "--node-name", "n",
                    "--local-xds-path", "/m.yaml"},
                   Env{});
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_FALSE(off->sidecar_capture);
}

TEST(Config, SharedModeNeedsNodeNameAndAConfigSource) {
  auto c = parse({"--proxy-mode", "shared"},
                 Env{{"NODE_NAME", "node-a"}, {"LOCAL_XDS_PATH", "/mesh.yaml"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->proxy_mode, ProxyMode::kShared);
  EXPECT_FALSE(c->proxy_workload_info);  // not needed: pods come over ZDS
  EXPECT_EQ(c->node_name, "node-a");

  auto xds = parse({}, Env{{"PROXY_MODE", "shared"},
                           {"NODE_NAME", "node-a"},
                           {"XDS_ADDRESS", "http://127.0.0.1:15010"},
                           {"INPOD_UDS", "/run/zds.sock"},
                           {"BPF_PIN_ROOT", "/sys/fs/bpf/test"},
                           {"INPOD_MARK", "4096"}});
  ASSERT_TRUE(xds) << xds.error().message;
  EXPECT_EQ(xds->inpod_uds, "/run/zds.sock");
  EXPECT_EQ(xds->bpf_pin_root, "/sys/fs/bpf/test");
  EXPECT_EQ(xds->inpod_mark, 4096u);
}

// For each option: a value from the environment, and a different one from the flag.
struct PrecedenceCase {
  const char* flag;
  const char* env;
  const char* env_value;
  const char* flag_value;
  std::function<std::string(const Config&)> get;
  const char* default_value;
};

TEST(Config, FlagBeatsEnvBeatsDefault) {
  auto ms = [](auto d) { return std::to_string(d.count()); };
  const PrecedenceCase cases[] = {
      {"local-xds-path", "LOCAL_XDS_PATH", "/env.yaml", "/flag.yaml",
       [](const Config& c) { return c.local_xds_path.value_or(""); }, ""},
      {"proxy-workload-info", "PROXY_WORKLOAD_INFO", "a/b/c", "d/e/f",
       [](const Config& c) {
         return c.proxy_workload_info->namespace_name + "/" + c.proxy_workload_info->name + "/" +
                c.proxy_workload_info->service_account;
       },
       "default/local/default"},
      {"node-name", "NODE_NAME", "env-node", "flag-node",
       [](const Config& c) { return c.node_name; }, ""},
      {"trust-domain", "TRUST_DOMAIN", "env.td", "flag.td",
       [](const Config& c) { return c.trust_domain; }, "cluster.local"},
      {"cluster-id", "CLUSTER_ID", "env-c", "flag-c", [](const Config& c) { return c.cluster_id; },
       "Kubernetes"},
      {"enable-socks5", "UNSTABLE_ENABLE_SOCKS5", "true", "false",
       [](const Config& c) { return std::string(c.enable_socks5 ? "true" : "false"); }, "false"},
      {"worker-threads", "ZTUNNEL_WORKER_THREADS", "3", "7",
       [](const Config& c) { return std::to_string(c.worker_threads); }, "2"},
      {"log-level", "RUST_LOG", "debug", "error", [](const Config& c) { return c.log_level; },
       "info"},
      {"log-format", "LOG_FORMAT", "json", "text",
       [](const Config& c) {
         return std::string(c.log_format == log::Format::kJson ? "json" : "text");
       },
       "text"},
      {"connection-termination-deadline", "CONNECTION_TERMINATION_DEADLINE", "500ms", "1m",
       [&](const Config& c) { return ms(c.connection_termination_deadline); }, "5000"},
      {"pool-max-streams", "POOL_MAX_STREAMS_PER_CONNECTION", "10", "20",
       [](const Config& c) { return std::to_string(c.pool_max_streams); }, "100"},
      {"pool-unused-release-timeout", "POOL_UNUSED_RELEASE_TIMEOUT", "1s", "2s",
       [&](const Config& c) { return ms(c.pool_unused_release_timeout); }, "300000"},
      {"http2-stream-window", "HTTP2_STREAM_WINDOW_SIZE", "65535", "1048576",
       [](const Config& c) { return std::to_string(c.http2_stream_window); }, "4194304"},
      {"http2-connection-window", "HTTP2_CONNECTION_WINDOW_SIZE", "65536", "2097152",
       [](const Config& c) { return std::to_string(c.http2_connection_window); }, "16777216"},
      {"http2-frame-size", "HTTP2_FRAME_SIZE", "16384", "32768",
       [](const Config& c) { return std::to_string(c.http2_frame_size); }, "1048576"},
      {"sidecar-capture", "SIDECAR_CAPTURE", "true", "false",
       [](const Config& c) { return std::string(c.sidecar_capture ? "true" : "false"); }, "false"},
      {"inpod-uds", "INPOD_UDS", "/env.sock", "/flag.sock",
       [](const Config& c) { return c.inpod_uds; }, "/var/run/ztunnel/ztunnel.sock"},
      {"bpf-pin-root", "BPF_PIN_ROOT", "/sys/fs/bpf/env", "/sys/fs/bpf/flag",
       [](const Config& c) { return c.bpf_pin_root; }, "/sys/fs/bpf/ambient-mesh"},
      {"inpod-mark", "INPOD_MARK", "1", "4095",
       [](const Config& c) { return std::to_string(c.inpod_mark); }, "1337"},
      {"secret-ttl", "SECRET_TTL", "1h", "90m",
       [](const Config& c) { return std::to_string(c.secret_ttl.count()); }, "86400"},
      {"xds-address", "XDS_ADDRESS", "http://127.0.0.1:15010", "http://[::1]:15011",
       [](const Config& c) { return c.xds_address.value_or(""); }, ""},
      {"xds-root-ca", "XDS_ROOT_CA", "/env-root.pem", "/flag-root.pem",
       [](const Config& c) { return c.xds_root_ca.value_or(""); }, ""},
      {"ca-address", "CA_ADDRESS", "http://127.0.0.1:15012", "http://localhost:15013",
       [](const Config& c) { return c.ca_address.value_or(""); }, ""},
      {"ca-root-ca", "CA_ROOT_CA", "/env-ca.pem", "/flag-ca.pem",
       [](const Config& c) { return c.ca_root_ca.value_or(""); }, ""},
      {"auth-token", "AUTH_TOKEN", "/env-token", "/flag-token",
       [](const Config& c) { return c.auth_token_path.value_or(""); }, ""},
      {"instance-ip", "INSTANCE_IP", "10.0.0.1", "10.0.0.2",
       [](const Config& c) { return c.instance_ip; }, ""},
      {"pod-name", "POD_NAME", "ztunnel-a", "ztunnel-b", [](const Config& c) { return c.pod_name; },
       ""},
      {"pod-namespace", "POD_NAMESPACE", "istio-system", "kube-system",
       [](const Config& c) { return c.pod_namespace; }, ""},
  };
  const std::map<std::string, std::string> env_results = {
      {"connection-termination-deadline", "500"},
      {"pool-unused-release-timeout", "1000"},
      {"secret-ttl", "3600"}};
  const std::map<std::string, std::string> flag_results = {
      {"connection-termination-deadline", "60000"},
      {"pool-unused-release-timeout", "2000"},
      {"secret-ttl", "5400"}};
  for (const auto& c : cases) {
    std::string name = c.flag;
    Env env = kBaseEnv;
    // Default (the base env sets the workload info, so its "default" is the base value).
    auto d = parse({}, env);
    ASSERT_TRUE(d) << name << ": " << d.error().message;
    EXPECT_EQ(c.get(*d), c.default_value) << name;

    env[c.env] = c.env_value;
    auto e = parse({}, env);
    ASSERT_TRUE(e) << name << ": " << e.error().message;
    auto env_expected = env_results.count(name) ? env_results.at(name) : std::string(c.env_value);
    EXPECT_EQ(c.get(*e), env_expected) << name;

    auto flag_expected =
        flag_results.count(name) ? flag_results.at(name) : std::string(c.flag_value);
    auto f = parse({"--" + name, c.flag_value}, env);
    ASSERT_TRUE(f) << name << ": " << f.error().message;
    EXPECT_EQ(c.get(*f), flag_expected) << name << " (--flag value)";

    auto g = parse({"--" + name + "=" + c.flag_value}, env);
    ASSERT_TRUE(g) << name << ": " << g.error().message;
    EXPECT_EQ(c.get(*g), flag_expected) << name << " (--flag=value)";
  }
}

TEST(Config, AddressFlags) {
  auto c =
      parse({"--socks5-address", "127.0.0.2:0", "--admin-address=[::1]:15000", "--metrics-address",
             "127.0.0.2:25020", "--readiness-address", "127.0.0.2:25021"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(net::format_endpoint(c->socks5_address), "127.0.0.2:0");
  EXPECT_EQ(net::format_endpoint(c->admin_address), "[::1]:15000");
  EXPECT_EQ(net::format_endpoint(c->metrics_address), "127.0.0.2:25020");
  EXPECT_EQ(net::format_endpoint(c->readiness_address), "127.0.0.2:25021");
}

TEST(Config, BareBooleanFlagAndCaPair) {
  auto c = parse({"--enable-socks5", "--ca-cert", "/ca.pem", "--ca-key", "/ca.key"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->enable_socks5);
  EXPECT_EQ(c->ca_cert_path, "/ca.pem");
  EXPECT_EQ(c->ca_key_path, "/ca.key");
}

TEST(Config, EmptyEnvironmentVariableCountsAsUnset) {
  Env env = kBaseEnv;
  env["TRUST_DOMAIN"] = "";
  env["ZTUNNEL_WORKER_THREADS"] = "";
  auto c = parse({}, env);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->trust_domain, "cluster.local");
  EXPECT_EQ(c->worker_threads, 2);
}

TEST(Config, RustLogDirectivesKeepTheBareLevel) {
  Env env = kBaseEnv;
  env["RUST_LOG"] = "warn,ztunnel::proxy=debug";
  auto c = parse({}, env);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->log_level, "warn");
}

TEST(Config, WorkerThreadsPercentAndZero) {
  auto cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto zero = parse({"--worker-threads", "0"});
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->worker_threads, cores);
  auto percent = parse({"--worker-threads", "100%"});
  ASSERT_TRUE(percent);
  EXPECT_EQ(percent->worker_threads, cores);
  auto small = parse({"--worker-threads", "1%"});
  ASSERT_TRUE(small);
  EXPECT_EQ(small->worker_threads, 1);
}

TEST(Config, HelpSkipsValidation) {
  auto c = parse({"--bogus", "--help"}, Env{});
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->help);
}

TEST(Config, HelpDocumentsEveryOptionAndVariable) {
  auto text = help_text();
  for (const char* s : {"--local-xds-path",
                        "LOCAL_XDS_PATH",
                        "--proxy-mode",
                        "PROXY_MODE",
                        "--proxy-workload-info",
                        "PROXY_WORKLOAD_INFO",
                        "--node-name",
                        "NODE_NAME",
                        "--sidecar-capture",
                        "SIDECAR_CAPTURE",
                        "--trust-domain",
                        "TRUST_DOMAIN",
                        "--cluster-id",
                        "CLUSTER_ID",
                        "--ca-cert",
                        "--ca-key",
                        "--enable-socks5",
                        "UNSTABLE_ENABLE_SOCKS5",
                        "--socks5-address",
                        "127.0.0.1:15080",
                        "--admin-address",
                        "127.0.0.1:15000",
                        "--metrics-address",
                        "0.0.0.0:15020",
                        "--readiness-address",
                        "0.0.0.0:15021",
                        "--worker-threads",
                        "ZTUNNEL_WORKER_THREADS",
                        "--log-level",
                        "RUST_LOG",
                        "--log-format",
                        "LOG_FORMAT",
                        "--connection-termination-deadline",
                        "CONNECTION_TERMINATION_DEADLINE",
                        "--pool-max-streams",
                        "POOL_MAX_STREAMS_PER_CONNECTION",
                        "--pool-unused-release-timeout",
                        "POOL_UNUSED_RELEASE_TIMEOUT",
                        "--http2-stream-window",
                        "HTTP2_STREAM_WINDOW_SIZE",
                        "--http2-connection-window",
                        "HTTP2_CONNECTION_WINDOW_SIZE",
                        "--http2-frame-size",
                        "HTTP2_FRAME_SIZE",
                        "--secret-ttl",
                        "SECRET_TTL",
                        "--xds-address",
                        "XDS_ADDRESS",
                        "--xds-root-ca",
                        "XDS_ROOT_CA",
                        "--ca-address",
                        "CA_ADDRESS",
                        "--ca-root-ca",
                        "CA_ROOT_CA",
                        "--auth-token",
                        "AUTH_TOKEN",
                        "--instance-ip",
                        "INSTANCE_IP",
                        "--pod-name",
                        "POD_NAME",
                        "--pod-namespace",
                        "POD_NAMESPACE",
                        "--inpod-uds",
                        "INPOD_UDS",
                        "/var/run/ztunnel/ztunnel.sock",
                        "--bpf-pin-root",
                        "BPF_PIN_ROOT",
                        "/sys/fs/bpf/ambient-mesh",
                        "--inpod-mark",
                        "INPOD_MARK",
                        "--help"}) {
    EXPECT_NE(text.find(s), std::string::npos) << s;
  }
}

struct ErrorCase {
  std::vector<std::string> args;
  Env env;
  std::vector<std::string> contains;
};

TEST(Config, EveryErrorNamesItsFlag) {
  auto with = [](std::initializer_list<std::pair<const std::string, std::string>> extra) {
    Env env = kBaseEnv;
    for (const auto& [k, v] : extra) env[k] = v;
    return env;
  };
  const ErrorCase cases[] = {
      {{"--proxy-mode", "shared"},
       with({{"LOCAL_XDS_PATH", "/m.yaml"}}),
       {"--node-name (NODE_NAME)", "required in shared mode"}},
      {{"--proxy-mode", "shared", "--node-name", "n"},
       kBaseEnv,
       {"shared mode", "--xds-address (XDS_ADDRESS)", "--local-xds-path (LOCAL_XDS_PATH)"}},
      {{"--inpod-mark", "0"}, kBaseEnv, {"--inpod-mark (INPOD_MARK)", "out of range"}},
      {{}, with({{"SIDECAR_CAPTURE", "yes"}}), {"--sidecar-capture (SIDECAR_CAPTURE)", "\"yes\""}},
      {{"--inpod-uds="}, kBaseEnv, {"--inpod-uds (INPOD_UDS)", "must not be empty"}},
      {{},
       with({{"PROXY_MODE", "sidecar"}}),
       {"--proxy-mode (PROXY_MODE)", "\"sidecar\"", "shared"}},
      {{}, Env{}, {"--proxy-workload-info (PROXY_WORKLOAD_INFO)", "required in dedicated mode"}},
      {{"--proxy-workload-info", "a/b"},
       kBaseEnv,
       {"--proxy-workload-info (PROXY_WORKLOAD_INFO)", "namespace/name/service-account"}},
      {{},
       with({{"PROXY_WORKLOAD_INFO", "a//c"}}),
       {"--proxy-workload-info (PROXY_WORKLOAD_INFO)"}},
      {{"--trust-domain", "Bad Domain"}, kBaseEnv, {"--trust-domain (TRUST_DOMAIN)"}},
      {{"--ca-cert", "/ca.pem"}, kBaseEnv, {"--ca-cert", "--ca-key"}},
      {{"--ca-key", "/ca.key"}, kBaseEnv, {"--ca-cert", "--ca-key"}},
      {{},
       with({{"UNSTABLE_ENABLE_SOCKS5", "yes"}}),
       {"--enable-socks5 (UNSTABLE_ENABLE_SOCKS5)", "\"yes\" is not true or false"}},
      {{"--socks5-address", "localhost:15080"}, kBaseEnv, {"--socks5-address", "\"localhost\""}},
      {{"--admin-address", "::1:15000"}, kBaseEnv, {"--admin-address", "brackets"}},
      {{"--metrics-address", "1.2.3.4"}, kBaseEnv, {"--metrics-address"}},
      {{"--readiness-address", "1.2.3.4:99999"}, kBaseEnv, {"--readiness-address"}},
      {{"--worker-threads", "many"},
       kBaseEnv,
       {"--worker-threads (ZTUNNEL_WORKER_THREADS)", "\"many\" is not a number"}},
      {{},
       with({{"ZTUNNEL_WORKER_THREADS", "5000"}}),
       {"--worker-threads (ZTUNNEL_WORKER_THREADS)", "out of range"}},
      {{"--log-level", "loud"}, kBaseEnv, {"--log-level (RUST_LOG)", "not a log level"}},
      {{}, with({{"LOG_FORMAT", "xml"}}), {"--log-format (LOG_FORMAT)", "\"xml\""}},
      {{"--connection-termination-deadline", "5"},
       kBaseEnv,
       {"--connection-termination-deadline (CONNECTION_TERMINATION_DEADLINE)", "unit"}},
      {{},
       with({{"CONNECTION_TERMINATION_DEADLINE", "5 s"}}),
       {"--connection-termination-deadline (CONNECTION_TERMINATION_DEADLINE)"}},
      {{"--connection-termination-deadline", "0s"}, kBaseEnv, {"positive"}},
      {{"--pool-max-streams", "0"},
       kBaseEnv,
       {"--pool-max-streams (POOL_MAX_STREAMS_PER_CONNECTION)", "out of range"}},
      {{},
       with({{"POOL_UNUSED_RELEASE_TIMEOUT", "forever"}}),
       {"--pool-unused-release-timeout (POOL_UNUSED_RELEASE_TIMEOUT)"}},
      {{"--http2-stream-window", "-1"},
       kBaseEnv,
       {"--http2-stream-window (HTTP2_STREAM_WINDOW_SIZE)"}},
      {{"--http2-connection-window", "4294967296"},
       kBaseEnv,
       {"--http2-connection-window (HTTP2_CONNECTION_WINDOW_SIZE)", "out of range"}},
      {{"--http2-frame-size", "100"},
       kBaseEnv,
       {"--http2-frame-size (HTTP2_FRAME_SIZE)", "out of range (16384-16777215)"}},
      {{}, with({{"SECRET_TTL", "10ms"}}), {"--secret-ttl (SECRET_TTL)", "at least 1s"}},
      {{"--local-xds-path="}, kBaseEnv, {"--local-xds-path (LOCAL_XDS_PATH)", "must not be empty"}},
      {{"--node-name"}, kBaseEnv, {"--node-name (NODE_NAME) needs a value"}},
      {{"--xds-address", "grpc://x:1"}, kBaseEnv, {"--xds-address (XDS_ADDRESS)", "http://"}},
      {{"--xds-address", "http://host"}, kBaseEnv, {"--xds-address (XDS_ADDRESS)", "HOST:PORT"}},
      {{"--xds-address", "http://host:0"}, kBaseEnv, {"--xds-address (XDS_ADDRESS)", "bad port"}},
      {{"--ca-address", "https://h:1/path"}, kBaseEnv, {"--ca-address (CA_ADDRESS)", "HOST:PORT"}},
      {{"--xds-address", "http://h:1", "--local-xds-path", "/x.yaml"},
       kBaseEnv,
       {"--xds-address", "--local-xds-path", "give one"}},
      {{"--xds-address", "https://h:1"}, kBaseEnv, {"XDS_ROOT_CA", "roots"}},
      {{"--ca-address", "https://h:1"}, kBaseEnv, {"CA_ROOT_CA", "roots"}},
      {{"--no-such-flag"}, kBaseEnv, {"unknown flag --no-such-flag"}},
      {{"positional"}, kBaseEnv, {"unexpected argument \"positional\""}},
      {{"-x"}, kBaseEnv, {"unexpected argument \"-x\""}},
  };
  for (const auto& c : cases) {
    auto r = parse(c.args, c.env);
    std::string label = c.args.empty() ? "(env)" : c.args.front();
    ASSERT_FALSE(r) << label;
    for (const auto& s : c.contains) {
      EXPECT_NE(r.error().message.find(s), std::string::npos)
          << label << ": \"" << r.error().message << "\" lacks \"" << s << "\"";
    }
  }
}

TEST(ParseDuration, Table) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parse_duration("500ms"), milliseconds(500));
  EXPECT_EQ(parse_duration("5s"), milliseconds(5000));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300000));
  EXPECT_EQ(parse_duration("24h"), milliseconds(86400000));
  EXPECT_EQ(parse_duration("1m30s"), milliseconds(90000));
  for (const char* bad : {"", "5", "s", "5x", "-5s", "5.5s", "0s", "1000000000s", "9999h"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
}

}  // namespace
}  // namespace zt::config
