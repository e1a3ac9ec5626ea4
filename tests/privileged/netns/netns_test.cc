// zt::netns against the real kernel: namespaces created by the test with `ip netns add`
// (named ztns-<pid>-<n>, deleted by an RAII guard even when a test fails), sockets created inside
// them, cookies, addresses, and the delivery routing that lets a transparent socket with the
// delivery mark connect from a foreign source address.
#include "common/netns/netns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include "tests/support/privileges.h"

namespace zt::netns {
namespace {

using zt::testing::Capability;
using zt::testing::has_capability;

int sh(const std::string& cmd) {
  int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string output_of(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

size_t count_of(const std::string& haystack, const std::string& needle) {
  size_t count = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1)) {
    ++count;
  }
  return count;
}

bool can_create_namespaces() {
  return has_capability(Capability::kSysAdmin) && has_capability(Capability::kNetAdmin) &&
         sh("command -v ip") == 0;
}

constexpr const char* kNeeds =
    "needs CAP_SYS_ADMIN, CAP_NET_ADMIN and the `ip` tool to create network namespaces";

// A network namespace that exists for the life of the object.
class TestNamespace {
 public:
  TestNamespace() {
    static std::atomic<int> counter{0};
    name_ = fmt::format("ztns-{}-{}", ::getpid(), counter++);
    created_ = sh("ip netns add " + name_) == 0;
  }
  ~TestNamespace() {
    if (created_) sh("ip netns del " + name_);
  }
  bool created() const { return created_; }
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // Runs `ip -n <name> <args>`; true on success.
  bool ip(const std::string& args) const { return sh("ip -n " + name_ + " " + args) == 0; }
  std::string ip_output(const std::string& args) const {
    return output_of("ip -n " + name_ + " " + args);
  }

 private:
  std::string name_;
  bool created_ = false;
};

uint16_t local_port(int fd) {
  sockaddr_in sin{};
  socklen_t len = sizeof(sin);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  return ntohs(sin.sin_port);
}

sockaddr_in v4(const char* ip, uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  ::inet_pton(AF_INET, ip, &sin.sin_addr);
  return sin;
}

// Non-blocking connect; true when established within `timeout_ms`.
bool connect_within(int fd, const sockaddr_in& to, int timeout_ms) {
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
  if (rc != 0 && errno != EINPROGRESS) return false;
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0;
}

TEST(NetnsOpen, RejectsFilesThatAreNotNetworkNamespaces) {
  auto uts = Netns::open("/proc/self/ns/uts");
  ASSERT_FALSE(uts);
  EXPECT_NE(uts.error().message.find("not a network namespace"), std::string::npos)
      << uts.error().describe();
  auto plain = Netns::open("/proc/self/status");
  ASSERT_FALSE(plain);
  EXPECT_NE(plain.error().describe().find("/proc/self/status"), std::string::npos);
  auto missing = Netns::open("/run/netns/does-not-exist-zt");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().describe().find("does-not-exist-zt"), std::string::npos);

  int fd = ::open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(Netns::adopt(UniqueFd(fd)));
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "adopt must close the fd it rejects";
}

TEST(NetnsOpen, SameNamespaceComparesEqualThroughAnyHandle) {
  auto a = Netns::open("/proc/self/ns/net");
  auto b = Netns::current();
  ASSERT_TRUE(a) << a.error().describe();
  ASSERT_TRUE(b) << b.error().describe();
  EXPECT_TRUE(a->same_as(*b));
  auto c = a->duplicate();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->same_as(*a));
  EXPECT_NE(c->fd(), a->fd());
  int dup = ::fcntl(a->fd(), F_DUPFD_CLOEXEC, 0);
  auto adopted = Netns::adopt(UniqueFd(dup));
  ASSERT_TRUE(adopted) << adopted.error().describe();
  EXPECT_TRUE(adopted->same_as(*a));
  EXPECT_EQ(adopted->name(), fmt::format("fd {}", dup));
}

