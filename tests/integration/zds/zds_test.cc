// A real zds::Server (node agent side) and a real zds::Client (ztunnel side) over a
// SOCK_SEQPACKET socket in a temporary directory, carrying real netns fds (this process's own,
// /proc/self/ns/net, which needs no privilege). Hand-written raw peers play a misbehaving agent
// and a misbehaving ztunnel.
#include "common/zds/zds.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include "common/netns/netns.h"
#include "istio/workload/zds/zds.pb.h"

namespace zt::zds {
namespace {

namespace pb = istio::workload::zds;
using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/zt-zds-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

netns::Netns self_netns() {
  auto ns = netns::Netns::open("/proc/self/ns/net");
  EXPECT_TRUE(ns) << ns.error().describe();
  return ns ? std::move(*ns) : netns::Netns();
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

size_t open_fd_count() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// What the ztunnel side saw, in order; `nack_adds` makes the add handler refuse a uid that many
// times before accepting it.
class Recorder {
 public:
  ClientHandler handler() {
    ClientHandler h;
    h.add = [this](const std::string& uid, const WorkloadInfo& info, netns::Netns ns) {
      std::lock_guard lock(mu_);
      auto self = netns::Netns::open("/proc/self/ns/net");
      bool same = self && ns.valid() && ns.same_as(*self);
      events_.push_back("add " + uid + (same ? "" : " (other netns)"));
      infos_[uid] = info;
      cv_.notify_all();
      if (auto it = nack_adds_.find(uid); it != nack_adds_.end() && it->second > 0) {
        it->second--;
        return std::string("boom");
      }
      return std::string();
    };
    h.keep = [this](const std::string& uid) { return note("keep " + uid); };
    h.snapshot_sent = [this] { return note("snapshot"); };
    h.del = [this](const std::string& uid) { return note("del " + uid); };
    return h;
  }

  void nack_adds(const std::string& uid, int times) {
    std::lock_guard lock(mu_);
    nack_adds_[uid] = times;
  }

  // Waits until `n` events were seen, then returns them all.
  std::vector<std::string> wait_events(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
    return events_;
  }
  std::vector<std::string> take() {
    std::lock_guard lock(mu_);
    return std::exchange(events_, {});
  }
  WorkloadInfo info(const std::string& uid) {
    std::lock_guard lock(mu_);
    return infos_[uid];
  }

 private:
  std::string note(std::string event) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
    cv_.notify_all();
    return "";
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::map<std::string, WorkloadInfo> infos_;
  std::map<std::string, int> nack_adds_;
};

using Events = std::vector<std::string>;

// ---- raw peers ----

UniqueFd raw_listen(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return {};
  if (::listen(s.get(), 4) != 0) return {};
  return s;
}

UniqueFd raw_connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return {};
  return s;
}

bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

UniqueFd raw_accept(int listener, std::chrono::milliseconds timeout = 5s) {
  if (!readable(listener, timeout)) return {};
  return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

Result<Packet> recv_within(int sock, std::chrono::milliseconds timeout = 5s) {
  if (!readable(sock, timeout)) return fail("timed out waiting for a packet");
  return recv_packet(sock);
}

// The agent side of a raw conversation: accept a ztunnel and read its hello.
UniqueFd accept_hello(int listener) {
  auto conn = raw_accept(listener);
  if (!conn) return {};
  auto hello = recv_within(conn.get());
  pb::ZdsHello h;
  if (!hello || !h.ParseFromString(hello->bytes) || h.version() != pb::V1) return {};
  return conn;
}

// Sends `req` (with `fd` if >= 0) and returns the ack's error text, or "<no answer: ...>".
std::string ask(int sock, const pb::WorkloadRequest& req, int fd = -1) {
  if (auto ok = send_packet(sock, req.SerializeAsString(), fd); !ok) {
    return "<send failed: " + ok.error().describe() + ">";
  }
  auto answer = recv_within(sock);
  if (!answer) return "<no answer: " + answer.error().describe() + ">";
  pb::WorkloadResponse resp;
  if (!resp.ParseFromString(answer->bytes) || !resp.has_ack()) return "<not an ack>";
  return resp.ack().error();
}

pb::WorkloadRequest add_request(const std::string& uid) {
  pb::WorkloadRequest req;
  req.mutable_add()->set_uid(uid);
  req.mutable_add()->mutable_workload_info()->set_name(uid + "-pod");
  return req;
}

pb::WorkloadRequest del_request(const std::string& uid) {
  pb::WorkloadRequest req;
  req.mutable_del()->set_uid(uid);
  return req;
}

// ---- server and client together ----

struct Fixture {
  TempDir dir;
  std::string path = dir.path() + "/run/ztunnel/ztunnel.sock";  // the directory is created
};

TEST(Zds, ReplayAddsKeepsAndSnapshotInOrderWithAcks) {
  Fixture f;
  auto server = Server::start(f.path);
  ASSERT_TRUE(server) << server.error().describe();
  (*server)->upsert("uid-b", {"b", "ns1", "sa-b"}, self_netns());
  (*server)->upsert("uid-a", {"a", "ns1", "sa-a"}, self_netns());
  (*server)->upsert("uid-c", {"c", "ns2", "sa-c"}, netns::Netns());  // netns lost: KeepWorkload

  auto none = (*server)->wait_acked(50ms);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("no ztunnel connected"), std::string::npos);

  Recorder rec;
  auto client = Client::start(f.path, rec.handler());
  auto acked = (*server)->wait_acked(5s);
  ASSERT_TRUE(acked) << acked.error().describe();
  EXPECT_TRUE(acked->empty());
  EXPECT_EQ(rec.take(), (Events{"add uid-a", "add uid-b", "keep uid-c", "snapshot"}));
  EXPECT_EQ(rec.info("uid-a"), (WorkloadInfo{"a", "ns1", "sa-a"}));

  auto s = (*server)->stats();
  EXPECT_EQ(s.connections, 1u);
  EXPECT_EQ(s.acks, 4u);
  EXPECT_EQ(s.nacks, 0u);
  EXPECT_TRUE(s.connected);
  EXPECT_TRUE(s.synced);
  auto c = client->stats();
  EXPECT_TRUE(c.connected);
  EXPECT_TRUE(c.snapshot_received);
  EXPECT_EQ(c.connects, 1u);
  EXPECT_EQ(c.adds, 2u);
  EXPECT_EQ(c.keeps, 1u);
  EXPECT_EQ(c.snapshots, 1u);
  EXPECT_EQ(c.nacks, 0u);
}

TEST(Zds, LaterUpsertsAndRemovesAreSentInCallOrder) {
  Fixture f;
  auto server = Server::start(f.path);
  ASSERT_TRUE(server);
  (*server)->upsert("uid-a", {"a", "ns", "sa"}, self_netns());
  Recorder rec;
  auto client = Client::start(f.path, rec.handler());
  ASSERT_TRUE((*server)->wait_acked(5s));
  rec.take();

  (*server)->upsert("uid-d", {"d", "ns", "sa"}, self_netns());
  (*server)->remove("uid-a");
  (*server)->remove("uid-never-sent");  // ztunnel never heard of it: nothing goes out
  (*server)->upsert("uid-nons", {"x", "ns", "sa"}, netns::Netns());  // no netns after the replay
  (*server)->upsert("uid-d", {"d2", "ns", "sa"}, self_netns());      // update: sent again
  auto acked = (*server)->wait_acked(5s);
  ASSERT_TRUE(acked) << acked.error().describe();
  // The update is sent again unless the first Add was still queued (it then carries the update).
  auto events = rec.take();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(Events(events.begin(), events.begin() + 2), (Events{"add uid-d", "del uid-a"}));
  if (events.size() > 2) {
    EXPECT_EQ(Events(events.begin() + 2, events.end()), (Events{"add uid-d"}));
  }
  EXPECT_EQ(rec.info("uid-d").name, "d2");
  EXPECT_EQ(client->stats().dels, 1u);
}

TEST(Zds, NackIsReportedAndTheAddIsRetriedFiveSecondsLater) {
  Fixture f;
  auto server = Server::start(f.path);
  ASSERT_TRUE(server);
  Recorder rec;
  rec.nack_adds("uid-bad", 1);
  auto client = Client::start(f.path, rec.handler());
  ASSERT_TRUE((*server)->wait_acked(5s));
  rec.take();

  auto start = std::chrono::steady_clock::now();
  (*server)->upsert("uid-bad", {"bad", "ns", "sa"}, self_netns());
  auto acked = (*server)->wait_acked(5s);
  ASSERT_TRUE(acked) << acked.error().describe();
  ASSERT_EQ(acked->size(), 1u);
  EXPECT_EQ((*acked)[0], "AddWorkload uid-bad: boom");
  auto s = (*server)->stats();
  EXPECT_EQ(s.nacks, 1u);
  EXPECT_EQ(s.last_nack, "AddWorkload uid-bad: boom");
  EXPECT_EQ(client->stats().nacks, 1u);

  // The retry comes about 5 s later and is accepted this time.
  auto events = rec.wait_events(2, 8s);
  ASSERT_EQ(events, (Events{"add uid-bad", "add uid-bad"}));
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 4900ms);
  EXPECT_LT(waited, 7s);
  ASSERT_TRUE(eventually([&] { return (*server)->stats().acks == 2; }));
  auto again = (*server)->wait_acked(1s);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty()) << "the first NACK was already returned";
}

