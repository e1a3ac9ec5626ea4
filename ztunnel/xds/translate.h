// Istio workload API protobufs (facts §4.2, §4.3) -> ztunnel's state model (state/types.h).
//
// Pure functions: no I/O, no logging, no exceptions. The semantics follow the local config
// parser (state/local_config.cc) so a workload means the same whether it came from a file or
// from istiod: the same required fields, the same defaults (trust domain "cluster.local",
// service account "default", cluster id "Kubernetes", capacity 1), the same port and hostname
// checks. Errors name the field by its proto path and say why, e.g.
// `addresses[1]: 5 bytes is not an IPv4 or IPv6 address` or
// `rules[0].clauses[1].matches[0].source_ips[2]: prefix length 40 is more than 32`.
//
// Fields the model has no place for (extensions, weighted_waypoints, visibility,
// ingress_use_waypoint, app_protocol) are ignored, as ztunnel ignores what it does not use.
#pragma once

#include "common/base/result.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "ztunnel/state/types.h"

namespace zt::xds {

Result<state::Workload> to_workload(const istio::workload::Workload& in);
Result<state::Service> to_service(const istio::workload::Service& in);
Result<state::Authorization> to_authorization(const istio::security::Authorization& in);

// 4 raw bytes -> IPv4, 16 -> IPv6; any other length is an error ("5 bytes is not ...").
Result<asio::ip::address> address_from_bytes(const std::string& bytes);

}  // namespace zt::xds