TEST(Netns, RunAndSocketLandInTheNamespaceAndTheThreadComesBack) {
  ZT_REQUIRE_PRIVILEGE(can_create_namespaces(), kNeeds);
  TestNamespace t;
  ASSERT_TRUE(t.created());
  ASSERT_TRUE(t.ip("link set lo up"));
  auto ns = Netns::open(t.path());
  ASSERT_TRUE(ns) << ns.error().describe();
  auto root = Netns::current();
  ASSERT_TRUE(root);
  EXPECT_FALSE(ns->same_as(*root));

  bool inside = false;
  auto ran = ns->run([&] {
    auto here = Netns::current();
    inside = here && here->same_as(*ns);
  });
  ASSERT_TRUE(ran) << ran.error().describe();
  EXPECT_TRUE(inside);
  auto after = Netns::current();
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->same_as(*root)) << "run() must switch the thread back";

  auto listener = ns->socket(AF_INET, SOCK_STREAM, kProxyMark);
  ASSERT_TRUE(listener) << listener.error().describe();
  EXPECT_TRUE(::fcntl(listener->get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(::fcntl(listener->get(), F_GETFL) & O_NONBLOCK);
  uint32_t mark = 0;
  socklen_t len = sizeof(mark);
  ASSERT_EQ(::getsockopt(listener->get(), SOL_SOCKET, SO_MARK, &mark, &len), 0);
  EXPECT_EQ(mark, kProxyMark);
  auto addr = v4("127.0.0.1", 0);
  ASSERT_EQ(::bind(listener->get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener->get(), 8), 0);
  uint16_t port = local_port(listener->get());

  // From inside the namespace the listener answers ...
  auto inner = ns->socket(AF_INET, SOCK_STREAM);
  ASSERT_TRUE(inner);
  EXPECT_TRUE(connect_within(inner->get(), v4("127.0.0.1", port), 2000));
  // ... from the root namespace the same address and port is someone else's loopback.
  auto outer = root->socket(AF_INET, SOCK_STREAM);
  ASSERT_TRUE(outer);
  auto root_cookie = root->cookie();
  auto ns_cookie = ns->cookie();
  ASSERT_TRUE(root_cookie && ns_cookie);
  ASSERT_EQ(*socket_netns_cookie(outer->get()), *root_cookie);
  pollfd p{listener->get(), POLLIN, 0};
  connect_within(outer->get(), v4("127.0.0.1", port), 300);
  // The one pending connection is the inner one; accept it, and nothing else is queued.
  ASSERT_EQ(::poll(&p, 1, 1000), 1);
  UniqueFd accepted(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted.valid());
  EXPECT_EQ(*socket_netns_cookie(accepted.get()), *ns_cookie);
  UniqueFd none(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_FALSE(none.valid()) << "a root-namespace connect reached the pod's listener";
}

TEST(Netns, CookieDiffersBetweenNamespacesAndMatchesSocketsMadeInside) {
  ZT_REQUIRE_PRIVILEGE(can_create_namespaces(), kNeeds);
  TestNamespace a, b;
  ASSERT_TRUE(a.created() && b.created());
  auto na = Netns::open(a.path());
  auto nb = Netns::open(b.path());
  auto root = Netns::current();
  ASSERT_TRUE(na && nb && root);
  auto ca = na->cookie();
  auto cb = nb->cookie();
  auto cr = root->cookie();
  ASSERT_TRUE(ca && cb && cr) << (ca ? "" : ca.error().describe());
  EXPECT_NE(*ca, *cb);
  EXPECT_NE(*ca, *cr);
  EXPECT_NE(*cb, *cr);
  auto again = Netns::open(a.path());
  ASSERT_TRUE(again);
  EXPECT_EQ(*again->cookie(), *ca);
  auto sock = na->socket(AF_INET6, SOCK_DGRAM);
  ASSERT_TRUE(sock) << sock.error().describe();
  EXPECT_EQ(*socket_netns_cookie(sock->get()), *ca);
}

TEST(Netns, AddressesListsPodAddressesButNotLoopbackOrLinkLocal) {
  ZT_REQUIRE_PRIVILEGE(can_create_namespaces(), kNeeds);
  TestNamespace t;
  ASSERT_TRUE(t.created());
  ASSERT_TRUE(t.ip("link set lo up"));
  // A veth pair kept inside the namespace (this kernel has no dummy driver).
  ASSERT_TRUE(t.ip("link add zt0 type veth peer name zt1"));
  ASSERT_TRUE(t.ip("link set zt1 up"));
  ASSERT_TRUE(t.ip("link set zt0 up"));
  ASSERT_TRUE(t.ip("addr add 10.77.1.2/24 dev zt0"));
  ASSERT_TRUE(t.ip("addr add fd00:77::2/64 dev zt0 nodad"));
  ASSERT_TRUE(t.ip("addr add fe80::77/64 dev zt0 nodad"));
  auto ns = Netns::open(t.path());
  ASSERT_TRUE(ns);
  auto addrs = ns->addresses();
  ASSERT_TRUE(addrs) << addrs.error().describe();
  std::vector<std::string> text;
  for (const auto& a : *addrs) text.push_back(a.to_string());
  auto has = [&](const std::string& s) {
    return std::find(text.begin(), text.end(), s) != text.end();
  };
  EXPECT_TRUE(has("10.77.1.2")) << fmt::format("{}", fmt::join(text, " "));
  EXPECT_TRUE(has("fd00:77::2")) << fmt::format("{}", fmt::join(text, " "));
  EXPECT_FALSE(has("127.0.0.1"));
  EXPECT_FALSE(has("::1"));
  for (const auto& a : *addrs) {
    EXPECT_FALSE(a.is_v6() && a.to_v6().is_link_local()) << a.to_string();
  }
}

TEST(Netns, DeliveryRoutingInstallsRuleRouteAndSysctlIdempotently) {
  ZT_REQUIRE_PRIVILEGE(can_create_namespaces(), kNeeds);
  TestNamespace t;
  ASSERT_TRUE(t.created());
  ASSERT_TRUE(t.ip("link set lo up"));
  auto ns = Netns::open(t.path());
  ASSERT_TRUE(ns);
  std::string root_sysctl;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_fwmark_accept", "r")) {
    char buf[8] = {};
    if (std::fgets(buf, sizeof(buf), f) != nullptr) root_sysctl = buf;
    std::fclose(f);
  }
  for (int i = 0; i < 2; ++i) {
    auto ok = configure_delivery_routing(*ns);
    ASSERT_TRUE(ok) << "round " << i << ": " << ok.error().describe();
  }
  auto rules = t.ip_output("rule show");
  EXPECT_EQ(count_of(rules, "fwmark 0x53a lookup 100"), 1u) << rules;
  EXPECT_NE(rules.find("32764:"), std::string::npos) << rules;
  auto routes = t.ip_output("route show table 100");
  EXPECT_EQ(count_of(routes, "local default dev lo"), 1u) << routes;
  auto rules6 = t.ip_output("-6 rule show");
  EXPECT_EQ(count_of(rules6, "fwmark 0x53a lookup 100"), 1u) << rules6;
  auto routes6 = t.ip_output("-6 route show table 100");
  EXPECT_EQ(count_of(routes6, "local default dev lo"), 1u) << routes6;

  // The sysctl is set in the namespace, and the root namespace's value is not changed.
  auto read_sysctl = [] {
    std::string value;
    FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_fwmark_accept", "r");
    if (f == nullptr) return value;
    char buf[8] = {};
    if (std::fgets(buf, sizeof(buf), f) != nullptr) value = buf;
    std::fclose(f);
    return value;
  };
  std::string inside;
  auto ran = ns->run([&] { inside = read_sysctl(); });
  ASSERT_TRUE(ran);
  EXPECT_EQ(inside, "1\n");
  EXPECT_EQ(read_sysctl(), root_sysctl);

  // Another mark and table sit next to the first.
  ASSERT_TRUE(configure_delivery_routing(*ns, 0x77, 300));
  rules = t.ip_output("rule show");
  EXPECT_EQ(count_of(rules, "fwmark 0x77 lookup 300"), 1u) << rules;
  EXPECT_EQ(count_of(t.ip_output("route show table 300"), "local default dev lo"), 1u);
}

TEST(Netns, DeliveryRoutingReportsAStepThatFails) {
  ZT_REQUIRE_PRIVILEGE(can_create_namespaces(), kNeeds);
  TestNamespace t;
  ASSERT_TRUE(t.created());
  // lo is down in a fresh namespace: a local route via lo cannot be added (IPv6 refuses it),
  // and the error names the namespace, the step and the likely cause.
  auto ns = Netns::open(t.path());
  ASSERT_TRUE(ns);
  auto ok = configure_delivery_routing(*ns);
  ASSERT_FALSE(ok);
  auto text = ok.error().describe();
  EXPECT_NE(text.find(t.path()), std::string::npos) << text;
  EXPECT_NE(text.find("add route local"), std::string::npos) << text;
  EXPECT_NE(text.find("is lo up"), std::string::npos) << text;
}

TEST(Netns, DeliveryWithForeignSourceReachesTheAppWhoSeesTheClientAddress) {
  ZT_REQUIRE_PRIVILEGE(can_create_namespaces(), kNeeds);
  TestNamespace t;
  ASSERT_TRUE(t.created());
  ASSERT_TRUE(t.ip("link set lo up"));
  // A veth pair kept inside the namespace (this kernel has no dummy driver).
  ASSERT_TRUE(t.ip("link add zt0 type veth peer name zt1"));
  ASSERT_TRUE(t.ip("link set zt1 up"));
  ASSERT_TRUE(t.ip("link set zt0 up"));
  ASSERT_TRUE(t.ip("addr add 10.77.1.2/24 dev zt0"));
  auto ns = Netns::open(t.path());
  ASSERT_TRUE(ns);

  auto app = ns->socket(AF_INET, SOCK_STREAM);
  ASSERT_TRUE(app);
  auto app_addr = v4("10.77.1.2", 0);
  ASSERT_EQ(::bind(app->get(), reinterpret_cast<sockaddr*>(&app_addr), sizeof(app_addr)), 0);
  ASSERT_EQ(::listen(app->get(), 8), 0);
  uint16_t port = local_port(app->get());

  auto delivery_socket = [&]() -> UniqueFd {
    auto s = ns->socket(AF_INET, SOCK_STREAM, kDeliverMark);
    if (!s) return {};
    int one = 1;
    if (::setsockopt(s->get(), SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) != 0) return {};
    auto client = v4("10.77.0.9", 0);
    if (::bind(s->get(), reinterpret_cast<sockaddr*>(&client), sizeof(client)) != 0) return {};
    return std::move(*s);
  };

  // Without the routing the SYN-ACK to 10.77.0.9 has nowhere to go.
  {
    UniqueFd before = delivery_socket();
    ASSERT_TRUE(before.valid()) << std::strerror(errno);
    EXPECT_FALSE(connect_within(before.get(), v4("10.77.1.2", port), 300));
  }
  // Drain whatever half-open state the failed attempt left.
  while (UniqueFd(::accept4(app->get(), nullptr, nullptr, SOCK_CLOEXEC)).valid()) {
  }

  auto ok = configure_delivery_routing(*ns);
  ASSERT_TRUE(ok) << ok.error().describe();
  UniqueFd client = delivery_socket();
  ASSERT_TRUE(client.valid()) << std::strerror(errno);
  ASSERT_TRUE(connect_within(client.get(), v4("10.77.1.2", port), 3000));
  pollfd p{app->get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  UniqueFd conn(::accept4(app->get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid());
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof(text));
  EXPECT_STREQ(text, "10.77.0.9");
  // Data flows both ways over the spoofed connection.
  ASSERT_EQ(::send(client.get(), "ping", 4, MSG_NOSIGNAL), 4);
  ASSERT_EQ(::send(conn.get(), "pong", 4, MSG_NOSIGNAL), 4);
  char buf[4];
  pollfd c{client.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&c, 1, 2000), 1);
  EXPECT_EQ(::recv(client.get(), buf, 4, 0), 4);
  EXPECT_EQ(std::string(buf, 4), "pong");
}

}  // namespace
}  // namespace zt::netns