TEST(Zds, ClientReconnectsToARestartedServerAndGetsTheReplay) {
  Fixture f;
  Recorder rec;
  std::unique_ptr<Client> client;
  {
    auto first = Server::start(f.path);
    ASSERT_TRUE(first);
    (*first)->upsert("uid-a", {"a", "ns", "sa"}, self_netns());
    client = Client::start(f.path, rec.handler());
    ASSERT_TRUE((*first)->wait_acked(5s));
    (*first)->stop();
    EXPECT_FALSE(std::filesystem::exists(f.path)) << "stop() removes the socket file";
  }
  ASSERT_TRUE(eventually([&] { return !client->stats().connected; }));
  EXPECT_FALSE(client->stats().snapshot_received);
  rec.take();

  auto second = Server::start(f.path);
  ASSERT_TRUE(second) << second.error().describe();
  (*second)->upsert("uid-a", {"a", "ns", "sa"}, self_netns());
  (*second)->upsert("uid-b", {"b", "ns", "sa"}, self_netns());
  auto acked = (*second)->wait_acked(5s);
  ASSERT_TRUE(acked) << acked.error().describe();
  EXPECT_EQ(rec.take(), (Events{"add uid-a", "add uid-b", "snapshot"}));
  EXPECT_EQ(client->stats().connects, 2u);
  EXPECT_TRUE((*second)->stats().synced);
}

