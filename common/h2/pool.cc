#include "common/h2/pool.h"

#include <algorithm>

#include "common/base/log.h"

namespace zt::h2 {

std::string PoolKey::to_string() const {
  return fmt::format("{}->{}@{} from {}", source_identity, destination_identities, destination,
                     source_ip);
}

std::string join_identities(std::vector<std::string> identities) {
  std::sort(identities.begin(), identities.end());
  identities.erase(std::unique(identities.begin(), identities.end()), identities.end());
  std::string out;
  for (const auto& id : identities) {
    if (!out.empty()) out += ',';
    out += id;
  }
  return out;
}

std::vector<tls::SpiffeId> split_identities(std::string_view joined) {
  std::vector<tls::SpiffeId> out;
  size_t pos = 0;
  while (!joined.empty() && pos <= joined.size()) {
    size_t end = joined.find(',', pos);
    if (end == std::string_view::npos) end = joined.size();
    if (auto id = tls::SpiffeId::parse(joined.substr(pos, end - pos))) out.push_back(*id);
    pos = end + 1;
  }
  return out;
}

size_t PoolKeyHash::operator()(const PoolKey& k) const {
  std::hash<std::string> h;
  size_t v = h(k.source_identity);
  v = v * 31 + h(k.destination_identities);
  v = v * 31 + h(k.destination);
  v = v * 31 + h(k.source_ip);
  return v;
}

Pool::Pool(asio::any_io_executor ex, uint32_t max_streams, Dialer dialer, async::TaskGroup& tasks)
    : ex_(std::move(ex)), max_streams_(max_streams), dialer_(std::move(dialer)), tasks_(tasks) {}

Pool::~Pool() { *alive_ = false; }

size_t Pool::connections_open() const {
  size_t n = 0;
  for (const auto& [k, list] : entries_) n += list.size();
  return n;
}

Pool::EntryPtr Pool::find_usable(std::list<EntryPtr>& entries) {
  for (auto& e : entries) {
    if (e->failed) continue;
    uint32_t limit = max_streams_;
    if (e->conn) {
      if (e->conn->closed() || e->conn->draining()) continue;
      limit = std::min(limit, e->conn->peer_max_streams());
    }
    if (e->reserved < limit) return e;
  }
  return nullptr;
}

void Pool::remove(const PoolKey& key, const EntryPtr& e) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  it->second.remove(e);
  if (it->second.empty()) entries_.erase(it);
}

namespace {

awaitable<void> run_pooled(std::shared_ptr<Connection> conn, std::weak_ptr<bool> alive,
                           std::function<void()> on_done) {
  co_await conn->run();
  if (auto a = alive.lock(); a && *a) on_done();
}

}  // namespace

awaitable<Result<std::shared_ptr<Stream>>> Pool::connect(const PoolKey& key,
                                                         const std::string& authority,
                                                         const Headers& headers) {
  // A second attempt covers a pooled connection that closed between selection and use.
  for (int attempt = 0;; ++attempt) {
    auto& list = entries_[key];
    EntryPtr e = find_usable(list);
    if (!e) {
      e = std::make_shared<Entry>(ex_);
      list.push_back(e);
      e->reserved = 1;
      // If this coroutine is cancelled (or throws) while dialling, the entry must not stay
      // "dialling" forever: waiters would pick it and hang.
      struct DialGuard {
        Pool* pool;
        const PoolKey& key;
        EntryPtr e;
        ~DialGuard() {
          if (!e->dialling) return;
          e->dialling = false;
          e->failed = true;
          e->error = Error{{}, "HBONE dial abandoned"};
          e->reserved = 0;
          e->ready.notify();
          pool->remove(key, e);
        }
      } guard{this, key, e};
      auto dialled = co_await dialer_(key);
      e->dialling = false;
      if (!dialled) {
        e->failed = true;
        e->error = dialled.error();
        e->reserved = 0;
        e->ready.notify();
        remove(key, e);
        co_return tl::unexpected(dialled.error());
      }
      e->conn = std::move(*dialled);
      ++connections_opened_;
      if (draining_) e->conn->drain();
      ZT_LOG_DEBUG("component=pool msg=\"new HBONE connection\" key=\"{}\"", key.to_string());
      tasks_.spawn(run_pooled(e->conn, alive_, [this, key, e] { remove(key, e); }),
                   "hbone-client-connection");
      e->ready.notify();
    } else {
      ++e->reserved;
      while (e->dialling) {
        if (!co_await e->ready.wait()) {
          --e->reserved;
          co_return fail("HBONE connect cancelled while waiting for a pooled connection");
        }
      }
      if (e->failed) {
        --e->reserved;
        co_return tl::unexpected(e->error);
      }
    }
    // Released when the stream is dropped, or right here when opening fails.
    std::shared_ptr<void> lease(nullptr, [e](void*) { --e->reserved; });
    auto stream = co_await e->conn->open_connect(authority, headers);
    if (stream) {
      (*stream)->set_lease(std::move(lease));
      co_return stream;
    }
    auto cs = co_await asio::this_coro::cancellation_state;
    if (attempt == 0 && cs.cancelled() == asio::cancellation_type::none &&
        (e->conn->closed() || e->conn->draining())) {
      continue;
    }
    co_return stream;
  }
}

void Pool::drain_all() {
  draining_ = true;
  for (auto& [k, list] : entries_) {
    for (auto& e : list) {
      if (e->conn) e->conn->drain();
    }
  }
}

}  // namespace zt::h2
