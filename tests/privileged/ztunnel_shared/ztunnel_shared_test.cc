// ztunnel in shared mode, end to end on the real kernel (DESIGN §1-§3):
//   pod A (netns + cgroup, enrolled)  --veth--  pod B (netns + cgroup, enrolled, echo app :8080)
// The test is the node agent: it loads the capture programs, enrolls both pods, sets up pod B's
// delivery routing and serves ZDS; the real ztunnel binary (PROXY_MODE=shared) gets both pods
// over ZDS and opens its listeners inside their namespaces. An app process in pod A connects to
// pod B's IP: eBPF sends it to ztunnel's 15001 in pod A, ztunnel carries it over HBONE to pod
// B's IP:15008 (sk_lookup gives it to ztunnel's listener in pod B), which delivers it to the
// app with pod A's IP as the source.
#include <arpa/inet.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include "bpf/loader/capture.h"
#include "common/base/unique_fd.h"
#include "common/netns/netns.h"
#include "common/zds/zds.h"
#include "tests/support/daemon.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"

namespace zt {
namespace {

using namespace std::chrono_literals;
using testing::Capability;
using testing::has_capability;

constexpr const char* kCgroup2 = "/sys/fs/cgroup/unified";
constexpr uint64_t kBpfFsMagic = 0xcafe4a11;
// The two pods' addresses: IPv4, or IPv6 for the ZtunnelSharedIpv6 tests.
struct PodAddresses {
  int family;
  const char* a;
  const char* b;
  int prefix;
};
constexpr PodAddresses kIpv4{AF_INET, "10.79.0.2", "10.79.0.3", 24};
constexpr PodAddresses kIpv6{AF_INET6, "fd00:79::2", "fd00:79::3", 64};
constexpr uint16_t kAppPort = 8080;
constexpr const char* kClientId = "spiffe://cluster.local/ns/default/sa/client";
constexpr const char* kServerId = "spiffe://cluster.local/ns/default/sa/server";

int sh(const std::string& cmd) {
  int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

std::string suffix() { return std::to_string(::getpid()); }

// Two network namespaces "pods" joined by a veth pair; removed (with their veth) at the end.
struct Pods {
  std::string a, b;
  Status create(const PodAddresses& ip) {
    a = "zt-shared-" + suffix() + "-a";
    b = "zt-shared-" + suffix() + "-b";
    const std::string na = " -n " + a + " ", nb = " -n " + b + " ";
    // An IPv6 address is usable at once only without duplicate address detection.
    const std::string nodad = ip.family == AF_INET6 ? " nodad" : "";
    const std::string cmds[] = {
        "ip netns add " + a,
        "ip netns add " + b,
        "ip" + na + "link add eth0 type veth peer name eth0 netns " + b,
        "ip" + na + "link set lo up",
        "ip" + nb + "link set lo up",
        "ip" + na + "addr add " + ip.a + "/" + std::to_string(ip.prefix) + " dev eth0" + nodad,
        "ip" + nb + "addr add " + ip.b + "/" + std::to_string(ip.prefix) + " dev eth0" + nodad,
        "ip" + na + "link set eth0 up",
        "ip" + nb + "link set eth0 up",
    };
    for (const auto& c : cmds) {
      if (sh(c) != 0) return failf("'{}' failed", c);
    }
    return {};
  }
  std::string path(const std::string& name) const { return "/var/run/netns/" + name; }
  ~Pods() {
    if (!a.empty()) sh("ip netns del " + a);
    if (!b.empty()) sh("ip netns del " + b);
  }
};

// One cgroup per pod under a folder of this test.
struct Cgroups {
  std::string root, a, b;
  UniqueFd a_fd, b_fd;
  Status create() {
    root = std::string(kCgroup2) + "/zt-shared-test-" + suffix();
    a = root + "/pod-a";
    b = root + "/pod-b";
    for (const auto& d : {root, a, b}) {
      if (::mkdir(d.c_str(), 0755) != 0) return failf("mkdir {}: {}", d, std::strerror(errno));
    }
    a_fd.reset(::open(a.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    b_fd.reset(::open(b.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!a_fd || !b_fd) return failf("opening the cgroups: {}", std::strerror(errno));
    return {};
  }
  ~Cgroups() {
    a_fd.reset();
    b_fd.reset();
    for (const auto& d : {a, b, root}) {
      if (d.empty()) continue;
      for (int i = 0; i < 50 && ::rmdir(d.c_str()) != 0 && errno == EBUSY; ++i) {
        std::this_thread::sleep_for(20ms);
      }
    }
  }
};

// The pin root: under /sys/fs/bpf when that is a bpffs, else on a private bpffs mount.
struct PinRoot {
  std::string path, mount;
  Status create() {
    struct statfs fs {};
    if (::statfs("/sys/fs/bpf", &fs) == 0 && static_cast<uint64_t>(fs.f_type) == kBpfFsMagic) {
      path = "/sys/fs/bpf/ambient-mesh-test-" + suffix();
      return {};
    }
    std::string m = "/tmp/zt-shared-bpffs-" + suffix();
    if (::mkdir(m.c_str(), 0700) != 0) return failf("mkdir {}: {}", m, std::strerror(errno));
    if (::mount("bpf", m.c_str(), "bpf", 0, nullptr) != 0) {
      int err = errno;
      ::rmdir(m.c_str());
      return failf("mount -t bpf {}: {}", m, std::strerror(err));
    }
    mount = m;
    path = m + "/ambient-mesh-test";
    return {};
  }
  ~PinRoot() {
    if (!path.empty()) (void)bpf::remove_pins(path);
    if (!mount.empty()) {
      ::umount2(mount.c_str(), MNT_DETACH);
      ::rmdir(mount.c_str());
    }
  }
};

// The app in pod B: echoes what it reads and remembers each client's address.
class EchoApp {
 public:
  Status start(const netns::Netns& ns, int family) {
    auto fd = ns.socket(family, SOCK_STREAM);
    if (!fd) return tl::unexpected(fd.error());
    int one = 1;
    ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_storage ss{};
    socklen_t ss_len = sizeof(sockaddr_in);
    if (family == AF_INET6) {
      ::setsockopt(fd->get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
      auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
      sin6.sin6_family = AF_INET6;
      sin6.sin6_port = htons(kAppPort);
      ss_len = sizeof(sockaddr_in6);
    } else {
      auto& sin = reinterpret_cast<sockaddr_in&>(ss);
      sin.sin_family = AF_INET;
      sin.sin_port = htons(kAppPort);
    }
    if (::bind(fd->get(), reinterpret_cast<sockaddr*>(&ss), ss_len) != 0 ||
        ::listen(fd->get(), 16) != 0) {
      return failf("echo app bind/listen: {}", std::strerror(errno));
    }
    listener_ = std::move(*fd);
    thread_ = std::thread([this] { run(); });
    return {};
  }
  ~EchoApp() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::string> peers() const {
    std::lock_guard lock(mu_);
    return peers_;
  }

 private:
  void run() {
    // The socket was made non-blocking by Netns::socket; poll for each client.
    while (!stop_) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) != 1) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      UniqueFd c(
          ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
      if (!c) continue;
      char ip[INET6_ADDRSTRLEN] = {};
      if (peer.ss_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6&>(peer).sin6_addr, ip, sizeof(ip));
      } else {
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in&>(peer).sin_addr, ip, sizeof(ip));
      }
      {
        std::lock_guard lock(mu_);
        peers_.push_back(ip);
      }
      char buf[256];
      for (;;) {
        pollfd q{c.get(), POLLIN, 0};
        if (::poll(&q, 1, 3000) != 1) break;
        ssize_t n = ::read(c.get(), buf, sizeof(buf));
        if (n <= 0) break;
        if (::write(c.get(), buf, static_cast<size_t>(n)) != n) break;
      }
    }
  }

  UniqueFd listener_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<std::string> peers_;
};

// What the app process in pod A saw.
struct Outcome {
  int err = 0;   // errno of the step that failed; 0 when the echo came back
  int step = 0;  // 1 set-up, 2 connect, 3 write, 4 read
  char reply[64] = {};
};

// Forks a process that joins the pod's cgroup (so the cgroup programs see it) and netns, then
// connects to `dst`, sends "ping" and reads the echo. Only syscalls in the child.
Outcome app_in_pod(const std::string& cgroup_dir, int netns_fd, int family, const char* dst_ip,
                   uint16_t dst_port) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {errno, 1, {}};
  const std::string procs = cgroup_dir + "/cgroup.procs";
  pid_t pid = ::fork();
  if (pid < 0) return {errno, 1, {}};
  if (pid == 0) {
    ::close(fds[0]);
    Outcome o;
    char digits[16];
    int n = 0;
    char rev[16];
    for (pid_t v = ::getpid(); v > 0; v /= 10) rev[n++] = static_cast<char>('0' + v % 10);
    for (int i = 0; i < n; ++i) digits[i] = rev[n - 1 - i];
    int cg = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (cg < 0 || ::write(cg, digits, static_cast<size_t>(n)) != n ||
        ::setns(netns_fd, CLONE_NEWNET) != 0) {
      o = {errno, 1, {}};
    } else {
      int s = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      timeval tv{5, 0};
      ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      sockaddr_storage ss{};
      socklen_t ss_len = sizeof(sockaddr_in);
      if (family == AF_INET6) {
        auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(dst_port);
        ::inet_pton(AF_INET6, dst_ip, &sin6.sin6_addr);
        ss_len = sizeof(sockaddr_in6);
      } else {
        auto& sin = reinterpret_cast<sockaddr_in&>(ss);
        sin.sin_family = AF_INET;
        sin.sin_port = htons(dst_port);
        ::inet_pton(AF_INET, dst_ip, &sin.sin_addr);
      }
      if (::connect(s, reinterpret_cast<sockaddr*>(&ss), ss_len) != 0) {
        o = {errno, 2, {}};
      } else if (::write(s, "ping", 4) != 4) {
        o = {errno, 3, {}};
      } else {
        size_t got = 0;
        while (got < 4) {
          ssize_t r = ::read(s, o.reply + got, sizeof(o.reply) - 1 - got);
          if (r <= 0) {
            o.err = r == 0 ? ECONNRESET : errno;
            o.step = 4;
            break;
          }
          got += static_cast<size_t>(r);
        }
      }
    }
    (void)!::write(fds[1], &o, sizeof(o));
    ::_exit(0);
  }
  ::close(fds[1]);
  UniqueFd rd(fds[0]);
  Outcome o;
  pollfd p{rd.get(), POLLIN, 0};
  ssize_t got = -1;
  if (::poll(&p, 1, 20000) == 1) got = ::read(rd.get(), &o, sizeof(o));
  if (got != static_cast<ssize_t>(sizeof(o))) {
    ::kill(pid, SIGKILL);
    o = {ETIMEDOUT, 1, {}};
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return o;
}

std::string describe(const Outcome& o) {
  static const char* steps[] = {"ok", "set-up", "connect", "write", "read"};
  return fmt::format("{} failed: {}", steps[o.step], std::strerror(o.err));
}

class ZtunnelShared : public ::testing::Test {
 protected:
  explicit ZtunnelShared(const PodAddresses& ip = kIpv4) : ip_(ip) {}

  void SetUp() override {
    ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kBpf) &&
                             has_capability(Capability::kSysAdmin) &&
                             has_capability(Capability::kNetAdmin),
                         "needs CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN to load the capture "
                         "programs, create network namespaces and cgroups");
    ZT_REQUIRE_PRIVILEGE(::access((std::string(kCgroup2) + "/cgroup.procs").c_str(), F_OK) == 0,
                         "needs cgroup v2 at /sys/fs/cgroup/unified");
    ZT_REQUIRE_PRIVILEGE(sh("ip -V") == 0, "needs the ip command (iproute2)");

    auto st = pods_.create(ip_);
    ASSERT_TRUE(st) << st.error().describe();
    st = cgroups_.create();
    ASSERT_TRUE(st) << st.error().describe();
    st = pins_.create();
    ASSERT_TRUE(st) << st.error().describe();
    for (auto* name : {&pods_.a, &pods_.b}) {
      auto ns = netns::Netns::open(pods_.path(*name));
      ASSERT_TRUE(ns) << ns.error().describe();
      (name == &pods_.a ? ns_a_ : ns_b_) = std::move(*ns);
    }

    // The node agent's part: programs, enrollment, delivery routing.
    auto prog = bpf::CaptureProgram::load(pins_.path);
    ASSERT_TRUE(prog) << prog.error().describe();
    prog_ = std::move(*prog);
    bpf::PodNetwork net_a{.ips = {asio::ip::make_address(ip_.a)}};
    bpf::PodNetwork net_b{.ips = {asio::ip::make_address(ip_.b)}};
    st = prog_->enroll("pod-a", cgroups_.a_fd.get(), ns_a_.fd(), net_a);
    ASSERT_TRUE(st) << st.error().describe();
    st = prog_->enroll("pod-b", cgroups_.b_fd.get(), ns_b_.fd(), net_b);
    ASSERT_TRUE(st) << st.error().describe();
    for (auto* ns : {&ns_a_, &ns_b_}) {
      st = netns::configure_delivery_routing(*ns);
      ASSERT_TRUE(st) << st.error().describe();
    }
    st = app_.start(ns_b_, ip_.family);
    ASSERT_TRUE(st) << st.error().describe();

    zds_path_ = dir_.path() / "ztunnel.sock";
    auto server = zds::Server::start(zds_path_.string());
    ASSERT_TRUE(server) << server.error().describe();
    zds_ = std::move(*server);

    config_ = dir_.path() / "mesh.yaml";
    testing::write_file(config_, testing::two_workload_mesh_yaml(ip_.a, ip_.b));
    auto d = testing::Daemon::start(
        testing::bin_path("ztunnel"),
        {"--admin-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
         "--readiness-address", "127.0.0.1:0", "--worker-threads", "2"},
        {"PROXY_MODE=shared", "NODE_NAME=node-a", "LOCAL_XDS_PATH=" + config_.string(),
         "INPOD_UDS=" + zds_path_.string(), "BPF_PIN_ROOT=" + pins_.path,
         "CONNECTION_TERMINATION_DEADLINE=1s"});
    ASSERT_TRUE(d) << d.error().describe();
    ztunnel_ = std::move(*d);
    ASSERT_TRUE(ztunnel_->wait_for(std::regex("ztunnel ready mode=shared"), 20s))
        << ztunnel_->output();
  }

