// configure_delivery_routing(): the policy routing that lets ztunnel deliver to a pod's app with
// the client's source IP (DESIGN §2.4), by rtnetlink and /proc/sys only (no `ip`, no iptables).
//
// A delivery socket is marked kDeliverMark, is IP_TRANSPARENT and binds the client's address.
// The app's replies go to that foreign address; `fwmark <mark> lookup <table>` plus
// `local 0.0.0.0/0 dev lo table <table>` hand them back to the local stack, and
// tcp_fwmark_accept=1 makes the accepted reply path carry the mark of the SYN.
//
// Every file and socket is opened while the thread is inside the pod's namespace: a netlink
// socket talks to the namespace it was created in, and /proc/sys/net files resolve to the
// opener's namespace. The writes and requests then happen on the calling thread's own netns.
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <net/if.h>
#include <unistd.h>

#include "common/netns/netns.h"

namespace zt::netns {
namespace {

// Istio's priority for its in-pod rule (facts §7.4); below the main table's 32766.
constexpr uint32_t kRulePriority = 32764;

std::error_code errno_code(int e) { return {e, std::system_category()}; }

// One rtnetlink request: header, fixed family struct, then u32 attributes. The few messages
// built here fit a small fixed buffer.
class NetlinkMessage {
 public:
  NetlinkMessage(uint16_t type, uint16_t flags) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = flags;
    append(&h, sizeof(h));
  }
  void append(const void* data, size_t len) {
    if (size_ + NLMSG_ALIGN(len) > bytes_.size()) std::abort();  // programmer error
    std::memcpy(bytes_.data() + size_, data, len);
    size_ += NLMSG_ALIGN(len);
  }
  void attr_u32(uint16_t type, uint32_t value) {
    rtattr a{};
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(sizeof(value)));
    a.rta_type = type;
    std::array<uint8_t, RTA_LENGTH(sizeof(uint32_t))> attr{};
    std::memcpy(attr.data(), &a, sizeof(a));
    std::memcpy(attr.data() + RTA_LENGTH(0), &value, sizeof(value));
    append(attr.data(), attr.size());
  }
  // The wire bytes, with length and sequence number filled in.
  const uint8_t* finish(uint32_t seq) {
    nlmsghdr h{};
    std::memcpy(&h, bytes_.data(), sizeof(h));
    h.nlmsg_len = static_cast<uint32_t>(size_);
    h.nlmsg_seq = seq;
    std::memcpy(bytes_.data(), &h, sizeof(h));
    return bytes_.data();
  }
  size_t size() const { return size_; }

 private:
  alignas(nlmsghdr) std::array<uint8_t, 128> bytes_{};
  size_t size_ = 0;
};

