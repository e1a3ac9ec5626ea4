#include "waypoint/app/config.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "common/cli/options.h"

namespace zt::waypoint::app {
namespace {

// One row per option (common/cli): parsing, precedence, error messages and --help come from
// this table.
using Option = cli::Option<Config>;

Status non_empty(std::string_view v) {
  if (v.empty()) return fail("must not be empty");
  return {};
}

// A Kubernetes object name / namespace (RFC 1123 label): lower-case letters, digits, '-'.
Status valid_label(std::string_view v) {
  bool ok = !v.empty() && v.size() <= 63 && v.front() != '-' && v.back() != '-' &&
            std::all_of(v.begin(), v.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
            });
  if (!ok) {
    return failf("{} is not a Kubernetes name (lower-case letters, digits and '-', at most 63)",
                 net::quote(v));
  }
  return {};
}

Status valid_domain(std::string_view v) {
  if (auto s = net::validate_hostname(v); !s) return failf("{} is not a domain", net::quote(v));
  return {};
}

Status set_endpoint(tcp::endpoint& out, std::string_view v) {
  auto ep = net::parse_endpoint(v);
  if (!ep) return tl::unexpected(ep.error());
  out = *ep;
  return {};
}

Status set_path(std::optional<std::string>& out, std::string_view v) {
  if (auto s = non_empty(v); !s) return s;
  out = std::string(v);
  return {};
}

// A timeout: a duration (500ms, 10s, 5m, 1h), or 0 (0s) to disable it.
Status set_timeout(std::chrono::milliseconds& out, std::string_view v) {
  if (v == "0" || v == "0s" || v == "0ms" || v == "0m" || v == "0h") {
    out = std::chrono::milliseconds(0);
    return {};
  }
  auto d = zt::config::parse_duration(v);
  if (!d) return tl::unexpected(d.error());
  out = *d;
  return {};
}

// A positive size in bytes: digits, optionally followed by Ki, Mi or Gi (Kubernetes quantities).
Result<size_t> parse_bytes(std::string_view v) {
  size_t digits = 0;
  while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') ++digits;
  const std::string_view unit = v.substr(digits);
  uint64_t scale = 0;
  if (unit.empty()) {
    scale = 1;
  } else if (unit == "Ki") {
    scale = uint64_t{1} << 10;
  } else if (unit == "Mi") {
    scale = uint64_t{1} << 20;
  } else if (unit == "Gi") {
    scale = uint64_t{1} << 30;
  }
  if (digits == 0 || digits > 12 || scale == 0) {
    return failf("{} is not a size (bytes, or a number with Ki, Mi or Gi)", net::quote(v));
  }
  uint64_t n = 0;
  for (size_t i = 0; i < digits; ++i) n = n * 10 + static_cast<uint64_t>(v[i] - '0');
  if (n == 0) return failf("{} is not a positive size", net::quote(v));
  if (n > (uint64_t{1} << 40) / scale) return failf("{} is too large (at most 1Ti)", net::quote(v));
  return static_cast<size_t>(n * scale);
}

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"name", "WAYPOINT_NAME", "NAME", "required", "The Gateway's name.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = valid_label(v); !s) return s;
         c.name = std::string(v);
         return {};
       }},
      {"namespace", "POD_NAMESPACE", "NS", "required", "The Gateway's namespace.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = valid_label(v); !s) return s;
         c.namespace_name = std::string(v);
         return {};
       }},
      {"service-account", "SERVICE_ACCOUNT", "SA", "the value of --name",
       "Service account of the waypoint: its identity is spiffe://TD/ns/NS/sa/SA.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         if (v.find('/') != std::string_view::npos) {
           return failf("{} must not contain '/'", net::quote(v));
         }
         c.service_account = std::string(v);
         return {};
       }},
      {"trust-domain", "TRUST_DOMAIN", "DOMAIN", "cluster.local", "SPIFFE trust domain.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = zt::config::valid_trust_domain(v); !s) return s;
         c.trust_domain = std::string(v);
         return {};
       }},
      {"cluster-domain", "CLUSTER_DOMAIN", "DOMAIN", "cluster.local",
       "DNS suffix of services: the waypoint's hostname is NAME.NS.svc.DOMAIN.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = valid_domain(v); !s) return s;
         c.cluster_domain = std::string(v);
         return {};
       }},
      {"cluster-id", "CLUSTER_ID", "ID", "Kubernetes", "Cluster name, for xDS and the CA.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = non_empty(v); !s) return s;
         c.cluster_id = std::string(v);
         return {};
       }},
      {"instance-ip", "INSTANCE_IP", "IP[,IP...]", "the IP of --hbone-address if specific",
       "The waypoint's own addresses, as services and workloads name it in their `waypoint`.",
       [](Config& c, std::string_view v) -> Status {
         std::vector<asio::ip::address> ips;
         size_t start = 0;
         while (start <= v.size()) {
           auto comma = v.find(',', start);
           auto item = v.substr(start, comma == std::string_view::npos ? comma : comma - start);
           if (!item.empty()) {
             auto ip = net::parse_ip(item);
             if (!ip) return failf("{} is not an IP address", net::quote(item));
             ips.push_back(net::unmap(*ip));
           }
           if (comma == std::string_view::npos) break;
           start = comma + 1;
         }
         if (ips.empty()) return fail("no IP address given");
         c.instance_ips = std::move(ips);
         return {};
       }},
      {"hbone-address", "WAYPOINT_HBONE_ADDRESS", "IP:PORT", "0.0.0.0:15008",
       "HBONE listener (port 0 picks a free port; the log reports it).",
       [](Config& c, std::string_view v) { return set_endpoint(c.hbone_address, v); }},
      {"local-xds-path", "LOCAL_XDS_PATH", "FILE", "none",
       "Workloads and services in ztunnel's local config YAML; reloaded when the file changes.",
       [](Config& c, std::string_view v) { return set_path(c.local_xds_path, v); }},
      {"xds-address", "XDS_ADDRESS", "URL", "none",
       "Control plane (Delta ADS: Address and WaypointConfig types): http://HOST:PORT or "
       "https://HOST:PORT. Wins over --local-xds-path.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = zt::config::valid_grpc_url(v); !s) return s;
         c.xds_address = std::string(v);
         return {};
       }},
      {"xds-root-ca", "XDS_ROOT_CA", "FILE", "none", "PEM roots for an https:// XDS_ADDRESS.",
       [](Config& c, std::string_view v) { return set_path(c.xds_root_ca, v); }},
      {"ca-address", "CA_ADDRESS", "URL", "none",
       "Istio CA (IstioCertificateService). Without it the built-in CA signs in-process.",
       [](Config& c, std::string_view v) -> Status {
         if (auto s = zt::config::valid_grpc_url(v); !s) return s;
         c.ca_address = std::string(v);
         return {};
       }},
      {"ca-root-ca", "CA_ROOT_CA", "FILE", "none", "PEM roots for an https:// CA_ADDRESS.",
       [](Config& c, std::string_view v) { return set_path(c.ca_root_ca, v); }},
      {"auth-token", "AUTH_TOKEN", "FILE", "none",
       "Bearer token file for the CA and the control plane; re-read per request.",
       [](Config& c, std::string_view v) { return set_path(c.auth_token_path, v); }},
      {"ca-cert", nullptr, "FILE", "none",
       "Built-in CA certificate (PEM), with --ca-key; with neither the built-in CA generates "
       "its own key pair.",
       [](Config& c, std::string_view v) { return set_path(c.ca_cert_path, v); }},
      {"ca-key", nullptr, "FILE", "none", "Built-in CA private key (PEM), with --ca-cert.",
       [](Config& c, std::string_view v) { return set_path(c.ca_key_path, v); }},
      {"config", "WAYPOINT_CONFIG", "FILE", "none",
       "L7 configuration YAML (HTTPRoute, GRPCRoute, VirtualService, DestinationRule with its "
       "SubsetEndpoints, AuthorizationPolicy, RequestAuthentication, the ConfigMap istio), "
       "reloaded when the file changes; a bad edit is logged and the last good configuration "
       "kept.",
       [](Config& c, std::string_view v) { return set_path(c.config_path, v); }},
      {"admin-address", nullptr, "IP:PORT", "127.0.0.1:15000",
       "Admin listener (/config_dump, /logging, /quitquitquit).",
       [](Config& c, std::string_view v) { return set_endpoint(c.admin_address, v); }},
      {"metrics-address", nullptr, "IP:PORT", "0.0.0.0:15020",
       "Prometheus listener (/metrics, /stats/prometheus).",
       [](Config& c, std::string_view v) { return set_endpoint(c.metrics_address, v); }},
      {"readiness-address", nullptr, "IP:PORT", "0.0.0.0:15021",
       "Readiness listener (/healthz/ready).",
       [](Config& c, std::string_view v) { return set_endpoint(c.readiness_address, v); }},
      {"worker-threads", "WAYPOINT_WORKER_THREADS", "N", "2",
       "Worker threads: a number (0 = one per core) or a percentage of the cores (\"50%\").",
       [](Config& c, std::string_view v) -> Status {
         auto n = zt::config::parse_worker_threads(v);
         if (!n) return tl::unexpected(n.error());
         c.worker_threads = *n;
         return {};
       }},
      {"log-level", "RUST_LOG", "LEVEL", "info",
       "trace, debug, info, warn, error or off (RUST_LOG per-target directives are ignored).",
       [](Config& c, std::string_view v) -> Status {
         auto level = zt::config::parse_log_level(v);
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
      {"path-normalization", "WAYPOINT_PATH_NORMALIZATION", "MODE", "BASE",
       "Request path normalisation before L7 policy and forwarding, as Istio's "
       "meshConfig.pathNormalization: NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES "
       "(DEFAULT = BASE).",
       [](Config& c, std::string_view v) -> Status {
         using authz::PathNormalization;
         if (v == "DEFAULT" || v == "BASE") {
           c.path_normalization = PathNormalization::kBase;
         } else if (v == "NONE") {
           c.path_normalization = PathNormalization::kNone;
         } else if (v == "MERGE_SLASHES") {
           c.path_normalization = PathNormalization::kMergeSlashes;
         } else if (v == "DECODE_AND_MERGE_SLASHES") {
           c.path_normalization = PathNormalization::kDecodeAndMergeSlashes;
         } else {
           return failf("\"{}\" is not NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES", v);
         }
         return {};
       }},
      {"connection-termination-deadline", nullptr, "DURATION", "5s",
       "On SIGTERM, how long open streams may finish before they are closed.",
       [](Config& c, std::string_view v) -> Status {
         auto d = zt::config::parse_duration(v);
         if (!d) return tl::unexpected(d.error());
         c.connection_termination_deadline = *d;
         return {};
       }},
      {"request-headers-timeout", "WAYPOINT_REQUEST_HEADERS_TIMEOUT", "DURATION", "10s",
       "Longest time from the first byte of a request head to its end (Envoy's "
       "request_headers_timeout): HTTP/1.1 answers 408 and closes, HTTP/2 answers 408 on the "
       "stream. 0 disables it.",
       [](Config& c, std::string_view v) { return set_timeout(c.request_headers_timeout, v); }},
      {"stream-idle-timeout", "WAYPOINT_STREAM_IDLE_TIMEOUT", "DURATION", "5m",
       "A request that makes no progress (no byte of its head or body) for this long is answered "
       "408 (HTTP/1.1 then closes); a response the peer takes nothing of for this long is cut "
       "(HTTP/2: RST_STREAM). Envoy's stream_idle_timeout; 0 disables it.",
       [](Config& c, std::string_view v) { return set_timeout(c.stream_idle_timeout, v); }},
      {"idle-timeout", "WAYPOINT_IDLE_TIMEOUT", "DURATION", "1h",
       "A downstream connection without any request in progress for this long is closed "
       "(HTTP/2: GOAWAY first). Envoy's idle_timeout; 0 disables it.",
       [](Config& c, std::string_view v) { return set_timeout(c.idle_timeout, v); }},
      {"max-connection-body-bytes", "WAYPOINT_MAX_CONNECTION_BODY_BYTES", "SIZE", "32Mi",
       "HTTP/2: request body bytes one connection may hold at once, all its streams together "
       "(each body is buffered up to 64Ki and the rest streamed, counted while unread); the "
       "stream that would pass it is reset with REFUSED_STREAM (ENHANCE_YOUR_CALM once its "
       "request is handled). Bytes, or a number with Ki, Mi or Gi.",
       [](Config& c, std::string_view v) -> Status {
         auto n = parse_bytes(v);
         if (!n) return tl::unexpected(n.error());
         c.max_connection_body_bytes = *n;
         return {};
       }},
  };
  return kOptions;
}

}  // namespace

