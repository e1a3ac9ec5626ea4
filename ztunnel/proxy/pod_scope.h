// PodScope: the workload one set of listeners acts for, and where its sockets live.
//
// Dedicated mode has one scope without a network namespace: sockets are opened in ztunnel's own
// namespace, as before. Shared mode has one scope per enrolled pod: every socket ztunnel opens
// for that pod (listeners, HBONE and passthrough upstreams, delivery to the app) is created
// inside the pod's netns with SO_MARK, and keeps that namespace after bind/connect (DESIGN §2).
// A scope is immutable once built and shared (shared_ptr<const PodScope>) by the pod's
// Inbound/Outbound on every worker.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "bpf/loader/capture.h"
#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/netns/netns.h"
#include "ztunnel/proxy/context.h"
#include "ztunnel/state/state.h"

namespace zt::proxy {

struct PodScope {
  LocalWorkload local;
  std::string uid;                         // ZDS uid; empty in dedicated mode
  std::optional<netns::Netns> netns;       // shared mode: the pod's namespace
  std::shared_ptr<bpf::CaptureMaps> maps;  // shared mode: the capture maps
  uint32_t mark = netns::kProxyMark;       // SO_MARK of ztunnel's own sockets

  bool in_pod() const { return netns.has_value(); }

  // A socket for ztunnel's own use (a listener or an upstream): in a pod scope created in the
  // pod's netns with SO_MARK `mark`; a plain socket otherwise.
  Result<tcp::socket> open_socket(const asio::any_io_executor& ex, const tcp& protocol) const;
  // A listening socket at `at` with SO_REUSEPORT (so every worker binds the same port).
  Result<tcp::acceptor> listen(const asio::any_io_executor& ex, const tcp::endpoint& at,
                               std::string_view name) const;

  // The workload of this scope in `snapshot`: by its IPs, else by namespace and name (a pod
  // whose addresses the configuration does not list yet). nullptr when unknown.
  std::shared_ptr<const state::Workload> find_workload(const state::State& snapshot) const;
};

// A connection to the local app on behalf of a client (inbound HBONE and plaintext delivery).
// In a pod scope the socket is made in the pod's netns with the delivery mark, IP_TRANSPARENT
// and IP_FREEBIND, bound to the client's IP so the app sees the real peer; the 4-tuple is put in
// the capture bypass map for the duration of connect() so sk_lookup lets the SYN reach the app
// instead of steering it back to ztunnel. If the transparent bind is refused (no CAP_NET_ADMIN,
// or no routing set up), it falls back to the pod's own IP as source (logged once). Outside a
// pod it is a plain socket, as in dedicated mode.
class AppConnection {
 public:
  AppConnection(const PodScope& scope, const asio::any_io_executor& ex)
      : scope_(scope), socket_(ex) {}
  ~AppConnection() { clear_bypass(); }
  AppConnection(const AppConnection&) = delete;
  AppConnection& operator=(const AppConnection&) = delete;

  // Opens and binds the socket; errors name the step.
  Status open(const asio::ip::address& client_ip, const tcp::endpoint& app);
  // Connects (bounded by `timeout`). The error is empty on success; "timed out" is
  // asio::error::timed_out.
  awaitable<error_code> connect(const tcp::endpoint& app, std::chrono::milliseconds timeout);

  tcp::socket& socket() { return socket_; }
  // Whether the socket carries the client's IP (false: the fallback or dedicated mode).
  bool spoofed() const { return spoofed_; }

 private:
  Status open_transparent(const asio::ip::address& client_ip, const tcp::endpoint& app);
  Status open_fallback(const tcp::endpoint& app);
  void clear_bypass();

  const PodScope& scope_;
  tcp::socket socket_;
  bool spoofed_ = false;
  std::optional<std::pair<tcp::endpoint, tcp::endpoint>> bypass_;
};

}  // namespace zt::proxy
