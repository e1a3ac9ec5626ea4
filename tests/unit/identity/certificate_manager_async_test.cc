// The non-blocking side of CertificateManager: prefetch, the awaitable get, background refresh at
// half-life, priorities and the bound on concurrent CA requests. The provider is an in-process
// CA (the seam) that can be held shut to observe the queue.
#include <atomic>
#include <condition_variable>
#include <thread>

#include <gtest/gtest.h>

#include "common/identity/certificate_manager.h"
#include "common/identity/csr.h"
#include "common/tls/certs.h"
#include "tests/support/coro.h"

namespace zt::identity {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

class FakeClock {
 public:
  system_clock::time_point now() const { return now_.load(); }
  void advance(system_clock::duration d) { now_.store(now_.load() + d); }
  SystemClock fn() {
    return [this] { return now(); };
  }

 private:
  std::atomic<system_clock::time_point> now_{
      std::chrono::floor<std::chrono::seconds>(system_clock::now())};
};

// Signs with a generated CA on the fake clock; `hold()` makes calls wait until `release()`.
class GatedProvider : public CertificateProvider {
 public:
  GatedProvider(CertificateAuthority ca, FakeClock& clock) : ca_(std::move(ca)), clock_(clock) {}

  Result<std::vector<std::string>> create_certificate(const std::string& csr_pem,
                                                      const tls::SpiffeId& identity,
                                                      std::chrono::seconds validity) override {
    std::unique_lock lock(mu_);
    order.push_back(identity);
    max_in_flight = std::max(max_in_flight, ++in_flight);
    cv_.notify_all();
    cv_.wait(lock, [&] { return permits_ > 0; });
    --permits_;
    --in_flight;
    lock.unlock();
    if (failing) return fail("CA unavailable");
    auto now = clock_.now();
    return ca_.sign_csr_with_validity(csr_pem, now - 1s, now + validity, identity);
  }

  void hold() {
    std::lock_guard lock(mu_);
    permits_ = 0;
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      permits_ = 1 << 30;
    }
    cv_.notify_all();
  }
  void let_through(int n) {
    {
      std::lock_guard lock(mu_);
      permits_ += n;
    }
    cv_.notify_all();
  }
  bool wait_in_flight(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return in_flight >= n; });
  }
  size_t calls() {
    std::lock_guard lock(mu_);
    return order.size();
  }
  std::vector<tls::SpiffeId> calls_in_order() {
    std::lock_guard lock(mu_);
    return order;
  }
  int peak() {
    std::lock_guard lock(mu_);
    return max_in_flight;
  }

  std::atomic<bool> failing{false};

 private:
  CertificateAuthority ca_;
  FakeClock& clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  int permits_ = 1 << 30;  // calls that may complete; hold() sets it to 0
  int in_flight = 0, max_in_flight = 0;
  std::vector<tls::SpiffeId> order;
};

template <class F>
bool eventually(F pred, std::chrono::milliseconds limit = 5000ms) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

tls::SpiffeId sa(int i) { return tls::SpiffeId{"cluster.local", "ns", fmt::format("sa{}", i)}; }

class CertificateManagerAsyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = CertificateAuthority::generate("cluster.local");
    ASSERT_TRUE(ca) << ca.error().message;
    provider_ = std::make_shared<GatedProvider>(std::move(*ca), clock_);
    manager_ = std::make_unique<CertificateManager>(provider_, 1h, clock_.fn());
  }
  void TearDown() override {
    provider_->release();
    manager_.reset();
  }

  // Runs get_async on a test io_context.
  Result<CertificateManager::Credentials> get_async(const tls::SpiffeId& id) {
    asio::io_context io;
    std::optional<Result<CertificateManager::Credentials>> out;
    testing::run_coroutine(
        io, [&]() -> awaitable<void> { return fetch(id, out); }, 10s);
    if (!out) return fail("no result");
    return *out;
  }
  awaitable<void> fetch(tls::SpiffeId id,
                        std::optional<Result<CertificateManager::Credentials>>& out) {
    out = co_await manager_->get_async(id);
  }

  bool available(const tls::SpiffeId& id) {
    for (const auto& i : manager_->list()) {
      if (i.identity == id) return i.state == "Available";
    }
    return false;
  }

  FakeClock clock_;
  std::shared_ptr<GatedProvider> provider_;
  std::unique_ptr<CertificateManager> manager_;
  tls::SpiffeId id_{"cluster.local", "bookinfo", "details"};
};

TEST_F(CertificateManagerAsyncTest, PrefetchIssuesInTheBackgroundAndGetThenUsesIt) {
  provider_->hold();
  manager_->prefetch(id_);  // returns while the CA is held
  ASSERT_TRUE(provider_->wait_in_flight(1));
  EXPECT_EQ(manager_->list().at(0).state, "Initializing");
  manager_->prefetch(id_);  // already under way
  provider_->release();
  ASSERT_TRUE(eventually([&] { return available(id_); }));
  auto c = manager_->get(id_);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(provider_->calls(), 1u);
}