  void TearDown() override {
    if (ztunnel_) ztunnel_->stop(SIGTERM);
    ztunnel_.reset();
    if (zds_) zds_->stop();
    zds_.reset();
    prog_.reset();
  }

  // AddWorkload for pod A (client) or B (server), acknowledged.
  void add(bool a) {
    auto ns = netns::Netns::open(pods_.path(a ? pods_.a : pods_.b));
    ASSERT_TRUE(ns) << ns.error().describe();
    zds::WorkloadInfo info{.name = a ? "client" : "server",
                           .namespace_name = "default",
                           .service_account = a ? "client" : "server"};
    zds_->upsert(a ? "uid-a" : "uid-b", info, std::move(*ns));
    auto acked = zds_->wait_acked(15s);
    ASSERT_TRUE(acked) << acked.error().describe() << "\n" << ztunnel_->output();
    EXPECT_TRUE(acked->empty()) << "NACK: " << (acked->empty() ? "" : acked->front()) << "\n"
                                << ztunnel_->output();
  }

  Outcome connect_from_a() {
    return app_in_pod(cgroups_.a, ns_a_.fd(), ip_.family, ip_.b, kAppPort);
  }

  // An address as a regex that matches it literally; in the access log an IPv6 address is
  // bracketed ([fd00:79::2]:8080).
  static std::string literal(const char* ip) {
    std::string out;
    for (const char* c = ip; *c != '\0'; ++c) {
      if (*c == '.') out += '\\';
      out += *c;
    }
    return out;
  }
  std::string logged(const char* ip) const {
    return ip_.family == AF_INET6 ? "\\[" + literal(ip) + "\\]" : literal(ip);
  }

