// meshd's command line. Parsing is pure so every rule can be unit-tested; main.cc prints
// help_text() for --help and the error otherwise.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/log.h"
#include "common/base/result.h"

namespace zt::meshd::app {

inline constexpr std::string_view kDefaultGrpcAddress = "127.0.0.1:15012";

struct Config {
  bool help = false;

  // Where the objects come from: exactly one of --manifests, --kube-api, --kube-server.
  std::string manifests_dir{};                    // --manifests DIR
  bool kube_in_cluster = false;                   // --kube-api (in-cluster service account)
  std::string kube_server{};                      // --kube-server URL
  std::optional<std::string> kube_token_file{};   // --kube-token-file (with --kube-server)
  std::optional<std::string> kube_ca_file{};      // --kube-ca-file (with --kube-server)
  std::string grpc_address{kDefaultGrpcAddress};  // --grpc-address, ADS and CA on one port
  std::optional<std::string> tls_cert_path{};     // --tls-cert / --tls-key: serve TLS
  std::optional<std::string> tls_key_path{};
  std::optional<std::string> ca_cert_path{};  // --ca-cert / --ca-key
  std::optional<std::string> ca_key_path{};
  std::optional<std::string> ca_dir{};                               // --ca-dir
  std::optional<std::string> tokens_path{};                          // --tokens
  std::string trust_domain{"cluster.local"};                         // --trust-domain
  std::string cluster_id{"Kubernetes"};                              // --cluster-id
  std::chrono::milliseconds jwks_refresh{std::chrono::minutes(20)};  // --jwks-refresh-interval
  std::optional<std::string> jwks_ca_file{};                         // --jwks-ca-file
  std::string log_level{"info"};                                     // --log-level
  log::Format log_format = log::Format::kText;                       // --log-format text|json
};

// Flags are "--name value" or "--name=value"; switches (--kube-api, --help) take no value.
Result<Config> parse_config(int argc, char** argv);
std::string help_text();

}  // namespace zt::meshd::app
