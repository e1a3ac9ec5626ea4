#include "ztunnel/config/config.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "common/cli/options.h"

namespace zt::config {
namespace {

// One row per option (common/cli): the table drives parsing, precedence, error messages and
// --help alike, so the four cannot drift apart.
using Option = cli::Option<Config>;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

Result<uint64_t> parse_unsigned(std::string_view text, uint64_t min, uint64_t max) {
  if (text.empty() || text.size() > 19 || !std::all_of(text.begin(), text.end(), is_digit)) {
    return failf("{} is not a number", net::quote(text));
  }
  uint64_t value = 0;
  for (char c : text) value = value * 10 + static_cast<uint64_t>(c - '0');
  if (value < min || value > max) {
    return failf("{} is out of range ({}-{})", value, min, max);
  }
  return value;
}

Status non_empty(std::string_view value) {
  if (value.empty()) return fail("must not be empty");
  return {};
}

Status set_endpoint(tcp::endpoint& out, std::string_view value) {
  auto endpoint = net::parse_endpoint(value);
  if (!endpoint) return tl::unexpected(endpoint.error());
  out = *endpoint;
  return {};
}

Status set_u32(uint32_t& out, std::string_view value, uint64_t min, uint64_t max) {
  auto n = parse_unsigned(value, min, max);
  if (!n) return tl::unexpected(n.error());
  out = static_cast<uint32_t>(*n);
  return {};
}

Result<WorkloadInfo> parse_workload_info(std::string_view value) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    auto slash = value.find('/', start);
    parts.push_back(value.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() != 3 ||
      std::any_of(parts.begin(), parts.end(), [](auto p) { return p.empty(); })) {
    return failf("{} is not namespace/name/service-account", net::quote(value));
  }
  return WorkloadInfo{std::string(parts[0]), std::string(parts[1]), std::string(parts[2])};
}

}  // namespace

Status valid_trust_domain(std::string_view value) {
  // SPIFFE trust domain names: lower-case letters, digits, '.', '-' and '_'.
  bool ok = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || is_digit(c) || c == '.' || c == '-' || c == '_';
  });
  if (!ok) {
    return failf("{} is not a trust domain (lower-case letters, digits, '.', '-', '_')",
                 net::quote(value));
  }
  return {};
}

Result<std::string> parse_log_level(std::string_view value) {
  // RUST_LOG may hold directives ("info,ztunnel::proxy=debug"); we have one logger, so the
  // directive without a target sets the level and per-target ones are ignored.
  std::string_view level;
  size_t start = 0;
  while (start <= value.size()) {
    auto comma = value.find(',', start);
    auto item = value.substr(start, comma == std::string_view::npos ? comma : comma - start);
    if (!item.empty() && item.find('=') == std::string_view::npos) level = item;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  auto lower = to_lower(level);
  if (lower == "warning") lower = "warn";
  static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
  if (std::find(std::begin(kLevels), std::end(kLevels), lower) == std::end(kLevels)) {
    return failf("{} is not a log level (trace, debug, info, warn, error, off)", net::quote(value));
  }
  return lower;
}

Result<int> parse_worker_threads(std::string_view value) {
  auto cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!value.empty() && value.back() == '%') {
    auto percent = parse_unsigned(value.substr(0, value.size() - 1), 1, 100);
    if (!percent) return failf("{}: {}", net::quote(value), percent.error().message);
    return std::max(1, static_cast<int>((cores * static_cast<int>(*percent) + 99) / 100));
  }
  auto n = parse_unsigned(value, 0, 1024);
  if (!n) return tl::unexpected(n.error());
  if (*n == 0) return cores;  // 0 means one thread per core, as in ztunnel
  return static_cast<int>(*n);
}

