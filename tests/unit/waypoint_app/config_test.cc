#include "waypoint/app/config.h"

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace zt::waypoint::app {
namespace {

// Parses `args` with `env` as the environment.
Result<Config> parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  std::vector<std::string> storage = {"waypoint"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  auto getenv = [env](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  return parse_config(static_cast<int>(argv.size()), argv.data(), getenv);
}

const std::vector<std::string> kRequired = {
    "--name", "wp", "--namespace", "shop", "--local-xds-path", "/tmp/mesh.yaml"};

std::vector<std::string> with(std::vector<std::string> extra) {
  auto args = kRequired;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::string error_of(const Result<Config>& r) {
  return r ? std::string("(parsed)") : r.error().describe();
}

TEST(WaypointConfig, Defaults) {
  auto c = parse(kRequired);
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_FALSE(c->help);
  EXPECT_EQ(c->name, "wp");
  EXPECT_EQ(c->namespace_name, "shop");
  EXPECT_EQ(c->service_account, "wp");  // defaults to --name
  EXPECT_EQ(c->trust_domain, "cluster.local");
  EXPECT_EQ(c->cluster_domain, "cluster.local");
  EXPECT_EQ(c->identity_uri(), "spiffe://cluster.local/ns/shop/sa/wp");
  EXPECT_EQ(c->hostname(), "wp.shop.svc.cluster.local");
  EXPECT_EQ(net::format_endpoint(c->hbone_address), "0.0.0.0:15008");
  EXPECT_TRUE(c->instance_ips.empty());  // 0.0.0.0 is not specific
  EXPECT_EQ(c->local_xds_path, "/tmp/mesh.yaml");
  EXPECT_FALSE(c->xds_address);
  EXPECT_FALSE(c->ca_address);
  EXPECT_FALSE(c->config_path);
  EXPECT_EQ(net::format_endpoint(c->admin_address), "127.0.0.1:15000");
  EXPECT_EQ(net::format_endpoint(c->metrics_address), "0.0.0.0:15020");
  EXPECT_EQ(net::format_endpoint(c->readiness_address), "0.0.0.0:15021");
  EXPECT_EQ(c->worker_threads, 2);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_EQ(c->log_format, log::Format::kText);
  EXPECT_EQ(c->connection_termination_deadline, std::chrono::seconds(5));
}

TEST(WaypointConfig, DownstreamLimitsDefaultToEnvoys) {
  auto c = parse(kRequired);
  ASSERT_TRUE(c) << error_of(c);
  EXPECT_EQ(c->request_headers_timeout, std::chrono::seconds(10));
  EXPECT_EQ(c->stream_idle_timeout, std::chrono::minutes(5));
  EXPECT_EQ(c->idle_timeout, std::chrono::hours(1));
  EXPECT_EQ(c->max_connection_body_bytes, size_t{32} * 1024 * 1024);
}

TEST(WaypointConfig, DownstreamLimitsFromFlagsAndVariables) {
  auto c = parse(with({"--request-headers-timeout", "200ms", "--stream-idle-timeout=30s",
                       "--idle-timeout", "2m", "--max-connection-body-bytes", "64Mi"}));
  ASSERT_TRUE(c) << error_of(c);
  EXPECT_EQ(c->request_headers_timeout, std::chrono::milliseconds(200));
  EXPECT_EQ(c->stream_idle_timeout, std::chrono::seconds(30));
  EXPECT_EQ(c->idle_timeout, std::chrono::minutes(2));
  EXPECT_EQ(c->max_connection_body_bytes, size_t{64} * 1024 * 1024);

  auto v = parse(kRequired, {{"WAYPOINT_REQUEST_HEADERS_TIMEOUT", "1s"},
                             {"WAYPOINT_STREAM_IDLE_TIMEOUT", "1m30s"},
                             {"WAYPOINT_IDLE_TIMEOUT", "10m"},
                             {"WAYPOINT_MAX_CONNECTION_BODY_BYTES", "1048576"}});
  ASSERT_TRUE(v) << error_of(v);
  EXPECT_EQ(v->request_headers_timeout, std::chrono::seconds(1));
  EXPECT_EQ(v->stream_idle_timeout, std::chrono::seconds(90));
  EXPECT_EQ(v->idle_timeout, std::chrono::minutes(10));
  EXPECT_EQ(v->max_connection_body_bytes, size_t{1048576});

  // The flag wins over the variable.
  auto w = parse(with({"--idle-timeout", "5s"}), {{"WAYPOINT_IDLE_TIMEOUT", "10m"}});
  ASSERT_TRUE(w) << error_of(w);
  EXPECT_EQ(w->idle_timeout, std::chrono::seconds(5));

  // 0 disables a timeout; Ki and Gi sizes.
  auto z = parse(with({"--request-headers-timeout", "0", "--stream-idle-timeout", "0s",
                       "--idle-timeout", "0", "--max-connection-body-bytes", "512Ki"}));
  ASSERT_TRUE(z) << error_of(z);
  EXPECT_EQ(z->request_headers_timeout.count(), 0);
  EXPECT_EQ(z->stream_idle_timeout.count(), 0);
  EXPECT_EQ(z->idle_timeout.count(), 0);
  EXPECT_EQ(z->max_connection_body_bytes, size_t{512} * 1024);
  auto g = parse(with({"--max-connection-body-bytes", "1Gi"}));
  ASSERT_TRUE(g) << error_of(g);
  EXPECT_EQ(g->max_connection_body_bytes, size_t{1} << 30);
}

TEST(WaypointConfig, BadDownstreamLimitsNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--request-headers-timeout", "10"}, "--request-headers-timeout"},
      {{"--request-headers-timeout", "-1s"}, "--request-headers-timeout"},
      {{"--stream-idle-timeout", "5 minutes"}, "--stream-idle-timeout"},
      {{"--idle-timeout", ""}, "--idle-timeout"},
      {{"--idle-timeout", "1x"}, "--idle-timeout"},
      {{"--max-connection-body-bytes", "0"}, "--max-connection-body-bytes"},
      {{"--max-connection-body-bytes", "32MB"}, "--max-connection-body-bytes"},
      {{"--max-connection-body-bytes", "Mi"}, "--max-connection-body-bytes"},
      {{"--max-connection-body-bytes", "-5"}, "--max-connection-body-bytes"},
      {{"--max-connection-body-bytes", "99999999999Gi"}, "--max-connection-body-bytes"},
  };
  for (const auto& [args, flag] : cases) {
    auto c = parse(with(args));
    EXPECT_FALSE(c) << args[0] << " " << args[1];
    EXPECT_NE(error_of(c).find(flag), std::string::npos) << error_of(c);
  }
  auto e = parse(kRequired, {{"WAYPOINT_STREAM_IDLE_TIMEOUT", "soon"}});
  EXPECT_FALSE(e);
  EXPECT_NE(error_of(e).find("WAYPOINT_STREAM_IDLE_TIMEOUT"), std::string::npos) << error_of(e);
}

TEST(WaypointConfig, EveryFlag) {
  auto c = parse({"--name=gw",
                  "--namespace",
                  "ns1",
                  "--service-account",
                  "sa1",
                  "--trust-domain",
                  "td.example",
                  "--cluster-domain",
                  "corp.local",
                  "--cluster-id",
                  "c2",
                  "--instance-ip",
                  "10.0.0.5,fd00::5",
                  "--hbone-address",
                  "127.0.0.1:0",
                  "--local-xds-path",
                  "/a.yaml",
                  "--xds-address",
                  "https://istiod:15012",
                  "--xds-root-ca",
                  "/x.pem",
                  "--ca-address",
                  "http://ca:15010",
                  "--ca-root-ca",
                  "/c.pem",
                  "--auth-token",
                  "/token",
                  "--ca-cert",
                  "/ca.pem",
                  "--ca-key",
                  "/ca.key",
                  "--config",
                  "/l7.yaml",
                  "--admin-address",
                  "127.0.0.1:1",
                  "--metrics-address",
                  "127.0.0.1:2",
                  "--readiness-address",
                  "[::1]:3",
                  "--worker-threads",
                  "4",
                  "--log-level",
                  "debug",
                  "--log-format",
                  "json",
                  "--connection-termination-deadline",
                  "1500ms"});
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_EQ(c->name, "gw");
  EXPECT_EQ(c->namespace_name, "ns1");
  EXPECT_EQ(c->identity_uri(), "spiffe://td.example/ns/ns1/sa/sa1");
  EXPECT_EQ(c->hostname(), "gw.ns1.svc.corp.local");
  EXPECT_EQ(c->cluster_id, "c2");
  ASSERT_EQ(c->instance_ips.size(), 2u);
  EXPECT_EQ(c->instance_ips[0].to_string(), "10.0.0.5");
  EXPECT_EQ(c->instance_ips[1].to_string(), "fd00::5");
  EXPECT_EQ(net::format_endpoint(c->hbone_address), "127.0.0.1:0");
  EXPECT_EQ(c->local_xds_path, "/a.yaml");
  EXPECT_EQ(c->xds_address, "https://istiod:15012");
  EXPECT_EQ(c->xds_root_ca, "/x.pem");
  EXPECT_EQ(c->ca_address, "http://ca:15010");
  EXPECT_EQ(c->ca_root_ca, "/c.pem");
  EXPECT_EQ(c->auth_token_path, "/token");
  EXPECT_EQ(c->ca_cert_path, "/ca.pem");
  EXPECT_EQ(c->ca_key_path, "/ca.key");
  EXPECT_EQ(c->config_path, "/l7.yaml");
  EXPECT_EQ(net::format_endpoint(c->admin_address), "127.0.0.1:1");
  EXPECT_EQ(net::format_endpoint(c->metrics_address), "127.0.0.1:2");
  EXPECT_EQ(net::format_endpoint(c->readiness_address), "[::1]:3");
  EXPECT_EQ(c->worker_threads, 4);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->log_format, log::Format::kJson);
  EXPECT_EQ(c->connection_termination_deadline, std::chrono::milliseconds(1500));
}

TEST(WaypointConfig, EveryVariable) {
  auto c = parse({}, {{"WAYPOINT_NAME", "gw"},
                      {"POD_NAMESPACE", "ns1"},
                      {"SERVICE_ACCOUNT", "sa1"},
                      {"TRUST_DOMAIN", "td"},
                      {"CLUSTER_DOMAIN", "example.org"},
                      {"CLUSTER_ID", "c3"},
                      {"INSTANCE_IP", "10.1.1.1"},
                      {"WAYPOINT_HBONE_ADDRESS", "127.0.0.2:15008"},
                      {"LOCAL_XDS_PATH", "/m.yaml"},
                      {"XDS_ADDRESS", "http://cp:15010"},
                      {"XDS_ROOT_CA", "/x"},
                      {"CA_ADDRESS", "http://cp:15012"},
                      {"CA_ROOT_CA", "/c"},
                      {"AUTH_TOKEN", "/t"},
                      {"WAYPOINT_CONFIG", "/w.yaml"},
                      {"WAYPOINT_WORKER_THREADS", "3"},
                      {"RUST_LOG", "warn,waypoint::proxy=trace"},
                      {"LOG_FORMAT", "json"}});
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_EQ(c->identity_uri(), "spiffe://td/ns/ns1/sa/sa1");
  EXPECT_EQ(c->hostname(), "gw.ns1.svc.example.org");
  EXPECT_EQ(c->cluster_id, "c3");
  ASSERT_EQ(c->instance_ips.size(), 1u);
  EXPECT_EQ(c->instance_ips[0].to_string(), "10.1.1.1");
  EXPECT_EQ(net::format_endpoint(c->hbone_address), "127.0.0.2:15008");
  EXPECT_EQ(c->local_xds_path, "/m.yaml");
  EXPECT_EQ(c->xds_address, "http://cp:15010");
  EXPECT_EQ(c->xds_root_ca, "/x");
  EXPECT_EQ(c->ca_address, "http://cp:15012");
  EXPECT_EQ(c->ca_root_ca, "/c");
  EXPECT_EQ(c->auth_token_path, "/t");
  EXPECT_EQ(c->config_path, "/w.yaml");
  EXPECT_EQ(c->worker_threads, 3);
  EXPECT_EQ(c->log_level, "warn");
  EXPECT_EQ(c->log_format, log::Format::kJson);
}

TEST(WaypointConfig, FlagWinsOverVariableWinsOverDefault) {
  auto c = parse(with({"--worker-threads", "7"}),
                 {{"WAYPOINT_WORKER_THREADS", "5"}, {"TRUST_DOMAIN", "from.env"}});
  ASSERT_TRUE(c) << c.error().describe();
  EXPECT_EQ(c->worker_threads, 7);
  EXPECT_EQ(c->trust_domain, "from.env");
  // An empty variable counts as unset.
  auto d = parse(kRequired, {{"TRUST_DOMAIN", ""}});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->trust_domain, "cluster.local");
  // The last occurrence of a flag wins.
  auto e = parse(with({"--log-level", "debug", "--log-level=error"}));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->log_level, "error");
}

