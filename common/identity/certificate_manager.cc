#include "common/identity/certificate_manager.h"

#include <algorithm>

#include "common/base/log.h"
#include "common/identity/csr.h"
#include "common/tls/certs.h"

namespace zt::identity {
namespace {

using std::chrono::system_clock;

// Good to hand out without asking the CA: inside [not_before, refresh_at).
bool fresh(const std::shared_ptr<const WorkloadCredentials>& c, system_clock::time_point now) {
  return c && now >= c->cert.not_before && now < c->refresh_at;
}

// Still worth serving when a refresh failed: not expired.
bool usable(const std::shared_ptr<const WorkloadCredentials>& c, system_clock::time_point now) {
  return c && now < c->cert.not_after;
}

}  // namespace

CertificateManager::CertificateManager(std::shared_ptr<CertificateProvider> provider,
                                       std::chrono::seconds validity, SystemClock clock)
    : provider_(std::move(provider)), validity_(validity), clock_(std::move(clock)) {}

Result<std::shared_ptr<const WorkloadCredentials>> CertificateManager::get(const tls::SpiffeId& id) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard lock(mu_);
    auto& slot = entries_[id];
    if (!slot) slot = std::make_shared<Entry>();
    e = slot;
    if (fresh(e->creds, clock_())) return e->creds;
  }

  std::lock_guard issue_lock(e->issue_mu);
  auto now = clock_();
  {
    std::lock_guard lock(mu_);
    // Another caller may have refreshed it while we waited for issue_mu.
    if (fresh(e->creds, now)) return e->creds;
    if (now < e->retry_at) {
      if (usable(e->creds, now)) return e->creds;
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(e->retry_at - now);
      return failf("no certificate for {}: {} (next CA attempt in {} ms)", id, e->last_error, wait.count());
    }
    e->issuing = true;
  }

  auto issued = issue(id);

  std::lock_guard lock(mu_);
  e->issuing = false;
  auto back_off = [&] {
    e->backoff = e->backoff.count() == 0 ? std::chrono::milliseconds(kInitialBackoff)
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
    return e->creds;
  }
  e->last_error = issued.error().message;
  back_off();
  if (usable(e->creds, now)) {
    ZT_LOG_WARN(
        "component=identity identity={} refreshing the certificate failed, serving serial={} until {}: {}",
        id, e->creds->cert.serial(), tls::format_time(e->creds->cert.not_after), e->last_error);
    return e->creds;
  }
  ZT_LOG_WARN("component=identity identity={} issuing a certificate failed (retry in {} ms): {}", id,
              e->backoff.count(), e->last_error);
  return tl::unexpected(wrap(issued.error(), fmt::format("issuing a certificate for {}", id)));
}

Result<std::shared_ptr<const WorkloadCredentials>> CertificateManager::issue(const tls::SpiffeId& id) {
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
  ZT_LOG_INFO("component=identity identity={} issued certificate serial={} not_before={} not_after={}", id,
              c.serial(), tls::format_time(c.not_before), tls::format_time(c.not_after));
  return std::shared_ptr<const WorkloadCredentials>(std::move(*creds));
}

void CertificateManager::forget(const tls::SpiffeId& id) {
  std::lock_guard lock(mu_);
  entries_.erase(id);
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
    } else if (e->issuing || e->last_error.empty()) {
      info.state = "Initializing";
    } else {
      info.state = "Unavailable: " + e->last_error;
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace zt::identity
