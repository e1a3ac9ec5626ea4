// CertificateManager: one certificate per workload identity this node acts for (ztunnel presents
// the identity of the pod it proxies, not its own). Certificates are issued through a
// CertificateProvider by a small pool of threads (at most kMaxConcurrentRequests CA requests at
// once, Istio's limit), ahead of need (prefetch) and at half-life (background refresh), so that a
// connection's coroutine normally finds a valid certificate and never waits for the CA
// (facts §3.3).
//
// Invariants: no caller is handed credentials whose leaf SAN differs from the identity asked
// for; a failure to refresh never replaces an unexpired certificate; after a failure the provider
// is not asked again for that identity until the backoff has passed (500 ms doubling to 150 s),
// so a down CA is not hammered by every new connection; at most one request per identity is
// queued or running, and queued requests run in priority order: a caller waiting (real time),
// then prefetch (warm-up), then rotation (background).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/identity/certificate_provider.h"
#include "common/identity/credentials.h"
#include "common/tls/spiffe.h"

namespace zt::identity {

// One row of /config_dump's certificate list.
struct CertificateInfo {
  tls::SpiffeId identity;
  // "Available" (a valid certificate is held), "Initializing" (first issuance under way) or
  // "Unavailable: <error>" (nothing usable; the last error says why).
  std::string state;
  std::string serial;  // empty when no certificate is held
  std::chrono::system_clock::time_point not_before, not_after, refresh_at;
  std::string last_error;  // the most recent issuance failure, cleared by a success
};

class CertificateManager {
 public:
  using Credentials = std::shared_ptr<const WorkloadCredentials>;

  static constexpr std::chrono::milliseconds kInitialBackoff{500};
  static constexpr std::chrono::seconds kMaxBackoff{150};
  static constexpr size_t kMaxConcurrentRequests = 8;

  enum class Priority { kRealTime = 0, kWarmup = 1, kBackground = 2 };

  explicit CertificateManager(std::shared_ptr<CertificateProvider> provider,
                              std::chrono::seconds validity = std::chrono::hours(24),
                              SystemClock clock = &std::chrono::system_clock::now);
  // Stops the refresher and the pool; waits for CA requests already running (each bounded by
  // the provider's deadline). Callers still waiting get an error.
  ~CertificateManager();
  CertificateManager(const CertificateManager&) = delete;
  CertificateManager& operator=(const CertificateManager&) = delete;

  // Thread-safe. Returns the cached credentials for `id`, first issuing them (new P-256 key, CSR,
  // provider) when there are none, when they are past half-life, or when they are not valid yet.
  // If issuing fails but the cached certificate has not expired, logs and keeps serving it.
  // Blocks while the provider works (start-up, tests; never from an I/O thread); concurrent
  // callers for the same identity wait for one issuance instead of starting their own.
  Result<Credentials> get(const tls::SpiffeId& id);

  // The data path's variant: completes on the caller's executor without blocking it. A valid
  // certificate is returned at once, even past half-life (a refresh is then queued behind it);
  // only when nothing valid is held does it wait for the CA, ahead of prefetch and rotation.
  // Cancellation (e.g. a drain) ends the wait with an error.
  awaitable<Result<Credentials>> get_async(tls::SpiffeId id);

  // Starts issuing `id` in the background unless a fresh certificate is held or a request is
  // already queued (warm-up priority). Returns at once.
  void prefetch(const tls::SpiffeId& id);

  // Stops tracking `id` (no workload on this node uses it any more); the background refresh
  // stops with it. Connections keep the credentials they already hold.
  void forget(const tls::SpiffeId& id);

  // Every tracked identity, ordered by identity.
  std::vector<CertificateInfo> list() const;

  // Starts a thread that queues a background refresh for every tracked certificate when it
  // reaches half-life (and retries failed ones after their backoff), so that connections find
  // fresh certificates. Idempotent.
  void start_background_refresh();

  // One pass of that refresher, now (tests with a fake clock drive rotation with it).
  void refresh_due();

 private:
  // Completion slot of one waiting caller; set once by the pool.
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<Credentials>> result;
    void set(Result<Credentials> r);
    Result<Credentials> wait();
    std::optional<Result<Credentials>> try_take();
  };

  // Guarded by mu_.
  struct Entry {
    explicit Entry(tls::SpiffeId i) : id(std::move(i)) {}
    const tls::SpiffeId id;
    Credentials creds;
    bool pending = false;            // a request is queued or running
    std::optional<Priority> queued;  // set while queued (not yet running)
    bool forgotten = false;
    std::vector<std::shared_ptr<Waiter>> waiters;
    std::string last_error;
    std::chrono::system_clock::time_point retry_at{};
    std::chrono::milliseconds backoff{0};
  };

  std::shared_ptr<Entry> entry_locked(const tls::SpiffeId& id);
  void enqueue_locked(const std::shared_ptr<Entry>& e, Priority p);
  // Queues what is due; returns when the next entry will be due (time_point::max() if none).
  std::chrono::system_clock::time_point refresh_due_locked(
      std::chrono::system_clock::time_point now);
  void worker_loop();
  void refresher_loop();
  void run_request(const std::shared_ptr<Entry>& e);
  Result<Credentials> issue(const tls::SpiffeId& id);

  const std::shared_ptr<CertificateProvider> provider_;
  const std::chrono::seconds validity_;
  const SystemClock clock_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;       // a request was queued, or stop_
  std::condition_variable refresher_cv_;  // stop_
  std::map<tls::SpiffeId, std::shared_ptr<Entry>> entries_;
  std::deque<std::pair<std::shared_ptr<Entry>, Priority>> queues_[3];  // by Priority
  std::vector<std::thread> workers_;  // grown on demand up to kMaxConcurrentRequests
  size_t idle_workers_ = 0;
  std::thread refresher_;
  bool stop_ = false;
};

}  // namespace zt::identity
