#include "common/identity/certificate_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/identity/csr.h"
#include "common/tls/certs.h"

namespace zt::identity {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

constexpr auto kSkew = CertificateAuthority::kClockSkewAllowance;

// A clock the test moves by hand. Starts at the real time so the built-in CA (whose root is valid
// from about now) can issue for it.
class FakeClock {
 public:
  system_clock::time_point now() const { return now_.load(); }
  void advance(system_clock::duration d) { now_.store(now_.load() + d); }
  void set(system_clock::time_point t) { now_.store(t); }
  SystemClock fn() {
    return [this] { return now(); };
  }

 private:
  std::atomic<system_clock::time_point> now_{std::chrono::floor<std::chrono::seconds>(system_clock::now())};
};

// The built-in CA dated by the fake clock, plus switches to make it fail or lie.
class ScriptedProvider : public CertificateProvider {
 public:
  ScriptedProvider(CertificateAuthority ca, FakeClock& clock) : ca_(std::move(ca)), clock_(clock) {}

  Result<std::vector<std::string>> create_certificate(const std::string& csr_pem,
                                                      const tls::SpiffeId& identity,
                                                      std::chrono::seconds validity) override {
    ++calls;
    if (failing) return fail("CA unavailable: connection refused");
    auto now = clock_.now() + skew.load();
    if (wrong_identity) {
      // Certifies the requester's key, but for someone else.
      auto csr = parse_csr_pem(csr_pem);
      if (!csr) return tl::unexpected(csr.error());
      return ca_.issue(csr->public_key.get(), *wrong_identity, now - kSkew, now + validity);
    }
    return ca_.sign_csr_with_validity(csr_pem, now - kSkew, now + validity, identity);
  }

  std::atomic<int> calls{0};
  std::atomic<bool> failing{false};
  std::optional<tls::SpiffeId> wrong_identity;
  std::atomic<system_clock::duration> skew{};  // how far the CA's clock is ahead of ours

 private:
  CertificateAuthority ca_;
  FakeClock& clock_;
};

class CertificateManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = CertificateAuthority::generate("cluster.local");
    ASSERT_TRUE(ca) << ca.error().message;
    provider_ = std::make_shared<ScriptedProvider>(std::move(*ca), clock_);
    manager_ = std::make_unique<CertificateManager>(provider_, 1h, clock_.fn());
  }

  FakeClock clock_;
  std::shared_ptr<ScriptedProvider> provider_;
  std::unique_ptr<CertificateManager> manager_;
  tls::SpiffeId id_{"cluster.local", "bookinfo", "details"};
};

TEST_F(CertificateManagerTest, IssuesOnFirstUseWithTlsContexts) {
  auto creds = manager_->get(id_);
  ASSERT_TRUE(creds) << creds.error().message;
  EXPECT_EQ(provider_->calls, 1);
  const auto& c = (*creds)->cert;
  EXPECT_EQ(c.id, id_);
  // Backdated by the clock-skew allowance; half-life counts from the real not_before.
  EXPECT_EQ(c.not_before, clock_.now() - kSkew);
  EXPECT_EQ(c.not_after, clock_.now() + 1h);
  EXPECT_EQ((*creds)->refresh_at, c.not_before + (1h + kSkew) / 2);
  EXPECT_TRUE((*creds)->server_ctx);
  EXPECT_TRUE((*creds)->client_ctx);
  EXPECT_EQ(EVP_PKEY_is_a(c.key.get(), "EC"), 1);
}

TEST_F(CertificateManagerTest, CachesUntilHalfLifeThenRefreshes) {
  auto first = manager_->get(id_);
  ASSERT_TRUE(first);
  clock_.advance(29min);
  auto cached = manager_->get(id_);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->get(), first->get());
  EXPECT_EQ(provider_->calls, 1);

  clock_.advance(1min);  // past half-life (29.5 min after issuance)
  auto refreshed = manager_->get(id_);
  ASSERT_TRUE(refreshed);
  EXPECT_NE(refreshed->get(), first->get());
  EXPECT_EQ(provider_->calls, 2);
  EXPECT_NE((*refreshed)->cert.serial(), (*first)->cert.serial());
  EXPECT_EQ((*refreshed)->cert.not_before, clock_.now() - kSkew);
  // A new key with every certificate.
  EXPECT_NE(EVP_PKEY_eq((*refreshed)->cert.key.get(), (*first)->cert.key.get()), 1);
  // Holders of the old credentials keep them intact.
  EXPECT_EQ((*first)->cert.id, id_);
}

