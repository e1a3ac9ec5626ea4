// Helpers for tests (and benchmarks) that run real ztunnel processes on loopback: write a local
// config, start a ztunnel for a workload, talk SOCKS5 to it, scrape its HTTP endpoints.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "tests/support/daemon.h"

namespace zt::testing {

// A temporary directory removed (recursively) when this goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& p, const std::string& content);

// A local config with two HBONE workloads in namespace default: "client" (service account
// client) at `client_ip` and "server" (service account server) at `server_ip`; `extra` is
// appended under `workloads:` (more list items).
std::string two_workload_mesh_yaml(const std::string& client_ip, const std::string& server_ip,
                                   const std::string& extra = "");

struct ZtunnelOptions {
  std::string ns = "default";
  std::string name;
  std::string service_account;
  std::filesystem::path config;  // LOCAL_XDS_PATH
  std::filesystem::path ca_cert, ca_key;
  bool socks5 = true;
  int workers = 2;
  std::vector<std::string> extra_args;
  std::vector<std::string> env;
};

class ZtunnelProcess {
 public:
  // Starts build/bin/ztunnel and waits until it reports ready and its ports.
  static Result<std::unique_ptr<ZtunnelProcess>> start(const ZtunnelOptions& options);

  Daemon& daemon() { return *daemon_; }
  tcp::endpoint socks5;
  tcp::endpoint admin;
  tcp::endpoint metrics;
  tcp::endpoint readiness;

  // GET /metrics, or "" when it failed.
  std::string metrics_text();

 private:
  std::unique_ptr<Daemon> daemon_;
};

struct HttpReply {
  int status = 0;
  std::string body;
};
// A one-shot HTTP/1.1 request on a fresh connection (Connection: close).
Result<HttpReply> http_request(const tcp::endpoint& at, const std::string& method,
                               const std::string& target);

// Sum of every sample of `family` (e.g. "istio_tcp_connections_opened_total") whose labels
// contain all of `label_filters` ("reporter=\"source\"" style substrings).
double metric_sum(const std::string& text, const std::string& family,
                  const std::vector<std::string>& label_filters = {});

// SOCKS5 CONNECT through `proxy` to `dst`; the socket is ready for data on success.
awaitable<Result<tcp::socket>> socks5_connect(const tcp::endpoint& proxy, const tcp::endpoint& dst);

// Runs a command through /bin/sh and returns its exit code and stdout.
std::pair<int, std::string> run_command(const std::string& cmd);

}  // namespace zt::testing
