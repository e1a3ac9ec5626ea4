#include "ztunnel/app/app.h"

#include <atomic>
#include <csignal>
#include <thread>

#include "common/base/log.h"
#include "common/identity/certificate_authority.h"
#include "common/identity/certificate_manager.h"
#include "common/identity/certificate_provider.h"
#include "common/net/address.h"
#include "common/stats/process_metrics.h"
#include "common/stats/registry.h"
#include "ztunnel/admin/admin.h"
#include "ztunnel/admin/readiness.h"
#include "ztunnel/app/config_dump.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/state/local_config.h"
#include "ztunnel/state/store.h"
#include "ztunnel/state/watcher.h"

namespace zt::app {
namespace {

Result<identity::CertificateAuthority> make_ca(const config::Config& c) {
  if (c.ca_cert_path && c.ca_key_path) {
    auto ca = identity::CertificateAuthority::load(*c.ca_cert_path, *c.ca_key_path);
    if (!ca) return tl::unexpected(wrap(ca.error(), "loading the built-in CA (--ca-cert/--ca-key)"));
    return ca;
  }
  ZT_LOG_INFO("component=ca msg=\"no --ca-cert/--ca-key: generated a CA key pair for {}\"",
              c.trust_domain);
  return identity::CertificateAuthority::generate(c.trust_domain);
}

class AppImpl final : public App {
 public:
  explicit AppImpl(config::Config config)
      : config_(std::move(config)),
        metrics_(registry_),
        signals_(control_, SIGINT, SIGTERM) {}

  ~AppImpl() override {
    control_.stop();
    workers_.clear();
  }

  Status init();
  int run() override;

 private:
  void begin_drain(std::string_view why);

  config::Config config_;
  asio::io_context control_{1};
  stats::Registry registry_;
  proxy::ProxyMetrics metrics_;
  admin::Readiness readiness_;
  admin::ReadyBlock starting_;
  state::StateStore store_;
  std::unique_ptr<state::LocalConfigWatcher> watcher_;
  std::unique_ptr<identity::CertificateManager> certs_;
  std::unique_ptr<proxy::ProxyContext> ctx_;
  std::vector<std::unique_ptr<proxy::Worker>> workers_;
  std::unique_ptr<admin::AdminServers> admin_;
  asio::signal_set signals_;
  bool draining_ = false;
  std::atomic<size_t> workers_left_{0};
};

Status AppImpl::init() {
  starting_ = readiness_.register_task("proxy");
  stats::register_process_metrics(registry_);
  registry_.gauge_family("istio_build", "Istio component build information.")
      .with({{"component", "ztunnel"}, {"tag", "ambient-cpp-0.1.0"}})
      .set(1);

  if (config_.proxy_mode != config::ProxyMode::kDedicated) {
    return fail("only PROXY_MODE=dedicated is supported until the eBPF capture lands");
  }
  // Configuration source: the local file (xDS comes with the control-plane work).
  if (!config_.local_xds_path) {
    return fail("no configuration source: set LOCAL_XDS_PATH (--local-xds-path)");
  }
  auto initial = state::load_local_config_file(*config_.local_xds_path);
  if (!initial) return tl::unexpected(initial.error());  // names the file already
  store_.publish(*initial);
  auto watcher = state::LocalConfigWatcher::start(control_.get_executor(), *config_.local_xds_path, store_);
  if (!watcher) return tl::unexpected(watcher.error());
  watcher_ = std::move(*watcher);

  // The workload this dedicated ztunnel acts for.
  const auto& info = *config_.proxy_workload_info;
  proxy::LocalWorkload local;
  local.ns = info.namespace_name;
  local.name = info.name;
  std::shared_ptr<const state::Workload> self;
  for (const auto& w : (*initial)->workloads()) {
    if (w->namespace_name == info.namespace_name && w->name == info.name) self = w;
  }
  if (!self) {
    return failf("PROXY_WORKLOAD_INFO {}/{}/{}: no workload named {} in namespace {} in the local config",
                 info.namespace_name, info.name, info.service_account, info.name,
                 info.namespace_name);
  }
  local.ips = self->workload_ips;
  local.network = self->network;
  auto id = tls::SpiffeId::parse(fmt::format("spiffe://{}/ns/{}/sa/{}", config_.trust_domain,
                                             info.namespace_name, info.service_account));
  if (!id) return tl::unexpected(wrap(id.error(), "PROXY_WORKLOAD_INFO"));
  local.identity = *id;

  auto ca = make_ca(config_);
  if (!ca) return tl::unexpected(ca.error());
  certs_ = std::make_unique<identity::CertificateManager>(
      std::make_shared<identity::BuiltinCaProvider>(std::move(*ca)), config_.secret_ttl);
  // Fail at start, not at the first connection, when the identity cannot be issued.
  if (auto c = certs_->get(local.identity); !c) {
    return tl::unexpected(wrap(c.error(), "certificate for " + local.identity.uri()));
  }

  proxy::ProxySettings settings;
  settings.h2.stream_window = config_.http2_stream_window;
  settings.h2.connection_window = config_.http2_connection_window;
  settings.h2.max_frame_size = config_.http2_frame_size;
  settings.h2.idle_timeout = config_.pool_unused_release_timeout;
  settings.pool_max_streams = config_.pool_max_streams;
  settings.cluster_id = config_.cluster_id;
  ctx_ = std::unique_ptr<proxy::ProxyContext>(
      new proxy::ProxyContext{settings, local, store_, *certs_, metrics_});

  // Listeners: in dedicated mode the inbound ones bind the workload's own IPs.
  proxy::ListenAddresses want;
  for (const auto& ip : local.ips) {
    want.hbone.emplace_back(ip, proxy::kHbonePort);
    want.plaintext.emplace_back(ip, proxy::kInboundPlaintextPort);
  }
  if (config_.enable_socks5) want.socks5 = config_.socks5_address;
  int n = std::max(1, config_.worker_threads);
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<proxy::Worker>(*ctx_, i);
    auto bound = w->bind(want);
    if (!bound) return tl::unexpected(bound.error());
    want = *bound;  // later workers share the ports the first one got
    workers_.push_back(std::move(w));
  }

