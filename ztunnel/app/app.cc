#include "ztunnel/app/app.h"

#include <atomic>
#include <csignal>
#include <mutex>
#include <set>
#include <thread>

#include "common/base/log.h"
#include "common/base/memory.h"
#include "common/ca/grpc_ca_provider.h"
#include "common/identity/certificate_authority.h"
#include "common/identity/certificate_manager.h"
#include "common/identity/certificate_provider.h"
#include "common/net/address.h"
#include "common/stats/process_metrics.h"
#include "common/stats/registry.h"
#include "common/xds/delta_client.h"
#include "ztunnel/admin/admin.h"
#include "ztunnel/admin/readiness.h"
#include "ztunnel/app/config_dump.h"
#include "ztunnel/app/node_certificates.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/state/local_config.h"
#include "ztunnel/state/store.h"
#include "ztunnel/state/watcher.h"
#include "ztunnel/xds/resource_cache.h"

namespace zt::app {
namespace {

Result<identity::CertificateAuthority> make_ca(const config::Config& c) {
  if (c.ca_cert_path && c.ca_key_path) {
    auto ca = identity::CertificateAuthority::load(*c.ca_cert_path, *c.ca_key_path);
    if (!ca)
      return tl::unexpected(wrap(ca.error(), "loading the built-in CA (--ca-cert/--ca-key)"));
    return ca;
  }
  ZT_LOG_INFO("component=ca msg=\"no --ca-cert/--ca-key: generated a CA key pair for {}\"",
              c.trust_domain);
  return identity::CertificateAuthority::generate(c.trust_domain);
}

// The certificate source: istiod-compatible CA over gRPC when CA_ADDRESS is set, else the
// built-in CA in-process.
Result<std::shared_ptr<identity::CertificateProvider>> make_certificate_provider(
    const config::Config& c) {
  if (c.ca_address) {
    ca::GrpcCaOptions o;
    o.address = *c.ca_address;
    o.root_ca_path = c.ca_root_ca;
    o.token_path = c.auth_token_path;
    o.cluster_id = c.cluster_id;
    // Shared mode asks for the identities of the pods it proxies, not its own.
    o.impersonate = c.proxy_mode == config::ProxyMode::kShared;
    auto p = ca::GrpcCaProvider::create(std::move(o));
    if (!p) return tl::unexpected(wrap(p.error(), "CA_ADDRESS"));
    ZT_LOG_INFO("component=ca msg=\"certificates from {}\"", *c.ca_address);
    return std::shared_ptr<identity::CertificateProvider>(std::move(*p));
  }
  auto ca = make_ca(c);
  if (!ca) return tl::unexpected(ca.error());
  return std::shared_ptr<identity::CertificateProvider>(
      std::make_shared<identity::BuiltinCaProvider>(std::move(*ca)));
}

class AppImpl final : public App {
 public:
  explicit AppImpl(config::Config config)
      : config_(std::move(config)), metrics_(registry_), signals_(control_, SIGINT, SIGTERM) {}

  ~AppImpl() override {
    if (xds_) xds_->stop();  // its handler publishes into store_ and posts to control_
    control_.stop();
    workers_.clear();
  }

  Status init();
  int run() override;

 private:
  void begin_drain(std::string_view why);
  // Configuration source (xDS or the local file).
  Status init_config_source();
  std::vector<xds::Rejection> apply_xds(const xds::DeltaUpdate& update);
  // Dedicated mode: the proxy is built once the workload of PROXY_WORKLOAD_INFO is in the
  // state; with xDS that is after the first full set, so these run on the control thread.
  std::shared_ptr<const state::Workload> find_self() const;
  Status build_proxy();
  void maybe_start_proxy();
  void start_workers();

  config::Config config_;
  asio::io_context control_{1};
  stats::Registry registry_;
  proxy::ProxyMetrics metrics_;
  admin::Readiness readiness_;
  admin::ReadyBlock starting_;
  state::StateStore store_;
  std::unique_ptr<state::LocalConfigWatcher> watcher_;
  // xDS: the cache is written only by the client's thread (apply_xds).
  std::unique_ptr<xds::XdsResourceCache> xds_cache_;
  uint64_t xds_published_generation_ = 0;
  admin::ReadyBlock xds_block_;
  std::atomic<bool> proxy_started_{false};
  bool waiting_logged_ = false;
  int exit_code_ = 0;
  tls::SpiffeId local_identity_;
  std::unique_ptr<identity::CertificateManager> certs_;
  std::shared_ptr<NodeCertificates> prefetcher_;  // shared mode
  std::unique_ptr<proxy::ProxyContext> ctx_;
  std::vector<std::unique_ptr<proxy::Worker>> workers_;
  std::unique_ptr<admin::AdminServers> admin_;
  asio::signal_set signals_;
  bool draining_ = false;
  std::atomic<size_t> workers_left_{0};
  std::unique_ptr<xds::DeltaClient> xds_;  // last: stopped before what its handler touches
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
  if (auto st = init_config_source(); !st) return st;

