#include "common/identity/certificate_manager.h"

#include <algorithm>

#include "common/base/log.h"
#include "common/identity/csr.h"
#include "common/tls/certs.h"

namespace zt::identity {
namespace {

using std::chrono::system_clock;
using Credentials = CertificateManager::Credentials;

// Good to hand out without asking the CA: inside [not_before, refresh_at).
bool fresh(const Credentials& c, system_clock::time_point now) {
  return c && now >= c->cert.not_before && now < c->refresh_at;
}

// Still worth serving when a refresh failed or is under way: not expired.
bool usable(const Credentials& c, system_clock::time_point now) {
  return c && now < c->cert.not_after;
}

}  // namespace

void CertificateManager::Waiter::set(Result<Credentials> r) {
  {
    std::lock_guard lock(mu);
    result = std::move(r);
  }
  cv.notify_all();
}

Result<Credentials> CertificateManager::Waiter::wait() {
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return result.has_value(); });
  return std::move(*result);
}

std::optional<Result<Credentials>> CertificateManager::Waiter::try_take() {
  std::lock_guard lock(mu);
  return std::exchange(result, std::nullopt);
}

CertificateManager::CertificateManager(std::shared_ptr<CertificateProvider> provider,
                                       std::chrono::seconds validity, SystemClock clock)
    : provider_(std::move(provider)), validity_(validity), clock_(std::move(clock)) {}

CertificateManager::~CertificateManager() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  refresher_cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
  for (auto& t : workers_) t.join();
  // Requests that never ran: their callers must not wait forever.
  for (auto& q : queues_) {
    for (auto& [e, p] : q) {
      for (auto& w : e->waiters)
        w->set(failf("no certificate for {}: the certificate manager stopped", e->id));
      e->waiters.clear();
    }
  }
}

std::shared_ptr<CertificateManager::Entry> CertificateManager::entry_locked(
    const tls::SpiffeId& id) {
  auto& slot = entries_[id];
  if (!slot) slot = std::make_shared<Entry>(id);
  return slot;
}

void CertificateManager::enqueue_locked(const std::shared_ptr<Entry>& e, Priority p) {
  if (e->pending) {
    // Already running (it will answer new waiters too), or queued: only move it up.
    if (!e->queued || *e->queued <= p) return;
  }
  e->pending = true;
  e->queued = p;
  // The older queue position, if any, is now stale and skipped when popped.
  queues_[static_cast<int>(p)].emplace_back(e, p);
  if (idle_workers_ == 0 && workers_.size() < kMaxConcurrentRequests && !stop_) {
    workers_.emplace_back([this] { worker_loop(); });
  } else {
    work_cv_.notify_one();
  }
}

Result<Credentials> CertificateManager::get(const tls::SpiffeId& id) {
  std::shared_ptr<Waiter> w;  // only when there is something to wait for
  {
    std::lock_guard lock(mu_);
    auto now = clock_();
    auto e = entry_locked(id);
    if (fresh(e->creds, now)) return e->creds;
    if (!e->pending && now < e->retry_at) {
      if (usable(e->creds, now)) return e->creds;
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(e->retry_at - now);
      return failf("no certificate for {}: {} (next CA attempt in {} ms)", id, e->last_error,
                   wait.count());
    }
    if (stop_) return failf("no certificate for {}: the certificate manager stopped", id);
    w = std::make_shared<Waiter>();
    e->waiters.push_back(w);
    enqueue_locked(e, Priority::kRealTime);
  }
  return w->wait();
}

