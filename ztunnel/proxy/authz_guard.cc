#include "ztunnel/proxy/authz_guard.h"

#include <vector>

#include "common/base/log.h"

namespace zt::proxy {
namespace {

std::string describe_peer(const authz::ConnectionInfo& conn) {
  return fmt::format(
      "src.addr=\"{}\" src.identity=\"{}\" dst.addr=\"{}\"", conn.source_ip.to_string(),
      conn.identity ? "spiffe://" + std::string(conn.identity->principal()) : "",
      net::format_endpoint(tcp::endpoint(conn.destination_ip, conn.destination_port)));
}

void log_dry_run(const authz::Decision& d, const authz::ConnectionInfo& conn,
                 std::string_view component) {
  for (const auto& note : d.dry_run) {
    ZT_LOG_INFO("component={} msg=\"{}\" policy=\"{}\" {}", component, note.message(),
                note.policy ? note.policy->key() : std::string(), describe_peer(conn));
  }
}

}  // namespace

authz::Decision check_authorization(const authz::ConnectionInfo& conn, const state::State& snapshot,
                                    const state::Workload& destination,
                                    std::string_view component) {
  auto d = authz::evaluate(conn, snapshot, destination);
  if (!d.dry_run.empty()) log_dry_run(d, conn, component);
  if (d.denied()) {
    ZT_LOG_INFO(
        "component={} msg=\"connection denied by authorization policy\" policy=\"{}\" "
        "reason=\"{}\" {}",
        component, d.policy_key(), d.reason(), describe_peer(conn));
  }
  return d;
}

std::shared_ptr<ConnectionTracker> ConnectionTracker::create(asio::any_io_executor ex,
                                                             state::StateStore& store) {
  std::shared_ptr<ConnectionTracker> t(new ConnectionTracker(std::move(ex)));
  std::weak_ptr<ConnectionTracker> weak = t;
  store.on_publish([weak](const std::shared_ptr<const state::State>& snapshot) {
    if (auto self = weak.lock()) self->post_recheck(snapshot);
  });
  return t;
}

void ConnectionTracker::post_recheck(std::shared_ptr<const state::State> snapshot) {
  std::lock_guard lock(post_mutex_);
  if (stopped_) return;
  asio::post(ex_, [self = shared_from_this(), snapshot = std::move(snapshot)] {
    self->recheck(snapshot);
  });
}

void ConnectionTracker::stop() {
  std::lock_guard lock(post_mutex_);
  stopped_ = true;
}

ConnectionTracker::Registration ConnectionTracker::track(
    authz::ConnectionInfo conn, std::shared_ptr<const state::Workload> destination, Closer close) {
  uint64_t id = next_id_++;
  entries_.emplace(id, Entry{std::move(conn), std::move(destination), std::move(close)});
  return Registration(shared_from_this(), id);
}

size_t ConnectionTracker::recheck(const std::shared_ptr<const state::State>& snapshot) {
  if (!snapshot || entries_.empty()) return 0;
  // Decide first, close after: a Closer may end other connections' registrations.
  std::vector<std::pair<uint64_t, authz::Decision>> denied;
  for (auto& [id, e] : entries_) {
    // The destination as the new snapshot knows it (its selector policies may have changed);
    // the one the connection was accepted for when it is gone.
    auto now = snapshot->find_workload_by_uid(e.destination->uid);
    if (now) e.destination = std::move(now);
    auto d = authz::evaluate(e.conn, *snapshot, *e.destination);
    if (d.denied()) denied.emplace_back(id, std::move(d));
  }
  size_t closed = 0;
  for (auto& [id, d] : denied) {
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    Entry e = std::move(it->second);
    entries_.erase(it);
    ZT_LOG_INFO(
        "component=authz msg=\"connection closed due to policy change\" policy=\"{}\" "
        "reason=\"{}\" {}",
        d.policy_key(), d.reason(), describe_peer(e.conn));
    if (e.close) e.close(d);
    ++closed;
  }
  return closed;
}

ConnectionTracker::Registration& ConnectionTracker::Registration::operator=(
    Registration&& o) noexcept {
  if (this != &o) {
    reset();
    tracker_ = std::move(o.tracker_);
    id_ = o.id_;
  }
  return *this;
}

void ConnectionTracker::Registration::reset() {
  if (tracker_) tracker_->entries_.erase(id_);
  tracker_.reset();
}

}  // namespace zt::proxy
