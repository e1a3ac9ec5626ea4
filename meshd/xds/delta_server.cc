#include "meshd/xds/delta_server.h"

#include <set>
#include <string_view>
#include <utility>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "common/base/log.h"
#include "common/xds/delta_types.h"

namespace zt::meshd::xds {
namespace {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;

constexpr std::string_view kTypeUrls[DeltaAdsServer::kTypeCount] = {
    zt::xds::kAddressType, zt::xds::kAuthorizationType, kWaypointConfigType};

int type_index(std::string_view type_url) {
  for (size_t i = 0; i < DeltaAdsServer::kTypeCount; ++i) {
    if (kTypeUrls[i] == type_url) return static_cast<int>(i);
  }
  return -1;
}

std::string serialize_deterministic(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream raw(&out);
    google::protobuf::io::CodedOutputStream coded(&raw);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

// FNV-1a, 64 bits: the version only has to change when the bytes change.
std::string content_version(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return fmt::format("{:016x}", h);
}

}  // namespace

// One ztunnel's stream. Owned by the server's registry (shared_ptr) from creation until gRPC
// calls OnDone; publish() holds extra references while it wakes streams, so waking never races
// with destruction. Finish() and StartWrite() are serialized by `writing_`: Finish is only called
// when no write is in flight, and no write starts after `closing_`.
class DeltaAdsServer::Stream final
    : public grpc::ServerBidiReactor<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
 public:
  Stream(DeltaAdsServer* server, uint64_t id, std::string peer)
      : server_(server), id_(id), peer_(std::move(peer)) {}

  void start() { StartRead(&request_); }

  // Sends the next response if the client is behind the current snapshot and no write is in
  // flight. Safe from any thread.
  void wake() {
    std::unique_lock lock(mu_);
    if (writing_ || closing_) return;
    auto snapshot = server_->current();
    if (!snapshot || !build_next(*snapshot)) return;
    writing_ = true;
    lock.unlock();
    StartWrite(&response_);
  }

  void close(grpc::Status status) {
    std::unique_lock lock(mu_);
    if (!closing_) close_status_ = std::move(status);
    closing_ = true;
    finish_if_idle(lock);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      close(grpc::Status::OK);
      return;
    }
    {
      std::lock_guard lock(mu_);
      in_read_callback_ = true;
      handle_request(request_);
    }
    wake();
    {
      std::unique_lock lock(mu_);
      if (closing_) {
        in_read_callback_ = false;
        finish_if_idle(lock);
        return;
      }
    }
    // Not under the lock: gRPC may run reactions inline. close() meanwhile only marks closing_
    // (in_read_callback_), so Finish never precedes this StartRead.
    StartRead(&request_);
    std::unique_lock lock(mu_);
    in_read_callback_ = false;
    finish_if_idle(lock);
  }

  void OnWriteDone(bool ok) override {
    {
      std::unique_lock lock(mu_);
      writing_ = false;
      if (!ok) closing_ = true;  // the client is gone; its read fails too
      if (closing_) {
        finish_if_idle(lock);
        return;
      }
    }
    wake();
  }

  void OnDone() override {
    ZT_LOG_INFO("xds stream closed component=xds stream={} node={} peer={}", id_, node_id_, peer_);
    server_->unregister(this);  // may drop the last reference: nothing after this line
  }

 private:
  struct TypeState {
    bool subscribed = false;                   // a request for this type arrived
    bool wildcard = false;                     // everything of the type, present and future
    std::set<std::string> names;               // explicit subscriptions
    std::map<std::string, std::string> known;  // what the client holds: name -> version
    bool needs_response = false;               // answer even when nothing differs
    uint64_t synced_generation = 0;            // `known` matches this snapshot (0 = unknown)
  };

  // Calls Finish once the stream is closing and neither a write is in flight nor OnReadDone is
  // between its checks and StartRead: Finish must not race a StartWrite/StartRead.
  void finish_if_idle(std::unique_lock<std::mutex>& lock) {
    if (!closing_ || finished_ || writing_ || in_read_callback_) return;
    finished_ = true;
    auto status = close_status_;
    lock.unlock();
    Finish(std::move(status));
  }

  bool wants(const TypeState& t, const std::string& name) const {
    return t.wildcard || t.names.contains(name);
  }

