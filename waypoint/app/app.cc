#include "waypoint/app/app.h"

#include <atomic>
#include <csignal>

#include <nlohmann/json.hpp>

#include "common/base/log.h"
#include "common/ca/provider_factory.h"
#include "common/identity/certificate_authority.h"
#include "common/identity/certificate_manager.h"
#include "common/identity/certificate_provider.h"
#include "common/net/address.h"
#include "common/stats/process_metrics.h"
#include "common/stats/registry.h"
#include "common/xds/delta_client.h"
#include "waypoint/app/config_watcher.h"
#include "waypoint/proxy/context.h"
#include "waypoint/proxy/metrics.h"
#include "waypoint/server/server.h"
#include "waypoint/state/config_store.h"
#include "waypoint/xds/config_resource.h"
#include "ztunnel/admin/admin.h"
#include "ztunnel/admin/readiness.h"
#include "ztunnel/state/local_config.h"
#include "ztunnel/state/store.h"
#include "ztunnel/state/watcher.h"
#include "ztunnel/xds/resource_cache.h"

namespace zt::waypoint::app {
namespace {

using json = nlohmann::json;

// The certificate source: the Istio CA over gRPC when CA_ADDRESS is set, else the built-in CA
// (from --ca-cert/--ca-key, or a generated key pair). The same choice as ztunnel's app.
Result<std::shared_ptr<identity::CertificateProvider>> make_certificate_provider(const Config& c) {
  ca::ProviderChoice choice;
  choice.ca_address = c.ca_address;
  choice.grpc.root_ca_path = c.ca_root_ca;
  choice.grpc.token_path = c.auth_token_path;
  choice.grpc.cluster_id = c.cluster_id;
  choice.ca_cert_path = c.ca_cert_path;
  choice.ca_key_path = c.ca_key_path;
  choice.trust_domain = c.trust_domain;
  return ca::make_certificate_provider(std::move(choice));
}

std::string gateway_json(const std::optional<zt::state::GatewayAddress>& gw) {
  if (!gw) return "";
  if (const auto* a = std::get_if<zt::state::NetworkAddress>(&gw->destination)) {
    return a->to_string();
  }
  return std::get<zt::state::NamespacedHostname>(gw->destination).to_string();
}

std::string time_text(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

class AppImpl final : public App {
 public:
  explicit AppImpl(Config config)
      : config_(std::move(config)), metrics_(registry_), signals_(control_, SIGINT, SIGTERM) {}

  ~AppImpl() override {
    if (xds_) xds_->stop();
    control_.stop();
    workers_.clear();
  }

  Status init();
  int run() override;

 private:
  Status init_self();
  Status init_state_source();
  Status init_l7_source();
  std::vector<zt::xds::Rejection> apply_xds(const zt::xds::DeltaUpdate& update);
  awaitable<void> wait_for_certificate();
  void maybe_ready();
  void begin_drain(std::string_view why);
  std::string config_dump() const;

  Config config_;
  asio::io_context control_{1};
  stats::Registry registry_;
  proxy::WaypointMetrics metrics_;
  admin::Readiness readiness_;
  admin::ReadyBlock starting_;
  admin::ReadyBlock cert_block_;
  admin::ReadyBlock xds_block_;
  zt::state::StateStore store_;
  state::ConfigStore config_store_;
  std::string state_origin_;
  std::unique_ptr<zt::state::LocalConfigWatcher> state_watcher_;
  std::unique_ptr<ConfigFileWatcher> config_watcher_;
  std::unique_ptr<zt::xds::XdsResourceCache> xds_cache_;
  std::unique_ptr<xds::WaypointConfigCache> waypoint_cache_;
  uint64_t xds_published_generation_ = 0;
  bool l7_from_xds_ = false;
  std::unique_ptr<identity::CertificateManager> certs_;
  proxy::Self self_;
  std::unique_ptr<proxy::WaypointContext> ctx_;
  std::vector<std::unique_ptr<server::HboneWorker>> workers_;
  tcp::endpoint hbone_bound_;
  std::unique_ptr<admin::AdminServers> admin_;
  asio::signal_set signals_;
  bool draining_ = false;
  bool ready_logged_ = false;
  size_t workers_left_ = 0;
  std::unique_ptr<zt::xds::DeltaClient> xds_;  // last: stopped before what its handler touches
};

Status AppImpl::init_self() {
  auto id = tls::SpiffeId::parse(config_.identity_uri());
  if (!id) return tl::unexpected(wrap(id.error(), "the waypoint's identity"));
  self_.name = config_.name;
  self_.namespace_name = config_.namespace_name;
  self_.identity = *id;
  self_.ips = config_.instance_ips;
  self_.hostname = config_.hostname();
  return {};
}

Status AppImpl::init() {
  starting_ = readiness_.register_task("proxy");
  stats::register_process_metrics(registry_);
  registry_.gauge_family("istio_build", "Istio component build information.")
      .with({{"component", "waypoint"}, {"tag", "ambient-cpp-0.1.0"}})
      .set(1);

  if (auto st = init_self(); !st) return st;
  if (auto st = init_l7_source(); !st) return st;
  if (auto st = init_state_source(); !st) return st;

  auto provider = make_certificate_provider(config_);
  if (!provider) return tl::unexpected(provider.error());
  certs_ = std::make_unique<identity::CertificateManager>(*provider);
  certs_->start_background_refresh();
  if (config_.ca_address) {
    // An outside CA may be briefly unreachable: readiness waits, connections wait.
    cert_block_ = readiness_.register_task("certificate");
    certs_->prefetch(self_.identity);
  } else if (auto c = certs_->get(self_.identity); !c) {
    return tl::unexpected(wrap(c.error(), "certificate for " + self_.identity.uri()));
  }

  admin::AdminServers::Config admin_config;
  admin_config.endpoints.admin = config_.admin_address;
  admin_config.endpoints.metrics = config_.metrics_address;
  admin_config.endpoints.readiness = config_.readiness_address;
  admin_config.hooks.config_dump = [this] { return config_dump(); };
  admin_config.hooks.quit = [this] {
    asio::post(control_, [this] { begin_drain("/quitquitquit"); });
  };
  auto servers =
      admin::AdminServers::bind(control_.get_executor(), admin_config, registry_, readiness_);
  if (!servers) return tl::unexpected(servers.error());
  admin_ = std::move(*servers);

  proxy::Settings settings;
  settings.path_normalization.mode = config_.path_normalization;
  settings.limits.request_headers_timeout = config_.request_headers_timeout;
  settings.limits.stream_idle_timeout = config_.stream_idle_timeout;
  settings.limits.idle_timeout = config_.idle_timeout;
  settings.limits.max_connection_body_bytes = config_.max_connection_body_bytes;
  ctx_ = std::unique_ptr<proxy::WaypointContext>(
      new proxy::WaypointContext{self_, settings, store_, *certs_, config_store_, metrics_});
  tcp::endpoint at = config_.hbone_address;
  int n = std::max(1, config_.worker_threads);
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<server::HboneWorker>(*ctx_, i);
    auto bound = w->bind(at);
    if (!bound) return tl::unexpected(bound.error());
    at = *bound;  // later workers share the port the first one got
    workers_.push_back(std::move(w));
  }
  hbone_bound_ = at;
  return {};
}

Status AppImpl::init_l7_source() {
  if (config_.config_path) {
    auto snap = load_config_file(*config_.config_path);
    if (!snap) return tl::unexpected(wrap(snap.error(), "--config"));
    config_store_.publish(*snap);
    auto watcher = ConfigFileWatcher::start(control_.get_executor(), *config_.config_path,
                                            config_store_, [this](const Status& st) {
                                              if (!st) metrics_.error("config", "reload");
                                            });
    if (!watcher) return tl::unexpected(watcher.error());
    config_watcher_ = std::move(*watcher);
    auto cur = config_store_.current();
    ZT_LOG_INFO(
        "component=config msg=\"loaded {}\" generation={} routes={} policies={} providers={}",
        *config_.config_path, cur->generation, cur->config->routes.size(), cur->policies.size(),
        cur->providers.size());
    if (config_.xds_address) {
      ZT_LOG_INFO(
          "component=config msg=\"--config is set: the L7 configuration comes from the file, "
          "not xDS\"");
    }
    return {};
  }
  if (config_.xds_address) {
    l7_from_xds_ = true;
    waypoint_cache_ =
        std::make_unique<xds::WaypointConfigCache>(config_.namespace_name, config_.name);
  }
  return {};
}

Status AppImpl::init_state_source() {
  if (config_.xds_address) {
    if (config_.local_xds_path) {
      ZT_LOG_WARN("component=xds msg=\"XDS_ADDRESS is set: ignoring LOCAL_XDS_PATH {}\"",
                  *config_.local_xds_path);
    }
    zt::xds::DeltaClientOptions o;
    o.address = *config_.xds_address;
    o.root_ca_path = config_.xds_root_ca;
    o.token_path = config_.auth_token_path;
    o.cluster_id = config_.cluster_id;
    // The node as Istio names a waypoint's proxy: router~<ip>~<pod>.<ns>~<ns>.svc.<domain>.
    std::string ip = self_.ips.empty() ? std::string("0.0.0.0") : self_.ips.front().to_string();
    std::string ips;
    for (const auto& a : self_.ips) {
      if (!ips.empty()) ips += ',';
      ips += a.to_string();
    }
    auto pod = zt::config::process_getenv("POD_NAME").value_or(config_.name);
    o.node.id = fmt::format("router~{}~{}.{}~{}.svc.{}", ip, pod, config_.namespace_name,
                            config_.namespace_name, config_.cluster_domain);
    o.node.metadata = {{"NAME", pod},
                       {"NAMESPACE", config_.namespace_name},
                       {"INSTANCE_IPS", ips},
                       {"CLUSTER_ID", config_.cluster_id},
                       {"WAYPOINT_NAME", config_.name},
                       {"SERVICE_ACCOUNT", config_.service_account}};
    o.type_urls = {std::string(zt::xds::kAddressType)};
    if (l7_from_xds_) o.type_urls.push_back(std::string(xds::kWaypointConfigType));
    xds_cache_ = std::make_unique<zt::xds::XdsResourceCache>();
    xds_block_ = readiness_.register_task("xds");
    auto client = zt::xds::DeltaClient::create(
        std::move(o), [this](const zt::xds::DeltaUpdate& u) { return apply_xds(u); },
        [this] {
          xds_block_.release();
          asio::post(control_, [this] { maybe_ready(); });
        });
    if (!client) return tl::unexpected(wrap(client.error(), "XDS_ADDRESS"));
    xds_ = std::move(*client);
    state_origin_ = "xds " + *config_.xds_address;
    return {};
  }
  auto initial = zt::state::load_local_config_file(*config_.local_xds_path);
  if (!initial) return tl::unexpected(initial.error());
  store_.publish(*initial);
  auto watcher = zt::state::LocalConfigWatcher::start(control_.get_executor(),
                                                      *config_.local_xds_path, store_);
  if (!watcher) return tl::unexpected(watcher.error());
  state_watcher_ = std::move(*watcher);
  state_origin_ = "file " + *config_.local_xds_path;
  return {};
}

// On the xDS client's thread: the single writer of store_ (and of config_store_ from xDS).
std::vector<zt::xds::Rejection> AppImpl::apply_xds(const zt::xds::DeltaUpdate& update) {
  if (update.type_url == xds::kWaypointConfigType) {
    if (!waypoint_cache_) return {};
    return waypoint_cache_->apply(update, config_store_);
  }
  auto rejected = xds_cache_->apply(update);
  if (xds_cache_->generation() != xds_published_generation_) {
    xds_published_generation_ = xds_cache_->generation();
    store_.publish(xds_cache_->snapshot());
  }
  return rejected;
}

awaitable<void> AppImpl::wait_for_certificate() {
  for (;;) {
    auto c = co_await certs_->get_async(self_.identity);
    if (c) break;
    ZT_LOG_WARN("component=ca msg=\"no certificate for {} yet\" error=\"{}\"", self_.identity.uri(),
                c.error().describe());
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::seconds(1));
    co_await t.async_wait(kTuple);
    if (draining_) co_return;
  }
  cert_block_.release();
  maybe_ready();
}

// Control thread: logs "waypoint ready" once nothing is pending (certificate, xDS, listeners).
void AppImpl::maybe_ready() {
  if (ready_logged_ || !readiness_.ready()) return;
  ready_logged_ = true;
  std::string ips;
  for (const auto& ip : self_.ips) {
    if (!ips.empty()) ips += ',';
    ips += ip.to_string();
  }
  ZT_LOG_INFO("waypoint ready gateway={}/{} identity=\"{}\" hostname={} ips={} hbone={} workers={}",
              self_.namespace_name, self_.name, self_.identity.uri(), self_.hostname,
              ips.empty() ? std::string("none") : ips, net::format_endpoint(hbone_bound_),
              workers_.size());
}

std::string AppImpl::config_dump() const {
  json out;
  json ips = json::array();
  for (const auto& ip : self_.ips) ips.push_back(ip.to_string());
  out["self"] = {{"name", self_.name},
                 {"namespace", self_.namespace_name},
                 {"identity", self_.identity.uri()},
                 {"hostname", self_.hostname},
                 {"ips", ips},
                 {"hboneAddress", net::format_endpoint(hbone_bound_)}};

  auto cfg = config_store_.current();
  json policies = json::array();
  for (const auto& p : cfg->policies) policies.push_back(p.key());
  json routes = json::array();
  for (const auto& r : cfg->config->routes) routes.push_back(r.namespace_name + "/" + r.name);
  json authentications = json::array();
  for (const auto& a : cfg->authentications) authentications.push_back(a.key());
  json providers = json::array();
  for (const auto& p : cfg->providers) {
    providers.push_back(
        {{"name", p.name},
         {"kind", p.kind == authz::ExtAuthzProvider::Kind::kGrpc ? "envoyExtAuthzGrpc"
                                                                 : "envoyExtAuthzHttp"},
         {"service",
          p.service_namespace.empty() ? p.service : p.service_namespace + "/" + p.service},
         {"port", p.port}});
  }
  out["config"] = {{"origin", cfg->origin},
                   {"generation", cfg->generation},
                   {"routes", cfg->config->routes.size()},
                   {"routeNames", routes},
                   {"destinations", cfg->config->destinations.size()},
                   {"policies", policies},
                   {"requestAuthentications", authentications},
                   {"extensionProviders", providers}};

  auto st = store_.current();
  json bound_services = json::array();
  json services = json::array();
  for (const auto& s : st->services()) {
    json vips = json::array();
    for (const auto& v : s->vips) vips.push_back(v.to_string());
    bool bound = s->waypoint && self_.is(*s->waypoint);
    services.push_back({{"key", s->key()},
                        {"vips", vips},
                        {"waypoint", gateway_json(s->waypoint)},
                        {"bound", bound}});
    if (bound) bound_services.push_back(s->key());
  }
  json bound_workloads = json::array();
  for (const auto& w : st->workloads()) {
    if (w->waypoint && self_.is(*w->waypoint)) bound_workloads.push_back(w->uid);
  }
  out["state"] = {{"origin", state_origin_},
                  {"version", store_.version()},
                  {"workloads", st->workloads().size()},
                  {"services", services},
                  {"boundServices", bound_services},
                  {"boundWorkloads", bound_workloads}};

  json certs = json::array();
  if (certs_) {
    for (const auto& c : certs_->list()) {
      json item = {{"identity", c.identity.uri()}, {"state", c.state}, {"serial", c.serial}};
      if (!c.serial.empty()) {
        item["notBefore"] = time_text(c.not_before);
        item["notAfter"] = time_text(c.not_after);
      }
      certs.push_back(std::move(item));
    }
  }
  out["certificates"] = certs;
  out["pending"] = readiness_.pending();
  return out.dump(2, ' ', false, json::error_handler_t::replace);
}

void AppImpl::begin_drain(std::string_view why) {
  if (draining_) return;
  draining_ = true;
  ZT_LOG_INFO("component=drain msg=\"draining ({}), deadline {}ms\"", why,
              config_.connection_termination_deadline.count());
  workers_left_ = workers_.size();
  if (workers_.empty()) asio::post(control_, [this] { control_.stop(); });
  for (auto& w : workers_) {
    w->drain(config_.connection_termination_deadline, [this] {
      asio::post(control_, [this] {
        if (--workers_left_ == 0) control_.stop();
      });
    });
  }
}

int AppImpl::run() {
  signals_.async_wait([this](const error_code& ec, int sig) {
    if (!ec) begin_drain(sig == SIGTERM ? "SIGTERM" : "SIGINT");
  });
  admin_->start();
  if (xds_) xds_->start();
  if (cert_block_.holds()) {
    async::spawn_logged(control_.get_executor(), wait_for_certificate(), "waypoint-certificate");
  }
  for (auto& w : workers_) w->start();
  starting_.release();
  maybe_ready();
  control_.run();
  if (xds_) xds_->stop();
  for (auto& w : workers_) w->join();
  if (admin_) admin_->stop();
  ZT_LOG_INFO("waypoint stopped");
  return 0;
}

}  // namespace

Result<std::unique_ptr<App>> App::create(Config config) {
  auto app = std::make_unique<AppImpl>(std::move(config));
  if (auto st = app->init(); !st) return tl::unexpected(st.error());
  return std::unique_ptr<App>(std::move(app));
}

}  // namespace zt::waypoint::app
