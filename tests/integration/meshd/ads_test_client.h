// A minimal Delta ADS client for meshd's tests: the client side of the stream is the seam (the
// real client is ztunnel's). A reader thread queues responses so a test can wait for the next
// one with a deadline, or check that nothing arrives.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "envoy/service/discovery/v3/discovery.grpc.pb.h"

namespace zt::meshd::testing {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;

inline constexpr const char* kAddressUrl = "type.googleapis.com/istio.workload.Address";
inline constexpr const char* kAuthorizationUrl = "type.googleapis.com/istio.security.Authorization";

class AdsTestClient {
 public:
  AdsTestClient(const std::string& target, std::string node_id)
      : node_id_(std::move(node_id)),
        channel_(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())),
        stub_(envoy::service::discovery::v3::AggregatedDiscoveryService::NewStub(channel_)) {
    stream_ = stub_->DeltaAggregatedResources(&context_);
    reader_ = std::thread([this] {
      DeltaDiscoveryResponse r;
      while (stream_->Read(&r)) {
        std::lock_guard lock(mu_);
        queue_.push_back(r);
        cv_.notify_all();
      }
      std::lock_guard lock(mu_);
      closed_ = true;
      cv_.notify_all();
    });
  }

  ~AdsTestClient() {
    context_.TryCancel();
    reader_.join();
    stream_->Finish().ok();
  }

  // The first request of a type: wildcard when `names` is empty.
  bool subscribe(const std::string& type_url,
                 const std::map<std::string, std::string>& initial_versions = {},
                 const std::vector<std::string>& names = {}) {
    DeltaDiscoveryRequest req;
    req.mutable_node()->set_id(node_id_);
    req.set_type_url(type_url);
    for (const auto& n : names) req.add_resource_names_subscribe(n);
    for (const auto& [k, v] : initial_versions) (*req.mutable_initial_resource_versions())[k] = v;
    return stream_->Write(req);
  }

  bool ack(const DeltaDiscoveryResponse& r) {
    DeltaDiscoveryRequest req;
    req.set_type_url(r.type_url());
    req.set_response_nonce(r.nonce());
    return stream_->Write(req);
  }

  bool nack(const DeltaDiscoveryResponse& r, const std::string& message) {
    DeltaDiscoveryRequest req;
    req.set_type_url(r.type_url());
    req.set_response_nonce(r.nonce());
    req.mutable_error_detail()->set_code(3);
    req.mutable_error_detail()->set_message(message);
    return stream_->Write(req);
  }

  bool send(const DeltaDiscoveryRequest& req) { return stream_->Write(req); }

  std::optional<DeltaDiscoveryResponse> next(
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || closed_; })) {
      return std::nullopt;
    }
    if (queue_.empty()) return std::nullopt;
    auto r = std::move(queue_.front());
    queue_.pop_front();
    return r;
  }

  // Reads and ACKs responses of `type_url` until the client holds what the server has, i.e. no
  // more arrives within `quiet`. Returns name -> version held.
  std::map<std::string, std::string>& held(const std::string& type_url) { return held_[type_url]; }

  // Applies a response to held() and ACKs it.
  void apply(const DeltaDiscoveryResponse& r) {
    auto& h = held_[r.type_url()];
    for (const auto& res : r.resources()) h[res.name()] = res.version();
    for (const auto& name : r.removed_resources()) h.erase(name);
    ack(r);
  }

  bool closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }

 private:
  std::string node_id_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<envoy::service::discovery::v3::AggregatedDiscoveryService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<DeltaDiscoveryRequest, DeltaDiscoveryResponse>> stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<DeltaDiscoveryResponse> queue_;
  bool closed_ = false;
  std::map<std::string, std::map<std::string, std::string>> held_;
};

}  // namespace zt::meshd::testing