TEST(Zds, StaleSocketFileIsReplacedAndOtherFilesAreNot) {
  Fixture f;
  // A crashed agent leaves its socket file behind.
  std::filesystem::create_directories(f.dir.path() + "/run/ztunnel");
  ASSERT_TRUE(raw_listen(f.path));
  ASSERT_TRUE(std::filesystem::is_socket(f.path));
  auto server = Server::start(f.path);
  ASSERT_TRUE(server) << server.error().describe();
  // A newer agent takes the path over; the older one stopping must not remove the new file.
  auto newer = Server::start(f.path);
  ASSERT_TRUE(newer) << newer.error().describe();
  (*server)->stop();
  ASSERT_TRUE(std::filesystem::is_socket(f.path));
  Recorder rec;
  auto client = Client::start(f.path, rec.handler());
  EXPECT_TRUE((*newer)->wait_acked(5s));
  client->stop();
  (*newer)->stop();
  EXPECT_FALSE(std::filesystem::exists(f.path));

  std::string plain = f.dir.path() + "/not-a-socket";
  {
    std::FILE* fp = std::fopen(plain.c_str(), "w");
    std::fclose(fp);
  }
  auto refused = Server::start(plain);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("not a socket"), std::string::npos);
}

TEST(Zds, NewestZtunnelConnectionReplacesTheOlderOne) {
  Fixture f;
  auto server = Server::start(f.path);
  ASSERT_TRUE(server);
  (*server)->upsert("uid-a", {"a", "ns", "sa"}, self_netns());

  // An "old ztunnel" by hand: hello, then ack the replay.
  auto old = raw_connect(f.path);
  ASSERT_TRUE(old);
  pb::ZdsHello hello;
  hello.set_version(pb::V1);
  ASSERT_TRUE(send_packet(old.get(), hello.SerializeAsString()));
  pb::WorkloadResponse ack;
  ack.mutable_ack();
  for (int i = 0; i < 2; ++i) {
    auto req = recv_within(old.get());
    ASSERT_TRUE(req) << req.error().describe();
    EXPECT_EQ(req->fds.size(), i == 0 ? 1u : 0u);  // Add carries the netns; SnapshotSent none
    ASSERT_TRUE(send_packet(old.get(), ack.SerializeAsString()));
  }
  ASSERT_TRUE((*server)->wait_acked(5s));
  EXPECT_TRUE((*server)->stats().synced);

  Recorder rec;
  auto client = Client::start(f.path, rec.handler());
  ASSERT_TRUE(eventually([&] { return (*server)->stats().connections == 2; }));
  auto closed = recv_within(old.get());
  ASSERT_FALSE(closed);
  EXPECT_NE(closed.error().message.find("closed"), std::string::npos) << closed.error().describe();
  ASSERT_TRUE((*server)->wait_acked(5s));
  EXPECT_EQ(rec.take(), (Events{"add uid-a", "snapshot"}));
  EXPECT_TRUE((*server)->stats().synced);
}

