#include "common/xds/delta_client.h"

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "common/base/log.h"
#include "common/grpc/client.h"
#include "envoy/service/discovery/v3/discovery.pb.h"

extern char** environ;

namespace zt::xds {
namespace {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;

constexpr std::string_view kMetaPrefix = "ISTIO_META_";
// A full push of a large mesh is one message; gRPC's default 4 MiB limit is too small for it.
constexpr size_t kMaxReceiveMessageBytes = 512 * 1024 * 1024;
constexpr std::string_view kDeltaAdsPath =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
constexpr int kInvalidArgument = 3;  // google.rpc.Code

Result<std::string> read_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failf("{} {}: cannot open", what, path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return failf("{} {}: read error", what, path);
  return ss.str();
}

std::string trim(std::string s) {
  auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!s.empty() && is_space(s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  return s.substr(i);
}

struct Target {
  bool tls = false;
  std::string host_port;
};

Result<Target> parse_address(const std::string& address) {
  Target t;
  std::string_view a = address;
  if (a.starts_with("http://")) {
    a.remove_prefix(7);
  } else if (a.starts_with("https://")) {
    a.remove_prefix(8);
    t.tls = true;
  } else {
    return failf("xDS address \"{}\": must start with http:// or https://", address);
  }
  while (!a.empty() && a.back() == '/') a.remove_suffix(1);
  if (a.empty() || a.find('/') != std::string_view::npos) {
    return failf("xDS address \"{}\": expected scheme://host:port", address);
  }
  t.host_port = std::string(a);
  return t;
}

}  // namespace

NodeInfo make_ztunnel_node(const ZtunnelNodeParams& p) {
  NodeInfo n;
  std::string ip = p.instance_ip.empty() ? "1.1.1.1" : p.instance_ip;
  n.id = fmt::format("ztunnel~{}~{}.{}~{}.svc.cluster.local", ip, p.pod_name, p.pod_namespace,
                     p.pod_namespace);
  for (const auto& kv : p.environment) {
    if (!kv.starts_with(kMetaPrefix)) continue;
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == kMetaPrefix.size()) continue;
    n.metadata[kv.substr(kMetaPrefix.size(), eq - kMetaPrefix.size())] = kv.substr(eq + 1);
  }
  n.metadata["NAME"] = p.pod_name;
  n.metadata["NAMESPACE"] = p.pod_namespace;
  n.metadata["INSTANCE_IPS"] = p.instance_ip;
  n.metadata["NODE_NAME"] = p.node_name;
  n.metadata["CLUSTER_ID"] = p.cluster_id;
  return n;
}

std::vector<std::string> process_environment() {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) out.emplace_back(*e);
  return out;
}

std::string format_rejections(const std::vector<Rejection>& rejections) {
  std::string out;
  for (const auto& r : rejections) {
    if (!out.empty()) out += "; ";
    out += fmt::format("{}: {}", r.name, r.reason);
  }
  return out;
}

struct DeltaClient::Impl {
  DeltaClient* owner = nullptr;
  DeltaClientOptions options;
  Handler handler;
  ReadyCallback on_ready;
  Target target;
  std::optional<std::string> root_ca_pem;  // https: unset means the system roots
  envoy::config::core::v3::Node node;

  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;                                               // guarded by mu
  grpc::Call* current = nullptr;                                       // guarded by mu
  std::map<std::string, std::map<std::string, std::string>> versions;  // guarded by mu

  // Client thread only.
  std::set<std::string> acked;

  // A fresh connection per stream: our backoff is the only one, and a restarted server is
  // reached on the next attempt.
  grpc::ChannelOptions channel_options() const {
    grpc::ChannelOptions o;
    o.address = options.address;
    if (target.tls) o.root_pem = root_ca_pem;
    o.max_receive_message_bytes = kMaxReceiveMessageBytes;
    return o;
  }

  void run() {
    Backoff backoff(options.initial_backoff, options.max_backoff);
    for (;;) {
      bool delivered = run_stream();
      std::unique_lock lock(mu);
      if (stopping) return;
      if (delivered) backoff.reset();
      auto delay = backoff.next();
      ZT_LOG_INFO("component=xds msg=\"reconnecting to {} in {}ms\"", options.address,
                  delay.count());
      cv.wait_for(lock, delay, [this] { return stopping; });
      if (stopping) return;
    }
  }

