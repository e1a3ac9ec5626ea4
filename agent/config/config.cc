#include "agent/config/config.h"

#include <linux/magic.h>
#include <sys/vfs.h>

#include <cstdlib>
#include <map>

namespace zt::agent {
namespace {

struct Flag {
  std::string_view name;
  std::string_view value_name;  // "" for a boolean flag
  std::string_view help;
  bool repeatable = false;
};

constexpr Flag kFlags[] = {
    {"manifests", "DIR",
     "Directory of Kubernetes YAML manifests (Namespace, Pod, ...). Watched: pods are\n"
     "enrolled and released as it changes; an invalid object is logged and its last good\n"
     "version kept. Give exactly one of --manifests, --kube-api and --kube-server."},
    {"kube-api", "",
     "Read namespaces and this node's pods (fieldSelector spec.nodeName=NAME) from the\n"
     "Kubernetes API server of the cluster the agent runs in (KUBERNETES_SERVICE_HOST/PORT,\n"
     "the service account token and ca.crt under\n"
     "/var/run/secrets/kubernetes.io/serviceaccount; the token is re-read as it rotates).\n"
     "Lists then watches; enrolls once every kind is listed."},
    {"kube-server", "URL",
     "Read them from this Kubernetes API server (https://HOST:PORT, or http:// for tests)\n"
     "instead, with --kube-token-file and --kube-ca-file."},
    {"kube-token-file", "FILE",
     "Bearer token for --kube-server, re-read before every request. Default: none."},
    {"kube-ca-file", "FILE",
     "PEM CA that verifies --kube-server's certificate. Default: the system's roots."},
    {"node-name", "NAME",
     "This node's name: only pods with spec.nodeName == NAME are enrolled. Required; the\n"
     "environment variable NODE_NAME is used when the flag is absent."},
    {"cgroup-root", "PATH",
     "cgroup v2 mount searched for pod cgroups (directories named like pod<uid>). Default\n"
     "/sys/fs/cgroup/unified when that is a cgroup2 mount, else /sys/fs/cgroup."},
    {"bpf-pin-root", "PATH",
     "bpffs folder for the capture maps and the pinned links of enrolled pods. Default\n"
     "/sys/fs/bpf/ambient-mesh. Pins survive agent restarts: pods stay captured."},
    {"zds-socket", "PATH",
     "Unix socket (SOCK_SEQPACKET) where ztunnel connects to receive pods over ZDS. Default\n"
     "/var/run/ztunnel/ztunnel.sock."},
    {"probe-source", "IP",
     "Source address whose connections reach enrolled apps uncaptured (kubelet health\n"
     "probes). Repeatable. Default: the addresses of the agent's own network namespace (the\n"
     "node's).",
     true},
    {"ztunnel-cgroup", "PATH",
     "cgroup of a ztunnel that reads getsockopt(SO_ORIGINAL_DST) (Istio's ztunnel): the\n"
     "agent answers that call for its sockets from the recorded original destinations."},
    {"ready-file", "PATH", "Written once the first reconciliation is done (for tests and probes)."},
    {"release-all-on-exit", "",
     "On SIGTERM/SIGINT release every pod (detach and unpin) before exiting. Off by default:\n"
     "pods stay captured while the agent is away."},
    {"log-level", "LEVEL", "trace, debug, info, warn, error or off. Default info."},
    {"log-format", "FORMAT", "text or json. Default text."},
};

const Flag* find_flag(std::string_view name) {
  for (const auto& f : kFlags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

}  // namespace

std::optional<std::string> process_env(std::string_view name) {
  const char* v = std::getenv(std::string(name).c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

std::string help_text() {
  std::string out =
      "node-agent: enrolls this node's ambient pods into the mesh. Attaches the eBPF capture\n"
      "to each pod whose namespace has istio.io/dataplane-mode=ambient and hands the pod's\n"
      "network namespace to ztunnel over ZDS.\n\n"
      "Usage: node-agent (--manifests DIR | --kube-api | --kube-server URL) --node-name NAME\n"
      "                  [flags]\n\nFlags:\n";
  for (const auto& f : kFlags) {
    if (f.value_name.empty()) {
      out += fmt::format("  --{}\n", f.name);
    } else {
      out += fmt::format("  --{} {}\n", f.name, f.value_name);
    }
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

Result<Config> parse_config(int argc, char** argv, const EnvLookup& env) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") return Config{.help = true};
  }
  std::map<std::string, std::vector<std::string>, std::less<>> values;
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
    const Flag* flag = find_flag(arg);
    if (flag == nullptr) return failf("unknown flag --{}", arg);
    if (flag->value_name.empty()) {
      if (has_value && value != "true" && value != "false") {
        return failf("--{} takes no value (or =true/=false), got \"{}\"", arg, value);
      }
      if (!has_value) value = "true";
    } else if (!has_value) {
      if (i + 1 >= argc) return failf("--{} needs a value", arg);
      value = argv[++i];
    }
    auto& slot = values[std::string(arg)];
    if (!slot.empty() && !flag->repeatable) return failf("--{} given more than once", arg);
    slot.push_back(std::move(value));
  }

  Config c;
  auto get = [&](std::string_view name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second.back();
  };
  if (auto v = get("manifests")) c.manifests_dir = *v;
  if (auto v = get("manifests"); v && v->empty()) return fail("--manifests needs a directory");
  if (auto v = get("kube-api")) c.kube_in_cluster = *v == "true";
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
  if (c.kube_token_file && c.kube_token_file->empty()) {
    return fail("--kube-token-file must not be empty");
  }
  if (c.kube_ca_file && c.kube_ca_file->empty()) return fail("--kube-ca-file must not be empty");
  if (auto v = get("node-name")) {
    c.node_name = *v;
    if (c.node_name.empty()) return fail("--node-name must not be empty");
  } else if (auto e = env("NODE_NAME"); e && !e->empty()) {
    c.node_name = *e;
  }
  if (c.node_name.empty()) return fail("--node-name NAME is required (or set NODE_NAME)");
  if (auto v = get("cgroup-root")) {
    if (v->empty()) return fail("--cgroup-root must not be empty");
    c.cgroup_root = *v;
  }
  if (auto v = get("bpf-pin-root")) {
    if (v->empty() || (*v)[0] != '/') {
      return failf("--bpf-pin-root \"{}\" must be an absolute path", *v);
    }
    c.bpf_pin_root = *v;
  }
  if (auto v = get("zds-socket")) {
    if (v->empty()) return fail("--zds-socket must not be empty");
    c.zds_socket = *v;
  }
  if (auto it = values.find("probe-source"); it != values.end()) {
    for (const auto& text : it->second) {
      error_code ec;
      auto addr = asio::ip::make_address(text, ec);
      if (ec) return failf("--probe-source \"{}\" is not an IP address", text);
      c.probe_sources.push_back(addr);
    }
  }
  c.ztunnel_cgroup = get("ztunnel-cgroup");
  if (c.ztunnel_cgroup && c.ztunnel_cgroup->empty()) {
    return fail("--ztunnel-cgroup must not be empty");
  }
  c.ready_file = get("ready-file");
  if (c.ready_file && c.ready_file->empty()) return fail("--ready-file must not be empty");
  if (auto v = get("release-all-on-exit")) c.release_all_on_exit = *v == "true";
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

std::string default_cgroup_root() {
  struct statfs st {};
  if (::statfs("/sys/fs/cgroup/unified", &st) == 0 &&
      static_cast<unsigned long>(st.f_type) == CGROUP2_SUPER_MAGIC) {
    return "/sys/fs/cgroup/unified";
  }
  return "/sys/fs/cgroup";
}

}  // namespace zt::agent
