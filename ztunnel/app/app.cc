#include "ztunnel/app/app.h"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "bpf/loader/capture.h"
#include "common/base/log.h"
#include "common/base/memory.h"
#include "common/ca/provider_factory.h"
#include "common/identity/certificate_authority.h"
#include "common/identity/certificate_manager.h"
#include "common/identity/certificate_provider.h"
#include "common/net/address.h"
#include "common/stats/process_metrics.h"
#include "common/stats/registry.h"
#include "common/xds/delta_client.h"
#include "common/zds/zds.h"
#include "ztunnel/admin/admin.h"
#include "ztunnel/admin/readiness.h"
#include "ztunnel/app/config_dump.h"
#include "ztunnel/app/node_certificates.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/pod_scope.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/state/local_config.h"
#include "ztunnel/state/store.h"
#include "ztunnel/state/watcher.h"
#include "ztunnel/xds/resource_cache.h"

namespace zt::app {
namespace {

// The certificate source: istiod-compatible CA over gRPC when CA_ADDRESS is set, else the
// built-in CA in-process.
Result<std::shared_ptr<identity::CertificateProvider>> make_certificate_provider(
    const config::Config& c) {
  ca::ProviderChoice choice;
  choice.ca_address = c.ca_address;
  choice.grpc.root_ca_path = c.ca_root_ca;
  choice.grpc.token_path = c.auth_token_path;
  choice.grpc.cluster_id = c.cluster_id;
  // Shared mode asks for the identities of the pods it proxies, not its own.
  choice.grpc.impersonate = c.proxy_mode == config::ProxyMode::kShared;
  choice.ca_cert_path = c.ca_cert_path;
  choice.ca_key_path = c.ca_key_path;
  choice.trust_domain = c.trust_domain;
  return ca::make_certificate_provider(std::move(choice));
}

std::string join_ips(const std::vector<asio::ip::address>& ips) {
  std::string out;
  for (const auto& ip : ips) {
    if (!out.empty()) out += ',';
    out += ip.to_string();
  }
  return out;
}

class AppImpl final : public App {
 public:
  explicit AppImpl(config::Config config)
      : config_(std::move(config)), metrics_(registry_), signals_(control_, SIGINT, SIGTERM) {}

  ~AppImpl() override {
    if (zds_) zds_->stop();  // its handler posts to the workers
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
  Status build_sidecar(std::shared_ptr<proxy::PodScope> scope);
  void maybe_start_proxy();
  void start_workers();
  proxy::ProxySettings proxy_settings() const;

  // Shared mode: workers without listeners at start; pods come and go over ZDS. The handlers
  // run on the ZDS client's thread, one at a time; pods_ is also read by /config_dump.
  Status build_shared();
  std::string zds_add(const std::string& uid, const zds::WorkloadInfo& info, netns::Netns ns);
  std::string zds_keep(const std::string& uid);
  std::string zds_snapshot_sent();
  std::string zds_del(const std::string& uid);
  // Posts removal of pod `id` to every worker (its connections get `deadline`).
  void remove_pod_from_workers(uint64_t id, std::chrono::milliseconds deadline);
  // pods_mutex_ held: starts a new snapshot_seen_ when the agent connection changed.
  void note_zds_connection();
  std::vector<EnrolledPodInfo> enrolled_pods() const;
  struct EnrolledPod {
    uint64_t id = 0;
    std::shared_ptr<const proxy::PodScope> scope;
  };

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
  // Shared mode (ZDS thread, pods_mutex_ for readers on other threads).
  mutable std::mutex pods_mutex_;
  std::map<std::string, EnrolledPod> pods_;  // by ZDS uid
  std::set<std::string> snapshot_seen_;      // added or kept on this ZDS connection
  uint64_t zds_connection_ = 0;              // the connection snapshot_seen_ belongs to
  std::atomic<zds::Client*> zds_client_{nullptr};
  uint64_t next_pod_id_ = 1;                // 0 is the dedicated workload's
  std::shared_ptr<bpf::CaptureMaps> maps_;  // at the first AddWorkload; --sidecar-capture: at start
  admin::ReadyBlock zds_block_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<zds::Client> zds_;
  std::unique_ptr<xds::DeltaClient> xds_;  // last: stopped before what its handler touches
};

Status AppImpl::init() {
  starting_ = readiness_.register_task("proxy");
  stats::register_process_metrics(registry_);
  registry_.gauge_family("istio_build", "Istio component build information.")
      .with({{"component", "ztunnel"}, {"tag", "ambient-cpp-0.1.0"}})
      .set(1);

  if (auto st = init_config_source(); !st) return st;

  if (config_.proxy_mode == config::ProxyMode::kDedicated) {
    // The identity this dedicated ztunnel acts for; its IPs come from the configuration.
    const auto& info = *config_.proxy_workload_info;
    auto id = tls::SpiffeId::parse(fmt::format("spiffe://{}/ns/{}/sa/{}", config_.trust_domain,
                                               info.namespace_name, info.service_account));
    if (!id) return tl::unexpected(wrap(id.error(), "PROXY_WORKLOAD_INFO"));
    local_identity_ = *id;
  }

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
    auto body = config_dump_json(store_.current(), *certs_, config_, enrolled_pods());
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

  if (config_.proxy_mode == config::ProxyMode::kShared) return build_shared();
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

  auto settings = proxy_settings();
  ctx_ = std::unique_ptr<proxy::ProxyContext>(
      new proxy::ProxyContext{settings, local, store_, *certs_, metrics_});
  auto scope = std::make_shared<proxy::PodScope>();
  scope->local = local;
  if (config_.sidecar_capture) return build_sidecar(std::move(scope));

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
    auto bound = w->bind(scope, want);
    if (!bound) return tl::unexpected(bound.error());
    want = *bound;  // later workers share the ports the first one got
    workers_.push_back(std::move(w));
  }