// "http://host:port" or "https://host:port", as the gRPC clients take them.
Status valid_grpc_url(std::string_view v) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (v.starts_with(scheme)) {
      auto rest = v.substr(scheme.size());
      auto colon = rest.rfind(':');
      if (rest.empty() || colon == std::string_view::npos || colon == 0 ||
          colon + 1 == rest.size() || rest.find('/') != std::string_view::npos) {
        return failf("{} is not a URL of the form {}HOST:PORT", net::quote(v), scheme);
      }
      if (auto port = parse_unsigned(rest.substr(colon + 1), 1, 65535); !port) {
        return failf("{}: bad port: {}", net::quote(v), port.error().message);
      }
      return {};
    }
  }
  return failf("{} is not an http:// or https:// URL", net::quote(v));
}

namespace {

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"local-xds-path", "LOCAL_XDS_PATH", "FILE", "none",
       "Local config YAML (workloads, services, policies in ztunnel's camelCase layout); "
       "reloaded when the file changes.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.local_xds_path = std::string(v);
         return {};
       }},
      {"proxy-mode", "PROXY_MODE", "MODE", "dedicated",
       "dedicated: proxy for the one workload named by --proxy-workload-info. shared: one proxy "
       "for every pod the node agent enrolls over ZDS (--inpod-uds), with listeners inside each "
       "pod's network namespace and the eBPF capture maps under --bpf-pin-root; needs "
       "--node-name.",
       [](Config& c, std::string_view v) -> Status {
         if (v == "dedicated") {
           c.proxy_mode = ProxyMode::kDedicated;
           return {};
         }
         if (v == "shared") {
           c.proxy_mode = ProxyMode::kShared;
           return {};
         }
         return failf("{} is not a proxy mode (dedicated, shared)", net::quote(v));
       }},
      {"proxy-workload-info", "PROXY_WORKLOAD_INFO", "NS/NAME/SA", "none",
       "The workload a dedicated proxy acts for: namespace/name/service-account. Required in "
       "dedicated mode.",
       [](Config& c, std::string_view v) -> Status {
         auto info = parse_workload_info(v);
         if (!info) return tl::unexpected(info.error());
         c.proxy_workload_info = std::move(*info);
         return {};
       }},
      {"sidecar-capture", "SIDECAR_CAPTURE", "", "false",
       "Dedicated mode: this ztunnel runs inside its pod's network namespace as the pod's "
       "sidecar and serves its workload through the eBPF capture whose maps are pinned at "
       "--bpf-pin-root: outbound capture on 127.0.0.1:15001, inbound 127.0.0.1:15006/15008 "
       "registered in the capture maps for the workload's IPs, original destinations from the "
       "maps, delivery to the app as in shared mode. Not with --proxy-mode shared. As a "
       "variable: true|false.",
       [](Config& c, std::string_view v) -> Status {
         auto b = cli::parse_bool(v);
         if (!b) return tl::unexpected(b.error());
         c.sidecar_capture = *b;
         return {};
       }},
      {"node-name", "NODE_NAME", "NAME", "empty", "The node this proxy runs on.",
       [](Config& c, std::string_view v) -> Status {
         c.node_name = std::string(v);
         return {};
       }},
      {"inpod-uds", "INPOD_UDS", "PATH", "/var/run/ztunnel/ztunnel.sock",
       "Shared mode: the node agent's ZDS socket (SOCK_SEQPACKET) that hands over enrolled "
       "pods.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.inpod_uds = std::string(v);
         return {};
       }},
      {"bpf-pin-root", "BPF_PIN_ROOT", "DIR", "/sys/fs/bpf/ambient-mesh",
       "Shared mode (and --sidecar-capture): bpffs folder where the capture maps are pinned.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.bpf_pin_root = std::string(v);
         return {};
       }},
      {"inpod-mark", "INPOD_MARK", "MARK", "1337",
       "Shared mode (and --sidecar-capture): SO_MARK on every socket ztunnel opens in a pod, "
       "which the capture skips.",
       [](Config& c, std::string_view v) { return set_u32(c.inpod_mark, v, 1, 0xffffffffu); }},
      {"trust-domain", "TRUST_DOMAIN", "DOMAIN", "cluster.local",
       "SPIFFE trust domain of the workload identities.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = valid_trust_domain(v); !s) return s;
         c.trust_domain = std::string(v);
         return {};
       }},
      {"cluster-id", "CLUSTER_ID", "ID", "Kubernetes", "Cluster name, sent in baggage.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.cluster_id = std::string(v);
         return {};
       }},
      {"ca-cert", nullptr, "FILE", "none",
       "Built-in CA certificate (PEM). Give it with --ca-key; with neither, the built-in CA "
       "generates its own key pair.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.ca_cert_path = std::string(v);
         return {};
       }},
      {"ca-key", nullptr, "FILE", "none", "Built-in CA private key (PEM), with --ca-cert.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.ca_key_path = std::string(v);
         return {};
       }},
      {"xds-address", "XDS_ADDRESS", "URL", "none",
       "Control plane serving Delta ADS (the workload API): http://HOST:PORT (plaintext) or "
       "https://HOST:PORT (TLS, verified with --xds-root-ca). Replaces --local-xds-path.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = valid_grpc_url(v); !s) return s;
         c.xds_address = std::string(v);
         return {};
       }},
      {"xds-root-ca", "XDS_ROOT_CA", "FILE", "none",
       "PEM roots that verify an https:// XDS_ADDRESS.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.xds_root_ca = std::string(v);
         return {};
       }},
      {"ca-address", "CA_ADDRESS", "URL", "none",
       "Istio CA (IstioCertificateService): http://HOST:PORT or https://HOST:PORT. Without it "
       "the built-in CA signs in-process.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = valid_grpc_url(v); !s) return s;
         c.ca_address = std::string(v);
         return {};
       }},
      {"ca-root-ca", "CA_ROOT_CA", "FILE", "none", "PEM roots that verify an https:// CA_ADDRESS.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.ca_root_ca = std::string(v);
         return {};
       }},
      {"auth-token", "AUTH_TOKEN", "FILE", "none",
       "File holding the bearer token sent to the CA and the control plane; re-read per request.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.auth_token_path = std::string(v);
         return {};
       }},
      {"instance-ip", "INSTANCE_IP", "IP", "empty", "This proxy's IP, for the xDS node id.",
       [](Config& c, std::string_view v) -> Status {
         c.instance_ip = std::string(v);
         return {};
       }},
      {"pod-name", "POD_NAME", "NAME", "empty", "This proxy's pod name, for the xDS node id.",
       [](Config& c, std::string_view v) -> Status {
         c.pod_name = std::string(v);
         return {};
       }},
      {"pod-namespace", "POD_NAMESPACE", "NS", "empty",
       "This proxy's namespace, for the xDS node id.",
       [](Config& c, std::string_view v) -> Status {
         c.pod_namespace = std::string(v);
         return {};
       }},
      {"enable-socks5", "UNSTABLE_ENABLE_SOCKS5", "", "false",
       "Run the SOCKS5 listener (no-auth CONNECT; development only). As a variable: true|false.",
       [](Config& c, std::string_view v) -> Status {
         auto b = cli::parse_bool(v);
         if (!b) return tl::unexpected(b.error());
         c.enable_socks5 = *b;
         return {};
       }},
      {"socks5-address", nullptr, "IP:PORT", "127.0.0.1:15080", "SOCKS5 listener address.",
       [](Config& c, std::string_view v) { return set_endpoint(c.socks5_address, v); }},
      {"admin-address", nullptr, "IP:PORT", "127.0.0.1:15000",
       "Admin listener address (/config_dump, /logging, /quitquitquit).",
       [](Config& c, std::string_view v) { return set_endpoint(c.admin_address, v); }},
      {"metrics-address", nullptr, "IP:PORT", "0.0.0.0:15020",
       "Prometheus listener address (/metrics, /stats/prometheus).",
       [](Config& c, std::string_view v) { return set_endpoint(c.metrics_address, v); }},
      {"readiness-address", nullptr, "IP:PORT", "0.0.0.0:15021",
       "Readiness listener address (/healthz/ready).",
       [](Config& c, std::string_view v) { return set_endpoint(c.readiness_address, v); }},
      {"worker-threads", "ZTUNNEL_WORKER_THREADS", "N", "2",
       "Data-plane worker threads: a number (0 = one per core) or a percentage of the cores "
       "(\"50%\").",
       [](Config& c, std::string_view v) -> Status {
         auto n = parse_worker_threads(v);
         if (!n) return tl::unexpected(n.error());
         c.worker_threads = *n;
         return {};
       }},
      {"log-level", "RUST_LOG", "LEVEL", "info",
       "trace, debug, info, warn, error or off. From RUST_LOG, per-target directives "
       "(target=level) are ignored.",
       [](Config& c, std::string_view v) -> Status {
         auto level = parse_log_level(v);
         if (!level) return tl::unexpected(level.error());
         c.log_level = std::move(*level);
         return {};
       }},
      {"log-format", "LOG_FORMAT", "FORMAT", "text", "text or json (one object per line).",
       [](Config& c, std::string_view v) -> Status {
         if (v == "text") {
           c.log_format = log::Format::kText;
         } else if (v == "json") {
           c.log_format = log::Format::kJson;
         } else {
           return failf("{} is not a log format (text, json)", net::quote(v));
         }
         return {};
       }},
      {"connection-termination-deadline", "CONNECTION_TERMINATION_DEADLINE", "DURATION", "5s",
       "On shutdown, how long open connections may drain before they are closed.",
       [](Config& c, std::string_view v) -> Status {
         auto d = parse_duration(v);
         if (!d) return tl::unexpected(d.error());
         c.connection_termination_deadline = *d;
         return {};
       }},
      {"pool-max-streams", "POOL_MAX_STREAMS_PER_CONNECTION", "N", "100",
       "HBONE streams per pooled connection before another connection is opened.",
       [](Config& c, std::string_view v) { return set_u32(c.pool_max_streams, v, 1, 1u << 31); }},
      {"pool-unused-release-timeout", "POOL_UNUSED_RELEASE_TIMEOUT", "DURATION", "5m",
       "How long an idle pooled HBONE connection is kept.",
       [](Config& c, std::string_view v) -> Status {
         auto d = parse_duration(v);
         if (!d) return tl::unexpected(d.error());
         c.pool_unused_release_timeout = *d;
         return {};
       }},
      {"http2-stream-window", "HTTP2_STREAM_WINDOW_SIZE", "BYTES", "4194304",
       "HTTP/2 initial stream window.",
       [](Config& c, std::string_view v) {
         return set_u32(c.http2_stream_window, v, 65535, (1u << 31) - 1);
       }},
      {"http2-connection-window", "HTTP2_CONNECTION_WINDOW_SIZE", "BYTES", "16777216",
       "HTTP/2 connection window.",
       [](Config& c, std::string_view v) {
         return set_u32(c.http2_connection_window, v, 65535, (1u << 31) - 1);
       }},
      {"http2-frame-size", "HTTP2_FRAME_SIZE", "BYTES", "1048576",
       "HTTP/2 maximum frame size (16384-16777215).",
       [](Config& c, std::string_view v) {
         return set_u32(c.http2_frame_size, v, 16384, (1u << 24) - 1);
       }},
      {"secret-ttl", "SECRET_TTL", "DURATION", "24h",
       "Lifetime of the workload certificates the CA issues.",
       [](Config& c, std::string_view v) -> Status {
         auto d = parse_duration(v);
         if (!d) return tl::unexpected(d.error());
         if (*d < std::chrono::seconds(1)) return fail("must be at least 1s");
         c.secret_ttl = std::chrono::duration_cast<std::chrono::seconds>(*d);
         return {};
       }},
  };
  return kOptions;
}

}  // namespace

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return fail("empty duration");
  uint64_t total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == start || i - start > 9) {
      return failf("{} is not a duration (like 500ms, 5s, 5m, 24h)", net::quote(text));
    }
    uint64_t n = 0;
    for (size_t k = start; k < i; ++k) n = n * 10 + static_cast<uint64_t>(text[k] - '0');
    size_t unit_start = i;
    while (i < text.size() && !is_digit(text[i])) ++i;
    auto unit = text.substr(unit_start, i - unit_start);
    uint64_t scale = 0;
    if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1000;
    } else if (unit == "m") {
      scale = 60'000;
    } else if (unit == "h") {
      scale = 3'600'000;
    } else {
      return failf("{} is not a duration: unit {} is not ms, s, m or h", net::quote(text),
                   net::quote(unit));
    }
    total_ms += n * scale;
    // A year is plenty for any timeout here; also keeps the sum far from overflow.
    if (total_ms > 366ull * 24 * 3'600'000) return failf("{} is too long", net::quote(text));
  }
  if (total_ms == 0) return failf("{} is not a positive duration", net::quote(text));
  return std::chrono::milliseconds(total_ms);
}

