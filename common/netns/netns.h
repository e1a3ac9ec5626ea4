// Network namespaces: an open netns handle, running code inside one, and the per-pod network
// set-up ztunnel's delivery needs (DESIGN §2.4), all without iptables or the `ip` binary.
//
// ztunnel serves every enrolled pod from one process: it creates each pod's sockets after
// setns(CLONE_NEWNET) on the calling thread and switches back; a socket keeps the namespace it
// was created in. The node agent uses the same handle to prepare a pod's routing.
//
// Needs CAP_SYS_ADMIN for setns and CAP_NET_ADMIN for routing rules; every error names the
// namespace (its path or "fd N") and the step that failed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace zt::netns {

// Marks (SO_MARK) of ztunnel's sockets, Istio's values: 0x539 on everything ztunnel opens in a
// pod (listeners, HBONE and passthrough upstreams), 0x53a on delivery sockets to the pod's app
// that carry the client's source IP.
inline constexpr uint32_t kProxyMark = 0x539;
inline constexpr uint32_t kDeliverMark = 0x53a;
// Policy-routing table that sends replies to spoofed sources back to the local stack.
inline constexpr uint32_t kDeliverRouteTable = 100;

class Netns {
 public:
  Netns() = default;

  // Opens /proc/<pid>/ns/net, /var/run/netns/<name> or any nsfs path; checks it is a network
  // namespace (ioctl NS_GET_NSTYPE).
  static Result<Netns> open(const std::string& path);
  // Takes ownership of an fd (one received over ZDS) after the same check; closes it on error.
  static Result<Netns> adopt(UniqueFd fd);
  // The calling thread's current network namespace.
  static Result<Netns> current();

  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  // Identity of the namespace (nsfs inode and device): two handles to one netns compare equal.
  uint64_t inode() const { return inode_; }
  uint64_t device() const { return device_; }
  bool same_as(const Netns& o) const { return inode_ == o.inode_ && device_ == o.device_; }
  // Where it was opened from ("fd N" when adopted), for messages.
  const std::string& name() const { return name_; }
  // Another handle to the same namespace (dup of the fd).
  Result<Netns> duplicate() const;

  // Runs `fn` on the calling thread inside this namespace, then switches the thread back to
  // the namespace it was in. An error from either setns is returned and `fn` is not run (or,
  // when switching back fails, the thread is left unusable and the process aborts: running
  // later work in the wrong namespace would be a security bug).
  Status run(const std::function<void()>& fn) const;

  // A socket of `type` (SOCK_STREAM, ...) created inside this namespace, close-on-exec and
  // non-blocking, with SO_MARK `mark` when non-zero.
  Result<UniqueFd> socket(int family, int type, uint32_t mark = 0) const;

  // SO_NETNS_COOKIE of this namespace (what the eBPF maps use as its key).
  Result<uint64_t> cookie() const;

  // The addresses configured on its interfaces except loopback (a pod's IPs).
  Result<std::vector<asio::ip::address>> addresses() const;

 private:
  UniqueFd fd_;
  uint64_t inode_ = 0;
  uint64_t device_ = 0;
  std::string name_;
};

// SO_NETNS_COOKIE of the namespace a socket lives in.
Result<uint64_t> socket_netns_cookie(int fd);

// Makes delivery with the client's source IP work in a pod's namespace (DESIGN §2.4), by
// netlink and /proc/sys only: net.ipv4.tcp_fwmark_accept=1, `ip rule fwmark <mark> lookup
// <table>` and `local 0.0.0.0/0 dev lo table <table>`, and the IPv6 equivalents when the
// namespace has IPv6. Idempotent (existing rules and routes are kept, not duplicated).
Status configure_delivery_routing(const Netns& ns, uint32_t mark = kDeliverMark,
                                  uint32_t table = kDeliverRouteTable);

}  // namespace zt::netns
