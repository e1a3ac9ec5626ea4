#include "ztunnel/authz/authz.h"

#include <algorithm>

namespace zt::authz {

using state::Authorization;
using state::PolicyAction;
using state::PolicyScope;

PeerIdentity::PeerIdentity(std::string_view trust_domain, std::string_view namespace_name,
                           std::string_view service_account) {
  constexpr std::string_view kNs = "/ns/";
  constexpr std::string_view kSa = "/sa/";
  principal_.reserve(trust_domain.size() + kNs.size() + namespace_name.size() + kSa.size() +
                     service_account.size());
  principal_.append(trust_domain).append(kNs);
  td_len_ = trust_domain.size();
  ns_pos_ = principal_.size();
  ns_len_ = namespace_name.size();
  principal_.append(namespace_name).append(kSa);
  sa_pos_ = principal_.size();
  principal_.append(service_account);
}

std::string_view DryRunNote::message() const {
  switch (kind) {
    case Kind::kDenyMatched:
      return "dry-run: deny policy match";
    case Kind::kAllowMatched:
      return "dry-run: allow policy match";
    case Kind::kNoAllowMatched:
      return "dry-run: no allow policies match";
  }
  return "dry-run";
}

std::string Decision::policy_key() const { return policy ? policy->key() : std::string(); }

std::string Decision::reason() const {
  switch (outcome) {
    case Outcome::kNoAllowPolicies:
      return "no allow policies";
    case Outcome::kAllowedByPolicy:
      return "allowed by: " + policy_key();
    case Outcome::kExplicitlyDenied:
      return "explicitly denied by: " + policy_key();
    case Outcome::kNoAllowPolicyMatched:
      return "allow policies exist but none matched";
  }
  return "unknown";
}

namespace {

// A positive list passes when empty or when any element matches; a not_ list when empty or
// when none does. `declared` becomes true when either list is non-empty, so the all-empty check
// costs no second pass over the match.
template <class T, class Pred>
bool field_passes(const std::vector<T>& positive, const std::vector<T>& negative, bool& declared,
                  Pred&& pred) {
  if (!positive.empty()) {
    declared = true;
    if (std::none_of(positive.begin(), positive.end(), pred)) return false;
  }
  if (!negative.empty()) {
    declared = true;
    if (std::any_of(negative.begin(), negative.end(), pred)) return false;
  }
  return true;
}

}  // namespace

bool match_matches(const state::Match& m, const ConnectionInfo& conn) {
  // A field that fails was declared, so an early false is right for an all-empty match too;
  // an all-empty match passes every field and is rejected by `declared` at the end.
  bool declared = false;
  const PeerIdentity* id = conn.identity ? &*conn.identity : nullptr;
  // Cheapest fields first: ports and addresses need no string work.
  if (!field_passes(m.destination_ports, m.not_destination_ports, declared,
                    [&](uint16_t p) { return p == conn.destination_port; })) {
    return false;
  }
  if (!field_passes(m.destination_ips, m.not_destination_ips, declared,
                    [&](const net::Cidr& c) { return c.contains(conn.destination_ip); })) {
    return false;
  }
  if (!field_passes(m.source_ips, m.not_source_ips, declared,
                    [&](const net::Cidr& c) { return c.contains(conn.source_ip); })) {
    return false;
  }
  if (!field_passes(m.service_accounts, m.not_service_accounts, declared,
                    [&](const state::ServiceAccountMatch& sa) {
                      // Trust domain ignored; no identity never matches.
                      return id != nullptr && id->namespace_name() == sa.namespace_name &&
                             id->service_account() == sa.service_account;
                    })) {
    return false;
  }
  if (!field_passes(m.principals, m.not_principals, declared, [&](const state::StringMatch& s) {
        // Without an identity there is no "spiffe://" URI to strip: nothing matches, not even
        // an empty prefix.
        return id != nullptr && s.matches(id->principal());
      })) {
    return false;
  }
  const std::string_view ns = id != nullptr ? id->namespace_name() : std::string_view();
  if (!field_passes(m.namespaces, m.not_namespaces, declared,
                    [&](const state::StringMatch& s) { return s.matches(ns); })) {
    return false;
  }
  return declared;
}

bool policy_matches(const Authorization& policy, const ConnectionInfo& conn) {
  for (const auto& rule : policy.rules) {
    bool rule_matches = true;
    for (const auto& clause : rule) {
      // A clause with no matches is true; otherwise any (non-empty) match will do.
      bool clause_matches = clause.empty();
      for (const auto& m : clause) {
        if (match_matches(m, conn)) {
          clause_matches = true;
          break;
        }
      }
      if (!clause_matches) {
        rule_matches = false;
        break;
      }
    }
    if (rule_matches) return true;
  }
  return false;  // also when there are no rules
}

namespace {

template <class Visit>
void for_each_applicable(const state::State& snapshot, const state::Workload& dst, Visit&& visit) {
  for (const auto& p : snapshot.policies()) {
    switch (p->scope) {
      case PolicyScope::kGlobal:
        visit(p);
        break;
      case PolicyScope::kNamespace:
        if (p->namespace_name == dst.namespace_name) visit(p);
        break;
      case PolicyScope::kWorkloadSelector:
        break;  // applies only where a workload names it
    }
  }
  // Keys that name no policy are skipped: a policy removed, or not received yet.
  for (const auto& key : dst.authorization_policies) {
    if (auto p = snapshot.find_policy(key)) visit(p);
  }
}

}  // namespace

Decision evaluate(const ConnectionInfo& conn, const state::State& snapshot,
                  const state::Workload& destination) {
  Decision d;
  std::shared_ptr<const Authorization> deny;
  std::shared_ptr<const Authorization> allow;
  bool any_allow = false;
  bool any_dry_allow = false;
  bool dry_allow_matched = false;

  for_each_applicable(snapshot, destination, [&](const std::shared_ptr<const Authorization>& p) {
    const bool is_deny = p->action == PolicyAction::kDeny;
    if (p->dry_run) {
      // Allow dry-runs only matter when nothing denies; they are dropped below otherwise.
      if (!is_deny) any_dry_allow = true;
      if (!is_deny && deny) return;
      if (policy_matches(*p, conn)) {
        if (!is_deny) dry_allow_matched = true;
        d.dry_run.push_back(DryRunNote{
            is_deny ? DryRunNote::Kind::kDenyMatched : DryRunNote::Kind::kAllowMatched, p});
      }
      return;
    }
    if (is_deny) {
      if (!deny && policy_matches(*p, conn)) deny = p;
      return;
    }
    any_allow = true;
    if (!deny && !allow && policy_matches(*p, conn)) allow = p;
  });

  if (deny) {
    // Istio evaluates allow dry-runs only for connections no DENY rejects.
    std::erase_if(d.dry_run,
                  [](const DryRunNote& n) { return n.kind != DryRunNote::Kind::kDenyMatched; });
    d.outcome = Decision::Outcome::kExplicitlyDenied;
    d.policy = std::move(deny);
    return d;
  }
  if (!any_allow) {
    if (any_dry_allow && !dry_allow_matched) {
      d.dry_run.push_back(DryRunNote{DryRunNote::Kind::kNoAllowMatched, nullptr});
    }
    d.outcome = Decision::Outcome::kNoAllowPolicies;
    return d;
  }
  if (allow) {
    d.outcome = Decision::Outcome::kAllowedByPolicy;
    d.policy = std::move(allow);
    return d;
  }
  d.outcome = Decision::Outcome::kNoAllowPolicyMatched;
  return d;
}

}  // namespace zt::authz