TEST(WaypointConfig, PathNormalizationTakesIstiosModeNames) {
  auto c = parse(kRequired);
  ASSERT_TRUE(c) << error_of(c);
  EXPECT_EQ(c->path_normalization, authz::PathNormalization::kBase);
  const std::vector<std::pair<std::string, authz::PathNormalization>> modes = {
      {"DEFAULT", authz::PathNormalization::kBase},
      {"NONE", authz::PathNormalization::kNone},
      {"BASE", authz::PathNormalization::kBase},
      {"MERGE_SLASHES", authz::PathNormalization::kMergeSlashes},
      {"DECODE_AND_MERGE_SLASHES", authz::PathNormalization::kDecodeAndMergeSlashes},
  };
  for (const auto& [name, mode] : modes) {
    auto f = parse(with({"--path-normalization", name}));
    ASSERT_TRUE(f) << name << ": " << error_of(f);
    EXPECT_EQ(f->path_normalization, mode) << name;
  }
  auto e = parse(kRequired, {{"WAYPOINT_PATH_NORMALIZATION", "MERGE_SLASHES"}});
  ASSERT_TRUE(e) << error_of(e);
  EXPECT_EQ(e->path_normalization, authz::PathNormalization::kMergeSlashes);
}

TEST(WaypointConfig, InstanceIpDefaultsToASpecificHboneAddress) {
  auto c = parse(with({"--hbone-address", "127.0.63.1:0"}));
  ASSERT_TRUE(c) << c.error().describe();
  ASSERT_EQ(c->instance_ips.size(), 1u);
  EXPECT_EQ(c->instance_ips[0].to_string(), "127.0.63.1");
  auto d = parse(with({"--hbone-address", "127.0.63.1:0", "--instance-ip", "10.0.0.9"}));
  ASSERT_TRUE(d);
  ASSERT_EQ(d->instance_ips.size(), 1u);
  EXPECT_EQ(d->instance_ips[0].to_string(), "10.0.0.9");
}

