#include "tests/privileged/bpf/topology.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include "bpf/loader/capture.h"

namespace zt::testing::bpf {
namespace {

constexpr const char* kCgroup2 = "/sys/fs/cgroup/unified";
constexpr uint64_t kBpfFsMagic = 0xcafe4a11;

Status write_file(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return failf("writing '{}' to {}: {}", value, path, std::strerror(errno));
  }
  return {};
}

}  // namespace

std::string unique_suffix() {
  static std::atomic<int> n{0};
  return fmt::format("{}-{}", ::getpid(), n++);
}

int run_command(const std::string& cmd) {
  const int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  if (rc == -1 || !WIFEXITED(rc)) return -1;
  return WEXITSTATUS(rc);
}

Result<std::unique_ptr<Topology>> Topology::create() {
  auto t = std::make_unique<Topology>();
  const std::string s = unique_suffix();
  t->pod_ = "ztbpf-" + s + "-pod";
  t->peer_ = "ztbpf-" + s + "-peer";
  const std::string pod = " -n " + t->pod_ + " ", peer = " -n " + t->peer_ + " ";
  const std::string cmds[] = {
      "ip netns add " + t->pod_,
      "ip netns add " + t->peer_,
      "ip" + pod + "link add eth0 type veth peer name eth0 netns " + t->peer_,
      "ip" + pod + "link set lo up",
      "ip" + peer + "link set lo up",
      "ip" + pod + "addr add 10.77.0.2/24 dev eth0",
      "ip" + pod + "addr add fd77::2/64 dev eth0 nodad",
      "ip" + peer + "addr add 10.77.0.1/24 dev eth0",
      "ip" + peer + "addr add 10.77.0.3/24 dev eth0",
      "ip" + peer + "addr add fd77::1/64 dev eth0 nodad",
      "ip" + pod + "link set eth0 up",
      "ip" + peer + "link set eth0 up",
  };
  for (const auto& c : cmds) {
    if (run_command(c) != 0) return failf("topology: '{}' failed", c);
  }
  t->pod_fd_.reset(::open(t->pod_path().c_str(), O_RDONLY | O_CLOEXEC));
  t->peer_fd_.reset(::open(t->peer_path().c_str(), O_RDONLY | O_CLOEXEC));
  if (!t->pod_fd_ || !t->peer_fd_) return failf("opening netns files: {}", std::strerror(errno));
  return t;
}

Topology::~Topology() {
  pod_fd_.reset();
  peer_fd_.reset();
  if (!pod_.empty()) run_command("ip netns del " + pod_);
  if (!peer_.empty()) run_command("ip netns del " + peer_);
}

