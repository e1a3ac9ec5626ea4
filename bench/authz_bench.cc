// authz_bench: the cost of one L4 authorization decision (authz::evaluate) on the connection
// path, with 1,000 policies in the snapshot. Google Benchmark reports the time per evaluation
// in ns.
//
// The snapshot: 400 GLOBAL policies, 400 NAMESPACE policies spread over 20 namespaces (20 of
// them in the destination's), 199 WORKLOAD_SELECTOR policies of which the destination names 10,
// and one more selector ALLOW (named too) that matches the client's service account: 431
// policies apply. All others miss the benchmarked connection, each on one field (principal,
// namespace, service account, source CIDR, port), so every applicable one is evaluated.
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "ztunnel/authz/authz.h"

namespace zt::authz {
namespace {

using state::Authorization;
using state::Match;
using state::PolicyAction;
using state::PolicyScope;
using state::StringMatch;

Match missing_match(int i) {
  switch (i % 5) {
    case 0:
      return Match{.principals = {{StringMatch::Kind::kExact,
                                   "cluster.local/ns/other/sa/sa-" + std::to_string(i)}}};
    case 1:
      return Match{.namespaces = {{StringMatch::Kind::kPrefix, "team-" + std::to_string(i)}}};
    case 2:
      return Match{.service_accounts = {{"default", "sa-" + std::to_string(i)}}};
    case 3:
      return Match{
          .source_ips = {*net::Cidr::parse("192.168." + std::to_string(i % 250) + ".0/24")}};
    default:
      return Match{.destination_ports = {static_cast<uint16_t>(20000 + i)},
                   .not_destination_ports = {}};
  }
}

Authorization policy(int i, std::string ns, PolicyScope scope) {
  // Two clauses (AND) so the second clause is reached only when the first passes.
  Match first = missing_match(i);
  Match second{.not_source_ips = {*net::Cidr::parse("172.16.0.0/12")}};
  return Authorization{.name = "p-" + std::to_string(i),
                       .namespace_name = std::move(ns),
                       .scope = scope,
                       .action = i % 3 == 0 ? PolicyAction::kAllow : PolicyAction::kDeny,
                       .rules = {{{first}, {second}}}};
}

struct Fixture {
  std::shared_ptr<const state::State> state;
  std::shared_ptr<const state::Workload> dst;
};

Fixture build() {
  std::vector<Authorization> policies;
  std::vector<std::string> selected;
  int i = 0;
  for (; i < 400; ++i) policies.push_back(policy(i, "istio-system", PolicyScope::kGlobal));
  for (; i < 800; ++i) {
    int n = i % 20;
    policies.push_back(
        policy(i, n == 0 ? "default" : "ns-" + std::to_string(n), PolicyScope::kNamespace));
  }
  for (; i < 999; ++i) {
    policies.push_back(policy(i, "default", PolicyScope::kWorkloadSelector));
    if (i % 20 == 0) selected.push_back("default/p-" + std::to_string(i));
  }
  // The one ALLOW that matches: the client's service account.
  policies.push_back(
      Authorization{.name = "allow-client",
                    .namespace_name = "default",
                    .scope = PolicyScope::kWorkloadSelector,
                    .action = PolicyAction::kAllow,
                    .rules = {{{Match{.service_accounts = {{"default", "client"}}}}}}});
  selected.push_back("default/allow-client");

  std::vector<state::Workload> workloads;
  workloads.push_back(state::Workload{.uid = "c1//Pod/default/server",
                                      .name = "server",
                                      .namespace_name = "default",
                                      .service_account = "server",
                                      .workload_ips = {asio::ip::make_address("10.0.0.2")},
                                      .protocol = state::TunnelProtocol::kHbone,
                                      .authorization_policies = selected});
  auto s = state::State::build(std::move(workloads), {}, std::move(policies));
  if (!s) {
    fmt::print(stderr, "authz_bench: {}\n", s.error().describe());
    std::exit(1);
  }
  return Fixture{*s, (*s)->find_workload_by_uid("c1//Pod/default/server")};
}

const Fixture& fixture() {
  static const Fixture f = build();
  return f;
}

ConnectionInfo hbone_conn() {
  return ConnectionInfo{.source_ip = asio::ip::make_address("10.0.0.1"),
                        .identity = PeerIdentity("cluster.local", "default", "client"),
                        .destination_ip = asio::ip::make_address("10.0.0.2"),
                        .destination_port = 8080};
}

void BM_Evaluate1000PoliciesHboneAllowed(benchmark::State& st) {
  const auto& f = fixture();
  auto conn = hbone_conn();
  for (auto _ : st) {
    auto d = evaluate(conn, *f.state, *f.dst);
    benchmark::DoNotOptimize(d);
    if (!d.allowed()) st.SkipWithError("expected an allow");
  }
}
BENCHMARK(BM_Evaluate1000PoliciesHboneAllowed);

void BM_Evaluate1000PoliciesPlaintextDenied(benchmark::State& st) {
  const auto& f = fixture();
  auto conn = hbone_conn();
  conn.identity.reset();
  for (auto _ : st) {
    auto d = evaluate(conn, *f.state, *f.dst);
    benchmark::DoNotOptimize(d);
    if (!d.denied()) st.SkipWithError("expected a deny");
  }
}
BENCHMARK(BM_Evaluate1000PoliciesPlaintextDenied);

void BM_EvaluateNoPolicies(benchmark::State& st) {
  auto s = state::State::empty();
  state::Workload dst{.uid = "w", .namespace_name = "default"};
  auto conn = hbone_conn();
  for (auto _ : st) {
    auto d = evaluate(conn, *s, dst);
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_EvaluateNoPolicies);

}  // namespace
}  // namespace zt::authz

BENCHMARK_MAIN();