TEST_F(CertificateManagerTest, RefreshesWhenTheClockIsBeforeNotBefore) {
  auto first = manager_->get(id_);
  ASSERT_TRUE(first);
  clock_.advance(-5min);
  auto again = manager_->get(id_);
  ASSERT_TRUE(again);
  EXPECT_EQ(provider_->calls, 2);
}

TEST_F(CertificateManagerTest, DoesNotHammerACaWhoseClockIsAhead) {
  provider_->skew = 10min;
  auto first = manager_->get(id_);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_GT((*first)->cert.not_before, clock_.now());
  // Not valid yet, so due for refresh, but the next attempt waits for the backoff.
  auto again = manager_->get(id_);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->get(), first->get());
  EXPECT_EQ(provider_->calls, 1);
  clock_.advance(CertificateManager::kInitialBackoff);
  ASSERT_TRUE(manager_->get(id_));
  EXPECT_EQ(provider_->calls, 2);
}

TEST_F(CertificateManagerTest, KeepsServingTheOldCertificateWhenTheProviderFails) {
  auto first = manager_->get(id_);
  ASSERT_TRUE(first);
  clock_.advance(40min);
  provider_->failing = true;
  auto served = manager_->get(id_);
  ASSERT_TRUE(served) << served.error().message;
  EXPECT_EQ(served->get(), first->get());
  EXPECT_EQ(provider_->calls, 2);

  auto info = manager_->list();
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].state, "Available");
  EXPECT_TRUE(contains(info[0].last_error, "CA unavailable")) << info[0].last_error;
  EXPECT_EQ(info[0].serial, (*first)->cert.serial());

  // Once the CA is back (and the backoff has passed) the next get() refreshes.
  provider_->failing = false;
  clock_.advance(CertificateManager::kInitialBackoff);
  auto refreshed = manager_->get(id_);
  ASSERT_TRUE(refreshed);
  EXPECT_NE(refreshed->get(), first->get());
  EXPECT_TRUE(manager_->list()[0].last_error.empty());
}

TEST_F(CertificateManagerTest, StopsServingOnceTheOldCertificateExpires) {
  ASSERT_TRUE(manager_->get(id_));
  provider_->failing = true;
  clock_.advance(1h);
  auto expired = manager_->get(id_);
  ASSERT_FALSE(expired);
  EXPECT_TRUE(contains(expired.error().message, "CA unavailable")) << expired.error().message;
  EXPECT_TRUE(contains(expired.error().message, id_.uri())) << expired.error().message;
  auto info = manager_->list();
  ASSERT_EQ(info.size(), 1u);
  EXPECT_TRUE(info[0].state.starts_with("Unavailable: ")) << info[0].state;
}

TEST_F(CertificateManagerTest, BacksOffAfterFailures) {
  provider_->failing = true;
  ASSERT_FALSE(manager_->get(id_));
  EXPECT_EQ(provider_->calls, 1);

  // Within the backoff the CA is not asked again; the error says when it will be.
  auto during = manager_->get(id_);
  ASSERT_FALSE(during);
  EXPECT_TRUE(contains(during.error().message, "next CA attempt in 500 ms")) << during.error().message;
  EXPECT_EQ(provider_->calls, 1);

  clock_.advance(500ms);
  ASSERT_FALSE(manager_->get(id_));
  EXPECT_EQ(provider_->calls, 2);

  // The backoff doubled to 1 s.
  clock_.advance(500ms);
  ASSERT_FALSE(manager_->get(id_));
  EXPECT_EQ(provider_->calls, 2);
  clock_.advance(500ms);
  provider_->failing = false;
  auto recovered = manager_->get(id_);
  ASSERT_TRUE(recovered) << recovered.error().message;
  EXPECT_EQ(provider_->calls, 3);
}