  // Pod A's app connects to pod B's and gets its "ping" echoed; the app saw pod A's IP as the
  // client (not ztunnel's or a loopback address), and had no other client.
  void echo_from_a() {
    auto o = connect_from_a();
    ASSERT_EQ(o.step, 0) << describe(o) << "\n" << ztunnel_->output();
    EXPECT_STREQ(o.reply, "ping");
    auto peers = app_.peers();
    ASSERT_EQ(peers.size(), 1u);
    EXPECT_EQ(peers[0], ip_.a);
  }

  // Both pods enrolled: pod A's connection to pod B goes over HBONE, both sides log the proven
  // identities, and the app sees pod A's IP (not ztunnel's or a loopback address).
  void pod_to_pod_over_hbone() {
    ASSERT_NO_FATAL_FAILURE(add(true));
    ASSERT_NO_FATAL_FAILURE(add(false));
    EXPECT_TRUE(ztunnel_->wait_for(std::regex("pod added uid=uid-a workload=default/client "
                                              "identity=\"spiffe://cluster.local/ns/default/sa/"
                                              "client\" ips=" +
                                              literal(ip_.a)),
                                   5s))
        << ztunnel_->output();
    EXPECT_TRUE(ztunnel_->wait_for(std::regex("pod added uid=uid-b workload=default/server"), 5s));

    ASSERT_NO_FATAL_FAILURE(echo_from_a());

    auto outbound = ztunnel_->wait_for(
        std::regex("access connection complete .*src\\.identity=\"([^\"]*)\".*dst\\.identity=\"" +
                   std::string(kServerId) + "\".*direction=\"outbound\""),
        10s);
    ASSERT_TRUE(outbound) << ztunnel_->output();
    EXPECT_EQ(*outbound, kClientId);
    // Inbound: the client is pod A (not the loopback address the capture rewrote its connect to).
    auto inbound =
        ztunnel_->wait_for(std::regex("access connection complete src\\.addr=\"" + logged(ip_.a) +
                                      ":[0-9]+\".*src\\.identity=\"([^\"]*)\".*dst\\.addr=\"" +
                                      logged(ip_.b) + ":8080\".*dst\\.identity=\"" +
                                      std::string(kServerId) + "\".*direction=\"inbound\""),
                           10s);
    ASSERT_TRUE(inbound) << ztunnel_->output();
    EXPECT_EQ(*inbound, kClientId);
  }

