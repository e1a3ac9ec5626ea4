// Where the Kubernetes API server is and how to authenticate to it: in-cluster (the service
// account's token and CA, the API host from the environment) or explicit (flags, tests).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace zt::meshd::kube {

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// A parsed http:// or https:// URL of the API server ("https://10.96.0.1:443",
// "http://[::1]:8080").
struct ServerUrl {
  bool tls = true;
  std::string host;  // name or IP, without brackets
  uint16_t port = 443;
  std::string base_path;         // "" or "/prefix" (no trailing slash), put before /api and /apis
  std::string describe() const;  // back to "https://host:port/prefix"
};
Result<ServerUrl> parse_server_url(const std::string& url);

struct KubeConfig {
  ServerUrl server;
  // The bearer token is read from this file before every request, so a rotated (projected)
  // token is picked up; "" = no Authorization header.
  std::string token_file;
  // PEM roots that verify the server (https only); "" = the system's default roots.
  std::string ca_file;
  // ca_file adds to the system's default roots instead of replacing them (JWKS servers).
  bool ca_file_adds_to_system_roots = false;
  // The largest body get() reads; a longer one is an error.
  uint64_t max_body = 1ull << 30;

  // Pods: "spec.nodeName=<node>" so a node agent watches only its node's pods ("" = all pods).
  std::string pod_field_selector;
  // Optional label selector applied to every resource type ("" = none).
  std::string label_selector;
  // Only these kinds of resource_types() ("Namespace", "Pod": what a node agent's RBAC allows);
  // empty = every kind.
  std::vector<std::string> kinds;

  uint32_t page_size = 500;              // LIST limit=
  uint32_t watch_timeout_seconds = 300;  // WATCH timeoutSeconds= (the server ends the watch)
  std::chrono::milliseconds debounce{100};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{30'000};
  // A custom resource the server does not serve (404 on its LIST: its CRD is not installed) counts
  // as synced and empty, and is listed again this often, so installing the CRD later is seen.
  std::chrono::milliseconds not_served_recheck{30'000};
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds request_timeout{60};  // a whole LIST page
};

// In-cluster configuration: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with the
// service account's token and ca.crt under `sa_dir`. `getenv` is injectable for tests.
Result<KubeConfig> in_cluster_config(
    const std::function<std::optional<std::string>(const char*)>& getenv = {},
    const std::string& sa_dir = kServiceAccountDir);

}  // namespace zt::meshd::kube