TEST_F(CertificateManagerTest, BackoffIsCapped) {
  provider_->failing = true;
  for (int i = 0; i < 20; ++i) {
    ASSERT_FALSE(manager_->get(id_));
    clock_.advance(CertificateManager::kMaxBackoff);
  }
  EXPECT_EQ(provider_->calls, 20);
}

TEST_F(CertificateManagerTest, RejectsACertificateForAnotherIdentity) {
  tls::SpiffeId other{"cluster.local", "bookinfo", "reviews"};
  provider_->wrong_identity = other;
  auto creds = manager_->get(id_);
  ASSERT_FALSE(creds);
  EXPECT_TRUE(contains(creds.error().message,
                       fmt::format("CA returned a certificate for {}, requested {}", other, id_)))
      << creds.error().message;

  auto info = manager_->list();
  ASSERT_EQ(info.size(), 1u);
  EXPECT_TRUE(info[0].state.starts_with("Unavailable: ")) << info[0].state;
  EXPECT_TRUE(info[0].serial.empty());
}

TEST_F(CertificateManagerTest, ConcurrentCallersShareOneIssuance) {
  constexpr int kThreads = 8;
  std::vector<std::shared_ptr<const WorkloadCredentials>> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto c = manager_->get(id_);
      if (c) got[i] = *c;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(provider_->calls, 1);
  for (const auto& c : got) {
    ASSERT_TRUE(c);
    EXPECT_EQ(c.get(), got[0].get());
  }
}

TEST_F(CertificateManagerTest, ListsEveryIdentityAndForgets) {
  tls::SpiffeId a{"cluster.local", "a", "default"};
  tls::SpiffeId b{"cluster.local", "b", "default"};
  ASSERT_TRUE(manager_->get(b));
  ASSERT_TRUE(manager_->get(a));
  auto info = manager_->list();
  ASSERT_EQ(info.size(), 2u);
  EXPECT_EQ(info[0].identity, a);
  EXPECT_EQ(info[1].identity, b);
  for (const auto& i : info) {
    EXPECT_EQ(i.state, "Available");
    EXPECT_FALSE(i.serial.empty());
    EXPECT_EQ(i.not_after - i.not_before, 1h + kSkew);
    EXPECT_EQ(i.refresh_at, i.not_before + (1h + kSkew) / 2);
  }
  manager_->forget(a);
  info = manager_->list();
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].identity, b);
}

TEST(BuiltinCaProvider, IssuesOnlyTheRequestedIdentity) {
  auto ca = CertificateAuthority::generate("cluster.local");
  ASSERT_TRUE(ca);
  BuiltinCaProvider provider(std::move(*ca));
  auto key = generate_p256_key();
  ASSERT_TRUE(key);
  tls::SpiffeId id{"cluster.local", "ns", "sa"};
  auto csr = make_csr_pem(key->get(), id);
  ASSERT_TRUE(csr);

  auto chain = provider.create_certificate(*csr, id, 1h);
  ASSERT_TRUE(chain) << chain.error().message;
  EXPECT_EQ(chain->size(), 2u);

  auto refused = provider.create_certificate(*csr, tls::SpiffeId{"cluster.local", "ns", "other"}, 1h);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(contains(refused.error().message, "built-in CA: rejecting CSR")) << refused.error().message;
}

TEST(CertificateManagerWithBuiltinCa, WorksWithTheRealClock) {
  auto ca = CertificateAuthority::generate("cluster.local");
  ASSERT_TRUE(ca);
  CertificateManager manager(std::make_shared<BuiltinCaProvider>(std::move(*ca)));
  tls::SpiffeId id{"cluster.local", "ns", "sa"};
  auto creds = manager.get(id);
  ASSERT_TRUE(creds) << creds.error().message;
  EXPECT_EQ((*creds)->cert.not_after - (*creds)->cert.not_before, 24h + kSkew);
  auto again = manager.get(id);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->get(), creds->get());
}

}  // namespace
}  // namespace zt::identity