TEST(WaypointConfig, XdsAddressMayComeWithLocalPath) {
  // XDS_ADDRESS wins at run time; both given is not an error.
  auto c = parse(with({"--xds-address", "http://cp:15010"}));
  ASSERT_TRUE(c) << c.error().describe();
  auto d = parse({"--name", "a", "--namespace", "b", "--xds-address", "http://cp:1"});
  ASSERT_TRUE(d) << d.error().describe();
}

TEST(WaypointConfig, RequiredFlags) {
  EXPECT_NE(error_of(parse({"--namespace", "ns", "--local-xds-path", "/m"}))
                .find("--name (WAYPOINT_NAME) is required"),
            std::string::npos);
  EXPECT_NE(error_of(parse({"--name", "wp", "--local-xds-path", "/m"}))
                .find("--namespace (POD_NAMESPACE) is required"),
            std::string::npos);
  auto no_source = error_of(parse({"--name", "wp", "--namespace", "ns"}));
  EXPECT_NE(no_source.find("--xds-address"), std::string::npos) << no_source;
  EXPECT_NE(no_source.find("--local-xds-path"), std::string::npos) << no_source;
}

struct BadValue {
  std::vector<std::string> args;
  std::string expect;  // substring of the error
};

TEST(WaypointConfig, BadValuesNameTheFlag) {
  const std::vector<BadValue> cases = {
      {{"--name", "Not_A_Name"}, "--name (WAYPOINT_NAME)"},
      {{"--namespace", "-x"}, "--namespace (POD_NAMESPACE)"},
      {{"--service-account", "a/b"}, "--service-account (SERVICE_ACCOUNT)"},
      {{"--trust-domain", "UPPER"}, "--trust-domain (TRUST_DOMAIN)"},
      {{"--cluster-domain", "bad domain"}, "--cluster-domain (CLUSTER_DOMAIN)"},
      {{"--cluster-id", ""}, "--cluster-id (CLUSTER_ID)"},
      {{"--instance-ip", "10.0.0.300"}, "--instance-ip (INSTANCE_IP)"},
      {{"--hbone-address", "localhost:15008"}, "--hbone-address (WAYPOINT_HBONE_ADDRESS)"},
      {{"--local-xds-path", ""}, "--local-xds-path (LOCAL_XDS_PATH)"},
      {{"--xds-address", "istiod:15010"}, "--xds-address (XDS_ADDRESS)"},
      {{"--xds-root-ca", ""}, "--xds-root-ca (XDS_ROOT_CA)"},
      {{"--ca-address", "ftp://ca:1"}, "--ca-address (CA_ADDRESS)"},
      {{"--ca-root-ca", ""}, "--ca-root-ca (CA_ROOT_CA)"},
      {{"--auth-token", ""}, "--auth-token (AUTH_TOKEN)"},
      {{"--ca-cert", ""}, "--ca-cert"},
      {{"--ca-key", ""}, "--ca-key"},
      {{"--config", ""}, "--config (WAYPOINT_CONFIG)"},
      {{"--admin-address", "1.2.3.4"}, "--admin-address"},
      {{"--metrics-address", "x:1"}, "--metrics-address"},
      {{"--readiness-address", "1.2.3.4:99999"}, "--readiness-address"},
      {{"--worker-threads", "x"}, "--worker-threads (WAYPOINT_WORKER_THREADS)"},
      {{"--log-level", "loud"}, "--log-level (RUST_LOG)"},
      {{"--log-format", "xml"}, "--log-format (LOG_FORMAT)"},
      {{"--path-normalization", "merge"}, "--path-normalization (WAYPOINT_PATH_NORMALIZATION)"},
      {{"--connection-termination-deadline", "5 parsecs"}, "--connection-termination-deadline"},
      {{"--connection-termination-deadline", "0s"}, "--connection-termination-deadline"},
  };
  for (const auto& tc : cases) {
    auto r = parse(with(tc.args));
    ASSERT_FALSE(r) << tc.args[0] << " " << tc.args[1] << " was accepted";
    EXPECT_NE(r.error().describe().find(tc.expect), std::string::npos)
        << tc.args[0] << ": " << r.error().describe();
  }
}

