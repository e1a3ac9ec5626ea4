// NodeCertificates (shared mode): keeps a certificate ready for every identity of an HBONE
// workload scheduled on this node (facts §3.3 prefetch) and forgets identities no such workload
// uses any more. update() runs on the state writer's thread after each publish; prefetch() and
// forget() do not block, the CA requests run on the certificate manager's pool.
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "common/identity/certificate_manager.h"
#include "common/tls/spiffe.h"
#include "ztunnel/state/store.h"

namespace zt::app {

class NodeCertificates {
 public:
  NodeCertificates(identity::CertificateManager& certs, const state::StateStore& store,
                   std::string node)
      : certs_(certs), store_(store), node_(std::move(node)) {}

  // Always from the newest snapshot, under the lock: two calls racing cannot leave an older
  // snapshot's set in place.
  void update();

  // The identities currently kept ready.
  std::set<tls::SpiffeId> wanted() const;

 private:
  identity::CertificateManager& certs_;
  const state::StateStore& store_;
  const std::string node_;
  mutable std::mutex mu_;
  std::set<tls::SpiffeId> used_;
};

}  // namespace zt::app
