// Netns handles, running code inside a namespace, sockets made there, cookies and addresses.
//
// Invariant: a thread that entered another namespace in run() always returns to the namespace
// it came from before run() returns; if it cannot, the process aborts rather than let later work
// run in the wrong namespace.
#include "common/netns/netns.h"

#include <linux/magic.h>
#include <linux/nsfs.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include "common/base/log.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace zt::netns {
namespace {

std::error_code errno_code(int e) { return {e, std::system_category()}; }

// Checks that `fd` is a network namespace. The NS_GET_NSTYPE ioctl answers directly (Linux 4.11+);
// where it is missing, an nsfs file whose /proc/self/fd link reads "net:[...]" is one.
Status check_network_namespace(int fd, const std::string& name) {
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type >= 0) {
    if (type != CLONE_NEWNET) {
      return failf("{} is a namespace but not a network namespace (type 0x{:x})", name, type);
    }
    return {};
  }
  int e = errno;
  if (e != ENOTTY && e != EINVAL && e != ENOSYS) {
    return fail(errno_code(e), fmt::format("{} is not a namespace (ioctl NS_GET_NSTYPE)", name));
  }
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) {
    return fail(errno_code(errno), fmt::format("fstatfs of {}", name));
  }
  if (static_cast<unsigned long>(fs.f_type) != NSFS_MAGIC) {
    return failf("{} is not a namespace file (not on nsfs)", name);
  }
  std::array<char, 64> link{};
  auto proc = fmt::format("/proc/self/fd/{}", fd);
  ssize_t n = ::readlink(proc.c_str(), link.data(), link.size() - 1);
  if (n > 0 && std::string_view(link.data(), static_cast<size_t>(n)).rfind("net:[", 0) != 0) {
    return failf("{} is a namespace but not a network namespace ({})", name,
                 std::string_view(link.data(), static_cast<size_t>(n)));
  }
  return {};
}

[[noreturn]] void abort_wrong_namespace(const std::string& back_to, int e) {
  // Logged and printed: the logger may not be set up in every binary that uses this.
  ZT_LOG_ERROR("component=netns cannot switch this thread back to {} after setns: {}; aborting",
               back_to, std::strerror(e));
  std::fprintf(stderr,
               "fatal: netns: cannot switch thread back to %s after setns: %s; aborting so no "
               "work runs in the wrong network namespace\n",
               back_to.c_str(), std::strerror(e));
  std::abort();
}

}  // namespace

Result<Netns> Netns::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno_code(errno), fmt::format("open network namespace {}", path));
  UniqueFd owned(fd);
  if (auto ok = check_network_namespace(fd, path); !ok) return tl::unexpected(ok.error());
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(errno_code(errno), fmt::format("fstat of {}", path));
  Netns ns;
  ns.fd_ = std::move(owned);
  ns.inode_ = st.st_ino;
  ns.device_ = st.st_dev;
  ns.name_ = path;
  return ns;
}

Result<Netns> Netns::adopt(UniqueFd fd) {
  if (!fd.valid()) return fail("adopt network namespace: no fd");
  std::string name = fmt::format("fd {}", fd.get());
  // A received fd should already be close-on-exec; make sure (it outlives exec otherwise).
  int flags = ::fcntl(fd.get(), F_GETFD);
  if (flags < 0) return fail(errno_code(errno), fmt::format("adopt network namespace {}", name));
  if (!(flags & FD_CLOEXEC)) ::fcntl(fd.get(), F_SETFD, flags | FD_CLOEXEC);
  if (auto ok = check_network_namespace(fd.get(), name); !ok) return tl::unexpected(ok.error());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return fail(errno_code(errno), fmt::format("fstat of {}", name));
  }
  Netns ns;
  ns.fd_ = std::move(fd);
  ns.inode_ = st.st_ino;
  ns.device_ = st.st_dev;
  ns.name_ = std::move(name);
  return ns;
}

Result<Netns> Netns::current() { return open("/proc/thread-self/ns/net"); }

