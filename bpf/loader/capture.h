// User-space side of the eBPF capture (DESIGN §2): the node agent loads the programs and attaches
// them per pod; ztunnel fills and reads the pinned maps. Everything lives under one bpffs folder
// (the pin root, one per node):
//   <pin root>/maps/<map name>        maps, pinned by name, shared by agent, programs and ztunnel
//   <pin root>/pods/<key>/<program>   the BPF links of one enrolled pod (cgroup and netns links)
// Pinned links keep a pod captured while the agent or ztunnel restarts: with ztunnel gone its
// listeners leave the maps and new connections are refused (fail closed), never passed through.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"

namespace zt::bpf {

inline constexpr const char* kDefaultPinRoot = "/sys/fs/bpf/ambient-mesh";

// Which in-pod listener of ztunnel an inbound SYN is steered to.
enum class ListenerKind : uint32_t { kPlaintext = 0, kHbone = 1 };

// Counters kept by the programs (one per-CPU array, summed).
struct Counters {
  uint64_t connect_redirected = 0;     // app connects rewritten to 127.0.0.1:15001 / [::1]:15001
  uint64_t connect_skipped_proxy = 0;  // connects from sockets carrying ztunnel's marks
  uint64_t connect_skipped_local = 0;  // loopback or the pod's own IP: left alone
  uint64_t origin_recorded = 0;        // sockops stored an original destination
  uint64_t lookup_assigned = 0;        // sk_lookup steered a SYN to a ztunnel listener
  uint64_t lookup_dropped = 0;         // sk_lookup found no listener: refused (fail closed)
  uint64_t lookup_bypassed = 0;        // ztunnel's own delivery, a probe source, or self traffic
  uint64_t bind_refused = 0;           // an app tried to bind a proxy port
  uint64_t getsockopt_answered = 0;    // SO_ORIGINAL_DST answered for a proxy process
};

// What the programs need to know about one pod.
struct PodNetwork {
  std::vector<asio::ip::address> ips;  // its own addresses: connects to them are not redirected
  // Sources whose SYNs reach the app uncaptured: the node's addresses, so kubelet health
  // probes work even under STRICT mTLS (Istio exempts its probe SNAT address the same way).
  std::vector<asio::ip::address> probe_sources;
};

// ---- node agent ------------------------------------------------------------------------------

class CaptureProgram {
 public:
  // Loads the embedded programs, reusing maps already pinned under `pin_root` (so a restarted
  // agent keeps ztunnel's listener entries), pinning them otherwise. Needs CAP_BPF/CAP_SYS_ADMIN
  // and a bpffs at or above pin_root.
  static Result<std::unique_ptr<CaptureProgram>> load(std::string pin_root);
  virtual ~CaptureProgram() = default;

  // Attaches connect4/6, sockops, getpeername4/6 and bind4/6 to the pod's cgroup and sk_lookup
  // to its netns, records its network, and pins the links under pods/<key>. Idempotent: for an
  // enrolled key the pinned links are updated in place to the loaded programs (no gap).
  virtual Status enroll(std::string_view key, int cgroup_fd, int netns_fd,
                        const PodNetwork& net) = 0;
  // Detaches and unpins; the pod's new connections go direct again. Unknown key: no-op.
  virtual Status release(std::string_view key) = 0;
  // Keys with pinned links (enrolled before, maybe by an earlier agent process).
  virtual std::vector<std::string> enrolled() const = 0;

  // Optional, for a proxy that reads getsockopt(SO_ORIGINAL_DST) (Istio's ztunnel): answers it
  // for sockets of processes in this cgroup from the recorded original destinations.
  virtual Status attach_proxy_cgroup(int cgroup_fd) = 0;

  virtual Counters counters() const = 0;
  virtual const std::string& pin_root() const = 0;
};

// Removes everything under pin_root (links first, so pods are released, then maps).
Status remove_pins(const std::string& pin_root);

// ---- ztunnel ---------------------------------------------------------------------------------

// The cookie of the network namespace a socket lives in (getsockopt SO_NETNS_COOKIE, Linux 5.14):
// with the accepted socket's peer it is the key take_original_destination needs.
Result<uint64_t> socket_netns_cookie(int socket_fd);

class CaptureMaps {
 public:
  // Opens the maps the agent pinned. Error when they are absent ("no capture maps under X: is
  // the node agent running?").
  static Result<std::unique_ptr<CaptureMaps>> open(const std::string& pin_root);
  virtual ~CaptureMaps() = default;

  // Inbound: SYNs for <pod_ip>:15008 go to the kHbone listener, SYNs for any other port of
  // pod_ip to the kPlaintext one. The map holds the socket, not the fd: closing the listener
  // removes the entry by itself.
  virtual Status set_listener(const asio::ip::address& pod_ip, ListenerKind kind,
                              int listener_fd) = 0;
  virtual void remove_listener(const asio::ip::address& pod_ip, ListenerKind kind) = 0;

  // Outbound: the destination the app asked for, for a connection accepted on 15001 from `peer`
  // (the client socket's address as ztunnel sees it) in the netns with `netns_cookie`. Removes
  // the entry. nullopt when nothing was recorded.
  virtual std::optional<tcp::endpoint> take_original_destination(uint64_t netns_cookie,
                                                                 const tcp::endpoint& peer) = 0;

  // Delivery to the app with the client's source IP: the SYN from `src` to `dst` must not be
  // steered back to ztunnel. Add before connect(), remove once connected (or failed).
  virtual Status add_bypass(const tcp::endpoint& src, const tcp::endpoint& dst) = 0;
  virtual void remove_bypass(const tcp::endpoint& src, const tcp::endpoint& dst) = 0;

  virtual Counters counters() const = 0;
};

}  // namespace zt::bpf
