// The simulated pods' app: an HTTP/1.1 server that answers every request with what the kernel
// says about the connection, so a test can see whether the mesh kept the client's address:
//   peer=<client ip>:<port> local=<server ip>:<port> pod=<POD_NAME>\n<request body>
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
};

// The response body for one request (pure, for tests).
std::string echo_body(const std::string& peer, const std::string& local, const std::string& pod,
                      const std::string& request_body);

// Serves until SIGINT/SIGTERM; returns an error when a port cannot be bound.
Status run_echo_server(const EchoOptions& options);

}  // namespace zt::sim::echo
