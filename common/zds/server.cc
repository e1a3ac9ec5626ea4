// ZDS server (node agent side): keeps the newest ztunnel connection in step with the desired set.
//
// One thread owns the listening and connected sockets and does all I/O; upsert/remove/
// wait_acked/stats only touch the state under mu_ and wake the thread. At most one request is in
// flight: the next is sent when the previous one is answered (Istio's agent waits for each ack).
//
// Per connection: wait for ZdsHello; replay every desired pod as AddWorkload (KeepWorkload when
// its netns is not valid), then SnapshotSent; afterwards queued Add/Del in call order. A NACKed
// AddWorkload is queued again 5 s later.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <poll.h>
#include <unistd.h>

#include "common/base/log.h"
#include "common/zds/packet_internal.h"
#include "common/zds/zds.h"
#include "istio/workload/zds/zds.pb.h"

namespace zt::zds {
namespace {

namespace pb = istio::workload::zds;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kRetryNacked = 5s;

std::error_code errno_code(int e = errno) { return {e, std::system_category()}; }

// mkdir -p for the socket's directory.
Status make_directories(const std::string& dir) {
  if (dir.empty()) return {};
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      return fail(errno_code(), fmt::format("create directory {}", part));
    }
  }
  return {};
}

struct Entry {
  WorkloadInfo info;
  netns::Netns ns;
  std::optional<Clock::time_point> retry_at;  // set after a NACK
};

enum class OpKind { kAdd, kKeep, kDel, kSnapshot };

struct Op {
  OpKind kind;
  std::string uid;
};

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::kAdd:
      return "AddWorkload";
    case OpKind::kKeep:
      return "KeepWorkload";
    case OpKind::kDel:
      return "DelWorkload";
    case OpKind::kSnapshot:
      return "SnapshotSent";
  }
  return "?";
}

class ServerImpl final : public Server {
 public:
  ServerImpl(std::string path, UniqueFd listener)
      : path_(std::move(path)), listener_(std::move(listener)) {}
  ~ServerImpl() override { stop(); }

  void begin() {
    ::lstat(path_.c_str(), &bound_);
    thread_ = std::thread([this] { run(); });
  }

