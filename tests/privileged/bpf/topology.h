// Test scaffolding for the capture programs: two network namespaces joined by a veth ("pod"
// and "peer"), a cgroup v2 folder for the pod's processes and one for the proxy, a bpffs pin
// root, and ways to run code inside them. Every object removes what it created when destroyed,
// also when a test fails half way. Names carry the test pid and a counter.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <optional>
#include <string>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace zt::testing::bpf {

// A unique suffix for this process and call ("<pid>-<n>").
std::string unique_suffix();

// Runs a shell command; the exit status (or -1).
int run_command(const std::string& cmd);

// Pod netns: eth0 10.77.0.2/24 and fd77::2/64; peer netns: eth0 10.77.0.1/24, 10.77.0.3/24
// and fd77::1/64. Both have lo up.
class Topology {
 public:
  static Result<std::unique_ptr<Topology>> create();
  ~Topology();

  const std::string& pod_name() const { return pod_; }
  std::string pod_path() const { return "/var/run/netns/" + pod_; }
  std::string peer_path() const { return "/var/run/netns/" + peer_; }
  int pod_fd() const { return pod_fd_.get(); }
  int peer_fd() const { return peer_fd_.get(); }

 private:
  std::string pod_, peer_;
  UniqueFd pod_fd_, peer_fd_;
};

// <cgroup2 mount>/zt-bpf-test-<suffix>/{pod,proxy}.
class Cgroups {
 public:
  static Result<std::unique_ptr<Cgroups>> create();
  ~Cgroups();
  const std::string& pod_dir() const { return pod_; }
  const std::string& proxy_dir() const { return proxy_; }
  int pod_fd() const { return pod_fd_.get(); }
  int proxy_fd() const { return proxy_fd_.get(); }
  // Moves this whole process into the proxy cgroup and back again around `fn`, so that the
  // sockets `fn` creates belong to the proxy cgroup.
  Status as_proxy(const std::function<void()>& fn) const;

 private:
  std::string root_, pod_, proxy_;
  UniqueFd pod_fd_, proxy_fd_;
};

// /sys/fs/bpf/ambient-mesh-test-<suffix> when /sys/fs/bpf is a bpffs, else a private bpffs
// mounted under /tmp for the test. Destruction runs zt::bpf::remove_pins.
class PinRoot {
 public:
  static Result<std::unique_ptr<PinRoot>> create();
  ~PinRoot();
  const std::string& path() const { return path_; }

 private:
  std::string path_, mount_;
};

// Runs `fn` on a fresh thread inside the netns behind `netns_fd`.
Status in_netns(int netns_fd, const std::function<void()>& fn);

tcp::endpoint to_endpoint(const sockaddr_storage& ss);
void from_endpoint(const tcp::endpoint& ep, sockaddr_storage& ss, socklen_t& len);

// Fixed-size, allocation-free outcome of a client connect (it crosses a fork via a pipe).
struct ConnectOutcome {
  int err = 0;  // errno of the failed step, 0 when connected
  sockaddr_storage local{};
  sockaddr_storage peer{};
};

// Forks a child that joins the pod cgroup, then the pod netns, then runs `fn` and sends its
// outcome back. A pod app process.
Result<ConnectOutcome> run_in_pod(const std::string& cgroup_dir, int netns_fd,
                                  const std::function<ConnectOutcome()>& fn);

// socket(family) + optional bind(src) + connect(dst) with a 3 s timeout; with `keep` the socket
// stays open (returned through *keep).
ConnectOutcome connect_to(const tcp::endpoint& dst, const std::optional<tcp::endpoint>& src = {},
                          int family = 0, UniqueFd* keep = nullptr);

// A listening TCP socket on `ep` (SO_REUSEADDR; IPV6_V6ONLY for v6); `mark` sets SO_MARK.
Result<UniqueFd> listen_on(const tcp::endpoint& ep, uint32_t mark = 0);

// accept() with a timeout; invalid fd on timeout.
UniqueFd accept_within(int listener_fd, int timeout_ms = 3000);

tcp::endpoint local_of(int fd);
tcp::endpoint peer_of(int fd);

}  // namespace zt::testing::bpf