TEST(WaypointConfig, BadVariableNamesTheFlagAndVariable) {
  auto r = parse(kRequired, {{"WAYPOINT_WORKER_THREADS", "many"}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("--worker-threads (WAYPOINT_WORKER_THREADS)"),
            std::string::npos)
      << r.error().describe();
}

TEST(WaypointConfig, UnknownAndMalformedArguments) {
  auto unknown = parse(with({"--frobnicate", "1"}));
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().describe().find("unknown flag --frobnicate"), std::string::npos);
  auto bare = parse(with({"positional"}));
  ASSERT_FALSE(bare);
  EXPECT_NE(bare.error().describe().find("unexpected argument"), std::string::npos);
  auto missing = parse(with({"--config"}));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().describe().find("--config (WAYPOINT_CONFIG) needs a value"),
            std::string::npos)
      << missing.error().describe();
}

TEST(WaypointConfig, PairedAndTlsRules) {
  auto half_ca = parse(with({"--ca-cert", "/ca.pem"}));
  ASSERT_FALSE(half_ca);
  EXPECT_NE(half_ca.error().describe().find("--ca-cert and --ca-key go together"),
            std::string::npos);
  auto xds_tls = parse(with({"--xds-address", "https://cp:15012"}));
  ASSERT_FALSE(xds_tls);
  EXPECT_NE(xds_tls.error().describe().find("--xds-root-ca"), std::string::npos);
  auto ca_tls = parse(with({"--ca-address", "https://cp:15012"}));
  ASSERT_FALSE(ca_tls);
  EXPECT_NE(ca_tls.error().describe().find("--ca-root-ca"), std::string::npos);
}

