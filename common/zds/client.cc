// ZDS client (ztunnel side): connect, say hello, answer every request in order, reconnect.
//
// One thread per client does all socket I/O with blocking calls; poll() on the socket and a
// Waker makes stop() prompt. The socket fd is owned by that thread; stop() only wakes it.
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include <poll.h>

#include "common/base/log.h"
#include "common/zds/packet_internal.h"
#include "common/zds/zds.h"
#include "istio/workload/zds/zds.pb.h"

namespace zt::zds {
namespace {

namespace pb = istio::workload::zds;
using namespace std::chrono_literals;

constexpr auto kMinBackoff = 10ms;
constexpr auto kMaxBackoff = 15s;

class ClientImpl final : public Client {
 public:
  ClientImpl(std::string path, ClientHandler handler)
      : path_(std::move(path)), handler_(std::move(handler)) {
    thread_ = std::thread([this] { run(); });
  }
  ~ClientImpl() override { stop(); }

  void stop() override {
    std::call_once(stop_once_, [this] {
      stopping_ = true;
      waker_.wake();
      if (thread_.joinable()) thread_.join();
    });
  }

  ClientStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  // Why serve() returned: the agent went away or misbehaved (reconnect), or stop().
  enum class End { kStopped, kReconnect };

  void run() {
    auto backoff = std::chrono::milliseconds(kMinBackoff);
    while (!stopping_) {
      bool useful = false;
      auto sock = connect();
      if (sock) {
        {
          std::lock_guard lock(mu_);
          stats_.connects++;
          stats_.connected = true;
          stats_.snapshot_received = false;
        }
        ZT_LOG_INFO("component=zds connected to node agent at {}", path_);
        auto end = serve(sock->get(), useful);
        {
          std::lock_guard lock(mu_);
          stats_.connected = false;
          stats_.snapshot_received = false;
        }
        if (end == End::kStopped) break;
      } else {
        ZT_LOG_DEBUG("component=zds {}", sock.error().describe());
      }
      // A connection that carried real requests starts the backoff over.
      if (useful) backoff = kMinBackoff;
      if (!sleep(backoff)) break;
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, kMaxBackoff);
    }
  }

