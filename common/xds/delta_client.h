// DeltaClient: a Delta ADS client (envoy.service.discovery.v3.AggregatedDiscoveryService/
// DeltaAggregatedResources) on its own thread, as Istio's ztunnel speaks it to istiod (facts §4.1).
//
// One stream at a time. On connect it sends one wildcard request per subscribed type URL (the
// first also carries the Node), with initial_resource_versions set to what it recorded before.
// Every response becomes a DeltaUpdate handed to the handler on the client's thread (so that
// thread is the single writer of whatever the handler updates); the handler answers with the
// resources it refused, and the client ACKs (type_url + response_nonce) or NACKs (error_detail
// "name: reason; name: reason", INVALID_ARGUMENT). Versions of accepted resources are recorded,
// refused ones are not, removed ones are forgotten. A response for a type it did not subscribe to
// is NACKed without reaching the handler. When the stream ends it reconnects after a backoff of
// 10 ms doubling to 15 s, reset once a stream delivered a response.
//
// This header is free of gRPC so that ztunnel's composition root can include it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/xds/delta_types.h"

namespace zt::xds {

// The xDS Node: who this client is.
struct NodeInfo {
  std::string id{};
  std::map<std::string, std::string> metadata{};  // sent as a Struct of string values
};

struct ZtunnelNodeParams {
  std::string instance_ip{};  // "" means 1.1.1.1, as Istio's ztunnel does
  std::string pod_name{};
  std::string pod_namespace{};
  std::string node_name{};
  std::string cluster_id{};
  // "KEY=VALUE" entries (the process environment): ISTIO_META_<X>=v becomes metadata X=v.
  std::vector<std::string> environment{};
};

// id "ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local"; metadata NAME, NAMESPACE, INSTANCE_IPS,
// NODE_NAME, CLUSTER_ID and every ISTIO_META_* variable with the prefix stripped (the explicit
// keys win over a variable of the same name).
NodeInfo make_ztunnel_node(const ZtunnelNodeParams& params);

// "KEY=VALUE" strings of this process's environment, for ZtunnelNodeParams::environment.
std::vector<std::string> process_environment();

// Exponential backoff: first() = initial, each next() doubles up to max; reset() starts over.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max), next_(initial) {}
  std::chrono::milliseconds next() {
    auto d = next_;
    next_ = std::min(max_, next_ * 2);
    return d;
  }
  void reset() { next_ = initial_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds next_;
};

// "name: reason; name: reason" (the NACK message).
std::string format_rejections(const std::vector<Rejection>& rejections);

struct DeltaClientOptions {
  // "http://host:port" (plaintext) or "https://host:port" (TLS verified against root_ca_path,
  // or the system roots when it is unset).
  std::string address{};
  std::optional<std::string> root_ca_path{};
  // Bearer token file, re-read on every connection; sent as "authorization: Bearer <token>".
  std::optional<std::string> token_path{};
  std::string cluster_id{};  // "clusterid" header when not empty
  NodeInfo node{};
  std::vector<std::string> type_urls{};
  std::chrono::milliseconds initial_backoff{10};
  std::chrono::milliseconds max_backoff{15'000};
};

// What the client did so far; every field only grows. Readable from any thread.
struct DeltaClientStats {
  std::atomic<uint64_t> connect_attempts{0};
  std::atomic<uint64_t> streams_with_response{0};
  std::atomic<uint64_t> responses{0};
  std::atomic<uint64_t> acks{0};
  std::atomic<uint64_t> nacks{0};
};

class DeltaClient {
 public:
  // Runs on the client's thread; returns the resources it refused (everything else applied).
  using Handler = std::function<std::vector<Rejection>(const DeltaUpdate&)>;
  // Runs once on the client's thread, when every subscribed type has had a response ACKed
  // (a NACKed response, even a partly applied one, does not count, as in Istio's ztunnel).
  using ReadyCallback = std::function<void()>;

  // Validates the options (address scheme, root CA file readable); starts nothing.
  static Result<std::unique_ptr<DeltaClient>> create(DeltaClientOptions options, Handler handler,
                                                     ReadyCallback on_ready = {});
  ~DeltaClient();  // stop()
  DeltaClient(const DeltaClient&) = delete;
  DeltaClient& operator=(const DeltaClient&) = delete;

  // Starts the thread. Once.
  void start();
  // Cancels the current stream or backoff wait and joins the thread. Idempotent; not from the
  // handler.
  void stop();

  bool ready() const { return ready_.load(std::memory_order_acquire); }
  const DeltaClientStats& stats() const { return stats_; }
  // Resource name -> version as recorded for `type_url` (a copy; for tests and debugging).
  std::map<std::string, std::string> recorded_versions(const std::string& type_url) const;

 private:
  struct Impl;
  explicit DeltaClient(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  std::atomic<bool> ready_{false};
  DeltaClientStats stats_;
};

}  // namespace zt::xds
