#include "common/pcap/capture.h"

#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>

#include <net/if.h>
#include <poll.h>
#include <unistd.h>

namespace zt::pcap {
namespace {

std::error_code errno_code() { return std::error_code(errno, std::system_category()); }

Status attach_net24_filter(int fd, const asio::ip::address_v4& net24) {
  // Classic BPF: keep IPv4 packets whose source or destination is in net24, whole.
  const uint32_t net = net24.to_uint() & 0xffffff00u;
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),               // ethertype
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 7),  // not IPv4: drop
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 14 + 12),          // source address
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xffffff00u),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, net, 3, 0),  // in net24: keep
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 14 + 16),     // destination address
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xffffff00u),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, net, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),  // keep
      BPF_STMT(BPF_RET | BPF_K, 0),            // drop
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
    return fail(errno_code(), "SO_ATTACH_FILTER");
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Capture>> Capture::start(const CaptureOptions& options) {
  std::unique_ptr<Capture> c(new Capture());
  c->include_outgoing_ = options.include_outgoing;
  const std::string where = options.netns ? " in " + options.netns->name() : std::string();

  // Protocol 0: the socket receives nothing until bind(), so no packet gets in before the
  // filter is attached. The interface index is looked up in the namespace it belongs to.
  int fd = -1;
  unsigned ifindex = 0;
  int socket_errno = 0, index_errno = 0;
  auto open = [&] {
    fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) socket_errno = errno;
    ifindex = ::if_nametoindex(options.interface.c_str());
    if (ifindex == 0) index_errno = errno;
  };
  if (options.netns) {
    if (auto st = options.netns->run(open); !st) return tl::unexpected(st.error());
  } else {
    open();
  }
  c->fd_.reset(fd);
  if (!c->fd_) {
    return fail(std::error_code(socket_errno, std::system_category()),
                "socket(AF_PACKET, SOCK_RAW)" + where + " (needs CAP_NET_RAW)");
  }
  if (ifindex == 0) {
    return fail(std::error_code(index_errno, std::system_category()),
                "no interface " + options.interface + where);
  }
  if (options.ipv4_net24) {
    if (auto st = attach_net24_filter(c->fd_.get(), *options.ipv4_net24); !st)
      return tl::unexpected(st.error());
  }
  // Room for a whole exchange even if the reader thread falls behind (drops are counted).
  int rcvbuf = 32 << 20;
  if (::setsockopt(c->fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0) {
    ::setsockopt(c->fd_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  if (!options.include_outgoing) {
    // Best effort (Linux 4.20+); the reader also skips PACKET_OUTGOING frames.
    int one = 1;
    ::setsockopt(c->fd_.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(ifindex);
  if (::bind(c->fd_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
    return fail(errno_code(), "bind(AF_PACKET, " + options.interface + ")" + where);
  }
  c->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!c->wake_) return fail(errno_code(), "eventfd");
  c->thread_ = std::thread([raw = c.get()] { raw->read_loop(); });
  return c;
}

Capture::~Capture() { stop(); }

std::vector<std::string> Capture::stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    ssize_t w = ::write(wake_.get(), &one, sizeof(one));
    (void)w;
    thread_.join();
    tpacket_stats stats{};
    socklen_t len = sizeof(stats);
    if (::getsockopt(fd_.get(), SOL_PACKET, PACKET_STATISTICS, &stats, &len) == 0) {
      drops_ = stats.tp_drops;
    }
  }
  std::lock_guard lock(mu_);
  return frames_;
}

void Capture::read_loop() {
  std::vector<char> buf(256 * 1024);
  for (;;) {
    pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      error_ = "poll: " + errno_code().message();
      return;
    }
    const bool stopping = (fds[1].revents & POLLIN) != 0;
    for (;;) {
      sockaddr_ll from{};
      socklen_t from_len = sizeof(from);
      ssize_t n = ::recvfrom(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC,
                             reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        error_ = "recvfrom: " + errno_code().message();
        return;
      }
      if (static_cast<size_t>(n) > buf.size()) {
        ++truncated_;
        continue;
      }
      if (!include_outgoing_ && from.sll_pkttype == PACKET_OUTGOING) continue;
      std::lock_guard lock(mu_);
      frames_.emplace_back(buf.data(), static_cast<size_t>(n));
    }
    if (stopping) return;
  }
}

}  // namespace zt::pcap
