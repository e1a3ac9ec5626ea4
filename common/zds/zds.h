// ZDS: the node agent -> ztunnel protocol of Istio's ambient mode (facts §7.1, §7.2), so our
// agent works with Istio's ztunnel and our ztunnel with istio-cni.
//
// Transport: a SOCK_SEQPACKET unix socket (default /var/run/ztunnel/ztunnel.sock); the agent is
// the server. One protobuf message per packet (istio.workload.zds, proto/istio/workload/zds):
// ztunnel sends ZdsHello first; the agent replays its pods as AddWorkload (each carrying exactly
// one fd, the pod's netns, in SCM_RIGHTS) and may send KeepWorkload for pods whose netns it
// cannot reopen, then SnapshotSent; afterwards only AddWorkload and DelWorkload. ztunnel answers
// every request with WorkloadResponse{ack{error}}; an empty error is an ACK.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "common/netns/netns.h"

namespace zt::zds {

inline constexpr const char* kDefaultSocketPath = "/var/run/ztunnel/ztunnel.sock";
// ztunnel's receive buffer for one message (Istio uses 1 KiB; ours is roomier but bounded).
inline constexpr size_t kMaxMessageSize = 64 * 1024;

struct WorkloadInfo {
  std::string name;
  std::string namespace_name;
  std::string service_account;
  friend bool operator==(const WorkloadInfo&, const WorkloadInfo&) = default;
};

// ---- ztunnel side ----------------------------------------------------------------------------

// What ztunnel does with each request. Return "" to ACK, or the reason to NACK. Called on the
// client's own thread, one at a time, in the order the agent sent them.
struct ClientHandler {
  std::function<std::string(const std::string& uid, const WorkloadInfo& info, netns::Netns ns)> add;
  std::function<std::string(const std::string& uid)> keep;
  // After the replay: drop every pod that was neither added nor kept since the connection began.
  std::function<std::string()> snapshot_sent;
  std::function<std::string(const std::string& uid)> del;
};

struct ClientStats {
  uint64_t connects = 0;
  uint64_t adds = 0, keeps = 0, dels = 0, snapshots = 0, nacks = 0;
  bool connected = false;
  bool snapshot_received = false;  // on the current connection
};

// Connects to the agent, says hello, serves requests; on any error reconnects with backoff
// (10 ms doubling to 15 s). A protocol error from the agent (unknown message, an fd where none
// belongs, more than one fd, a truncated packet) NACKs when it can and reconnects.
class Client {
 public:
  static std::unique_ptr<Client> start(std::string socket_path, ClientHandler handler);
  virtual ~Client() = default;
  virtual void stop() = 0;  // idempotent; joins the thread
  virtual ClientStats stats() const = 0;
};

// ---- node agent side -------------------------------------------------------------------------

struct ServerStats {
  uint64_t connections = 0;  // ztunnel connections accepted
  uint64_t acks = 0, nacks = 0;
  bool connected = false;
  bool synced = false;  // the current ztunnel acknowledged SnapshotSent
  std::string last_nack;
};

// Listens on the socket path (replacing a stale socket file, creating its directory) and keeps
// every connected ztunnel in step with the desired set of pods. The newest ztunnel connection
// wins (an older one is closed). A NACKed AddWorkload is retried every 5 s.
class Server {
 public:
  static Result<std::unique_ptr<Server>> start(std::string socket_path);
  virtual ~Server() = default;
  virtual void stop() = 0;  // idempotent; removes the socket file

  // The desired set. upsert() sends AddWorkload now (if a ztunnel is connected) and on every
  // reconnection; `ns` may be invalid for a pod whose netns cannot be reopened (it is then sent
  // as KeepWorkload during a replay, and not at all afterwards). remove() sends DelWorkload.
  virtual void upsert(const std::string& uid, const WorkloadInfo& info, netns::Netns ns) = 0;
  virtual void remove(const std::string& uid) = 0;

  // Blocks until the connected ztunnel has answered everything sent so far (or the timeout).
  // Returns the NACK reasons received meanwhile; an error if no ztunnel is connected in time.
  virtual Result<std::vector<std::string>> wait_acked(std::chrono::milliseconds timeout) = 0;
  virtual ServerStats stats() const = 0;
};

// ---- framing (both sides; exposed for tests) -------------------------------------------------

struct Packet {
  std::string bytes;
  std::vector<UniqueFd> fds;
};
// Sends one packet with at most one fd in SCM_RIGHTS (fd < 0: none).
Status send_packet(int sock, const std::string& bytes, int fd = -1);
// Receives one packet (blocking). Truncation (MSG_TRUNC / MSG_CTRUNC) is an error; so is a
// closed peer ("agent closed the connection").
Result<Packet> recv_packet(int sock, size_t max_size = kMaxMessageSize);

}  // namespace zt::zds