  // The identity this dedicated ztunnel acts for; its IPs come from the configuration.
  const auto& info = *config_.proxy_workload_info;
  auto id = tls::SpiffeId::parse(fmt::format("spiffe://{}/ns/{}/sa/{}", config_.trust_domain,
                                             info.namespace_name, info.service_account));
  if (!id) return tl::unexpected(wrap(id.error(), "PROXY_WORKLOAD_INFO"));
  local_identity_ = *id;

  auto provider = make_certificate_provider(config_);
  if (!provider) return tl::unexpected(provider.error());
  certs_ = std::make_unique<identity::CertificateManager>(*provider, config_.secret_ttl);
  certs_->start_background_refresh();
  if (config_.proxy_mode == config::ProxyMode::kShared) {
    // Certificates for the workloads on this node, fetched before their first connection.
    prefetcher_ = std::make_shared<NodeCertificates>(*certs_, store_, config_.node_name);
    store_.on_publish(
        [p = prefetcher_](const std::shared_ptr<const state::State>&) { p->update(); });
    prefetcher_->update();
  } else if (config_.ca_address) {
    // An outside CA may be briefly unreachable at start: connections wait for the certificate
    // (and the refresher retries with backoff) rather than the process exiting.
    certs_->prefetch(local_identity_);
  } else if (auto c = certs_->get(local_identity_); !c) {
    // Fail at start, not at the first connection, when the built-in CA cannot issue it.
    return tl::unexpected(wrap(c.error(), "certificate for " + local_identity_.uri()));
  }

  admin::AdminServers::Config admin_config;
  admin_config.endpoints.admin = config_.admin_address;
  admin_config.endpoints.metrics = config_.metrics_address;
  admin_config.endpoints.readiness = config_.readiness_address;
  admin_config.hooks.config_dump = [this] {
    auto body = config_dump_json(store_.current(), *certs_, config_);
    // Rendering a large cluster builds tens of MB of short-lived JSON nodes; give the freed
    // pages back so polling /config_dump does not double the resident size.
    release_free_memory();
    return body;
  };
  admin_config.hooks.quit = [this] {
    asio::post(control_, [this] { begin_drain("/quitquitquit"); });
  };
  auto servers =
      admin::AdminServers::bind(control_.get_executor(), admin_config, registry_, readiness_);
  if (!servers) return tl::unexpected(servers.error());
  admin_ = std::move(*servers);
  admin_->start();

