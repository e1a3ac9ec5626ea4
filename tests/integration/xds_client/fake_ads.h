// FakeAds: an in-test Delta ADS server on 127.0.0.1 (port 0), the seam the xDS client tests
// drive. It records every request with the stream it came on and that stream's headers, lets
// the test push responses on the current stream, drop it, or refuse new streams.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "envoy/service/discovery/v3/discovery.grpc.pb.h"

namespace zt::testing {

namespace discovery = envoy::service::discovery::v3;

struct ReceivedRequest {
  int stream = 0;  // 1 for the first stream the server accepted
  discovery::DeltaDiscoveryRequest request;
  std::multimap<std::string, std::string> headers;  // the stream's client metadata
};

class FakeAds final : public discovery::AggregatedDiscoveryService::Service {
 public:
  // Plaintext by default; TLS with e.g. grpc::SslServerCredentials.
  explicit FakeAds(
      std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials());
  ~FakeAds() override;

  std::string address() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  // Waits until at least `n` requests arrived in total; returns a copy of all of them.
  std::optional<std::vector<ReceivedRequest>> wait_requests(
      size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::vector<ReceivedRequest> requests();
  // Waits until `n` streams have been opened (including refused ones).
  bool wait_streams(int n, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Arrival time of every stream so far.
  std::vector<std::chrono::steady_clock::time_point> stream_times();

  // Writes on the current stream; false when there is none or the write failed.
  bool push(const discovery::DeltaDiscoveryResponse& response);
  // Ends the current stream with UNAVAILABLE.
  void drop();
  // The next `n` streams end at once with UNAVAILABLE, before reading anything.
  void refuse_next(int n);

  grpc::Status DeltaAggregatedResources(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<discovery::DeltaDiscoveryResponse, discovery::DeltaDiscoveryRequest>*
          stream) override;

 private:
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ReceivedRequest> requests_;
  std::vector<std::chrono::steady_clock::time_point> stream_times_;
  int refuse_ = 0;
  grpc::ServerContext* current_context_ = nullptr;
  grpc::ServerReaderWriter<discovery::DeltaDiscoveryResponse, discovery::DeltaDiscoveryRequest>*
      current_ = nullptr;
  std::mutex write_mu_;
};

// A response of `type_url` with Any bodies of that type (empty payload) named `names`, all at
// `version`.
discovery::DeltaDiscoveryResponse make_response(const std::string& type_url,
                                                const std::string& nonce,
                                                const std::vector<std::string>& names,
                                                const std::string& version,
                                                const std::vector<std::string>& removed = {});

}  // namespace zt::testing
