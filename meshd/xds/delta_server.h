// The Delta ADS server (envoy.service.discovery.v3.AggregatedDiscoveryService/
// DeltaAggregatedResources) that feeds ztunnels the workload API (facts §4.1).
//
// Invariants:
// - One writer calls publish(); every stream reads the latest published snapshot.
// - Each stream remembers, per type, what the client holds (name -> version). A push is the diff
//   between the latest snapshot and that memory, so a slow client never queues: while a write is
//   in flight new snapshots just replace the old one, and the next write carries the combined
//   change. Per stream there is at most one response in flight, and its memory is one version
//   string per resource the client holds.
// - A version is a hash of the resource's deterministic serialization, so an unchanged resource
//   keeps its version across publishes, restarts of meshd and reconnects
//   (initial_resource_versions).
// - What was sent counts as held even when the client NACKs it: a rejected version is not resent
//   until it changes (the client keeps its previous copy, as ztunnel does).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <grpcpp/grpcpp.h>

#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "meshd/model/snapshot.h"

namespace zt::meshd::xds {

// Counters for logs, tests and the scale benchmark (bytes per push = bytes_sent / pushes).
struct DeltaServerStats {
  uint64_t publishes = 0;       // snapshots published
  uint64_t pushes = 0;          // DeltaDiscoveryResponses written
  uint64_t bytes_sent = 0;      // serialized size of those responses
  uint64_t resources_sent = 0;  // added/changed resources in them
  uint64_t removals_sent = 0;   // names in removed_resources
  uint64_t acks = 0;
  uint64_t nacks = 0;
  uint64_t streams_opened = 0;
  uint64_t streams_active = 0;
  uint64_t unknown_type_requests = 0;
};

struct DeltaServerOptions {
  // A response stops taking resources once it holds this many bytes of them; the rest follows in
  // the next response. Keeps every message under gRPC's default 4 MiB receive limit.
  size_t max_response_bytes = 3 * 1024 * 1024;
};

class DeltaAdsServer final
    : public envoy::service::discovery::v3::AggregatedDiscoveryService::CallbackService {
 public:
  explicit DeltaAdsServer(DeltaServerOptions options = {});
  ~DeltaAdsServer() override;
  DeltaAdsServer(const DeltaAdsServer&) = delete;
  DeltaAdsServer& operator=(const DeltaAdsServer&) = delete;

  // Makes `snapshot` current and wakes every stream. Called by one writer.
  void publish(std::shared_ptr<const MeshSnapshot> snapshot);

  // Ends every stream (UNAVAILABLE) so clients reconnect elsewhere; used at shutdown before the
  // gRPC server stops.
  void close_all_streams();

  DeltaServerStats stats() const;

  // Version string this server gives a resource (exposed for tests and tools).
  static std::string version_of(const google::protobuf::Message& resource);

  grpc::ServerBidiReactor<envoy::service::discovery::v3::DeltaDiscoveryRequest,
                          envoy::service::discovery::v3::DeltaDiscoveryResponse>*
  DeltaAggregatedResources(grpc::CallbackServerContext* context) override;

  // The published snapshot, indexed per type (public so the stream implementation can use it).
  struct Entry {
    std::string version;
    std::string bytes;  // serialized resource (the Any's value)
  };
  static constexpr size_t kTypeCount = 3;  // Address, Authorization, WaypointConfig
  struct Indexed {
    uint64_t generation = 0;
    std::map<std::string, Entry> types[kTypeCount];
  };

 private:
  class Stream;
  friend class Stream;

  std::shared_ptr<const Indexed> current() const;
  void unregister(Stream* stream);

  const DeltaServerOptions options_;

  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const Indexed> current_;  // null until the first publish
  uint64_t generation_ = 0;                 // publisher only

  mutable std::mutex streams_mu_;
  std::unordered_map<Stream*, std::shared_ptr<Stream>> streams_;
  uint64_t next_stream_id_ = 1;

  struct Counters {
    std::atomic<uint64_t> publishes{0}, pushes{0}, bytes_sent{0}, resources_sent{0},
        removals_sent{0}, acks{0}, nacks{0}, streams_opened{0}, unknown_type_requests{0};
  };
  Counters counters_;
};

}  // namespace zt::meshd::xds
