// Fault injection decisions (Istio HTTPFaultInjection, facts §3.6): independent draws for the
// delay and the abort, delay first; no percentage means no fault. An abort is a local reply
// (the backend is never contacted, never retried); a gRPC abort is HTTP 200 with grpc-status.
#pragma once

#include <optional>
#include <string>

#include "waypoint/base/random.h"
#include "waypoint/config/model.h"

namespace zt::waypoint::resilience {

struct FaultDecision {
  std::optional<config::Duration> delay;
  std::optional<int> abort_status;       // HTTP status to answer
  std::optional<int> abort_grpc_status;  // set for gRPC aborts (status is then 200)

  bool aborts() const { return abort_status.has_value(); }
  // Envoy response flags: "DI" (delayed), "FI" (aborted), "DI,FI", or "".
  std::string flags() const;
};

FaultDecision decide_fault(const config::FaultInjection& fault, Random& random);

}  // namespace zt::waypoint::resilience