  void handle_request(const DeltaDiscoveryRequest& req) {
    if (req.has_node() && !req.node().id().empty()) node_id_ = req.node().id();
    int idx = type_index(req.type_url());
    if (idx < 0) {
      if (unknown_types_logged_.insert(req.type_url()).second) {
        ZT_LOG_WARN("xds request for unknown type ignored component=xds node={} type_url=\"{}\"",
                    node_id_, req.type_url());
      }
      server_->counters_.unknown_type_requests++;  // after the line, as for NACKs below
      return;
    }
    TypeState& t = types_[idx];
    if (!req.response_nonce().empty()) {
      bool nack = req.has_error_detail() &&
                  (req.error_detail().code() != 0 || !req.error_detail().message().empty());
      // Logged before counted: whoever sees the counter move finds the line already written.
      if (nack) {
        ZT_LOG_WARN("xds NACK component=xds node={} type={} nonce={} error=\"{}\"", node_id_,
                    req.type_url(), req.response_nonce(), req.error_detail().message());
        server_->counters_.nacks++;
      } else {
        ZT_LOG_DEBUG("xds ACK component=xds node={} type={} nonce={}", node_id_, req.type_url(),
                     req.response_nonce());
        server_->counters_.acks++;
      }
    }
    bool changed = false;
    if (!t.subscribed) {
      t.subscribed = true;
      t.needs_response = true;
      changed = true;
      // Reconnect: the client tells us what it still holds; only the difference is sent.
      for (const auto& [name, version] : req.initial_resource_versions()) t.known[name] = version;
      // An initial request without names is the legacy wildcard subscription.
      if (req.resource_names_subscribe().empty()) t.wildcard = true;
    }
    for (const auto& name : req.resource_names_subscribe()) {
      if (name == "*") {
        t.wildcard = true;
      } else {
        t.names.insert(name);
      }
      changed = true;
    }
    for (const auto& name : req.resource_names_unsubscribe()) {
      if (name == "*") {
        t.wildcard = false;
      } else {
        t.names.erase(name);
      }
      changed = true;
    }
    if (changed) {
      // The client drops what it unsubscribed from; forget it too so a re-subscription resends.
      for (auto it = t.known.begin(); it != t.known.end();) {
        it = wants(t, it->first) ? std::next(it) : t.known.erase(it);
      }
      t.synced_generation = 0;
    }
  }

  // Fills response_ with the next difference between `snap` and what the client holds, for the
  // first type that has one. Returns false when the client is up to date.
  bool build_next(const Indexed& snap) {
    for (size_t i = 0; i < kTypeCount; ++i) {
      TypeState& t = types_[i];
      if (!t.subscribed) continue;
      if (t.synced_generation == snap.generation && !t.needs_response) continue;
      if (fill_response(i, t, snap)) return true;
    }
    return false;
  }

  bool fill_response(size_t i, TypeState& t, const Indexed& snap) {
    const auto& entries = snap.types[i];
    response_.Clear();
    size_t budget = server_->options_.max_response_bytes;
    size_t used = 0;
    bool complete = true;
    for (const auto& [name, entry] : entries) {
      if (!wants(t, name)) continue;
      auto it = t.known.find(name);
      if (it != t.known.end() && it->second == entry.version) continue;
      if (used > 0 && used + entry.bytes.size() > budget) {
        complete = false;
        break;
      }
      used += entry.bytes.size() + name.size() + entry.version.size();
      auto* r = response_.add_resources();
      r->set_name(name);
      r->set_version(entry.version);
      r->mutable_resource()->set_type_url(std::string(kTypeUrls[i]));
      r->mutable_resource()->set_value(entry.bytes);
    }
    for (const auto& [name, version] : t.known) {
      if (!entries.contains(name)) response_.add_removed_resources(name);
    }
    if (response_.resources_size() == 0 && response_.removed_resources_size() == 0 &&
        !t.needs_response) {
      t.synced_generation = snap.generation;
      return false;
    }
    for (const auto& r : response_.resources()) t.known[r.name()] = r.version();
    for (const auto& name : response_.removed_resources()) t.known.erase(name);
    t.needs_response = false;
    if (complete) t.synced_generation = snap.generation;
    response_.set_type_url(std::string(kTypeUrls[i]));
    response_.set_system_version_info(std::to_string(snap.generation));
    response_.set_nonce(fmt::format("{}-{}", id_, ++nonce_));
    size_t bytes = response_.ByteSizeLong();
    auto& c = server_->counters_;
    c.pushes++;
    c.bytes_sent += bytes;
    c.resources_sent += static_cast<uint64_t>(response_.resources_size());
    c.removals_sent += static_cast<uint64_t>(response_.removed_resources_size());
    ZT_LOG_DEBUG(
        "xds push component=xds node={} type={} version={} nonce={} resources={} removed={} "
        "bytes={}{}",
        node_id_, kTypeUrls[i], snap.generation, response_.nonce(), response_.resources_size(),
        response_.removed_resources_size(), bytes, complete ? "" : " partial=true");
    return true;
  }