TEST(WaypointConfig, HelpSkipsValidation) {
  auto c = parse({"--bogus", "--help"});
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->help);
  auto text = help_text();
  for (const char* flag : {"--name",
                           "--namespace",
                           "--service-account",
                           "--trust-domain",
                           "--cluster-domain",
                           "--instance-ip",
                           "--hbone-address",
                           "--local-xds-path",
                           "--xds-address",
                           "--xds-root-ca",
                           "--ca-address",
                           "--ca-root-ca",
                           "--ca-cert",
                           "--ca-key",
                           "--config",
                           "--admin-address",
                           "--metrics-address",
                           "--readiness-address",
                           "--worker-threads",
                           "--log-level",
                           "--log-format",
                           "--connection-termination-deadline",
                           "--path-normalization",
                           "--request-headers-timeout",
                           "--stream-idle-timeout",
                           "--idle-timeout",
                           "--max-connection-body-bytes",
                           "WAYPOINT_REQUEST_HEADERS_TIMEOUT",
                           "WAYPOINT_MAX_CONNECTION_BODY_BYTES",
                           "WAYPOINT_NAME",
                           "WAYPOINT_CONFIG",
                           "WAYPOINT_HBONE_ADDRESS"}) {
    EXPECT_NE(text.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace zt::waypoint::app