  admin::AdminServers::Config admin_config;
  admin_config.endpoints.admin = config_.admin_address;
  admin_config.endpoints.metrics = config_.metrics_address;
  admin_config.endpoints.readiness = config_.readiness_address;
  admin_config.hooks.config_dump = [this] {
    return config_dump_json(store_.current(), *certs_, config_);
  };
  admin_config.hooks.quit = [this] {
    asio::post(control_, [this] { begin_drain("/quitquitquit"); });
  };
  auto servers =
      admin::AdminServers::bind(control_.get_executor(), admin_config, registry_, readiness_);
  if (!servers) return tl::unexpected(servers.error());
  admin_ = std::move(*servers);
  admin_->start();
  return {};
}

void AppImpl::begin_drain(std::string_view why) {
  if (draining_) return;
  draining_ = true;
  ZT_LOG_INFO("component=drain msg=\"draining ({}), deadline {}ms\"", why,
              config_.connection_termination_deadline.count());
  workers_left_ = workers_.size();
  for (auto& w : workers_) {
    w->drain(config_.connection_termination_deadline, [this] {
      if (--workers_left_ == 0) asio::post(control_, [this] { control_.stop(); });
    });
  }
}

int AppImpl::run() {
  signals_.async_wait([this](const error_code& ec, int sig) {
    if (!ec) begin_drain(sig == SIGTERM ? "SIGTERM" : "SIGINT");
  });
  for (auto& w : workers_) w->start();
  starting_.release();
  ZT_LOG_INFO("ztunnel ready mode=dedicated workload={}/{} identity=\"{}\" workers={}",
              ctx_->local.ns, ctx_->local.name, ctx_->local.identity.uri(), workers_.size());
  control_.run();
  for (auto& w : workers_) w->join();
  admin_.reset();
  ZT_LOG_INFO("ztunnel stopped");
  return 0;
}

}  // namespace

Result<std::unique_ptr<App>> App::create(config::Config config) {
  auto app = std::make_unique<AppImpl>(std::move(config));
  if (auto st = app->init(); !st) return tl::unexpected(st.error());
  return std::unique_ptr<App>(std::move(app));
}

}  // namespace zt::app
