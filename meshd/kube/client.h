// ApiClient: HTTP/1.1 GETs to the Kubernetes API server with Boost.Beast, over TLS (OpenSSL;
// the server's chain is verified against the configured CA and its certificate must name the
// host or IP of the server URL) or plain TCP for http:// URLs (tests). One connection per request:
// a LIST page or a WATCH stream. The bearer token is re-read from its file for every request.
//
// Threading: one executor; shutdown() closes every open request (they complete with an error)
// and makes later ones fail at once.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "meshd/kube/config.h"

namespace zt::meshd::kube {

struct ApiResponse {
  int status = 0;    // HTTP status; 0 when no response arrived
  std::string body;  // whole body (get), or the body of a non-200 answer (stream)
  // Set when the request failed before or during the response (connect, TLS, reset, timeout).
  std::optional<Error> error;
};

class ApiClient {
 public:
  ApiClient(asio::any_io_executor executor, KubeConfig config);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // GET `target` and read the whole body (at most 1 GiB).
  awaitable<ApiResponse> get(std::string target);
  // GET `target`; on a 200 passes each piece of the body (chunked or not) to `on_data` until the
  // server ends it, `on_data` returns false, or nothing arrives for `idle_timeout`.
  awaitable<ApiResponse> stream(std::string target, std::function<bool(std::string_view)> on_data,
                                std::chrono::seconds idle_timeout);

  void shutdown();
  const KubeConfig& config() const { return config_; }

 private:
  struct Request;
  template <class Stream>
  awaitable<ApiResponse> exchange(Stream& stream, Request& request);
  awaitable<ApiResponse> run(Request& request);

  asio::any_io_executor executor_;
  KubeConfig config_;
  bool shut_down_ = false;
  std::set<std::shared_ptr<void>> open_;  // closers of the open requests' sockets
};

}  // namespace zt::meshd::kube