awaitable<Result<Credentials>> CertificateManager::get_async(tls::SpiffeId id) {
  std::shared_ptr<Waiter> w;  // only when there is something to wait for
  {
    std::unique_lock lock(mu_);
    auto now = clock_();
    auto e = entry_locked(id);
    if (fresh(e->creds, now)) co_return e->creds;
    if (usable(e->creds, now)) {
      // Past half-life (or the CA's clock is ahead): still valid, so the connection goes on
      // with it and the refresh happens behind it.
      if (!e->pending && now >= e->retry_at && !stop_) enqueue_locked(e, Priority::kBackground);
      co_return e->creds;
    }
    if (!e->pending && now < e->retry_at) {
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(e->retry_at - now);
      co_return failf("no certificate for {}: {} (next CA attempt in {} ms)", id, e->last_error,
                      wait.count());
    }
    if (stop_) co_return failf("no certificate for {}: the certificate manager stopped", id);
    w = std::make_shared<Waiter>();
    e->waiters.push_back(w);
    enqueue_locked(e, Priority::kRealTime);
  }
  // The answer is picked up by polling the waiter from this executor, not posted to it by the
  // pool: a worker's io_context may be stopped and destroyed while the CA is still working, and
  // the pool must never touch one. A CA round trip takes far longer than the poll interval.
  // A cancellation can land between two waits, when no timer is pending: the state is checked
  // on every round and the waits report it as an error code, never as an exception.
  co_await asio::this_coro::throw_if_cancelled(false);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto delay = std::chrono::milliseconds(1);
  for (;;) {
    if (auto r = w->try_take()) co_return std::move(*r);
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) {
      co_return failf("waiting for a certificate for {} was cancelled", id);
    }
    timer.expires_after(delay);
    auto [ec] = co_await timer.async_wait(kTuple);
    if (ec) co_return failf("waiting for a certificate for {} was cancelled", id);
    delay = std::min(delay * 2, std::chrono::milliseconds(20));
  }
}

void CertificateManager::prefetch(const tls::SpiffeId& id) {
  std::lock_guard lock(mu_);
  if (stop_) return;
  auto now = clock_();
  auto e = entry_locked(id);
  if (fresh(e->creds, now) || e->pending || now < e->retry_at) return;  // the refresher retries
  enqueue_locked(e, Priority::kWarmup);
}

void CertificateManager::worker_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (stop_) return;  // what is still queued is failed by the destructor
    std::shared_ptr<Entry> e;
    for (auto& q : queues_) {
      while (!q.empty() && !e) {
        auto [cand, p] = std::move(q.front());
        q.pop_front();
        if (cand->queued == p) e = std::move(cand);  // else stale: moved up or already ran
      }
      if (e) break;
    }
    if (!e) {
      ++idle_workers_;
      work_cv_.wait(lock);
      --idle_workers_;
      continue;
    }
    e->queued.reset();
    if (e->forgotten && e->waiters.empty()) {
      e->pending = false;
      continue;
    }
    lock.unlock();
    run_request(e);
    lock.lock();
  }
}

void CertificateManager::run_request(const std::shared_ptr<Entry>& e) {
  const auto& id = e->id;
  auto now = clock_();
  std::optional<Result<Credentials>> answer;
  {
    std::lock_guard lock(mu_);
    // Refreshed since this was queued, or backing off after a failure (a waiter asked anyway).
    if (fresh(e->creds, now)) {
      answer = e->creds;
    } else if (now < e->retry_at) {
      if (usable(e->creds, now)) {
        answer = e->creds;
      } else {
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(e->retry_at - now);
        answer = failf("no certificate for {}: {} (next CA attempt in {} ms)", id, e->last_error,
                       wait.count());
      }
    }
  }

  if (!answer) {
    auto issued = issue(id);
    std::lock_guard lock(mu_);
    auto back_off = [&] {
      e->backoff = e->backoff.count() == 0
                       ? std::chrono::milliseconds(kInitialBackoff)
                       : std::min<std::chrono::milliseconds>(e->backoff * 2, kMaxBackoff);
      e->retry_at = now + e->backoff;
    };
    if (issued) {
      e->creds = *issued;
      e->last_error.clear();
      if (now < e->creds->cert.not_before) {
        // The CA's clock is ahead of ours: the certificate is "not valid yet", which makes it due
        // for refresh at once. Asking again immediately would get the same answer, so the backoff
        // applies, or a skewed CA would be asked on every connection.
        back_off();
        ZT_LOG_WARN(
            "component=identity identity={} certificate is not valid until {} (CA clock ahead?), "
            "next refresh in {} ms",
            id, tls::format_time(e->creds->cert.not_before), e->backoff.count());
      } else {
        e->backoff = std::chrono::milliseconds(0);
        e->retry_at = {};
      }
      answer = e->creds;
    } else {
      e->last_error = issued.error().message;
      back_off();
      if (usable(e->creds, now)) {
        ZT_LOG_WARN(
            "component=identity identity={} refreshing the certificate failed, serving serial={} "
            "until {} "
            "(retry in {} ms): {}",
            id, e->creds->cert.serial(), tls::format_time(e->creds->cert.not_after),
            e->backoff.count(), e->last_error);
        answer = e->creds;
      } else {
        ZT_LOG_WARN(
            "component=identity identity={} issuing a certificate failed (retry in {} ms): {}", id,
            e->backoff.count(), e->last_error);
        answer =
            tl::unexpected(wrap(issued.error(), fmt::format("issuing a certificate for {}", id)));
      }
    }
  }

  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    std::lock_guard lock(mu_);
    e->pending = false;
    waiters.swap(e->waiters);
  }
  for (auto& w : waiters) w->set(*answer);
}