  void stop() override {
    std::call_once(stop_once_, [this] {
      stopping_ = true;
      waker_.wake();
      if (thread_.joinable()) thread_.join();
      listener_.reset();
      // Only our own socket file: a newer agent may already have replaced it.
      struct stat st {};
      if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == bound_.st_ino &&
          st.st_dev == bound_.st_dev) {
        ::unlink(path_.c_str());
      }
      std::lock_guard lock(mu_);
      stats_.connected = false;
      stats_.synced = false;
      live_ = false;
      cv_.notify_all();
    });
  }

  void upsert(const std::string& uid, const WorkloadInfo& info, netns::Netns ns) override {
    std::lock_guard lock(mu_);
    auto& e = desired_[uid];
    e.info = info;
    e.ns = std::move(ns);
    e.retry_at.reset();
    if (live_ && e.ns.valid()) enqueue_add(uid);
    waker_.wake();
  }

  void remove(const std::string& uid) override {
    std::lock_guard lock(mu_);
    desired_.erase(uid);
    if (live_) queue_.push_back(Op{OpKind::kDel, uid});
    waker_.wake();
  }

  Result<std::vector<std::string>> wait_acked(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mu_);
    bool done = cv_.wait_for(
        lock, timeout, [this] { return stopping_ || (live_ && queue_.empty() && !in_flight_); });
    if (stopping_) return fail("zds server stopped");
    if (!done) {
      if (!live_) return failf("no ztunnel connected to {} within {} ms", path_, timeout.count());
      return failf("ztunnel did not answer {} request(s) within {} ms",
                   queue_.size() + (in_flight_ ? 1 : 0), timeout.count());
    }
    return std::exchange(nacks_since_wait_, {});
  }

  ServerStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  // Queues an Add unless one for this uid is already waiting (it will carry the newest info).
  void enqueue_add(const std::string& uid) {
    bool queued = std::any_of(queue_.begin(), queue_.end(), [&](const Op& op) {
      return op.kind == OpKind::kAdd && op.uid == uid;
    });
    if (!queued) queue_.push_back(Op{OpKind::kAdd, uid});
  }

  void run() {
    for (;;) {
      int timeout = next_timeout_ms();
      pollfd fds[3] = {
          {waker_.fd(), POLLIN, 0}, {listener_.get(), POLLIN, 0}, {conn_.get(), POLLIN, 0}};
      int r = ::poll(fds, conn_.valid() ? 3 : 2, timeout);
      if (stopping_) break;
      if (r < 0 && errno != EINTR) {
        ZT_LOG_ERROR("component=zds-server poll: {}", std::strerror(errno));
        std::this_thread::sleep_for(10ms);
        continue;
      }
      if (fds[0].revents) waker_.drain();
      if (fds[1].revents & POLLIN) accept_one();
      if (conn_.valid() && fds[2].revents) read_answer();
      requeue_due_retries();
      send_next();
    }
    close_connection("server stopping");
  }

  int next_timeout_ms() {
    std::lock_guard lock(mu_);
    if (!live_) return -1;
    std::optional<Clock::time_point> next;
    for (const auto& [uid, e] : desired_) {
      if (e.retry_at && (!next || *e.retry_at < *next)) next = e.retry_at;
    }
    if (!next) return -1;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*next - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(ms + 1, 0, 60'000));
  }

  void accept_one() {
    UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) {
      if (errno != EAGAIN && errno != EINTR) {
        ZT_LOG_WARN("component=zds-server accept on {}: {}", path_, std::strerror(errno));
      }
      return;
    }
    timeval tv{5, 0};
    ::setsockopt(c.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (conn_.valid()) close_connection("a newer ztunnel connected");
    conn_ = std::move(c);
    awaiting_hello_ = true;
    std::lock_guard lock(mu_);
    stats_.connections++;
    stats_.connected = true;
    stats_.synced = false;
    ZT_LOG_INFO("component=zds-server ztunnel connected to {}", path_);
    cv_.notify_all();
  }

  void close_connection(const char* why) {
    if (!conn_.valid()) return;
    ZT_LOG_INFO("component=zds-server closing ztunnel connection: {}", why);
    {
      // State first, so nobody who sees the peer hang up can still read it as connected.
      std::lock_guard lock(mu_);
      live_ = false;
      queue_.clear();
      in_flight_.reset();
      sent_on_conn_.clear();
      stats_.connected = false;
      stats_.synced = false;
      cv_.notify_all();
    }
    conn_.reset();
    awaiting_hello_ = false;
  }

  void read_answer() {
    auto raw = detail::recv_raw(conn_.get(), kMaxMessageSize, true);
    if (!raw) {
      if (raw.error().code == std::errc::resource_unavailable_try_again) return;
      close_connection("read error");
      ZT_LOG_WARN("component=zds-server reading from ztunnel: {}", raw.error().describe());
      return;
    }
    if (raw->closed) return close_connection("ztunnel closed the connection");
    if (!raw->fds.empty() || raw->truncated || raw->control_truncated) {
      return close_connection("protocol error: ztunnel sent fds or an oversized packet");
    }
    if (awaiting_hello_) {
      pb::ZdsHello hello;
      if (!hello.ParseFromString(raw->bytes) || hello.version() != pb::V1) {
        return close_connection("protocol error: expected ZdsHello{version: V1}");
      }
      awaiting_hello_ = false;
      start_replay();
      return;
    }
    pb::WorkloadResponse resp;
    if (!resp.ParseFromString(raw->bytes) || !resp.has_ack()) {
      return close_connection("protocol error: expected WorkloadResponse{ack}");
    }
    bool out_of_step = false;
    {
      std::lock_guard lock(mu_);
      if (in_flight_) {
        record_answer(resp.ack().error());
      } else {
        out_of_step = true;
      }
    }
    if (out_of_step) close_connection("protocol error: an answer with no request in flight");
  }

  // Under mu_: the answer to the request in flight.
  void record_answer(const std::string& error) {
    Op op = std::move(*in_flight_);
    in_flight_.reset();
    if (error.empty()) {
      stats_.acks++;
      if (op.kind == OpKind::kSnapshot) stats_.synced = true;
      if (op.kind == OpKind::kAdd) {
        if (auto it = desired_.find(op.uid); it != desired_.end()) it->second.retry_at.reset();
      }
    } else {
      stats_.nacks++;
      std::string reason = op.uid.empty()
                               ? fmt::format("{}: {}", op_name(op.kind), error)
                               : fmt::format("{} {}: {}", op_name(op.kind), op.uid, error);
      ZT_LOG_WARN("component=zds-server ztunnel NACKed {}", reason);
      stats_.last_nack = reason;
      nacks_since_wait_.push_back(std::move(reason));
      if (op.kind == OpKind::kAdd) {
        if (auto it = desired_.find(op.uid); it != desired_.end()) {
          it->second.retry_at = Clock::now() + kRetryNacked;
        }
      }
    }
    cv_.notify_all();
  }

  void start_replay() {
    std::lock_guard lock(mu_);
    queue_.clear();
    for (auto& [uid, e] : desired_) {
      e.retry_at.reset();
      queue_.push_back(Op{e.ns.valid() ? OpKind::kAdd : OpKind::kKeep, uid});
    }
    queue_.push_back(Op{OpKind::kSnapshot, ""});
    live_ = true;
    cv_.notify_all();
  }

  void requeue_due_retries() {
    std::lock_guard lock(mu_);
    if (!live_) return;
    auto now = Clock::now();
    for (auto& [uid, e] : desired_) {
      if (e.retry_at && *e.retry_at <= now) {
        e.retry_at.reset();
        if (e.ns.valid()) enqueue_add(uid);
      }
    }
  }

  // Sends the next queued request when nothing is in flight.
  void send_next() {
    while (conn_.valid()) {
      std::string bytes;
      std::optional<netns::Netns> fd_to_send;
      {
        std::lock_guard lock(mu_);
        if (!live_ || in_flight_ || queue_.empty()) return;
        Op op = std::move(queue_.front());
        queue_.pop_front();
        pb::WorkloadRequest req;
        switch (op.kind) {
          case OpKind::kAdd:
          case OpKind::kKeep: {
            auto it = desired_.find(op.uid);
            if (it == desired_.end()) continue;  // removed meanwhile
            if (it->second.ns.valid() && op.kind == OpKind::kAdd) {
              auto dup = it->second.ns.duplicate();
              if (!dup) {
                ZT_LOG_ERROR("component=zds-server AddWorkload {}: {}", op.uid,
                             dup.error().describe());
                it->second.retry_at = Clock::now() + kRetryNacked;
                continue;
              }
              fd_to_send = std::move(*dup);
              auto* add = req.mutable_add();
              add->set_uid(op.uid);
              auto* info = add->mutable_workload_info();
              info->set_name(it->second.info.name);
              info->set_namespace_(it->second.info.namespace_name);
              info->set_service_account(it->second.info.service_account);
            } else if (op.kind == OpKind::kKeep && !stats_.synced) {
              req.mutable_keep()->set_uid(op.uid);
            } else {
              continue;  // no netns and the replay is over: nothing to send
            }
            sent_on_conn_.insert(op.uid);
            break;
          }
          case OpKind::kDel:
            // ztunnel never heard of it on this connection: nothing to delete.
            if (sent_on_conn_.erase(op.uid) == 0) continue;
            req.mutable_del()->set_uid(op.uid);
            break;
          case OpKind::kSnapshot:
            req.mutable_snapshot_sent();
            break;
        }
        bytes = req.SerializeAsString();
        in_flight_ = std::move(op);
      }
      auto sent = send_packet(conn_.get(), bytes, fd_to_send ? fd_to_send->fd() : -1);
      if (!sent) {
        ZT_LOG_WARN("component=zds-server sending to ztunnel: {}", sent.error().describe());
        close_connection("send failed");
      }
      return;
    }
  }

  const std::string path_;
  UniqueFd listener_;
  struct stat bound_ {};  // the socket file we created
  detail::Waker waker_;
  std::atomic<bool> stopping_{false};
  std::once_flag stop_once_;
  std::thread thread_;

  // Owned by the server thread.
  UniqueFd conn_;
  bool awaiting_hello_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> desired_;
  bool live_ = false;  // connected and hello received: requests may be queued
  std::deque<Op> queue_;
  std::optional<Op> in_flight_;
  std::set<std::string> sent_on_conn_;  // uids added or kept on this connection
  std::vector<std::string> nacks_since_wait_;
  ServerStats stats_;
};

}  // namespace

Result<std::unique_ptr<Server>> Server::start(std::string socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return failf("zds socket path \"{}\" is empty or too long", socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  auto slash = socket_path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    if (auto ok = make_directories(socket_path.substr(0, slash)); !ok) {
      return tl::unexpected(wrap(ok.error(), "zds server"));
    }
  }
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return failf("zds server: {} exists and is not a socket", socket_path);
    }
    ::unlink(socket_path.c_str());  // stale socket from an earlier run
  }
  UniqueFd listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener) return fail(errno_code(), "zds server: socket");
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail(errno_code(), fmt::format("zds server: bind {}", socket_path));
  }
  if (::listen(listener.get(), 16) != 0) {
    return fail(errno_code(), fmt::format("zds server: listen on {}", socket_path));
  }
  auto server = std::make_unique<ServerImpl>(std::move(socket_path), std::move(listener));
  server->begin();
  return server;
}

}  // namespace zt::zds
