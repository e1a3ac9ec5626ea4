// Inbound HBONE (port 15008): mTLS with the certificate of the pod the listener serves (its
// PodScope), HTTP/2, one CONNECT stream per proxied connection. Phases per stream, in order: check
// the request (400), find the target (503), authorize (401), connect to the app (503), answer 200,
// copy; a policy change that denies an open stream closes it (authz_guard.h).
#pragma once

#include <list>
#include <memory>
#include <optional>

#include "common/async/task_group.h"
#include "common/h2/connection.h"
#include "ztunnel/authz/authz.h"
#include "ztunnel/proxy/authz_guard.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/proxy/pod_scope.h"

namespace zt::proxy {

class Inbound {
 public:
  // `tracker` is the worker's (one per worker, shared by its pods); `tasks` the pod's.
  Inbound(ProxyContext& ctx, std::shared_ptr<const PodScope> scope, async::TaskGroup& tasks,
          std::shared_ptr<ConnectionTracker> tracker)
      : ctx_(ctx), scope_(std::move(scope)), tasks_(tasks), tracker_(std::move(tracker)) {}
  Inbound(const Inbound&) = delete;
  Inbound& operator=(const Inbound&) = delete;

  // Serves one accepted TCP connection until it closes.
  awaitable<void> serve_connection(tcp::socket sock);

  // GOAWAY on every HBONE connection this worker serves.
  void drain_all();

  // This worker's open inbound connections (HBONE streams and plaintext), re-checked against
  // the policies of every new snapshot.
  ConnectionTracker& tracker() { return *tracker_; }

 private:
  struct PeerInfo {
    tcp::endpoint peer;
    tcp::endpoint local;
    std::string identity;                               // SPIFFE URI proven by the handshake
    std::optional<authz::PeerIdentity> authz_identity;  // the same, as policies see it
  };
  awaitable<void> serve_stream(std::shared_ptr<h2::Stream> stream, PeerInfo peer);

  ProxyContext& ctx_;
  std::shared_ptr<const PodScope> scope_;
  async::TaskGroup& tasks_;
  std::list<std::weak_ptr<h2::Connection>> connections_;
  std::shared_ptr<ConnectionTracker> tracker_;
  bool draining_ = false;
};

}  // namespace zt::proxy