// The kernel's extended-ack text (NLMSGERR_ATTR_MSG) after an nlmsgerr, when present.
std::string extended_ack_message(const uint8_t* msg, size_t len, const nlmsghdr& h) {
  if (!(h.nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  // With NETLINK_CAP_ACK the error carries only the original header, not its payload.
  size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nlmsgerr));
  while (off + sizeof(nlattr) <= len) {
    nlattr a{};
    std::memcpy(&a, msg + off, sizeof(a));
    if (a.nla_len < sizeof(nlattr) || off + a.nla_len > len) break;
    if ((a.nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char* s = reinterpret_cast<const char*>(msg + off + NLA_HDRLEN);
      return std::string(s, strnlen(s, a.nla_len - NLA_HDRLEN));
    }
    off += NLA_ALIGN(a.nla_len);
  }
  return "";
}

struct NetlinkError {
  int code = 0;  // positive errno; 0 = success
  std::string text;
};

class Rtnetlink {
 public:
  explicit Rtnetlink(UniqueFd fd) : fd_(std::move(fd)) {
    int one = 1;
    // Best effort: older kernels lack these; errors then carry no text.
    ::setsockopt(fd_.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
    ::setsockopt(fd_.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  }

  // Sends the request and waits for its ACK. A transport failure is an Error; the kernel's
  // answer (0 or an errno) is returned as NetlinkError for the caller to judge (EEXIST is fine).
  Result<NetlinkError> request(NetlinkMessage& msg) {
    uint32_t seq = ++seq_;
    const uint8_t* bytes = msg.finish(seq);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    ssize_t sent;
    do {
      sent = ::sendto(fd_.get(), bytes, msg.size(), 0, reinterpret_cast<const sockaddr*>(&kernel),
                      sizeof(kernel));
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) return fail(errno_code(errno), "send rtnetlink request");
    if (static_cast<size_t>(sent) != msg.size()) return fail("short rtnetlink send");

    alignas(nlmsghdr) std::array<uint8_t, 8192> buf;
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(errno_code(errno), "receive rtnetlink answer");
      if (n == 0) return fail("rtnetlink socket closed");
      size_t off = 0;
      size_t len = static_cast<size_t>(n);
      while (off + sizeof(nlmsghdr) <= len) {
        nlmsghdr h{};
        std::memcpy(&h, buf.data() + off, sizeof(h));
        if (h.nlmsg_len < sizeof(nlmsghdr) || off + h.nlmsg_len > len) {
          return fail("malformed rtnetlink answer");
        }
        if (h.nlmsg_seq == seq && h.nlmsg_type == NLMSG_ERROR) {
          if (h.nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return fail("short rtnetlink ack");
          nlmsgerr e{};
          std::memcpy(&e, buf.data() + off + NLMSG_HDRLEN, sizeof(e));
          NetlinkError out;
          out.code = -e.error;
          if (out.code != 0) out.text = extended_ack_message(buf.data() + off, h.nlmsg_len, h);
          return out;
        }
        off += NLMSG_ALIGN(h.nlmsg_len);
      }
    }
  }

 private:
  UniqueFd fd_;
  uint32_t seq_ = 0;
};

std::string describe(const NetlinkError& e) {
  std::string s = std::strerror(e.code);
  if (!e.text.empty()) s += " (" + e.text + ")";
  return s;
}

// `ip rule add fwmark <mark> lookup <table> pref 32764` for one family.
NetlinkMessage rule_message(uint8_t family, uint32_t mark, uint32_t table) {
  NetlinkMessage m(RTM_NEWRULE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  fib_rule_hdr frh{};
  frh.family = family;
  frh.table = table < 256 ? static_cast<uint8_t>(table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  frh.action = FR_ACT_TO_TBL;
  m.append(&frh, sizeof(frh));
  m.attr_u32(FRA_PRIORITY, kRulePriority);
  m.attr_u32(FRA_FWMARK, mark);
  m.attr_u32(FRA_TABLE, table);
  return m;
}

// `ip route add local <any>/0 dev lo table <table>` for one family.
NetlinkMessage local_route_message(uint8_t family, uint32_t lo_index, uint32_t table) {
  NetlinkMessage m(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  rtmsg r{};
  r.rtm_family = family;
  r.rtm_dst_len = 0;
  r.rtm_table = table < 256 ? static_cast<uint8_t>(table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  r.rtm_protocol = RTPROT_BOOT;
  r.rtm_scope = RT_SCOPE_HOST;
  r.rtm_type = RTN_LOCAL;
  m.append(&r, sizeof(r));
  m.attr_u32(RTA_TABLE, table);
  m.attr_u32(RTA_OIF, lo_index);
  return m;
}

// Runs one step; EEXIST counts as done (idempotent). `tolerate_no_family` accepts
// EAFNOSUPPORT, for IPv6 on a kernel or namespace without it.
Result<bool> step(Rtnetlink& nl, NetlinkMessage msg, const std::string& ns_name,
                  const std::string& what, bool tolerate_no_family) {
  auto answer = nl.request(msg);
  if (!answer) {
    return tl::unexpected(wrap(answer.error(), fmt::format("netns {}: {}", ns_name, what)));
  }
  if (answer->code == 0 || answer->code == EEXIST) return true;
  if (tolerate_no_family && answer->code == EAFNOSUPPORT) return false;
  std::string hint;
  if (answer->code == EPERM) hint = " (needs CAP_NET_ADMIN)";
  if (answer->code == ENETDOWN) hint = " (is lo up in the namespace?)";
  return failf("netns {}: {}: {}{}", ns_name, what, describe(*answer), hint);
}

}  // namespace

Status configure_delivery_routing(const Netns& ns, uint32_t mark, uint32_t table) {
  if (!ns.valid()) return fail("configure delivery routing: invalid netns handle");
  constexpr const char* kFwmarkAccept = "/proc/sys/net/ipv4/tcp_fwmark_accept";
  constexpr const char* kLoDisableIpv6 = "/proc/sys/net/ipv6/conf/lo/disable_ipv6";
  UniqueFd sysctl, ipv6_state, netlink;
  int sysctl_err = 0, ipv6_err = 0, netlink_err = 0;
  unsigned lo_index = 0;
  auto ran = ns.run([&] {
    sysctl.reset(::open(kFwmarkAccept, O_WRONLY | O_CLOEXEC));
    if (!sysctl.valid()) sysctl_err = errno;
    ipv6_state.reset(::open(kLoDisableIpv6, O_RDONLY | O_CLOEXEC));
    if (!ipv6_state.valid()) ipv6_err = errno;
    netlink.reset(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (!netlink.valid()) netlink_err = errno;
    lo_index = ::if_nametoindex("lo");
  });
  if (!ran) return tl::unexpected(wrap(ran.error(), "configure delivery routing"));

  const std::string& name = ns.name();
  if (!sysctl.valid()) {
    return fail(errno_code(sysctl_err), fmt::format("netns {}: open {}", name, kFwmarkAccept));
  }
  ssize_t w;
  do {
    w = ::write(sysctl.get(), "1\n", 2);
  } while (w < 0 && errno == EINTR);
  if (w != 2) {
    return fail(errno_code(w < 0 ? errno : EIO),
                fmt::format("netns {}: write 1 to {}", name, kFwmarkAccept));
  }
  if (!netlink.valid()) {
    return fail(errno_code(netlink_err), fmt::format("netns {}: open rtnetlink socket", name));
  }
  if (lo_index == 0) return failf("netns {}: no loopback interface \"lo\"", name);

  Rtnetlink nl(std::move(netlink));
  auto v4_rule = step(nl, rule_message(AF_INET, mark, table), name,
                      fmt::format("add rule fwmark 0x{:x} lookup {} (IPv4)", mark, table), false);
  if (!v4_rule) return tl::unexpected(v4_rule.error());
  auto v4_route = step(nl, local_route_message(AF_INET, lo_index, table), name,
                       fmt::format("add route local 0.0.0.0/0 dev lo table {}", table), false);
  if (!v4_route) return tl::unexpected(v4_route.error());

  // IPv6 only when lo has it: the file is absent without IPv6, and reads 1 when disabled.
  if (!ipv6_state.valid()) {
    if (ipv6_err == ENOENT) return {};
    return fail(errno_code(ipv6_err), fmt::format("netns {}: open {}", name, kLoDisableIpv6));
  }
  char state[8] = {};
  ssize_t r = ::read(ipv6_state.get(), state, sizeof(state) - 1);
  if (r > 0 && state[0] != '0') return {};

  auto v6_rule = step(nl, rule_message(AF_INET6, mark, table), name,
                      fmt::format("add rule fwmark 0x{:x} lookup {} (IPv6)", mark, table), true);
  if (!v6_rule) return tl::unexpected(v6_rule.error());
  if (!*v6_rule) return {};
  auto v6_route = step(nl, local_route_message(AF_INET6, lo_index, table), name,
                       fmt::format("add route local ::/0 dev lo table {}", table), true);
  if (!v6_route) return tl::unexpected(v6_route.error());
  return {};
}

}  // namespace zt::netns
