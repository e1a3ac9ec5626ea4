#include "meshd/app/config.h"

#include <map>
#include <string>

#include "common/tls/spiffe.h"
#include "waypoint/config/parse.h"

namespace zt::meshd::app {
namespace {

struct Flag {
  std::string_view name;
  std::string_view value_name;
  std::string_view help;
};

constexpr Flag kFlags[] = {
    {"manifests", "DIR",
     "Directory of Kubernetes YAML manifests (Namespace, Pod, Service, ServiceAccount,\n"
     "AuthorizationPolicy, PeerAuthentication, RequestAuthentication, Gateway,\n"
     "HTTPRoute, GRPCRoute, VirtualService, DestinationRule; the ConfigMap istio in\n"
     "istio-system for MeshConfig's ext_authz extensionProviders).\n"
     "Watched: edits are pushed to connected ztunnels and waypoints; an invalid object\n"
     "(including one a waypoint would refuse) is logged and its last good version kept;\n"
     "an AuthorizationPolicy without one, its scope and action still readable, fails\n"
     "closed (DENY, or CUSTOM at a waypoint: denies all of its scope; ALLOW: allows none).\n"
     "Give exactly one of --manifests, --kube-api and --kube-server."},
    {"kube-api", "",
     "Read the same kinds from the Kubernetes API server of the cluster meshd runs in\n"
     "(KUBERNETES_SERVICE_HOST/PORT, the service account token and ca.crt under\n"
     "/var/run/secrets/kubernetes.io/serviceaccount; the token is re-read as it rotates).\n"
     "Lists then watches each kind; serves once every kind is listed."},
    {"kube-server", "URL",
     "Read the objects from this Kubernetes API server (https://HOST:PORT, or http:// for\n"
     "tests) instead, with --kube-token-file and --kube-ca-file."},
    {"kube-token-file", "FILE",
     "Bearer token for --kube-server, re-read before every request. Default: none."},
    {"kube-ca-file", "FILE",
     "PEM CA that verifies --kube-server's certificate. Default: the system's roots."},
    {"grpc-address", "IP:PORT",
     "Where to serve Delta ADS and the Istio CA (one port). Default 127.0.0.1:15012.\n"
     "Port 0 picks a free port; the log line \"listening component=grpc address=...\" says\n"
     "which."},
    {"tls-cert", "FILE", "Serve gRPC over TLS with this certificate chain (PEM). Needs --tls-key."},
    {"tls-key", "FILE", "Private key (PEM) for --tls-cert."},
    {"ca-cert", "FILE",
     "CA signing certificate (PEM; may be followed by its chain up to the root). With\n"
     "--ca-key. Loaded when both files exist; generated and saved there when neither does."},
    {"ca-key", "FILE", "CA signing key (PEM). With --ca-cert."},
    {"ca-dir", "DIR",
     "Keep the CA in DIR (ca-cert.pem, ca-key.pem, root-cert.pem): loaded when present,\n"
     "generated and saved otherwise. Give ztunnels DIR/root-cert.pem as their CA root.\n"
     "Without --ca-cert/--ca-key or --ca-dir a fresh CA lives in memory only."},
    {"tokens", "FILE",
     "Bearer tokens, one \"<token>: <node name>\" per line. When given, CreateCertificate\n"
     "requires a known token and signs only identities of pods on that token's node.\n"
     "Without it any identity in the trust domain is signed (development only)."},
    {"trust-domain", "NAME", "SPIFFE trust domain of issued identities. Default cluster.local."},
    {"cluster-id", "NAME", "Cluster id in workload uids and resources. Default Kubernetes."},
    {"jwks-refresh-interval", "DURATION",
     "How often the keys behind a RequestAuthentication's jwksUri are fetched again (meshd\n"
     "fetches them, as istiod does, and gives waypoints the keys inline); a failed fetch is\n"
     "retried after 30 s and keeps the keys fetched before. Default 20m (Istio's)."},
    {"jwks-ca-file", "FILE",
     "PEM roots that verify https jwksUri servers. Default: the system's roots."},
    {"log-level", "LEVEL", "trace, debug, info, warn, error or off. Default info."},
    {"log-format", "FORMAT", "text or json. Default text."},
};

}  // namespace

std::string help_text() {
  std::string out =
      "meshd: the ambient mesh control plane. Serves the Istio workload API (Delta xDS) and\n"
      "the Istio CA to ztunnels, computed from Kubernetes objects: a directory of manifests\n"
      "or a Kubernetes API server.\n\n"
      "Usage: meshd (--manifests DIR | --kube-api | --kube-server URL) [flags]\n\nFlags:\n";
  for (const auto& f : kFlags) {
    out += f.value_name.empty() ? fmt::format("  --{}\n", f.name)
                                : fmt::format("  --{} {}\n", f.name, f.value_name);
    std::string_view help = f.help;
    while (!help.empty()) {
      auto nl = help.find('\n');
      out += fmt::format("      {}\n", help.substr(0, nl));
      help = nl == std::string_view::npos ? std::string_view{} : help.substr(nl + 1);
    }
  }
  out += "  --help\n      Print this text.\n";
  return out;
}

Result<Config> parse_config(int argc, char** argv) {
  std::map<std::string, std::string, std::less<>> values;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") return Config{.help = true};
  }
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.substr(0, 2) != "--" || arg.size() == 2) {
      return failf("unexpected argument \"{}\"", arg);
    }
    arg.remove_prefix(2);
    std::string value;
    bool has_value = false;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const Flag* flag = nullptr;
    for (const auto& f : kFlags) {
      if (f.name == arg) flag = &f;
    }
    if (!flag) return failf("unknown flag --{}", arg);
    if (flag->value_name.empty()) {
      if (has_value) return failf("--{} takes no value", arg);
      has_value = true;
    }
    if (!has_value) {
      if (i + 1 >= argc) return failf("--{} needs a value", arg);
      value = argv[++i];
    }
    values[std::string(arg)] = value;
  }

  Config c;
  auto get = [&](std::string_view name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
  if (auto v = get("manifests")) {
    c.manifests_dir = *v;
    if (c.manifests_dir.empty()) return fail("--manifests needs a directory");
  }
  c.kube_in_cluster = get("kube-api").has_value();
  if (auto v = get("kube-server")) {
    c.kube_server = *v;
    if (c.kube_server.empty()) return fail("--kube-server needs a URL");
  }
  int sources = (c.manifests_dir.empty() ? 0 : 1) + (c.kube_in_cluster ? 1 : 0) +
                (c.kube_server.empty() ? 0 : 1);
  if (sources == 0) return fail("--manifests DIR, --kube-api or --kube-server URL is required");
  if (sources > 1) return fail("give only one of --manifests, --kube-api and --kube-server");
  c.kube_token_file = get("kube-token-file");
  c.kube_ca_file = get("kube-ca-file");
  if ((c.kube_token_file || c.kube_ca_file) && c.kube_server.empty()) {
    return fail("--kube-token-file and --kube-ca-file go with --kube-server");
  }
  if (auto v = get("grpc-address")) c.grpc_address = *v;
  c.tls_cert_path = get("tls-cert");
  c.tls_key_path = get("tls-key");
  if (c.tls_cert_path.has_value() != c.tls_key_path.has_value()) {
    return fail("--tls-cert and --tls-key go together");
  }
  c.ca_cert_path = get("ca-cert");
  c.ca_key_path = get("ca-key");
  if (c.ca_cert_path.has_value() != c.ca_key_path.has_value()) {
    return fail("--ca-cert and --ca-key go together");
  }
  c.ca_dir = get("ca-dir");
  if (c.ca_dir && c.ca_cert_path) return fail("give --ca-dir or --ca-cert/--ca-key, not both");
  c.tokens_path = get("tokens");
  if (auto v = get("trust-domain")) c.trust_domain = *v;
  if (auto st = tls::SpiffeId::check_trust_domain(c.trust_domain); !st) {
    return failf("--trust-domain: {}", st.error().describe());
  }
  if (auto v = get("cluster-id")) c.cluster_id = *v;
  if (c.cluster_id.empty()) return fail("--cluster-id must not be empty");
  if (auto v = get("jwks-refresh-interval")) {
    auto d = waypoint::config::parse_duration(*v);
    if (!d) return failf("--jwks-refresh-interval: {}", d.error().describe());
    if (d->count() <= 0) return fail("--jwks-refresh-interval must be positive");
    c.jwks_refresh = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  }
  c.jwks_ca_file = get("jwks-ca-file");
  if (auto v = get("log-level")) c.log_level = *v;
  if (auto v = get("log-format")) {
    if (*v == "text") {
      c.log_format = log::Format::kText;
    } else if (*v == "json") {
      c.log_format = log::Format::kJson;
    } else {
      return failf("--log-format: \"{}\" is not text or json", *v);
    }
  }
  return c;
}

}  // namespace zt::meshd::app
