// node-agent's command line. Parsing is pure (the environment comes in as a lookup function) so
// every rule can be unit-tested; main.cc prints help_text() for --help and the error otherwise.
// Defaults that depend on the machine (the cgroup root, the probe sources) are resolved by the
// app, not here: an empty value means "use the default".
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/async/asio.h"
#include "common/base/log.h"
#include "common/base/result.h"

namespace zt::agent {

inline constexpr std::string_view kDefaultPinRoot = "/sys/fs/bpf/ambient-mesh";
inline constexpr std::string_view kDefaultZdsSocket = "/var/run/ztunnel/ztunnel.sock";

struct Config {
  bool help = false;

  // Where namespaces and pods come from: exactly one of --manifests, --kube-api, --kube-server.
  std::string manifests_dir{};                     // --manifests DIR
  bool kube_in_cluster = false;                    // --kube-api (in-cluster service account)
  std::string kube_server{};                       // --kube-server URL
  std::optional<std::string> kube_token_file{};    // --kube-token-file (with --kube-server)
  std::optional<std::string> kube_ca_file{};       // --kube-ca-file (with --kube-server)
  std::string node_name{};                         // --node-name, else $NODE_NAME (required)
  std::string cgroup_root{};                       // --cgroup-root; "" = default_cgroup_root()
  std::string bpf_pin_root{kDefaultPinRoot};       // --bpf-pin-root
  std::string zds_socket{kDefaultZdsSocket};       // --zds-socket
  std::vector<asio::ip::address> probe_sources{};  // --probe-source (repeatable); empty = node's
  std::optional<std::string> ztunnel_cgroup{};     // --ztunnel-cgroup
  std::optional<std::string> ready_file{};         // --ready-file
  bool release_all_on_exit = false;                // --release-all-on-exit
  std::string log_level{"info"};                   // --log-level
  log::Format log_format = log::Format::kText;     // --log-format text|json
};

using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

// The process environment (std::getenv).
std::optional<std::string> process_env(std::string_view name);

// Flags are "--name value" or "--name=value"; boolean flags take no value.
Result<Config> parse_config(int argc, char** argv, const EnvLookup& env = process_env);
std::string help_text();

// /sys/fs/cgroup/unified when that is a cgroup2 mount (hybrid hierarchy), else /sys/fs/cgroup.
std::string default_cgroup_root();

}  // namespace zt::agent
