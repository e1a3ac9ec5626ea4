// L4 authorization (DESIGN §7, facts §5): which Authorization policies apply to a destination
// workload, and whether they allow a connection. A pure function of (connection, snapshot):
// nothing here touches sockets or logs, so the proxies call it on every new inbound stream or
// connection and again for every open one when the policies change.
//
// Semantics follow Istio's ztunnel:
// - Applicable policies: GLOBAL ones, NAMESPACE ones of the destination's namespace, and those
//   whose keys the destination lists in `authorization_policies` (unknown keys are skipped).
// - Dry-run policies only produce notes. Any matching DENY denies; with no ALLOW policy the
//   connection is allowed; otherwise an ALLOW must match.
// - A policy with no rules never matches. Rules are OR-ed, the clauses of a rule AND-ed (a
//   clause with no matches is true), the matches of a clause OR-ed, and an all-empty match is
//   skipped (never true). Within a match every field must pass: a positive list when empty or
//   when any element matches, a not_ list when empty or when none matches.
// - Identity fields: principals compare against "td/ns/N/sa/S" (the URI without "spiffe://")
//   and never match without an identity; namespaces compare against the identity's namespace,
//   which is "" without one; service accounts never match without an identity. So for a
//   plaintext connection a positive principals/service_accounts list fails and the matching
//   not_ list passes (how STRICT mTLS, `notPrincipals: [Presence]`, denies plaintext).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/net/address.h"
#include "ztunnel/state/state.h"

namespace zt::authz {

// A peer's SPIFFE identity, proven by mTLS, kept in the form policies compare against.
class PeerIdentity {
 public:
  PeerIdentity(std::string_view trust_domain, std::string_view namespace_name,
               std::string_view service_account);

  // "td/ns/N/sa/S": the identity as Istio policies spell principals.
  std::string_view principal() const { return principal_; }
  std::string_view trust_domain() const { return view(0, td_len_); }
  std::string_view namespace_name() const { return view(ns_pos_, ns_len_); }
  std::string_view service_account() const { return view(sa_pos_, principal_.size() - sa_pos_); }

  friend bool operator==(const PeerIdentity& a, const PeerIdentity& b) {
    return a.principal_ == b.principal_;
  }

 private:
  std::string_view view(size_t pos, size_t len) const {
    return std::string_view(principal_).substr(pos, len);
  }
  std::string principal_;
  size_t td_len_ = 0;
  size_t ns_pos_ = 0;
  size_t ns_len_ = 0;
  size_t sa_pos_ = 0;
};

// What a policy can see of a connection at the destination.
struct ConnectionInfo {
  asio::ip::address source_ip{};
  std::optional<PeerIdentity> identity{};  // none for plaintext
  asio::ip::address destination_ip{};
  uint16_t destination_port = 0;  // the target port (after service -> target mapping)
};

// What a dry-run policy would have done.
struct DryRunNote {
  enum class Kind {
    kDenyMatched,     // "dry-run: deny policy match"
    kAllowMatched,    // "dry-run: allow policy match"
    kNoAllowMatched,  // "dry-run: no allow policies match" (no policy)
  };
  Kind kind = Kind::kDenyMatched;
  std::shared_ptr<const state::Authorization> policy{};  // null for kNoAllowMatched

  std::string_view message() const;
};

struct Decision {
  enum class Outcome {
    kNoAllowPolicies,       // allowed: no (enforced) ALLOW policy applies
    kAllowedByPolicy,       // allowed: `policy` matched
    kExplicitlyDenied,      // denied: DENY `policy` matched
    kNoAllowPolicyMatched,  // denied: ALLOW policies exist but none matched
  };
  Outcome outcome = Outcome::kNoAllowPolicies;
  std::shared_ptr<const state::Authorization> policy{};  // the deciding policy, when there is one
  std::vector<DryRunNote> dry_run{};

  bool allowed() const {
    return outcome == Outcome::kNoAllowPolicies || outcome == Outcome::kAllowedByPolicy;
  }
  bool denied() const { return !allowed(); }
  // "namespace/name" of the deciding policy, "" when none decided.
  std::string policy_key() const;
  // "explicitly denied by: ns/name", "allow policies exist but none matched",
  // "allowed by: ns/name" or "no allow policies".
  std::string reason() const;
};

// The decision for a connection to `destination` under the policies of `snapshot`.
Decision evaluate(const ConnectionInfo& conn, const state::State& snapshot,
                  const state::Workload& destination);

// One policy's verdict on a connection, ignoring action and dry-run: do its rules match?
bool policy_matches(const state::Authorization& policy, const ConnectionInfo& conn);

// One match (all of its fields) against a connection. An all-empty match is false.
bool match_matches(const state::Match& match, const ConnectionInfo& conn);

}  // namespace zt::authz