Result<Netns> Netns::duplicate() const {
  if (!valid()) return fail("duplicate network namespace: invalid handle");
  int fd = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return fail(errno_code(errno), fmt::format("duplicate network namespace {}", name_));
  Netns ns;
  ns.fd_ = UniqueFd(fd);
  ns.inode_ = inode_;
  ns.device_ = device_;
  ns.name_ = name_;
  return ns;
}

Status Netns::run(const std::function<void()>& fn) const {
  if (!valid()) return fail("run in network namespace: invalid handle");
  auto here = current();
  if (!here) return tl::unexpected(wrap(here.error(), "run in network namespace " + name_));
  if (here->same_as(*this)) {
    fn();
    return {};
  }
  if (::setns(fd_.get(), CLONE_NEWNET) != 0) {
    return fail(errno_code(errno),
                fmt::format("setns into network namespace {} (needs CAP_SYS_ADMIN)", name_));
  }
  // Switch back even if fn throws.
  struct Back {
    const Netns& to;
    ~Back() {
      if (::setns(to.fd(), CLONE_NEWNET) != 0) abort_wrong_namespace(to.name(), errno);
    }
  } back{*here};
  fn();
  return {};
}

Result<UniqueFd> Netns::socket(int family, int type, uint32_t mark) const {
  UniqueFd sock;
  int err = 0;
  auto ran = run([&] {
    int fd = ::socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) err = errno;
    sock.reset(fd);
  });
  if (!ran) return tl::unexpected(ran.error());
  if (!sock.valid()) {
    return fail(errno_code(err), fmt::format("socket(family {}, type {}) in network namespace {}",
                                             family, type, name_));
  }
  if (mark != 0 && ::setsockopt(sock.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
    return fail(errno_code(errno),
                fmt::format("SO_MARK 0x{:x} on a socket in network namespace {} (needs "
                            "CAP_NET_ADMIN or CAP_NET_RAW)",
                            mark, name_));
  }
  return sock;
}

Result<uint64_t> Netns::cookie() const {
  // Any socket carries its namespace's cookie; a unix datagram socket exists in every netns.
  auto sock = socket(AF_UNIX, SOCK_DGRAM);
  if (!sock) return tl::unexpected(wrap(sock.error(), "netns cookie"));
  auto c = socket_netns_cookie(sock->get());
  if (!c) return tl::unexpected(wrap(c.error(), "netns cookie of " + name_));
  return c;
}

Result<uint64_t> socket_netns_cookie(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    return fail(errno_code(errno), fmt::format("getsockopt SO_NETNS_COOKIE on fd {}", fd));
  }
  if (len != sizeof(cookie)) {
    return failf("getsockopt SO_NETNS_COOKIE on fd {}: unexpected length {}", fd, len);
  }
  return cookie;
}

Result<std::vector<asio::ip::address>> Netns::addresses() const {
  struct ifaddrs* list = nullptr;
  int err = 0;
  auto ran = run([&] {
    if (::getifaddrs(&list) != 0) err = errno;
  });
  if (!ran) return tl::unexpected(ran.error());
  if (err != 0) {
    return fail(errno_code(err), fmt::format("getifaddrs in network namespace {}", name_));
  }
  std::vector<asio::ip::address> out;
  for (auto* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    if (ifa->ifa_addr == nullptr) continue;
    if (ifa->ifa_flags & IFF_LOOPBACK) continue;
    if (ifa->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(ifa->ifa_addr);
      asio::ip::address_v4 a(ntohl(sin->sin_addr.s_addr));
      if (a.is_loopback()) continue;
      out.emplace_back(a);
    } else if (ifa->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ifa->ifa_addr);
      asio::ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), &sin6->sin6_addr, bytes.size());
      asio::ip::address_v6 a(bytes);
      if (a.is_loopback() || a.is_link_local()) continue;
      out.emplace_back(a);
    }
  }
  ::freeifaddrs(list);
  return out;
}

}  // namespace zt::netns