  DeltaAdsServer* const server_;
  const uint64_t id_;
  const std::string peer_;

  std::mutex mu_;
  bool writing_ = false;
  bool closing_ = false;
  bool finished_ = false;
  bool in_read_callback_ = false;
  grpc::Status close_status_ = grpc::Status::OK;
  std::string node_id_ = "unknown";
  TypeState types_[kTypeCount];
  std::set<std::string> unknown_types_logged_;
  uint64_t nonce_ = 0;
  DeltaDiscoveryRequest request_;    // the outstanding read
  DeltaDiscoveryResponse response_;  // the outstanding write
};

DeltaAdsServer::DeltaAdsServer(DeltaServerOptions options) : options_(options) {}

DeltaAdsServer::~DeltaAdsServer() = default;

std::string DeltaAdsServer::version_of(const google::protobuf::Message& resource) {
  return content_version(serialize_deterministic(resource));
}

void DeltaAdsServer::publish(std::shared_ptr<const MeshSnapshot> snapshot) {
  auto indexed = std::make_shared<Indexed>();
  indexed->generation = ++generation_;
  if (snapshot) {
    for (const auto& [name, address] : snapshot->addresses) {
      auto bytes = serialize_deterministic(address);
      auto version = content_version(bytes);
      indexed->types[0].emplace(name, Entry{std::move(version), std::move(bytes)});
    }
    for (const auto& [name, authz] : snapshot->authorizations) {
      auto bytes = serialize_deterministic(authz);
      auto version = content_version(bytes);
      indexed->types[1].emplace(name, Entry{std::move(version), std::move(bytes)});
    }
    for (const auto& [name, config] : snapshot->waypoint_configs) {
      auto bytes = serialize_deterministic(config);
      auto version = content_version(bytes);
      indexed->types[2].emplace(name, Entry{std::move(version), std::move(bytes)});
    }
  }
  {
    std::lock_guard lock(snapshot_mu_);
    current_ = std::move(indexed);
  }
  counters_.publishes++;
  std::vector<std::shared_ptr<Stream>> streams;
  {
    std::lock_guard lock(streams_mu_);
    streams.reserve(streams_.size());
    for (auto& [_, s] : streams_) streams.push_back(s);
  }
  for (auto& s : streams) s->wake();
}

void DeltaAdsServer::close_all_streams() {
  std::vector<std::shared_ptr<Stream>> streams;
  {
    std::lock_guard lock(streams_mu_);
    for (auto& [_, s] : streams_) streams.push_back(s);
  }
  for (auto& s : streams) {
    s->close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "meshd is shutting down"));
  }
}

std::shared_ptr<const DeltaAdsServer::Indexed> DeltaAdsServer::current() const {
  std::lock_guard lock(snapshot_mu_);
  return current_;
}

void DeltaAdsServer::unregister(Stream* stream) {
  std::shared_ptr<Stream> last;
  {
    std::lock_guard lock(streams_mu_);
    auto it = streams_.find(stream);
    if (it == streams_.end()) return;
    last = std::move(it->second);
    streams_.erase(it);
  }
  // `last` is released here, outside the lock.
}

DeltaServerStats DeltaAdsServer::stats() const {
  DeltaServerStats s;
  s.publishes = counters_.publishes;
  s.pushes = counters_.pushes;
  s.bytes_sent = counters_.bytes_sent;
  s.resources_sent = counters_.resources_sent;
  s.removals_sent = counters_.removals_sent;
  s.acks = counters_.acks;
  s.nacks = counters_.nacks;
  s.streams_opened = counters_.streams_opened;
  s.unknown_type_requests = counters_.unknown_type_requests;
  {
    std::lock_guard lock(streams_mu_);
    s.streams_active = streams_.size();
  }
  return s;
}

grpc::ServerBidiReactor<DeltaDiscoveryRequest, DeltaDiscoveryResponse>*
DeltaAdsServer::DeltaAggregatedResources(grpc::CallbackServerContext* context) {
  std::shared_ptr<Stream> stream;
  {
    std::lock_guard lock(streams_mu_);
    stream = std::make_shared<Stream>(this, next_stream_id_++, context->peer());
    streams_.emplace(stream.get(), stream);
  }
  counters_.streams_opened++;
  ZT_LOG_INFO("xds stream opened component=xds peer={}", context->peer());
  stream->start();
  return stream.get();
}

}  // namespace zt::meshd::xds
