// Pool of outbound HBONE connections of one worker.
//
// Invariants:
// - Keyed as in DESIGN §4: {source identity, expected destination identities, destination
//   address, source IP}. Connections are never shared across keys, so a connection's TLS
//   identities always match what the stream needs.
// - A connection carries at most `max_streams` streams (and no more than the peer allows) at a
//   time, counting streams still being opened; the next stream opens a new connection.
// - Concurrent demand for a key that has no connection yet waits for the one being dialled
//   instead of dialling many (up to `max_streams` waiters per dial).
// - A connection leaves the pool when it closes or drains (GOAWAY); idle ones close themselves
//   after Settings::idle_timeout.
// - Single-threaded: one Pool per worker io_context.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/async/task_group.h"
#include "common/h2/connection.h"
#include "common/tls/spiffe.h"

namespace zt::h2 {

struct PoolKey {
  std::string source_identity;
  std::string destination_identities;  // sorted, comma-joined
  std::string destination;             // ip:port
  std::string source_ip;

  std::string to_string() const;
  friend bool operator==(const PoolKey&, const PoolKey&) = default;
};

// PoolKey::destination_identities from a list of SPIFFE URIs (sorted, duplicates dropped,
// comma-joined), and back to identities (entries that do not parse are skipped).
std::string join_identities(std::vector<std::string> identities);
std::vector<tls::SpiffeId> split_identities(std::string_view joined);

struct PoolKeyHash {
  size_t operator()(const PoolKey& k) const;
};

class Pool {
 public:
  // Opens TCP + TLS for a key and wraps it in a client Connection (not yet running).
  using Dialer = std::function<awaitable<Result<std::shared_ptr<Connection>>>(const PoolKey&)>;

  Pool(asio::any_io_executor ex, uint32_t max_streams, Dialer dialer, async::TaskGroup& tasks);
  ~Pool();

  // A CONNECT stream to `authority` over a pooled connection for `key`.
  awaitable<Result<std::shared_ptr<Stream>>> connect(const PoolKey& key,
                                                     const std::string& authority,
                                                     const Headers& headers);

  // GOAWAY to every pooled connection (drain).
  void drain_all();

  // Connections dialled since start, and pooled now.
  uint64_t connections_opened() const { return connections_opened_; }
  size_t connections_open() const;

 private:
  struct Entry {
    explicit Entry(asio::any_io_executor ex) : ready(ex) {}
    std::shared_ptr<Connection> conn;  // null while dialling
    bool dialling = true;
    bool failed = false;
    Error error;
    uint32_t reserved = 0;  // streams opened or being opened on it
    async::Event ready;
  };
  using EntryPtr = std::shared_ptr<Entry>;

  EntryPtr find_usable(std::list<EntryPtr>& entries);
  void remove(const PoolKey& key, const EntryPtr& e);

  asio::any_io_executor ex_;
  uint32_t max_streams_;
  Dialer dialer_;
  async::TaskGroup& tasks_;
  std::unordered_map<PoolKey, std::list<EntryPtr>, PoolKeyHash> entries_;
  uint64_t connections_opened_ = 0;
  bool draining_ = false;  // connections dialled from now on are drained at once
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace zt::h2
