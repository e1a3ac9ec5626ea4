// The waypoint's start-up configuration (bin/waypoint's command line, README "Waypoint"):
// flags, each backed by an environment variable where one exists. A flag wins over its
// variable, which wins over the default; `--flag value` or `--flag=value`. Parsing is pure (the
// environment comes in as a function, as ztunnel/config does) so every rule is unit-tested;
// main.cc prints help_text() for --help and exits 2 with the error otherwise.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/base/log.h"
#include "common/base/result.h"
#include "common/net/address.h"
#include "waypoint/authz/normalize.h"
#include "ztunnel/config/config.h"

namespace zt::waypoint::app {

struct Config {
  bool help = false;  // --help: nothing else was validated

  std::string name;             // the Gateway's name (required)
  std::string namespace_name;   // the Gateway's namespace (required)
  std::string service_account;  // default: name
  std::string trust_domain{"cluster.local"};
  std::string cluster_domain{"cluster.local"};
  std::string cluster_id{"Kubernetes"};
  // The waypoint's own addresses; default: the IP of --hbone-address when it is specific.
  std::vector<asio::ip::address> instance_ips;
  tcp::endpoint hbone_address{asio::ip::address_v4::any(), 15008};

  std::optional<std::string> local_xds_path;
  std::optional<std::string> xds_address;
  std::optional<std::string> xds_root_ca;
  std::optional<std::string> ca_address;
  std::optional<std::string> ca_root_ca;
  std::optional<std::string> auth_token_path;
  std::optional<std::string> ca_cert_path;
  std::optional<std::string> ca_key_path;
  std::optional<std::string> config_path;  // L7 config YAML, watched

  tcp::endpoint admin_address{asio::ip::address_v4::loopback(), 15000};
  tcp::endpoint metrics_address{asio::ip::address_v4::any(), 15020};
  tcp::endpoint readiness_address{asio::ip::address_v4::any(), 15021};

  int worker_threads = 2;
  std::string log_level{"info"};
  log::Format log_format = log::Format::kText;
  authz::PathNormalization path_normalization = authz::PathNormalization::kBase;
  std::chrono::milliseconds connection_termination_deadline{5'000};

  // What one downstream peer may hold (waypoint/message Limits; zero disables a timeout).
  std::chrono::milliseconds request_headers_timeout{10'000};  // first byte of a head to its end
  std::chrono::milliseconds stream_idle_timeout{300'000};     // a request or response stalled
  std::chrono::milliseconds idle_timeout{3'600'000};          // a connection without requests
  size_t max_connection_body_bytes = 32 * 1024 * 1024;        // HTTP/2 bodies held at once

  // spiffe://<trust domain>/ns/<namespace>/sa/<service account>
  std::string identity_uri() const;
  // <name>.<namespace>.svc.<cluster domain>
  std::string hostname() const;
};

// Errors name the flag (and its variable): `--worker-threads (WAYPOINT_WORKER_THREADS): "x" is
// not a number`; unknown flags and missing required ones too.
Result<Config> parse_config(int argc, char** argv, const zt::config::Getenv& getenv);

std::string help_text();

}  // namespace zt::waypoint::app