  // Pod A leaves the mesh (no capture): its plain TCP to pod B is steered by sk_lookup to
  // ztunnel's 15006 in pod B, which delivers it with pod A's IP.
  void plaintext_through_inbound_capture() {
    ASSERT_NO_FATAL_FAILURE(add(false));
    auto st = prog_->release("pod-a");
    ASSERT_TRUE(st) << st.error().describe();
    ASSERT_NO_FATAL_FAILURE(echo_from_a());
    EXPECT_TRUE(ztunnel_->wait_for(
        std::regex("access connection complete src\\.addr=\"" + logged(ip_.a) +
                   ":[0-9]+\".*dst\\.addr=\"" + logged(ip_.b) + ":8080\".*direction=\"inbound\""),
        10s))
        << ztunnel_->output();
  }

  const PodAddresses ip_;
  testing::TempDir dir_;
  Pods pods_;
  Cgroups cgroups_;
  PinRoot pins_;
  netns::Netns ns_a_, ns_b_;
  std::unique_ptr<bpf::CaptureProgram> prog_;
  EchoApp app_;
  std::filesystem::path zds_path_, config_;
  std::unique_ptr<zds::Server> zds_;
  std::unique_ptr<testing::Daemon> ztunnel_;
};

TEST_F(ZtunnelShared, PodToPodGoesOverHboneWithIdentitiesAndTheClientIp) {
  pod_to_pod_over_hbone();
}

TEST_F(ZtunnelShared, DelWorkloadFailsClosedUntilReAdded) {
  ASSERT_NO_FATAL_FAILURE(add(true));
  ASSERT_NO_FATAL_FAILURE(add(false));
  auto o = connect_from_a();
  ASSERT_EQ(o.step, 0) << describe(o) << "\n" << ztunnel_->output();

  zds_->remove("uid-a");
  auto acked = zds_->wait_acked(10s);
  ASSERT_TRUE(acked) << acked.error().describe();
  ASSERT_TRUE(ztunnel_->wait_for(std::regex("pod removed uid=uid-a"), 5s)) << ztunnel_->output();
  // Still captured by eBPF, but no listener: refused, never passed through in plaintext.
  o = connect_from_a();
  EXPECT_EQ(o.step, 2) << describe(o);
  EXPECT_EQ(o.err, ECONNREFUSED) << describe(o);
  EXPECT_EQ(app_.peers().size(), 1u);

  ASSERT_NO_FATAL_FAILURE(add(true));
  o = connect_from_a();
  EXPECT_EQ(o.step, 0) << describe(o) << "\n" << ztunnel_->output();
  EXPECT_STREQ(o.reply, "ping");
}

TEST_F(ZtunnelShared, SnapshotAndReAddAreIdempotentAndReadinessWaitsForZds) {
  ASSERT_NO_FATAL_FAILURE(add(true));
  // The same pod and netns again: a no-op ACK, still served.
  ASSERT_NO_FATAL_FAILURE(add(true));
  ASSERT_NO_FATAL_FAILURE(add(false));
  EXPECT_TRUE(ztunnel_->wait_for(std::regex("component=zds msg=\"snapshot applied\""), 5s))
      << ztunnel_->output();
  auto readiness = ztunnel_->listening("readiness");
  ASSERT_TRUE(readiness);
  auto ready = testing::http_request(*readiness, "GET", "/healthz/ready");
  ASSERT_TRUE(ready) << ready.error().describe();
  EXPECT_EQ(ready->status, 200) << ready->body;
  auto admin = ztunnel_->listening("admin");
  ASSERT_TRUE(admin);
  auto dump = testing::http_request(*admin, "GET", "/config_dump");
  ASSERT_TRUE(dump) << dump.error().describe();
  EXPECT_NE(dump->body.find("\"uid\": \"uid-a\""), std::string::npos) << dump->body;
  EXPECT_NE(dump->body.find("\"workload\": \"default/server\""), std::string::npos);
  auto o = connect_from_a();
  EXPECT_EQ(o.step, 0) << describe(o) << "\n" << ztunnel_->output();
  std::string out = ztunnel_->output();
  size_t added_a = 0;
  for (size_t pos = 0; (pos = out.find("pod added uid=uid-a", pos)) != std::string::npos; ++pos) {
    ++added_a;
  }
  EXPECT_EQ(added_a, 1u) << out;
}

}  // namespace
}  // namespace zt