TEST_F(CertificateManagerAsyncTest, GetAsyncWaitsForTheFirstCertificate) {
  auto c = get_async(id_);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ((*c)->cert.id, id_);
  EXPECT_EQ(provider_->calls(), 1u);
  auto again = get_async(id_);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *c);
  EXPECT_EQ(provider_->calls(), 1u);
}

TEST_F(CertificateManagerAsyncTest,
       GetAsyncServesAValidCertificatePastHalfLifeAndRefreshesBehindIt) {
  auto first = manager_->get(id_);
  ASSERT_TRUE(first);
  clock_.advance(31min);  // past half-life, far from expiry
  provider_->hold();
  auto c = get_async(id_);  // does not wait for the held CA
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(*c, *first);
  ASSERT_TRUE(provider_->wait_in_flight(1));
  provider_->release();
  ASSERT_TRUE(eventually([&] { return manager_->list().at(0).serial != (*first)->cert.serial(); }));
  EXPECT_EQ(provider_->calls(), 2u);
}

TEST_F(CertificateManagerAsyncTest, GetAsyncReportsTheBackoffWithoutWaiting) {
  provider_->failing = true;
  ASSERT_FALSE(manager_->get(id_));
  auto c = get_async(id_);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("next CA attempt"), std::string::npos) << c.error().message;
  EXPECT_EQ(provider_->calls(), 1u);
}

TEST_F(CertificateManagerAsyncTest, RefreshDueRenewsAtHalfLifeAndNotBefore) {
  auto first = manager_->get(id_);
  ASSERT_TRUE(first);
  clock_.advance(29min);
  manager_->refresh_due();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(provider_->calls(), 1u);
  clock_.advance(2min);
  manager_->refresh_due();
  ASSERT_TRUE(eventually([&] { return manager_->list().at(0).serial != (*first)->cert.serial(); }));
  EXPECT_EQ(provider_->calls(), 2u);
  // The renewed certificate is what get() now returns, without another call.
  auto c = manager_->get(id_);
  ASSERT_TRUE(c);
  EXPECT_NE(*c, *first);
  EXPECT_EQ(provider_->calls(), 2u);
}

TEST_F(CertificateManagerAsyncTest, ForgottenIdentitiesAreNotRefreshed) {
  ASSERT_TRUE(manager_->get(id_));
  manager_->forget(id_);
  clock_.advance(31min);
  manager_->refresh_due();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(provider_->calls(), 1u);
  EXPECT_TRUE(manager_->list().empty());
}

TEST_F(CertificateManagerAsyncTest, AtMostEightRequestsAtOnceAndWaitingCallersGoFirst) {
  provider_->hold();
  for (int i = 0; i < 10; ++i) manager_->prefetch(sa(i));
  ASSERT_TRUE(provider_->wait_in_flight(8));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(provider_->calls(), 8u);  // the other two prefetches queue
  // A caller that needs a certificate now is queued ahead of them.
  tls::SpiffeId urgent{"cluster.local", "ns", "urgent"};
  std::thread t([&] { EXPECT_TRUE(manager_->get(urgent)); });
  ASSERT_TRUE(eventually([&] { return manager_->list().size() == 11; }));
  // One request completes; the worker it frees takes the waiting caller, not a prefetch.
  provider_->let_through(1);
  ASSERT_TRUE(eventually([&] { return provider_->calls() == 9; }));
  EXPECT_EQ(provider_->calls_in_order().back(), urgent);
  provider_->release();
  t.join();
  ASSERT_TRUE(eventually([&] {
    for (int i = 0; i < 10; ++i) {
      if (!available(sa(i))) return false;
    }
    return true;
  }));
  EXPECT_EQ(provider_->peak(), 8);
  EXPECT_EQ(provider_->calls(), 11u);
}

TEST_F(CertificateManagerAsyncTest, CancellingGetAsyncEndsTheWait) {
  provider_->hold();
  asio::io_context io;
  asio::cancellation_signal cancel;
  std::optional<Result<CertificateManager::Credentials>> out;
  asio::co_spawn(io, fetch(id_, out), asio::bind_cancellation_slot(cancel.slot(), asio::detached));
  asio::steady_timer t(io, 50ms);
  t.async_wait([&](error_code) { cancel.emit(asio::cancellation_type::terminal); });
  io.run_for(5s);
  ASSERT_TRUE(out);
  ASSERT_FALSE(*out);
  EXPECT_NE(out->error().message.find("cancelled"), std::string::npos) << out->error().message;
}

TEST_F(CertificateManagerAsyncTest, BackgroundRefresherRetriesAFailedPrefetch) {
  provider_->failing = true;
  manager_->start_background_refresh();
  manager_->prefetch(id_);
  ASSERT_TRUE(eventually([&] { return provider_->calls() >= 1; }));
  provider_->failing = false;
  // The first retry is due after the initial backoff: let the fake clock pass it.
  clock_.advance(CertificateManager::kInitialBackoff);
  ASSERT_TRUE(eventually([&] { return available(id_); }, 5000ms));
}

}  // namespace
}  // namespace zt::identity
