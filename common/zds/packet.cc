// ZDS framing: one message per SOCK_SEQPACKET packet, at most one fd in SCM_RIGHTS.
//
// Invariant: every fd the kernel installs in this process on receive is wrapped in a UniqueFd
// before anything else is looked at, so no error path leaks one.
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <system_error>

#include <unistd.h>

#include "common/zds/packet_internal.h"
#include "common/zds/zds.h"

namespace zt::zds {
namespace {

std::error_code errno_code(int e) { return {e, std::system_category()}; }

// Room for more fds than allowed so that "2 fds" is reported as such, not as MSG_CTRUNC.
constexpr size_t kMaxFdsTaken = 16;

}  // namespace

Status send_packet(int sock, const std::string& bytes, int fd) {
  // A zero-length packet reads as a closed connection on the other side.
  if (bytes.empty()) return fail("send packet: empty message");
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return fail(errno_code(errno), fmt::format("send packet of {} bytes{}", bytes.size(),
                                               fd >= 0 ? " with an fd" : ""));
  }
  if (static_cast<size_t>(n) != bytes.size()) {
    return failf("send packet: sent {} of {} bytes", n, bytes.size());
  }
  return {};
}

namespace detail {

Result<RawPacket> recv_raw(int sock, size_t max_size, bool dont_wait) {
  RawPacket p;
  p.bytes.resize(max_size > 0 ? max_size : 1);
  iovec iov{p.bytes.data(), p.bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsTaken)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  int flags = MSG_CMSG_CLOEXEC | (dont_wait ? MSG_DONTWAIT : 0);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail(errno_code(errno), "receive packet");

  // Take ownership of the fds first.
  if (msg.msg_controllen > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* data = CMSG_DATA(c);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
        p.fds.emplace_back(fd);
      }
    }
  }
  p.truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  p.control_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  if (n == 0 && !p.truncated && p.fds.empty() && !p.control_truncated) {
    p.closed = true;
    p.bytes.clear();
    return p;
  }
  p.bytes.resize(p.truncated ? 0 : static_cast<size_t>(n));
  return p;
}

Waker::Waker() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void Waker::wake() const {
  uint64_t one = 1;
  ssize_t r = ::write(fd_.get(), &one, sizeof(one));
  (void)r;  // EAGAIN means it is already signalled
}

void Waker::drain() const {
  uint64_t v;
  ssize_t r = ::read(fd_.get(), &v, sizeof(v));
  (void)r;
}

}  // namespace detail

Result<Packet> recv_packet(int sock, size_t max_size) {
  auto raw = detail::recv_raw(sock, max_size, false);
  if (!raw) return tl::unexpected(raw.error());
  if (raw->closed) return fail("peer closed the connection");
  if (raw->truncated) return failf("packet larger than {} bytes (truncated)", max_size);
  if (raw->control_truncated) {
    return failf("packet carries more than {} fds (control data truncated)", kMaxFdsTaken);
  }
  if (raw->fds.size() > 1) {
    return failf("packet carries {} fds, at most 1 allowed", raw->fds.size());
  }
  Packet p;
  p.bytes = std::move(raw->bytes);
  p.fds = std::move(raw->fds);
  return p;
}

}  // namespace zt::zds
