#include "waypoint/resilience/fault.h"

namespace zt::waypoint::resilience {

std::string FaultDecision::flags() const {
  std::string out;
  if (delay) out = "DI";
  if (abort_status) out += out.empty() ? "FI" : ",FI";
  return out;
}

FaultDecision decide_fault(const config::FaultInjection& fault, Random& random) {
  FaultDecision d;
  if (fault.delay && fault.delay->fixed.count() > 0 &&
      random.chance_percent(fault.delay->percent)) {
    d.delay = fault.delay->fixed;
  }
  if (fault.abort && random.chance_percent(fault.abort->percent)) {
    d.abort_status = fault.abort->http_status;
    d.abort_grpc_status = fault.abort->grpc_status;
  }
  return d;
}

}  // namespace zt::waypoint::resilience
