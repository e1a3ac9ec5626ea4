#include "ztunnel/admin/admin.h"

#include <atomic>

#include <fmt/format.h>

#include "common/base/log.h"

namespace zt::admin {
namespace {

constexpr std::string_view kLevels = "trace, debug, info, warn, error or off";

http::Response index_page() {
  return http::Response::text(200,
                              "ztunnel admin\n"
                              "  GET  /                    this list\n"
                              "  GET  /config_dump         workloads, services, policies and "
                              "certificates (JSON)\n"
                              "  GET  /logging             the current log level\n"
                              "  POST /logging?level=<l>   set the log level (trace, debug, info, "
                              "warn, error, off)\n"
                              "  POST /quitquitquit        drain connections and exit\n"
                              "metrics (own port):   GET /metrics, GET /stats/prometheus\n"
                              "readiness (own port): GET /healthz/ready\n");
}

http::Response current_level() {
  return http::Response::text(200, fmt::format("current log level is {}\n", log::current_level()));
}

http::Response get_logging(const http::Request& req) {
  if (req.query_param("level")) {
    return http::Response::text(400, "use POST /logging?level=<level> to change the level\n");
  }
  return current_level();
}

http::Response post_logging(const http::Request& req) {
  auto level = req.query_param("level");
  if (!level || level->empty()) {
    return http::Response::text(400, fmt::format("missing ?level=<{}>\n", kLevels));
  }
  if (level->find_first_of(":,") != std::string_view::npos) {
    return http::Response::text(
        400,
        "per-target levels (target:level) are not supported; give one level for the "
        "whole process\n");
  }
  if (auto st = log::set_level(*level); !st) {
    return http::Response::text(400, st.error().message + "\n");
  }
  ZT_LOG_INFO("component=admin log level set to {}", log::current_level());
  return current_level();
}

}  // namespace

http::Router admin_router(AdminHooks hooks) {
  http::Router router;
  router.get("/", [](const http::Request&) { return index_page(); });
  router.get("/config_dump", [dump = std::move(hooks.config_dump)](const http::Request&) {
    if (!dump) return http::Response::text(503, "no configuration available yet\n");
    return http::Response::json(200, dump());
  });
  router.get("/logging", get_logging);
  router.post("/logging", post_logging);
  // The flag is shared by the router's copies so that the drain starts once.
  auto quitting = std::make_shared<std::atomic<bool>>(false);
  router.post("/quitquitquit", [quit = std::move(hooks.quit), quitting](const http::Request&) {
    if (!quit) return http::Response::text(503, "no drain handler configured\n");
    if (quitting->exchange(true)) return http::Response::text(200, "already draining\n");
    ZT_LOG_INFO("component=admin /quitquitquit: starting a graceful drain");
    auto res = http::Response::text(200, "draining\n");
    res.after_send = quit;
    return res;
  });
  return router;
}

http::Router metrics_router(const stats::Registry& registry) {
  auto handler = [&registry](const http::Request&) {
    return http::Response{
        200, std::string(kPrometheusContentType), registry.render_prometheus(), {}, {}};
  };
  http::Router router;
  router.get("/metrics", handler);
  router.get("/stats/prometheus", handler);
  return router;
}

http::Router readiness_router(const Readiness& readiness) {
  http::Router router;
  router.get("/healthz/ready", [&readiness](const http::Request&) {
    auto pending = readiness.pending();
    if (pending.empty()) return http::Response::text(200, "ready\n");
    return http::Response::text(500,
                                fmt::format("not ready, pending: {}\n", fmt::join(pending, ", ")));
  });
  return router;
}

Result<std::unique_ptr<AdminServers>> AdminServers::bind(asio::any_io_executor executor,
                                                         Config config, stats::Registry& registry,
                                                         const Readiness& readiness) {
  auto options = [&](std::string name) {
    http::ServerOptions o;
    o.name = std::move(name);
    o.read_timeout = config.read_timeout;
    o.registry = &registry;
    return o;
  };
  std::unique_ptr<AdminServers> servers(new AdminServers());
  auto admin = http::Server::bind(executor, config.endpoints.admin,
                                  admin_router(std::move(config.hooks)), options("admin"));
  if (!admin) return tl::unexpected(admin.error());
  servers->admin_ = std::move(*admin);
  auto metrics = http::Server::bind(executor, config.endpoints.metrics, metrics_router(registry),
                                    options("metrics"));
  if (!metrics) return tl::unexpected(metrics.error());
  servers->metrics_ = std::move(*metrics);
  auto ready = http::Server::bind(executor, config.endpoints.readiness, readiness_router(readiness),
                                  options("readiness"));
  if (!ready) return tl::unexpected(ready.error());
  servers->readiness_ = std::move(*ready);
  return servers;
}

void AdminServers::start() {
  admin_->start();
  metrics_->start();
  readiness_->start();
}

void AdminServers::stop() {
  admin_->stop();
  metrics_->stop();
  readiness_->stop();
}

}  // namespace zt::admin
