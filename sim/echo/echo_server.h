// The simulated pods' app: an HTTP/1.1 server that answers every request with what the kernel
// says about the connection, so a test can see whether the mesh kept the client's address:
//   peer=<client ip>:<port> local=<server ip>:<port> pod=<POD_NAME>\n<request body>
// (or, with EchoOptions::ext_authz, an HTTP authorizer for CUSTOM policies).
// Keep-alive is supported (the client's Connection header decides). One io_context per thread,
// all accepting on the same SO_REUSEPORT sockets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace zt::sim::echo {

struct EchoOptions {
  std::vector<uint16_t> ports{8080};
  std::string address = "0.0.0.0";
  std::string pod_name;  // default: $POD_NAME
  int threads = 1;
  // Instead of echoing: decide as Istio's sample ext-authz server (an envoyExtAuthzHttp
  // provider) does: a request with `x-ext-authz: allow` gets 200 and
  // `x-ext-authz-check-result: allowed`, any other 403, `x-ext-authz-check-result: denied` and
  // kExtAuthzDenied as its body.
  bool ext_authz = false;
};

inline constexpr const char* kExtAuthzDenied =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";

// The response body for one request (pure, for tests).
std::string echo_body(const std::string& peer, const std::string& local, const std::string& pod,
                      const std::string& request_body);

// Serves until SIGINT/SIGTERM; returns an error when a port cannot be bound.
Status run_echo_server(const EchoOptions& options);

}  // namespace zt::sim::echo