namespace zt {
namespace {

TEST_F(ZtunnelShared, AgentRestartKeepsItsPodsAndDropsTheRest) {
  ASSERT_NO_FATAL_FAILURE(add(true));
  ASSERT_NO_FATAL_FAILURE(add(false));
  // A new agent process knows only pod B: ztunnel reconnects, gets B replayed (same netns: kept
  // as is) and drops A at SnapshotSent.
  zds_->stop();
  zds_.reset();
  auto server = zds::Server::start(zds_path_.string());
  ASSERT_TRUE(server) << server.error().describe();
  zds_ = std::move(*server);
  ASSERT_NO_FATAL_FAILURE(add(false));
  ASSERT_TRUE(ztunnel_->wait_for(
      std::regex("pod removed uid=uid-a reason=\"not in the agent's snapshot\""), 10s))
      << ztunnel_->output();
  auto admin = ztunnel_->listening("admin");
  ASSERT_TRUE(admin);
  auto dump = testing::http_request(*admin, "GET", "/config_dump");
  ASSERT_TRUE(dump) << dump.error().describe();
  EXPECT_NE(dump->body.find("\"uid\": \"uid-b\""), std::string::npos) << dump->body;
  EXPECT_EQ(dump->body.find("\"uid\": \"uid-a\""), std::string::npos) << dump->body;
  auto o = connect_from_a();
  EXPECT_EQ(o.step, 2) << describe(o);
  EXPECT_EQ(o.err, ECONNREFUSED) << describe(o);
}

}  // namespace
}  // namespace zt

namespace zt {
namespace {

TEST_F(ZtunnelShared, PlaintextFromAnUncapturedClientReachesTheAppThroughInboundCapture) {
  plaintext_through_inbound_capture();
}

// The same two pods with IPv6 addresses only: connect6 captures the client, HBONE runs between
// the pods' IPv6 addresses, and the app sees the client's IPv6 address.
class ZtunnelSharedIpv6 : public ZtunnelShared {
 protected:
  ZtunnelSharedIpv6() : ZtunnelShared(kIpv6) {}
};

TEST_F(ZtunnelSharedIpv6, PodToPodGoesOverHboneWithIdentitiesAndTheClientIp) {
  pod_to_pod_over_hbone();
}

TEST_F(ZtunnelSharedIpv6, PlaintextFromAnUncapturedClientReachesTheAppThroughInboundCapture) {
  plaintext_through_inbound_capture();
}

}  // namespace
}  // namespace zt