  return {};
}

// --sidecar-capture: the pod's own netns is the one this process runs in, and the pod is
// served exactly as shared mode serves an enrolled pod (Worker::add_pod): in-pod listeners,
// 15006/15008 registered in the capture maps, origins from the maps, AppConnection delivery.
Status AppImpl::build_sidecar(std::shared_ptr<proxy::PodScope> scope) {
  auto ns = netns::Netns::current();
  if (!ns) return tl::unexpected(wrap(ns.error(), "--sidecar-capture: this process's netns"));
  auto maps = bpf::CaptureMaps::open(config_.bpf_pin_root);
  if (!maps) {
    return tl::unexpected(wrap(
        maps.error(), fmt::format("--sidecar-capture: capture maps at {}", config_.bpf_pin_root)));
  }
  maps_ = std::shared_ptr<bpf::CaptureMaps>(std::move(*maps));
  scope->uid = scope->local.ns + "/" + scope->local.name;
  scope->netns = std::move(*ns);
  scope->maps = maps_;
  scope->mark = config_.inpod_mark;
  if (scope->local.ips.empty()) {
    return failf("--sidecar-capture: workload {} has no workloadIps to capture for", scope->uid);
  }
  // Started outside its pod (e.g. in the host's netns), the listeners would be registered for
  // addresses this namespace does not have: say so, since nothing would ever reach them.
  if (auto here = scope->netns->addresses(); here) {
    for (const auto& ip : scope->local.ips) {
      if (std::find(here->begin(), here->end(), ip) == here->end()) {
        ZT_LOG_WARN(
            "component=proxy msg=\"--sidecar-capture: workload IP {} is not an address of this "
            "network namespace; is ztunnel running inside the pod?\" addresses={}",
            ip.to_string(), join_ips(*here));
      }
    }
  }
  if (config_.enable_socks5) {
    ZT_LOG_WARN(
        "component=socks5 msg=\"SOCKS5 is not served with --sidecar-capture (the app's "
        "connections are captured instead); ignoring --enable-socks5\"");
  }
  int n = std::max(1, config_.worker_threads);
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<proxy::Worker>(*ctx_, i);
    // Before start(): the listeners exist (and the maps point at them) once this returns.
    if (auto st = w->add_pod(0, scope, i == 0); !st) {
      return tl::unexpected(wrap(st.error(), "--sidecar-capture listeners"));
    }
    workers_.push_back(std::move(w));
  }
  ZT_LOG_INFO(
      "component=proxy msg=\"sidecar capture\" workload={} ips={} netns={} pin_root={} "
      "listeners=127.0.0.1:15001,15006,15008",
      scope->uid, join_ips(scope->local.ips), scope->netns->inode(), config_.bpf_pin_root);
  return {};
}

proxy::ProxySettings AppImpl::proxy_settings() const {
  proxy::ProxySettings settings;
  settings.h2.stream_window = config_.http2_stream_window;
  settings.h2.connection_window = config_.http2_connection_window;
  settings.h2.max_frame_size = config_.http2_frame_size;
  settings.h2.idle_timeout = config_.pool_unused_release_timeout;
  settings.pool_max_streams = config_.pool_max_streams;
  settings.cluster_id = config_.cluster_id;
  return settings;
}

// Control thread. Dedicated mode with xDS: starts the listeners once every type arrived and the
// workload is in it; until then readiness says "pending: proxy".
void AppImpl::maybe_start_proxy() {
  if (config_.proxy_mode == config::ProxyMode::kShared) return;  // started in run()
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
  if (config_.proxy_mode == config::ProxyMode::kShared) {
    ZT_LOG_INFO("ztunnel ready mode=shared node={} zds={} workers={}", config_.node_name,
                config_.inpod_uds, workers_.size());
    return;
  }
  ZT_LOG_INFO("ztunnel ready mode=dedicated{} workload={}/{} identity=\"{}\" workers={}",
              config_.sidecar_capture ? " sidecar_capture=true" : "", ctx_->local.ns,
              ctx_->local.name, ctx_->local.identity.uri(), workers_.size());
}

void AppImpl::begin_drain(std::string_view why) {
  if (draining_) return;
  draining_ = true;
  // No pod is added once the drain began; the ones enrolled drain with their workers.
  stopping_ = true;
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
  if (xds_) xds_->start();
  if (!xds_ || config_.proxy_mode == config::ProxyMode::kShared) {
    proxy_started_ = true;
    start_workers();
  }
  if (config_.proxy_mode == config::ProxyMode::kShared) {
    zds::ClientHandler h;
    h.add = [this](const std::string& uid, const zds::WorkloadInfo& info, netns::Netns ns) {
      return zds_add(uid, info, std::move(ns));
    };
    h.keep = [this](const std::string& uid) { return zds_keep(uid); };
    h.snapshot_sent = [this] { return zds_snapshot_sent(); };
    h.del = [this](const std::string& uid) { return zds_del(uid); };
    zds_ = zds::Client::start(config_.inpod_uds, std::move(h));
    zds_client_ = zds_.get();
  }
  control_.run();
  if (zds_) zds_->stop();
  if (xds_) xds_->stop();
  for (auto& w : workers_) w->join();
  admin_.reset();
  ZT_LOG_INFO("ztunnel stopped");
  return exit_code_;
}

Status AppImpl::build_shared() {
  zds_block_ = readiness_.register_task("zds");
  ctx_ = std::unique_ptr<proxy::ProxyContext>(
      new proxy::ProxyContext{proxy_settings(), proxy::LocalWorkload{}, store_, *certs_, metrics_});
  int n = std::max(1, config_.worker_threads);
  for (int i = 0; i < n; ++i) workers_.push_back(std::make_unique<proxy::Worker>(*ctx_, i));
  if (config_.enable_socks5) {
    ZT_LOG_WARN(
        "component=socks5 msg=\"SOCKS5 is not served in shared mode (no single source "
        "workload); ignoring --enable-socks5\"");
  }
  ZT_LOG_INFO("component=zds msg=\"pods come from the node agent at {}; capture maps under {}\"",
              config_.inpod_uds, config_.bpf_pin_root);
  return {};
}

// ZDS thread.
std::string AppImpl::zds_add(const std::string& uid, const zds::WorkloadInfo& info,
                             netns::Netns ns) {
  if (stopping_) return "ztunnel is shutting down";
  if (info.namespace_name.empty() || info.name.empty() || info.service_account.empty()) {
    return fmt::format("AddWorkload {}: workload_info needs name, namespace and service account",
                       uid);
  }
  std::shared_ptr<const proxy::PodScope> previous;
  uint64_t previous_id = 0;
  {
    std::lock_guard lock(pods_mutex_);
    note_zds_connection();
    if (auto it = pods_.find(uid); it != pods_.end()) {
      if (it->second.scope->netns->same_as(ns)) {
        snapshot_seen_.insert(uid);
        ZT_LOG_DEBUG("component=zds msg=\"pod already enrolled with this netns\" uid={}", uid);
        return "";
      }
      previous = it->second.scope;
      previous_id = it->second.id;
    }
  }
  auto id = tls::SpiffeId::parse(fmt::format("spiffe://{}/ns/{}/sa/{}", config_.trust_domain,
                                             info.namespace_name, info.service_account));
  if (!id) return fmt::format("pod {}: {}", uid, id.error().describe());
  if (!maps_) {
    // Opened lazily: the agent pins the maps before it enrolls its first pod. A NACK makes it
    // retry the pod, by which time they may be there.
    auto maps = bpf::CaptureMaps::open(config_.bpf_pin_root);
    if (!maps) return maps.error().describe();
    maps_ = std::shared_ptr<bpf::CaptureMaps>(std::move(*maps));
  }
  auto scope = std::make_shared<proxy::PodScope>();
  scope->uid = uid;
  scope->local.ns = info.namespace_name;
  scope->local.name = info.name;
  scope->local.identity = *id;
  auto ips = ns.addresses();
  if (!ips) return fmt::format("pod {}: {}", uid, ips.error().describe());
  scope->local.ips = *ips;
  // The pod's network, and its addresses when the netns has none (yet), from the
  // configuration. A scan, once per AddWorkload.
  auto snapshot = store_.current();
  for (const auto& w : snapshot->workloads()) {
    if (w->namespace_name == info.namespace_name && w->name == info.name) {
      scope->local.network = w->network;
      if (scope->local.ips.empty()) scope->local.ips = w->workload_ips;
      break;
    }
  }
  scope->netns = std::move(ns);
  scope->maps = maps_;
  scope->mark = config_.inpod_mark;
  uint64_t pod_id = next_pod_id_++;

  // Listeners on every worker, each on its own thread; bounded so a stuck worker NACKs
  // instead of blocking the agent.
  std::vector<std::future<Status>> results;
  for (size_t i = 0; i < workers_.size(); ++i) {
    auto promise = std::make_shared<std::promise<Status>>();
    results.push_back(promise->get_future());
    proxy::Worker* w = workers_[i].get();
    asio::post(w->io(), [w, pod_id, scope, i, promise] {
      promise->set_value(w->add_pod(pod_id, scope, i == 0));
    });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string error;
  for (auto& f : results) {
    if (f.wait_until(deadline) != std::future_status::ready) {
      if (error.empty())
        error = fmt::format("pod {}: a worker did not open its listeners in 5s", uid);
      continue;
    }
    auto st = f.get();
    if (!st && error.empty()) error = fmt::format("pod {}: {}", uid, st.error().describe());
  }
  if (!error.empty()) {
    remove_pod_from_workers(pod_id, std::chrono::milliseconds(0));
    ZT_LOG_WARN("component=zds msg=\"cannot enroll pod\" uid={} error=\"{}\"", uid, error);
    return error;
  }
  if (previous) {
    // A new netns for the same pod (sandbox recreated): the old listeners go, their
    // connections drain.
    remove_pod_from_workers(previous_id, config_.connection_termination_deadline);
    ZT_LOG_INFO("pod replaced uid={} old_netns={} new_netns={}", uid, previous->netns->inode(),
                scope->netns->inode());
  }
  {
    std::lock_guard lock(pods_mutex_);
    pods_[uid] = EnrolledPod{pod_id, scope};
    snapshot_seen_.insert(uid);
  }
  certs_->prefetch(scope->local.identity);
  ZT_LOG_INFO(
      "pod added uid={} workload={}/{} identity=\"{}\" ips={} netns={} listeners=15001,15006,15008",
      uid, scope->local.ns, scope->local.name, scope->local.identity.uri(),
      join_ips(scope->local.ips), scope->netns->inode());
  return "";
}

std::string AppImpl::zds_keep(const std::string& uid) {
  std::lock_guard lock(pods_mutex_);
  note_zds_connection();
  if (pods_.count(uid) == 0) {
    // Nothing to keep (we never had it, e.g. ztunnel restarted): the agent could not reopen
    // its netns, so the pod stays unserved until it is added again.
    ZT_LOG_WARN("component=zds msg=\"KeepWorkload for a pod this ztunnel does not serve\" uid={}",
                uid);
    return "";
  }
  snapshot_seen_.insert(uid);
  return "";
}

std::string AppImpl::zds_snapshot_sent() {
  std::vector<std::pair<std::string, uint64_t>> gone;
  size_t kept = 0;
  {
    std::lock_guard lock(pods_mutex_);
    note_zds_connection();
    for (auto it = pods_.begin(); it != pods_.end();) {
      if (snapshot_seen_.count(it->first) == 0) {
        gone.emplace_back(it->first, it->second.id);
        it = pods_.erase(it);
      } else {
        ++it;
      }
    }
    kept = pods_.size();
    // Pods added after the snapshot on this connection count as seen at the next one only if
    // the agent replays them; a new connection starts over (note_zds_connection).
    snapshot_seen_.clear();
  }
  for (const auto& [uid, id] : gone) {
    remove_pod_from_workers(id, config_.connection_termination_deadline);
    ZT_LOG_INFO("pod removed uid={} reason=\"not in the agent's snapshot\"", uid);
  }
  ZT_LOG_INFO("component=zds msg=\"snapshot applied\" pods={} removed={}", kept, gone.size());
  zds_block_.release();
  return "";
}

std::string AppImpl::zds_del(const std::string& uid) {
  uint64_t id = 0;
  {
    std::lock_guard lock(pods_mutex_);
    note_zds_connection();
    auto it = pods_.find(uid);
    if (it == pods_.end()) {
      ZT_LOG_DEBUG("component=zds msg=\"DelWorkload for an unknown pod\" uid={}", uid);
      return "";
    }
    id = it->second.id;
    pods_.erase(it);
    snapshot_seen_.erase(uid);
  }
  remove_pod_from_workers(id, config_.connection_termination_deadline);
  ZT_LOG_INFO("pod removed uid={}", uid);
  return "";
}

void AppImpl::note_zds_connection() {
  // The handlers are not told when the agent connection changes; its counter is. (zds_client_
  // is unset only before the first connection's first request could be answered.)
  auto* client = zds_client_.load();
  uint64_t connection = client ? client->stats().connects : 1;
  if (connection != zds_connection_) {
    zds_connection_ = connection;
    snapshot_seen_.clear();
  }
}

void AppImpl::remove_pod_from_workers(uint64_t id, std::chrono::milliseconds deadline) {
  // Waits (bounded) until every worker has closed the pod's listeners, so an ACK of
  // DelWorkload means new connections are refused from then on.
  std::vector<std::future<void>> closed;
  for (auto& w : workers_) {
    proxy::Worker* worker = w.get();
    auto done = std::make_shared<std::promise<void>>();
    closed.push_back(done->get_future());
    asio::post(worker->io(), [worker, id, deadline, done] {
      worker->remove_pod(id, deadline);
      done->set_value();
    });
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (auto& f : closed) {
    if (f.wait_until(until) != std::future_status::ready) {
      ZT_LOG_WARN("component=zds msg=\"a worker did not close the listeners of pod {} in 5s\"", id);
      break;
    }
  }
}

std::vector<EnrolledPodInfo> AppImpl::enrolled_pods() const {
  std::vector<EnrolledPodInfo> out;
  std::lock_guard lock(pods_mutex_);
  for (const auto& [uid, pod] : pods_) {
    EnrolledPodInfo info;
    info.uid = uid;
    info.workload = pod.scope->local.ns + "/" + pod.scope->local.name;
    info.identity = pod.scope->local.identity.uri();
    info.netns_inode = pod.scope->netns ? pod.scope->netns->inode() : 0;
    for (const auto& ip : pod.scope->local.ips) info.ips.push_back(ip.to_string());
    out.push_back(std::move(info));
  }
  return out;
}
}  // namespace

Result<std::unique_ptr<App>> App::create(config::Config config) {
  auto app = std::make_unique<AppImpl>(std::move(config));
  if (auto st = app->init(); !st) return tl::unexpected(st.error());
  return std::unique_ptr<App>(std::move(app));
}

}  // namespace zt::app