  // With the local file the workload is known now; with xDS, maybe_start_proxy() builds it.
  if (!xds_) {
    if (auto st = build_proxy(); !st) return st;
  }
  return {};
}

Status AppImpl::init_config_source() {
  if (config_.xds_address) {
    if (config_.local_xds_path) {
      ZT_LOG_WARN("component=xds msg=\"XDS_ADDRESS is set: ignoring LOCAL_XDS_PATH {}\"",
                  *config_.local_xds_path);
    }
    xds::DeltaClientOptions o;
    o.address = *config_.xds_address;
    o.root_ca_path = config_.xds_root_ca;
    o.token_path = config_.auth_token_path;
    o.cluster_id = config_.cluster_id;
    o.node = xds::make_ztunnel_node({.instance_ip = config_.instance_ip,
                                     .pod_name = config_.pod_name,
                                     .pod_namespace = config_.pod_namespace,
                                     .node_name = config_.node_name,
                                     .cluster_id = config_.cluster_id,
                                     .environment = xds::process_environment()});
    o.type_urls = {std::string(xds::kAddressType), std::string(xds::kAuthorizationType)};
    xds_cache_ = std::make_unique<xds::XdsResourceCache>();
    xds_block_ = readiness_.register_task("xds");
    auto client = xds::DeltaClient::create(
        std::move(o), [this](const xds::DeltaUpdate& u) { return apply_xds(u); },
        [this] {
          xds_block_.release();
          asio::post(control_, [this] { maybe_start_proxy(); });
        });
    if (!client) return tl::unexpected(wrap(client.error(), "XDS_ADDRESS"));
    xds_ = std::move(*client);
    return {};
  }
  if (!config_.local_xds_path) {
    return fail("no configuration source: set XDS_ADDRESS or LOCAL_XDS_PATH (--local-xds-path)");
  }
  auto initial = state::load_local_config_file(*config_.local_xds_path);
  if (!initial) return tl::unexpected(initial.error());  // names the file already
  store_.publish(*initial);
  auto watcher =
      state::LocalConfigWatcher::start(control_.get_executor(), *config_.local_xds_path, store_);
  if (!watcher) return tl::unexpected(watcher.error());
  watcher_ = std::move(*watcher);
  return {};
}

// On the xDS client's thread: the single writer of store_ in xDS mode.
std::vector<xds::Rejection> AppImpl::apply_xds(const xds::DeltaUpdate& update) {
  auto rejected = xds_cache_->apply(update);
  if (xds_cache_->generation() != xds_published_generation_) {
    xds_published_generation_ = xds_cache_->generation();
    store_.publish(xds_cache_->snapshot());
  }
  if (!proxy_started_.load(std::memory_order_acquire)) {
    asio::post(control_, [this] { maybe_start_proxy(); });
  }
  return rejected;
}

std::shared_ptr<const state::Workload> AppImpl::find_self() const {
  const auto& info = *config_.proxy_workload_info;
  for (const auto& w : store_.current()->workloads()) {
    if (w->namespace_name == info.namespace_name && w->name == info.name) return w;
  }
  return nullptr;
}

Status AppImpl::build_proxy() {
  const auto& info = *config_.proxy_workload_info;
  auto self = find_self();
  if (!self) {
    return failf("PROXY_WORKLOAD_INFO {}/{}/{}: no workload named {} in namespace {} in the {}",
                 info.namespace_name, info.name, info.service_account, info.name,
                 info.namespace_name, xds_ ? "xDS configuration" : "local config");
  }
  proxy::LocalWorkload local;
  local.ns = info.namespace_name;
  local.name = info.name;
  local.ips = self->workload_ips;
  local.network = self->network;
  local.identity = local_identity_;

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

  return {};
}

// Control thread. Dedicated mode with xDS: starts the listeners once every type arrived and the
// workload is in it; until then readiness says "pending: proxy".
void AppImpl::maybe_start_proxy() {
  if (proxy_started_.load() || draining_ || !xds_ || !xds_->ready()) return;
  if (!find_self()) {
    if (!waiting_logged_) {
      waiting_logged_ = true;
      const auto& info = *config_.proxy_workload_info;
      ZT_LOG_INFO(
          "component=xds msg=\"waiting for workload {}/{} in the xDS configuration "
          "before starting the listeners\"",
          info.namespace_name, info.name);
    }
    return;
  }
  if (auto st = build_proxy(); !st) {
    ZT_LOG_ERROR("component=proxy msg=\"cannot start the proxy: {}\"", st.error().describe());
    exit_code_ = 1;
    workers_.clear();
    control_.stop();
    return;
  }
  proxy_started_.store(true, std::memory_order_release);
  start_workers();
}

void AppImpl::start_workers() {
  for (auto& w : workers_) w->start();
  starting_.release();
  ZT_LOG_INFO("ztunnel ready mode=dedicated workload={}/{} identity=\"{}\" workers={}",
              ctx_->local.ns, ctx_->local.name, ctx_->local.identity.uri(), workers_.size());
}

void AppImpl::begin_drain(std::string_view why) {
  if (draining_) return;
  draining_ = true;
  ZT_LOG_INFO("component=drain msg=\"draining ({}), deadline {}ms\"", why,
              config_.connection_termination_deadline.count());
  workers_left_ = workers_.size();
  if (workers_.empty()) asio::post(control_, [this] { control_.stop(); });  // not started yet
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
  if (xds_) {
    xds_->start();
  } else {
    proxy_started_ = true;
    start_workers();
  }
  control_.run();
  if (xds_) xds_->stop();
  for (auto& w : workers_) w->join();
  admin_.reset();
  ZT_LOG_INFO("ztunnel stopped");
  return exit_code_;
}

}  // namespace

Result<std::unique_ptr<App>> App::create(config::Config config) {
  auto app = std::make_unique<AppImpl>(std::move(config));
  if (auto st = app->init(); !st) return tl::unexpected(st.error());
  return std::unique_ptr<App>(std::move(app));
}

}  // namespace zt::app
