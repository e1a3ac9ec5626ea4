#include "ztunnel/app/node_certificates.h"

#include "common/base/log.h"

namespace zt::app {

void NodeCertificates::update() {
  std::lock_guard lock(mu_);
  std::set<tls::SpiffeId> want;
  for (const auto& w : store_.current()->workloads()) {
    if (w->node != node_ || w->protocol != state::TunnelProtocol::kHbone) continue;
    auto id = tls::SpiffeId::parse(w->identity());
    if (!id) {
      ZT_LOG_WARN("component=identity msg=\"workload {}: no certificate: {}\"", w->uid,
                  id.error().message);
      continue;
    }
    want.insert(std::move(*id));
  }
  for (const auto& id : want) certs_.prefetch(id);
  for (const auto& id : used_) {
    if (!want.contains(id)) certs_.forget(id);
  }
  used_ = std::move(want);
}

std::set<tls::SpiffeId> NodeCertificates::wanted() const {
  std::lock_guard lock(mu_);
  return used_;
}

}  // namespace zt::app