  // One stream, start to end. True when it delivered at least one response.
  bool run_stream() {
    owner->stats_.connect_attempts.fetch_add(1, std::memory_order_relaxed);
    grpc::Metadata metadata;
    if (options.token_path) {
      auto token = read_file(*options.token_path, "xDS bearer token");
      if (!token) {
        ZT_LOG_WARN("component=xds msg=\"not connecting: {}\"", token.error().describe());
        return false;
      }
      metadata.emplace_back("authorization", "Bearer " + trim(*token));
    }
    if (!options.cluster_id.empty()) metadata.emplace_back("clusterid", options.cluster_id);

    grpc::Call call(channel_options(), std::string(kDeltaAdsPath), std::move(metadata));
    std::map<std::string, std::map<std::string, std::string>> initial;
    {
      std::lock_guard lock(mu);
      if (stopping) return false;
      current = &call;
      initial = versions;
    }
    struct Unregister {
      Impl* self;
      ~Unregister() {
        std::lock_guard lock(self->mu);
        self->current = nullptr;
      }
    } unregister{this};

    bool ok = true;
    std::string buf;
    for (const auto& type : options.type_urls) {
      DeltaDiscoveryRequest req;
      *req.mutable_node() = node;
      req.set_type_url(type);
      for (const auto& [name, version] : initial[type]) {
        (*req.mutable_initial_resource_versions())[name] = version;
      }
      buf.clear();
      if (!req.SerializeToString(&buf) || !call.write(buf)) {
        ok = false;
        break;
      }
    }
    bool delivered = false;
    if (ok) {
      ZT_LOG_INFO("component=xds msg=\"stream open to {}, subscribed {} types\"", options.address,
                  options.type_urls.size());
      DeltaDiscoveryResponse resp;
      while (call.read(&buf)) {
        if (!resp.ParseFromString(buf)) {
          ZT_LOG_WARN("component=xds msg=\"{} sent a DeltaDiscoveryResponse that does not parse\"",
                      options.address);
          ok = false;
          break;
        }
        if (!delivered) {
          delivered = true;
          owner->stats_.streams_with_response.fetch_add(1, std::memory_order_relaxed);
        }
        owner->stats_.responses.fetch_add(1, std::memory_order_relaxed);
        DeltaDiscoveryRequest answer = handle(resp);
        buf.clear();
        if (!answer.SerializeToString(&buf) || !call.write(buf)) {
          ok = false;
          break;
        }
        if (!answer.has_error_detail()) mark_acked(resp.type_url());
      }
    }
    // A broken stream is cancelled so finish() does not wait for the server; after read()
    // returned false, finish() has the server's status (or the error that ended the call).
    if (!ok) call.cancel();
    grpc::CallStatus status = call.finish();
    bool stopped;
    {
      std::lock_guard lock(mu);
      stopped = stopping;
    }
    if (!stopped) {
      ZT_LOG_WARN("component=xds msg=\"stream to {} ended: {} ({})\"", options.address,
                  status.message.empty() ? "no message" : status.message,
                  static_cast<int>(status.code));
    }
    return delivered;
  }

