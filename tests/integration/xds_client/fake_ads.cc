#include "tests/integration/xds_client/fake_ads.h"

#include <stdexcept>

#include "tests/support/grpc_library.h"

namespace zt::testing {

FakeAds::FakeAds(std::shared_ptr<grpc::ServerCredentials> credentials) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", std::move(credentials), &port_);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) throw std::runtime_error("FakeAds: could not start the gRPC server");
}

FakeAds::~FakeAds() {
  drop();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
}

std::optional<std::vector<ReceivedRequest>> FakeAds::wait_requests(
    size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; })) return std::nullopt;
  return requests_;
}

std::vector<ReceivedRequest> FakeAds::requests() {
  std::lock_guard lock(mu_);
  return requests_;
}

bool FakeAds::wait_streams(int n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout,
                      [&] { return stream_times_.size() >= static_cast<size_t>(n); });
}

std::vector<std::chrono::steady_clock::time_point> FakeAds::stream_times() {
  std::lock_guard lock(mu_);
  return stream_times_;
}

bool FakeAds::push(const discovery::DeltaDiscoveryResponse& response) {
  std::lock_guard wlock(write_mu_);
  grpc::ServerReaderWriter<discovery::DeltaDiscoveryResponse, discovery::DeltaDiscoveryRequest>* s;
  {
    std::lock_guard lock(mu_);
    s = current_;
  }
  // current_ is only cleared under write_mu_ as well, so `s` stays valid while we write.
  return s != nullptr && s->Write(response);
}

void FakeAds::drop() {
  std::lock_guard lock(mu_);
  if (current_context_ != nullptr) current_context_->TryCancel();
}

void FakeAds::refuse_next(int n) {
  std::lock_guard lock(mu_);
  refuse_ = n;
}

grpc::Status FakeAds::DeltaAggregatedResources(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<discovery::DeltaDiscoveryResponse, discovery::DeltaDiscoveryRequest>*
        stream) {
  int id;
  {
    std::lock_guard lock(mu_);
    stream_times_.push_back(std::chrono::steady_clock::now());
    id = static_cast<int>(stream_times_.size());
    cv_.notify_all();
    if (refuse_ > 0) {
      --refuse_;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "refused by the test");
    }
  }
  std::multimap<std::string, std::string> headers;
  for (const auto& [k, v] : context->client_metadata()) {
    headers.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  }
  {
    std::lock_guard wlock(write_mu_);
    std::lock_guard lock(mu_);
    current_context_ = context;
    current_ = stream;
  }
  discovery::DeltaDiscoveryRequest req;
  while (stream->Read(&req)) {
    std::lock_guard lock(mu_);
    requests_.push_back({id, req, headers});
    cv_.notify_all();
  }
  {
    std::lock_guard wlock(write_mu_);
    std::lock_guard lock(mu_);
    if (current_ == stream) {
      current_ = nullptr;
      current_context_ = nullptr;
    }
  }
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended by the test");
}

discovery::DeltaDiscoveryResponse make_response(const std::string& type_url,
                                                const std::string& nonce,
                                                const std::vector<std::string>& names,
                                                const std::string& version,
                                                const std::vector<std::string>& removed) {
  discovery::DeltaDiscoveryResponse r;
  r.set_type_url(type_url);
  r.set_nonce(nonce);
  r.set_system_version_info(version);
  for (const auto& n : names) {
    auto* res = r.add_resources();
    res->set_name(n);
    res->set_version(version);
    res->mutable_resource()->set_type_url(type_url);
  }
  for (const auto& n : removed) r.add_removed_resources(n);
  return r;
}

}  // namespace zt::testing
