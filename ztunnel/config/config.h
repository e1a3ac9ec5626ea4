// ztunnel's start-up configuration: command-line flags, each backed by the environment variable
// Istio's ztunnel reads where one exists (facts §10). A flag wins over its environment variable,
// which wins over the default. Parsing is pure (the environment comes in as a function) so every
// rule is unit-tested; main.cc prints help_text() for --help and the error otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/log.h"
#include "common/base/result.h"
#include "common/net/address.h"

namespace zt::config {

enum class ProxyMode { kDedicated, kShared };

// The one workload a dedicated-mode proxy acts for: PROXY_WORKLOAD_INFO=ns/name/sa.
struct WorkloadInfo {
  std::string namespace_name{};
  std::string name{};
  std::string service_account{};

  friend bool operator==(const WorkloadInfo&, const WorkloadInfo&) = default;
};

inline constexpr std::string_view kDefaultTrustDomain = "cluster.local";
inline constexpr std::string_view kDefaultClusterId = "Kubernetes";
inline constexpr uint16_t kDefaultSocks5Port = 15080;
inline constexpr uint16_t kDefaultAdminPort = 15000;
inline constexpr uint16_t kDefaultMetricsPort = 15020;
inline constexpr uint16_t kDefaultReadinessPort = 15021;
inline constexpr int kDefaultWorkerThreads = 2;
inline constexpr std::string_view kDefaultLogLevel = "info";
inline constexpr std::chrono::milliseconds kDefaultConnectionTerminationDeadline{5'000};
inline constexpr uint32_t kDefaultPoolMaxStreams = 100;
inline constexpr std::chrono::milliseconds kDefaultPoolUnusedReleaseTimeout{5 * 60'000};
inline constexpr uint32_t kDefaultHttp2StreamWindow = 4 * 1024 * 1024;
inline constexpr uint32_t kDefaultHttp2ConnectionWindow = 16 * 1024 * 1024;
inline constexpr uint32_t kDefaultHttp2FrameSize = 1024 * 1024;
inline constexpr std::chrono::seconds kDefaultSecretTtl{24 * 3600};
// Shared mode (facts §7): the node agent's ZDS socket, the capture maps' bpffs folder and the
// SO_MARK of ztunnel's sockets in pods (Istio's 1337 = 0x539).
inline constexpr std::string_view kDefaultInpodUds = "/var/run/ztunnel/ztunnel.sock";
inline constexpr std::string_view kDefaultBpfPinRoot = "/sys/fs/bpf/ambient-mesh";
inline constexpr uint32_t kDefaultInpodMark = 1337;

struct Config {
  // --help was given: print help_text() and exit; nothing else was validated.
  bool help = false;

  std::optional<std::string> local_xds_path{};
  ProxyMode proxy_mode = ProxyMode::kDedicated;
  std::optional<WorkloadInfo> proxy_workload_info{};  // always set in dedicated mode
  // Dedicated mode only: this ztunnel runs inside its pod's netns as the pod's sidecar and
  // serves its workload through the eBPF capture pinned at bpf_pin_root (listeners
  // 127.0.0.1:15001/15006/15008 in that netns, 15006/15008 registered in the capture maps for
  // the workload's IPs), as shared mode serves an enrolled pod. false: the listeners bind the
  // workload's IPs directly and there is no outbound capture.
  bool sidecar_capture = false;
  std::string node_name{};  // required in shared mode
  // Shared mode: where the node agent serves ZDS, where its capture maps are pinned, and the
  // mark on every socket ztunnel opens in a pod (the last two also with sidecar_capture).
  std::string inpod_uds{kDefaultInpodUds};
  std::string bpf_pin_root{kDefaultBpfPinRoot};
  uint32_t inpod_mark = kDefaultInpodMark;
  std::string trust_domain{kDefaultTrustDomain};
  std::string cluster_id{kDefaultClusterId};

  // Built-in CA key pair on disk; both empty means the CA generates its own key pair.
  std::optional<std::string> ca_cert_path{};
  std::optional<std::string> ca_key_path{};

  // Control plane (facts §3.2, §4.1). "http://host:port" is plaintext (loopback tests and the
  // simulated cluster); "https://host:port" verifies the server against the *_ROOT_CA file.
  // No XDS_ADDRESS means the configuration comes from LOCAL_XDS_PATH; no CA_ADDRESS means the
  // built-in CA signs in-process.
  std::optional<std::string> xds_address{};
  std::optional<std::string> xds_root_ca{};
  std::optional<std::string> ca_address{};
  std::optional<std::string> ca_root_ca{};
  std::optional<std::string> auth_token_path{};  // bearer token file, re-read per request
  // Who this ztunnel is, for the xDS node id and metadata.
  std::string instance_ip{};
  std::string pod_name{};
  std::string pod_namespace{};

  bool enable_socks5 = false;
  tcp::endpoint socks5_address{asio::ip::address_v4::loopback(), kDefaultSocks5Port};
  tcp::endpoint admin_address{asio::ip::address_v4::loopback(), kDefaultAdminPort};
  tcp::endpoint metrics_address{asio::ip::address_v4::any(), kDefaultMetricsPort};
  tcp::endpoint readiness_address{asio::ip::address_v4::any(), kDefaultReadinessPort};

  int worker_threads = kDefaultWorkerThreads;
  std::string log_level{kDefaultLogLevel};  // a name log::init accepts
  log::Format log_format = log::Format::kText;

  std::chrono::milliseconds connection_termination_deadline = kDefaultConnectionTerminationDeadline;
  uint32_t pool_max_streams = kDefaultPoolMaxStreams;
  std::chrono::milliseconds pool_unused_release_timeout = kDefaultPoolUnusedReleaseTimeout;
  uint32_t http2_stream_window = kDefaultHttp2StreamWindow;
  uint32_t http2_connection_window = kDefaultHttp2ConnectionWindow;
  uint32_t http2_frame_size = kDefaultHttp2FrameSize;
  std::chrono::seconds secret_ttl = kDefaultSecretTtl;
};

using Getenv = std::function<std::optional<std::string>(const char*)>;

// Flags as `--flag value` or `--flag=value`; boolean flags also bare (`--enable-socks5`).
// An empty environment variable counts as unset. Errors name the flag and its variable, e.g.
// `--worker-threads (ZTUNNEL_WORKER_THREADS): "x" is not a number`.
Result<Config> parse_config(int argc, char** argv, const Getenv& getenv);

// std::getenv as a Getenv, for main.cc.
std::optional<std::string> process_getenv(const char* name);

// Every option with its variable, default and meaning.
std::string help_text();

// Value checks shared with the waypoint's command line (waypoint/app/config.h).
// SPIFFE trust domain names: lower-case letters, digits, '.', '-' and '_'.
Status valid_trust_domain(std::string_view value);
// A log level name, or RUST_LOG directives whose target-less one sets the level.
Result<std::string> parse_log_level(std::string_view value);
// A number (0 = one per core) or a percentage of the cores ("50%").
Result<int> parse_worker_threads(std::string_view value);
// "http://host:port" or "https://host:port", as the gRPC clients take them.
Status valid_grpc_url(std::string_view v);

// "500ms", "5s", "5m", "24h", "1m30s": a positive duration.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace zt::config