  // Waits `d` unless stop() is called first; false when stopping.
  bool sleep(std::chrono::milliseconds d) {
    pollfd p{waker_.fd(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(d.count()));
    return !stopping_;
  }

  Result<UniqueFd> connect() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.size() >= sizeof(addr.sun_path)) return failf("zds socket path too long: {}", path_);
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!sock) return fail(std::error_code(errno, std::system_category()), "zds socket");
    // A stuck agent must not hold this thread forever in a send.
    timeval tv{5, 0};
    ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return fail(std::error_code(errno, std::system_category()),
                  fmt::format("connect to node agent at {}", path_));
    }
    return sock;
  }

  Status send_ack(int sock, const std::string& error) {
    pb::WorkloadResponse resp;
    resp.mutable_ack()->set_error(error);
    if (!error.empty()) {
      std::lock_guard lock(mu_);
      stats_.nacks++;
    }
    return send_packet(sock, resp.SerializeAsString());
  }

  End serve(int sock, bool& useful) {
    pb::ZdsHello hello;
    hello.set_version(pb::V1);
    if (auto ok = send_packet(sock, hello.SerializeAsString()); !ok) {
      ZT_LOG_WARN("component=zds sending hello to {}: {}", path_, ok.error().describe());
      return End::kReconnect;
    }
    for (;;) {
      pollfd fds[2] = {{sock, POLLIN, 0}, {waker_.fd(), POLLIN, 0}};
      int r = ::poll(fds, 2, -1);
      if (stopping_) return End::kStopped;
      if (r < 0) {
        if (errno == EINTR) continue;
        ZT_LOG_WARN("component=zds poll: {}", std::strerror(errno));
        return End::kReconnect;
      }
      if (fds[0].revents == 0) continue;
      auto raw = detail::recv_raw(sock, kMaxMessageSize, true);
      if (!raw) {
        if (raw.error().code == std::errc::resource_unavailable_try_again) continue;
        ZT_LOG_WARN("component=zds reading from node agent: {}", raw.error().describe());
        return End::kReconnect;
      }
      if (raw->closed) {
        ZT_LOG_INFO("component=zds node agent closed the connection");
        return End::kReconnect;
      }
      // A malformed request: NACK it naming the problem, close its fds, reconnect.
      std::string problem = check(*raw);
      pb::WorkloadRequest req;
      if (problem.empty()) problem = check_fds(*raw, req);
      if (!problem.empty()) {
        raw->fds.clear();
        ZT_LOG_WARN("component=zds protocol error from node agent: {}", problem);
        (void)send_ack(sock, problem);
        return End::kReconnect;
      }
      std::string answer = dispatch(req, std::move(raw->fds));
      useful = true;
      if (!answer.empty()) ZT_LOG_WARN("component=zds NACK: {}", answer);
      if (auto ok = send_ack(sock, answer); !ok) {
        ZT_LOG_WARN("component=zds answering node agent: {}", ok.error().describe());
        return End::kReconnect;
      }
    }
  }

  static std::string check(const detail::RawPacket& raw) {
    if (raw.truncated) return fmt::format("request larger than {} bytes", kMaxMessageSize);
    if (raw.control_truncated) return "request carries too many fds (control data truncated)";
    return "";
  }

  static std::string check_fds(const detail::RawPacket& raw, pb::WorkloadRequest& req) {
    if (!req.ParseFromString(raw.bytes)) {
      return fmt::format("malformed WorkloadRequest ({} bytes)", raw.bytes.size());
    }
    size_t n = raw.fds.size();
    switch (req.payload_case()) {
      case pb::WorkloadRequest::kAdd:
        if (n != 1) {
          return fmt::format("AddWorkload for {} carries {} fds, expected exactly 1 (the netns)",
                             req.add().uid(), n);
        }
        return "";
      case pb::WorkloadRequest::kDel:
        if (n != 0)
          return fmt::format("DelWorkload for {} carries {} fds, expected none", req.del().uid(),
                             n);
        return "";
      case pb::WorkloadRequest::kKeep:
        if (n != 0)
          return fmt::format("KeepWorkload for {} carries {} fds, expected none", req.keep().uid(),
                             n);
        return "";
      case pb::WorkloadRequest::kSnapshotSent:
        if (n != 0) return fmt::format("SnapshotSent carries {} fds, expected none", n);
        return "";
      default:
        return "unknown WorkloadRequest (no known payload)";
    }
  }

  std::string dispatch(const pb::WorkloadRequest& req, std::vector<UniqueFd> fds) {
    switch (req.payload_case()) {
      case pb::WorkloadRequest::kAdd: {
        const auto& add = req.add();
        {
          std::lock_guard lock(mu_);
          stats_.adds++;
        }
        auto ns = netns::Netns::adopt(std::move(fds[0]));
        if (!ns) {
          return fmt::format("AddWorkload for {}: {}", add.uid(), ns.error().describe());
        }
        WorkloadInfo info{add.workload_info().name(), add.workload_info().namespace_(),
                          add.workload_info().service_account()};
        if (!handler_.add) return "";
        return handler_.add(add.uid(), info, std::move(*ns));
      }
      case pb::WorkloadRequest::kKeep: {
        bool after_snapshot;
        {
          std::lock_guard lock(mu_);
          stats_.keeps++;
          after_snapshot = stats_.snapshot_received;
        }
        if (after_snapshot) {
          return fmt::format("KeepWorkload for {} after SnapshotSent", req.keep().uid());
        }
        return handler_.keep ? handler_.keep(req.keep().uid()) : "";
      }
      case pb::WorkloadRequest::kSnapshotSent: {
        {
          std::lock_guard lock(mu_);
          stats_.snapshots++;
        }
        std::string answer = handler_.snapshot_sent ? handler_.snapshot_sent() : "";
        std::lock_guard lock(mu_);
        stats_.snapshot_received = true;
        return answer;
      }
      case pb::WorkloadRequest::kDel: {
        {
          std::lock_guard lock(mu_);
          stats_.dels++;
        }
        return handler_.del ? handler_.del(req.del().uid()) : "";
      }
      default:
        return "unknown WorkloadRequest";
    }
  }

  const std::string path_;
  const ClientHandler handler_;
  detail::Waker waker_;
  std::atomic<bool> stopping_{false};
  std::once_flag stop_once_;
  mutable std::mutex mu_;
  ClientStats stats_;
  std::thread thread_;  // last: starts after everything above is built
};

}  // namespace

std::unique_ptr<Client> Client::start(std::string socket_path, ClientHandler handler) {
  return std::make_unique<ClientImpl>(std::move(socket_path), std::move(handler));
}

}  // namespace zt::zds