Result<std::unique_ptr<Cgroups>> Cgroups::create() {
  auto c = std::make_unique<Cgroups>();
  c->root_ = std::string(kCgroup2) + "/zt-bpf-test-" + unique_suffix();
  c->pod_ = c->root_ + "/pod";
  c->proxy_ = c->root_ + "/proxy";
  for (const auto& d : {c->root_, c->pod_, c->proxy_}) {
    if (::mkdir(d.c_str(), 0755) != 0) return failf("mkdir {}: {}", d, std::strerror(errno));
  }
  c->pod_fd_.reset(::open(c->pod_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  c->proxy_fd_.reset(::open(c->proxy_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!c->pod_fd_ || !c->proxy_fd_) return failf("opening cgroups: {}", std::strerror(errno));
  return c;
}

Cgroups::~Cgroups() {
  pod_fd_.reset();
  proxy_fd_.reset();
  // Pod processes are reaped by run_in_pod, so the folders are empty by now; retry briefly in
  // case the kernel is still tearing an exited child down.
  for (const auto& d : {proxy_, pod_, root_}) {
    if (d.empty()) continue;
    for (int i = 0; i < 50 && ::rmdir(d.c_str()) != 0 && errno == EBUSY; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

Status Cgroups::as_proxy(const std::function<void()>& fn) const {
  std::ifstream in("/proc/self/cgroup");
  std::string line, original;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) original = line.substr(3);
  }
  if (original.empty()) return fail("no cgroup v2 entry in /proc/self/cgroup");
  const std::string pid = std::to_string(::getpid());
  if (auto st = write_file(proxy_ + "/cgroup.procs", pid); !st) return st;
  fn();
  return write_file(std::string(kCgroup2) + original + "/cgroup.procs", pid);
}

Result<std::unique_ptr<PinRoot>> PinRoot::create() {
  auto p = std::make_unique<PinRoot>();
  const std::string s = unique_suffix();
  struct statfs fs {};
  if (::statfs("/sys/fs/bpf", &fs) == 0 && static_cast<uint64_t>(fs.f_type) == kBpfFsMagic) {
    p->path_ = "/sys/fs/bpf/ambient-mesh-test-" + s;
    return p;
  }
  // No bpffs at /sys/fs/bpf on this machine: a private instance for this test only.
  const std::string m = "/tmp/zt-bpffs-" + s;
  if (::mkdir(m.c_str(), 0700) != 0) return failf("mkdir {}: {}", m, std::strerror(errno));
  if (::mount("bpf", m.c_str(), "bpf", 0, nullptr) != 0) {
    const int err = errno;
    ::rmdir(m.c_str());
    return failf("mount -t bpf {}: {}", m, std::strerror(err));
  }
  p->mount_ = m;
  p->path_ = m + "/ambient-mesh-test";
  return p;
}

PinRoot::~PinRoot() {
  if (!path_.empty()) (void)zt::bpf::remove_pins(path_);
  if (!mount_.empty()) {
    ::umount2(mount_.c_str(), MNT_DETACH);
    ::rmdir(mount_.c_str());
  }
}

Status in_netns(int netns_fd, const std::function<void()>& fn) {
  Status out;
  std::thread t([&] {
    if (::setns(netns_fd, CLONE_NEWNET) != 0) {
      out = failf("setns: {}", std::strerror(errno));
      return;
    }
    fn();
  });
  t.join();
  return out;
}

tcp::endpoint to_endpoint(const sockaddr_storage& ss) {
  tcp::endpoint ep;
  const size_t len = ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return ep;
  std::memcpy(ep.data(), &ss, len);
  ep.resize(len);
  return ep;
}

void from_endpoint(const tcp::endpoint& ep, sockaddr_storage& ss, socklen_t& len) {
  std::memset(&ss, 0, sizeof(ss));
  len = static_cast<socklen_t>(ep.size());
  std::memcpy(&ss, ep.data(), len);
}

Result<ConnectOutcome> run_in_pod(const std::string& cgroup_dir, int netns_fd,
                                  const std::function<ConnectOutcome()>& fn) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return failf("pipe: {}", std::strerror(errno));
  const std::string procs = cgroup_dir + "/cgroup.procs";
  const pid_t pid = ::fork();
  if (pid < 0) return failf("fork: {}", std::strerror(errno));
  if (pid == 0) {
    // Child: only syscalls until fn (which does sockets only).
    ::close(fds[0]);
    ConnectOutcome o;
    char buf[16];
    int n = 0;
    for (pid_t v = ::getpid(); v > 0; v /= 10) buf[n++] = static_cast<char>('0' + v % 10);
    char digits[16];
    for (int i = 0; i < n; ++i) digits[i] = buf[n - 1 - i];
    const int cg = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (cg < 0 || ::write(cg, digits, static_cast<size_t>(n)) != n) {
      o.err = -1000 - errno;
    } else if (::setns(netns_fd, CLONE_NEWNET) != 0) {
      o.err = -2000 - errno;
    } else {
      o = fn();
    }
    (void)!::write(fds[1], &o, sizeof(o));
    ::_exit(0);
  }
  ::close(fds[1]);
  UniqueFd rd(fds[0]);
  ConnectOutcome o;
  pollfd p{rd.get(), POLLIN, 0};
  ssize_t got = -1;
  if (::poll(&p, 1, 10000) == 1) got = ::read(rd.get(), &o, sizeof(o));
  if (got != static_cast<ssize_t>(sizeof(o))) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (got != static_cast<ssize_t>(sizeof(o))) return fail("pod process gave no result");
  if (o.err <= -1000) return failf("pod process set-up failed: {}", o.err);
  return o;
}

ConnectOutcome connect_to(const tcp::endpoint& dst, const std::optional<tcp::endpoint>& src,
                          int family, UniqueFd* keep) {
  ConnectOutcome o;
  if (family == 0) family = dst.address().is_v4() ? AF_INET : AF_INET6;
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) {
    o.err = errno;
    return o;
  }
  timeval tv{3, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_storage ss;
  socklen_t len;
  if (src) {
    from_endpoint(*src, ss, len);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      o.err = errno;
      return o;
    }
  }
  from_endpoint(dst, ss, len);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    o.err = errno;
    return o;
  }
  len = sizeof(o.local);
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&o.local), &len);
  len = sizeof(o.peer);
  ::getpeername(s.get(), reinterpret_cast<sockaddr*>(&o.peer), &len);
  if (keep) *keep = std::move(s);
  return o;
}

Result<UniqueFd> listen_on(const tcp::endpoint& ep, uint32_t mark) {
  const int family = ep.address().is_v4() ? AF_INET : AF_INET6;
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return failf("socket: {}", std::strerror(errno));
  int one = 1;
  ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (mark != 0 && ::setsockopt(s.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
    return failf("SO_MARK: {}", std::strerror(errno));
  }
  sockaddr_storage ss;
  socklen_t len;
  from_endpoint(ep, ss, len);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return failf("bind {}:{}: {}", ep.address().to_string(), ep.port(), std::strerror(errno));
  }
  if (::listen(s.get(), 64) != 0) return failf("listen: {}", std::strerror(errno));
  return s;
}

UniqueFd accept_within(int listener_fd, int timeout_ms) {
  pollfd p{listener_fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return UniqueFd();
  return UniqueFd(::accept4(listener_fd, nullptr, nullptr, SOCK_CLOEXEC));
}

tcp::endpoint local_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return to_endpoint(ss);
}

tcp::endpoint peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return to_endpoint(ss);
}

}  // namespace zt::testing::bpf