std::string Config::identity_uri() const {
  return fmt::format("spiffe://{}/ns/{}/sa/{}", trust_domain, namespace_name, service_account);
}

std::string Config::hostname() const {
  return fmt::format("{}.{}.svc.{}", name, namespace_name, cluster_domain);
}

Result<Config> parse_config(int argc, char** argv, const zt::config::Getenv& getenv) {
  if (cli::wants_help(argc, argv)) return Config{.help = true};
  Config c;
  if (auto st = cli::apply_options(argc, argv, getenv, options(), c); !st) {
    return tl::unexpected(st.error());
  }

  if (c.name.empty()) return fail("--name (WAYPOINT_NAME) is required: the Gateway's name");
  if (c.namespace_name.empty()) {
    return fail("--namespace (POD_NAMESPACE) is required: the Gateway's namespace");
  }
  if (c.service_account.empty()) c.service_account = c.name;
  if (c.instance_ips.empty() && !c.hbone_address.address().is_unspecified()) {
    c.instance_ips.push_back(net::unmap(c.hbone_address.address()));
  }
  if (c.ca_cert_path.has_value() != c.ca_key_path.has_value()) {
    return fail(
        "--ca-cert and --ca-key go together: give both files, or neither to let the built-in "
        "CA generate a key pair");
  }
  if (c.xds_address && c.xds_address->starts_with("https://") && !c.xds_root_ca) {
    return fail(
        "--xds-address (XDS_ADDRESS) is https:// but no --xds-root-ca (XDS_ROOT_CA) says which "
        "roots to trust");
  }
  if (c.ca_address && c.ca_address->starts_with("https://") && !c.ca_root_ca) {
    return fail(
        "--ca-address (CA_ADDRESS) is https:// but no --ca-root-ca (CA_ROOT_CA) says which "
        "roots to trust");
  }
  if (!c.xds_address && !c.local_xds_path) {
    return fail(
        "no source of workloads and services: give --xds-address (XDS_ADDRESS) or "
        "--local-xds-path (LOCAL_XDS_PATH)");
  }
  return c;
}

std::string help_text() {
  return cli::help_text(
      "Usage: waypoint [options]\n"
      "\n"
      "The ambient mesh's L7 waypoint proxy. Every option can be given as a flag (--flag value\n"
      "or --flag=value) or, where shown, as an environment variable; a flag wins over its\n"
      "variable, which wins over the default.\n"
      "\n"
      "Options:\n",
      cli::infos(options()));
}

}  // namespace zt::waypoint::app