  DeltaDiscoveryRequest handle(const DeltaDiscoveryResponse& resp) {
    DeltaDiscoveryRequest answer;
    answer.set_type_url(resp.type_url());
    answer.set_response_nonce(resp.nonce());

    std::vector<Rejection> rejected;
    bool known = std::find(options.type_urls.begin(), options.type_urls.end(), resp.type_url()) !=
                 options.type_urls.end();
    if (!known) {
      rejected.push_back({resp.type_url(), "type URL not subscribed"});
    } else {
      DeltaUpdate update;
      update.type_url = resp.type_url();
      update.added.reserve(resp.resources_size());
      for (const auto& r : resp.resources()) {
        update.added.push_back(Resource{r.name(), r.version(), r.resource()});
      }
      update.removed.assign(resp.removed_resources().begin(), resp.removed_resources().end());
      try {
        rejected = handler(update);
      } catch (const std::exception& e) {
        // The handler applies nothing when it throws: refuse the whole update.
        rejected.clear();
        for (const auto& r : update.added) rejected.push_back({r.name, e.what()});
        if (rejected.empty()) rejected.push_back({update.type_url, e.what()});
      }
      std::set<std::string> refused;
      for (const auto& r : rejected) refused.insert(r.name);
      std::lock_guard lock(mu);
      auto& recorded = versions[update.type_url];
      for (const auto& r : update.added) {
        if (!refused.contains(r.name)) recorded[r.name] = r.version;
      }
      for (const auto& name : update.removed) recorded.erase(name);
    }

    if (rejected.empty()) {
      owner->stats_.acks.fetch_add(1, std::memory_order_relaxed);
      ZT_LOG_DEBUG("component=xds msg=\"ACK {} nonce={} added={} removed={}\"", resp.type_url(),
                   resp.nonce(), resp.resources_size(), resp.removed_resources_size());
    } else {
      owner->stats_.nacks.fetch_add(1, std::memory_order_relaxed);
      std::string message = format_rejections(rejected);
      ZT_LOG_WARN("component=xds msg=\"NACK {} nonce={}: {}\"", resp.type_url(), resp.nonce(),
                  message);
      answer.mutable_error_detail()->set_code(kInvalidArgument);
      answer.mutable_error_detail()->set_message(std::move(message));
    }
    return answer;
  }

  // Readiness counts ACKs only, as Istio's ztunnel does: a type whose every response so far was
  // NACKed has not been received yet.
  void mark_acked(const std::string& type_url) {
    if (owner->ready_.load(std::memory_order_acquire)) return;
    if (std::find(options.type_urls.begin(), options.type_urls.end(), type_url) ==
        options.type_urls.end()) {
      return;
    }
    acked.insert(type_url);
    for (const auto& t : options.type_urls) {
      if (!acked.contains(t)) return;
    }
    owner->ready_.store(true, std::memory_order_release);
    ZT_LOG_INFO("component=xds msg=\"initial configuration received for all {} types\"",
                options.type_urls.size());
    if (on_ready) on_ready();
  }
};

Result<std::unique_ptr<DeltaClient>> DeltaClient::create(DeltaClientOptions options,
                                                         Handler handler, ReadyCallback on_ready) {
  auto impl = std::make_unique<Impl>();
  auto target = parse_address(options.address);
  if (!target) return tl::unexpected(target.error());
  if (auto t = grpc::parse_target(options.address); !t) {
    return failf("xDS address \"{}\": {}", options.address, t.error().message);
  }
  impl->target = *target;
  if (target->tls && options.root_ca_path) {
    auto pem = read_file(*options.root_ca_path, "xDS root CA");
    if (!pem) return tl::unexpected(pem.error());
    impl->root_ca_pem = std::move(*pem);
  }
  if (options.type_urls.empty()) return fail("xDS client: no type URLs to subscribe");
  if (!handler) return fail("xDS client: no handler");
  impl->node.set_id(options.node.id);
  auto* fields = impl->node.mutable_metadata()->mutable_fields();
  for (const auto& [k, v] : options.node.metadata) (*fields)[k].set_string_value(v);
  impl->options = std::move(options);
  impl->handler = std::move(handler);
  impl->on_ready = std::move(on_ready);
  return std::unique_ptr<DeltaClient>(new DeltaClient(std::move(impl)));
}

DeltaClient::DeltaClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->owner = this;
}

DeltaClient::~DeltaClient() { stop(); }

void DeltaClient::start() {
  if (impl_->thread.joinable()) return;
  ZT_LOG_INFO("component=xds msg=\"connecting to {}\"", impl_->options.address);
  impl_->thread = std::thread([this] { impl_->run(); });
}

void DeltaClient::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    if (impl_->current != nullptr) impl_->current->cancel();
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::map<std::string, std::string> DeltaClient::recorded_versions(
    const std::string& type_url) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->versions.find(type_url);
  return it == impl_->versions.end() ? std::map<std::string, std::string>{} : it->second;
}

}  // namespace zt::xds
