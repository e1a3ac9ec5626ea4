// Inbound HBONE (port 15008): mTLS with the local workload's certificate, HTTP/2, one CONNECT
// stream per proxied connection. Phases per stream, in order: check the request (400), find
// the target (503), connect to the app (503), answer 200, copy.
#pragma once

#include <list>
#include <memory>

#include "common/async/task_group.h"
#include "common/h2/connection.h"
#include "ztunnel/proxy/context.h"

namespace zt::proxy {

class Inbound {
 public:
  Inbound(ProxyContext& ctx, async::TaskGroup& tasks) : ctx_(ctx), tasks_(tasks) {}

  // Serves one accepted TCP connection until it closes.
  awaitable<void> serve_connection(tcp::socket sock);

  // GOAWAY on every HBONE connection this worker serves.
  void drain_all();

 private:
  struct PeerInfo {
    tcp::endpoint peer;
    tcp::endpoint local;
    std::string identity;  // SPIFFE URI proven by the handshake
  };
  awaitable<void> serve_stream(std::shared_ptr<h2::Stream> stream, PeerInfo peer);

  ProxyContext& ctx_;
  async::TaskGroup& tasks_;
  std::list<std::weak_ptr<h2::Connection>> connections_;
  bool draining_ = false;
};

}  // namespace zt::proxy