TEST(Zds, MisbehavingAgentGetsNacksAndTheClientSurvives) {
  Fixture f;
  std::filesystem::create_directories(f.dir.path() + "/run/ztunnel");
  auto listener = raw_listen(f.path);
  ASSERT_TRUE(listener);
  Recorder rec;
  size_t fds_before = open_fd_count();
  auto client = Client::start(f.path, rec.handler());

  // AddWorkload without its netns fd: NACK naming the problem, then the client reconnects.
  auto conn = accept_hello(listener.get());
  ASSERT_TRUE(conn);
  std::string nack = ask(conn.get(), add_request("uid-x"));
  EXPECT_NE(nack.find("AddWorkload for uid-x carries 0 fds"), std::string::npos) << nack;
  ASSERT_FALSE(recv_within(conn.get())) << "the client hangs up after a protocol error";

  // DelWorkload carrying an fd: NACK, and the fd is closed in the client.
  conn = accept_hello(listener.get());
  ASSERT_TRUE(conn);
  {
    auto ns = self_netns();
    nack = ask(conn.get(), del_request("uid-x"), ns.fd());
  }
  EXPECT_NE(nack.find("DelWorkload for uid-x carries 1 fds, expected none"), std::string::npos)
      << nack;

  // Garbage bytes.
  conn = accept_hello(listener.get());
  ASSERT_TRUE(conn);
  ASSERT_TRUE(send_packet(conn.get(), std::string("\xff\xff\xff\xff garbage", 12)));
  auto answer = recv_within(conn.get());
  ASSERT_TRUE(answer) << answer.error().describe();
  pb::WorkloadResponse resp;
  ASSERT_TRUE(resp.ParseFromString(answer->bytes));
  EXPECT_NE(resp.ack().error().find("malformed WorkloadRequest"), std::string::npos)
      << resp.ack().error();

  // A valid protobuf with only an unknown field (4, empty bytes): no known payload.
  conn = accept_hello(listener.get());
  ASSERT_TRUE(conn);
  ASSERT_TRUE(send_packet(conn.get(), std::string("\x22\x00", 2)));
  answer = recv_within(conn.get());
  ASSERT_TRUE(answer) << answer.error().describe();
  ASSERT_TRUE(resp.ParseFromString(answer->bytes));
  EXPECT_NE(resp.ack().error().find("unknown WorkloadRequest"), std::string::npos)
      << resp.ack().error();
  ASSERT_FALSE(recv_within(conn.get()));

  // AddWorkload with two fds: refused, both closed.
  conn = accept_hello(listener.get());
  ASSERT_TRUE(conn);
  {
    auto a = self_netns();
    auto b = self_netns();
    pb::WorkloadRequest req = add_request("uid-two");
    std::string bytes = req.SerializeAsString();
    iovec iov{bytes.data(), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(2 * sizeof(int));
    int fds[2] = {a.fd(), b.fd()};
    std::memcpy(CMSG_DATA(c), fds, sizeof(fds));
    ASSERT_EQ(::sendmsg(conn.get(), &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  answer = recv_within(conn.get());
  ASSERT_TRUE(answer);
  ASSERT_TRUE(resp.ParseFromString(answer->bytes));
  EXPECT_NE(resp.ack().error().find("carries 2 fds"), std::string::npos) << resp.ack().error();

  // An fd that is not a network namespace: NACK, but the connection stays up and a good Add
  // afterwards is accepted.
  conn = accept_hello(listener.get());
  ASSERT_TRUE(conn);
  {
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    UniqueFd r(p[0]), w(p[1]);
    nack = ask(conn.get(), add_request("uid-pipe"), r.get());
  }
  EXPECT_NE(nack.find("AddWorkload for uid-pipe"), std::string::npos) << nack;
  EXPECT_NE(nack.find("not a namespace"), std::string::npos) << nack;
  {
    auto ns = self_netns();
    EXPECT_EQ(ask(conn.get(), add_request("uid-good"), ns.fd()), "");
  }
  EXPECT_EQ(rec.take(), (Events{"add uid-good"})) << "no bad request reached the handler";

  auto s = client->stats();
  EXPECT_EQ(s.nacks, 6u);
  EXPECT_EQ(s.connects, 6u);
  EXPECT_TRUE(s.connected);
  conn.reset();
  client->stop();
  client.reset();
  EXPECT_EQ(open_fd_count(), fds_before) << "a received fd leaked";
}

TEST(Zds, MisbehavingZtunnelIsDisconnectedAndTheServerSurvives) {
  Fixture f;
  auto server = Server::start(f.path);
  ASSERT_TRUE(server);
  (*server)->upsert("uid-a", {"a", "ns", "sa"}, self_netns());

  // Garbage instead of a hello: the server hangs up.
  auto peer = raw_connect(f.path);
  ASSERT_TRUE(peer);
  ASSERT_TRUE(send_packet(peer.get(), "\x08\x07 not a hello"));
  EXPECT_FALSE(recv_within(peer.get()));

  // A good hello, then garbage instead of an ack.
  peer = raw_connect(f.path);
  ASSERT_TRUE(peer);
  pb::ZdsHello hello;
  hello.set_version(pb::V1);
  ASSERT_TRUE(send_packet(peer.get(), hello.SerializeAsString()));
  auto add = recv_within(peer.get());
  ASSERT_TRUE(add);
  ASSERT_EQ(add->fds.size(), 1u);
  ASSERT_TRUE(send_packet(peer.get(), std::string("\xff\xff\xff", 3)));
  EXPECT_FALSE(recv_within(peer.get()));

  // An unsolicited ack with nothing in flight, after a complete replay.
  peer = raw_connect(f.path);
  ASSERT_TRUE(send_packet(peer.get(), hello.SerializeAsString()));
  pb::WorkloadResponse ack;
  ack.mutable_ack();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(recv_within(peer.get()));
    ASSERT_TRUE(send_packet(peer.get(), ack.SerializeAsString()));
  }
  ASSERT_TRUE((*server)->wait_acked(5s));
  ASSERT_TRUE(send_packet(peer.get(), ack.SerializeAsString()));
  EXPECT_FALSE(recv_within(peer.get()));

  // The server still works for a proper client.
  Recorder rec;
  auto client = Client::start(f.path, rec.handler());
  ASSERT_TRUE(eventually([&] { return (*server)->stats().connections == 4; }));
  ASSERT_TRUE((*server)->wait_acked(5s));
  EXPECT_EQ(rec.take(), (Events{"add uid-a", "snapshot"}));
}

TEST(Zds, StopIsPromptWhileBackingOffOrConnected) {
  Fixture f;
  Recorder rec;
  auto client = Client::start(f.path, rec.handler());  // nobody listens: backing off
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  client->stop();
  client->stop();  // idempotent
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  EXPECT_EQ(client->stats().connects, 0u);

  auto server = Server::start(f.path);
  ASSERT_TRUE(server);
  auto connected = Client::start(f.path, rec.handler());
  ASSERT_TRUE((*server)->wait_acked(5s));
  t0 = std::chrono::steady_clock::now();
  connected->stop();
  (*server)->stop();
  (*server)->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  EXPECT_FALSE(std::filesystem::exists(f.path));
}

}  // namespace
}  // namespace zt::zds
