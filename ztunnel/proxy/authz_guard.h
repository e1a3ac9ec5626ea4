// Enforcing L4 authorization on inbound connections (DESIGN §7): the check at connection time
// (with its dry-run log lines) and ConnectionTracker, which re-checks every open inbound
// connection of one worker when a new state snapshot is published and closes those the new
// policies deny.
//
// Threading: a tracker belongs to one worker. track(), the Registration and recheck() run on
// that worker's thread only, so the data path takes no lock. StateStore listeners run on the
// writer's thread; the tracker's listener only posts a recheck to the worker (under a mutex
// that stop() also takes, so nothing is posted once the owner is going away).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/async/asio.h"
#include "ztunnel/authz/authz.h"
#include "ztunnel/proxy/access_log.h"
#include "ztunnel/state/store.h"

namespace zt::proxy {

// Why a policy change closed a connection. When set, it goes into the connection's access record
// at scope exit, whatever error the copy reported after the sockets were closed under it.
class RevocationNote {
 public:
  explicit RevocationNote(ConnectionRecord& rec) : rec_(rec) {}
  RevocationNote(const RevocationNote&) = delete;
  RevocationNote& operator=(const RevocationNote&) = delete;
  ~RevocationNote() {
    if (!reason_.empty()) rec_.set_error(reason_, "DENY");
  }
  void set(const authz::Decision& d) {
    reason_ = "connection closed due to policy change: " + d.reason();
  }

 private:
  ConnectionRecord& rec_;
  std::string reason_;
};

// evaluate() plus the log lines: dry-run notes at INFO, a denial at INFO naming the policy.
// `component` is "inbound" or "inbound_plaintext"; `src` and `dst` are for the log only.
authz::Decision check_authorization(const authz::ConnectionInfo& conn, const state::State& snapshot,
                                    const state::Workload& destination, std::string_view component);

class ConnectionTracker : public std::enable_shared_from_this<ConnectionTracker> {
 public:
  // Called on the worker thread with the decision that denies the connection now. It must
  // close the connection (closing sockets, aborting streams) without destroying the tracker.
  using Closer = std::function<void(const authz::Decision&)>;

  // Subscribes to `store`: every publish re-checks this worker's connections on `ex`.
  static std::shared_ptr<ConnectionTracker> create(asio::any_io_executor ex,
                                                   state::StateStore& store);

  ConnectionTracker(const ConnectionTracker&) = delete;
  ConnectionTracker& operator=(const ConnectionTracker&) = delete;

  // Keeps a connection tracked while alive; declare it after everything its Closer touches.
  class Registration {
   public:
    Registration() = default;
    Registration(Registration&& o) noexcept : tracker_(std::move(o.tracker_)), id_(o.id_) {}
    Registration& operator=(Registration&& o) noexcept;
    ~Registration() { reset(); }
    void reset();

   private:
    friend class ConnectionTracker;
    Registration(std::shared_ptr<ConnectionTracker> t, uint64_t id)
        : tracker_(std::move(t)), id_(id) {}
    std::shared_ptr<ConnectionTracker> tracker_;
    uint64_t id_ = 0;
  };

  // Worker thread only.
  [[nodiscard]] Registration track(authz::ConnectionInfo conn,
                                   std::shared_ptr<const state::Workload> destination,
                                   Closer close);
  size_t size() const { return entries_.size(); }

  // Worker thread only: re-evaluates every tracked connection against `snapshot` and closes
  // (and forgets) the denied ones. Returns how many were closed.
  size_t recheck(const std::shared_ptr<const state::State>& snapshot);

  // Any thread: no recheck is posted after this returns. The owner calls it before the
  // executor goes away.
  void stop();

 private:
  explicit ConnectionTracker(asio::any_io_executor ex) : ex_(std::move(ex)) {}
  void post_recheck(std::shared_ptr<const state::State> snapshot);

  struct Entry {
    authz::ConnectionInfo conn;
    std::shared_ptr<const state::Workload> destination;
    Closer close;
  };

  asio::any_io_executor ex_;
  std::mutex post_mutex_;  // guards stopped_ (writer thread vs owner), never the data path
  bool stopped_ = false;
  std::unordered_map<uint64_t, Entry> entries_;  // worker thread only
  uint64_t next_id_ = 1;
};

}  // namespace zt::proxy