Result<Credentials> CertificateManager::issue(const tls::SpiffeId& id) {
  auto key = generate_p256_key();
  if (!key) return tl::unexpected(key.error());
  auto csr = make_csr_pem(key->get(), id);
  if (!csr) return tl::unexpected(csr.error());
  auto chain = provider_->create_certificate(*csr, id, validity_);
  if (!chain) return tl::unexpected(chain.error());
  auto cert = tls::make_workload_certificate(std::move(*key), *chain);
  if (!cert) return tl::unexpected(wrap(cert.error(), "CA response"));
  // The CA must not hand us someone else's identity: connections would then present it.
  if (cert->id != id) {
    return failf("CA returned a certificate for {}, requested {}", cert->id, id);
  }
  auto creds = make_workload_credentials(std::move(*cert));
  if (!creds) return tl::unexpected(creds.error());
  const auto& c = (*creds)->cert;
  ZT_LOG_INFO(
      "component=identity identity={} issued certificate serial={} not_before={} not_after={}", id,
      c.serial(), tls::format_time(c.not_before), tls::format_time(c.not_after));
  return Credentials(std::move(*creds));
}

void CertificateManager::forget(const tls::SpiffeId& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second->forgotten = true;
  entries_.erase(it);
}

system_clock::time_point CertificateManager::refresh_due_locked(system_clock::time_point now) {
  auto next = system_clock::time_point::max();
  if (stop_) return next;
  for (const auto& [id, e] : entries_) {
    if (e->pending) continue;
    auto due = std::max(fresh(e->creds, now) ? e->creds->refresh_at : now, e->retry_at);
    if (due <= now) {
      enqueue_locked(e, e->creds ? Priority::kBackground : Priority::kWarmup);
    } else {
      next = std::min(next, due);
    }
  }
  return next;
}

void CertificateManager::refresh_due() {
  std::lock_guard lock(mu_);
  refresh_due_locked(clock_());
}

void CertificateManager::start_background_refresh() {
  std::lock_guard lock(mu_);
  if (refresher_.joinable() || stop_) return;
  refresher_ = std::thread([this] { refresher_loop(); });
}

void CertificateManager::refresher_loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    auto now = clock_();
    auto next = refresh_due_locked(now);
    // Wake at the next due time, but at least every second: the clock may be a test's, and
    // entries added or refreshed meanwhile change what is due. Requests that finish while we
    // sleep are seen on the next pass.
    auto wait = std::chrono::milliseconds(1000);
    if (next != system_clock::time_point::max()) {
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(next - now) +
                   std::chrono::milliseconds(1);
      wait = std::clamp(until, std::chrono::milliseconds(10), wait);
    }
    refresher_cv_.wait_for(lock, wait);
  }
}

std::vector<CertificateInfo> CertificateManager::list() const {
  auto now = clock_();
  std::lock_guard lock(mu_);
  std::vector<CertificateInfo> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) {
    CertificateInfo info;
    info.identity = id;
    info.last_error = e->last_error;
    if (e->creds) {
      const auto& c = e->creds->cert;
      info.serial = c.serial();
      info.not_before = c.not_before;
      info.not_after = c.not_after;
      info.refresh_at = e->creds->refresh_at;
    }
    if (usable(e->creds, now)) {
      info.state = "Available";
    } else if (e->pending || e->last_error.empty()) {
      info.state = "Initializing";
    } else {
      info.state = "Unavailable: " + e->last_error;
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace zt::identity
