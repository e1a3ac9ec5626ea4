// ztunnel's admin, metrics and readiness endpoints, each on its own server and port (Istio's):
//   admin      127.0.0.1:15000  GET /            index of the admin endpoints
//                               GET /config_dump JSON from the app's provider
//                               GET /logging     the current level; POST /logging?level=<lvl>
//                               POST /quitquitquit  answers 200, then starts a graceful drain
//   metrics    0.0.0.0:15020    GET /metrics, GET /stats/prometheus  (Prometheus text 0.0.4)
//   readiness  0.0.0.0:15021    GET /healthz/ready  200 "ready" / 500 "not ready, pending: ..."
// Metrics have their own port on purpose (as in Istio): a scrape can be expensive and must not
// delay probes or admin commands.
//
// The routers are separate from the servers so the endpoints can be tested without sockets.
// May use: common/http, common/stats, common/base, ztunnel/admin.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/http/router.h"
#include "common/http/server.h"
#include "common/stats/registry.h"
#include "ztunnel/admin/readiness.h"

namespace zt::admin {

inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4";

struct AdminEndpoints {
  tcp::endpoint admin{asio::ip::address_v4::loopback(), 15000};
  tcp::endpoint metrics{asio::ip::address_v4::any(), 15020};
  tcp::endpoint readiness{asio::ip::address_v4::any(), 15021};
};

struct AdminHooks {
  // The /config_dump body (JSON): workloads, services, policies, certificates.
  std::function<std::string()> config_dump;
  // Starts a graceful drain. Called at most once, on the admin server's executor, after the
  // 200 answer to POST /quitquitquit has been written; must not block.
  std::function<void()> quit;
};

http::Router admin_router(AdminHooks hooks);
http::Router metrics_router(const stats::Registry& registry);
http::Router readiness_router(const Readiness& readiness);

class AdminServers {
 public:
  struct Config {
    AdminEndpoints endpoints;
    AdminHooks hooks;
    // Per-request read deadline (and idle keep-alive limit) of all three servers.
    std::chrono::steady_clock::duration read_timeout = std::chrono::seconds(10);
  };

  // Binds the three servers (not yet accepting). On failure nothing stays bound and the error
  // names the server, e.g. "address already in use: 127.0.0.1:15000 (admin)". `registry` and
  // `readiness` must outlive the servers' execution context's use of them (see http::Server).
  static Result<std::unique_ptr<AdminServers>> bind(asio::any_io_executor executor, Config config,
                                                    stats::Registry& registry,
                                                    const Readiness& readiness);

  // Starts accepting; each server logs "listening component=<admin|metrics|readiness>
  // address=<ip:port>".
  void start();
  void stop();

  tcp::endpoint admin_endpoint() const { return admin_->local_endpoint(); }
  tcp::endpoint metrics_endpoint() const { return metrics_->local_endpoint(); }
  tcp::endpoint readiness_endpoint() const { return readiness_->local_endpoint(); }

 private:
  AdminServers() = default;
  std::unique_ptr<http::Server> admin_;
  std::unique_ptr<http::Server> metrics_;
  std::unique_ptr<http::Server> readiness_;
};

}  // namespace zt::admin
