// CertificateManager: one certificate per workload identity this node acts for (ztunnel presents
// the identity of the pod it proxies, not its own). Certificates are issued on demand through a
// CertificateProvider and refreshed at half-life (facts §3.3).
//
// Invariants: get() never hands out credentials whose leaf SAN differs from the identity asked
// for; a failure to refresh never replaces an unexpired certificate; after a failure the provider
// is not asked again for that identity until the backoff has passed (500 ms doubling to 150 s),
// so a down CA is not hammered by every new connection.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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
  static constexpr std::chrono::milliseconds kInitialBackoff{500};
  static constexpr std::chrono::seconds kMaxBackoff{150};

  explicit CertificateManager(std::shared_ptr<CertificateProvider> provider,
                              std::chrono::seconds validity = std::chrono::hours(24),
                              SystemClock clock = &std::chrono::system_clock::now);
  CertificateManager(const CertificateManager&) = delete;
  CertificateManager& operator=(const CertificateManager&) = delete;

  // Thread-safe. Returns the cached credentials for `id`, first issuing them (new P-256 key, CSR,
  // provider) when there are none, when they are past half-life, or when they are not valid yet.
  // If issuing fails but the cached certificate has not expired, logs and keeps serving it.
  // Blocks while the provider works; concurrent callers for the same identity wait for one
  // issuance instead of starting their own, callers for other identities are not held up.
  Result<std::shared_ptr<const WorkloadCredentials>> get(const tls::SpiffeId& id);

  // Stops tracking `id` (no workload on this node uses it any more). Connections keep the
  // credentials they already hold.
  void forget(const tls::SpiffeId& id);

  // Every tracked identity, ordered by identity.
  std::vector<CertificateInfo> list() const;

 private:
  struct Entry {
    std::mutex issue_mu;  // one issuance at a time per identity
    // The rest is guarded by CertificateManager::mu_.
    std::shared_ptr<const WorkloadCredentials> creds;
    bool issuing = false;
    std::string last_error;
    std::chrono::system_clock::time_point retry_at{};
    std::chrono::milliseconds backoff{0};
  };

  Result<std::shared_ptr<const WorkloadCredentials>> issue(const tls::SpiffeId& id);

  const std::shared_ptr<CertificateProvider> provider_;
  const std::chrono::seconds validity_;
  const SystemClock clock_;

  mutable std::mutex mu_;
  std::map<tls::SpiffeId, std::shared_ptr<Entry>> entries_;
};

}  // namespace zt::identity