std::optional<std::string> process_getenv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

Result<Config> parse_config(int argc, char** argv, const Getenv& getenv) {
  if (cli::wants_help(argc, argv)) return Config{.help = true};
  Config config;
  if (auto st = cli::apply_options(argc, argv, getenv, options(), config); !st) {
    return tl::unexpected(st.error());
  }

  if (config.ca_cert_path.has_value() != config.ca_key_path.has_value()) {
    return fail(
        "--ca-cert and --ca-key go together: give both files, or neither to let the "
        "built-in CA generate a key pair");
  }
  if (config.xds_address && config.local_xds_path) {
    return fail(
        "--xds-address (XDS_ADDRESS) and --local-xds-path (LOCAL_XDS_PATH) are two "
        "configuration sources: give one");
  }
  if (config.xds_address && config.xds_address->starts_with("https://") && !config.xds_root_ca) {
    return fail(
        "--xds-address (XDS_ADDRESS) is https:// but no --xds-root-ca (XDS_ROOT_CA) "
        "says which roots to trust");
  }
  if (config.ca_address && config.ca_address->starts_with("https://") && !config.ca_root_ca) {
    return fail(
        "--ca-address (CA_ADDRESS) is https:// but no --ca-root-ca (CA_ROOT_CA) says "
        "which roots to trust");
  }
  if (config.proxy_mode == ProxyMode::kDedicated && !config.proxy_workload_info) {
    return fail(
        "--proxy-workload-info (PROXY_WORKLOAD_INFO) is required in dedicated mode: "
        "namespace/name/service-account of the workload this proxy acts for");
  }
  if (config.proxy_mode == ProxyMode::kShared) {
    if (config.sidecar_capture) {
      return fail(
          "--sidecar-capture (SIDECAR_CAPTURE) is for dedicated mode (one pod's own ztunnel); "
          "shared mode gets its pods from the node agent: drop it or use --proxy-mode "
          "dedicated");
    }
    if (config.node_name.empty()) {
      return fail(
          "--node-name (NODE_NAME) is required in shared mode: the node whose pods this "
          "proxy serves");
    }
    if (!config.xds_address && !config.local_xds_path) {
      return fail(
          "shared mode needs a configuration source: --xds-address (XDS_ADDRESS) or "
          "--local-xds-path (LOCAL_XDS_PATH)");
    }
  }
  return config;
}

std::string help_text() {
  return cli::help_text(
      "Usage: ztunnel [options]\n"
      "\n"
      "An Istio-compatible ambient mesh node proxy. Every option can be given as a flag\n"
      "(--flag value or --flag=value) or, where shown, as an environment variable; a flag\n"
      "wins over its variable, which wins over the default.\n"
      "\n"
      "Options:\n",
      cli::infos(options()));
}

}  // namespace zt::config
