// What one wake-up costs on this machine, in CPU time: two processes hand one byte back and
// forth over two pipes, each blocking in read() until the other writes, so every hand-over is one
// sleep and one wake-up, the same kind of event as a proxy sleeping in epoll_wait until a packet
// arrives. The CPU of both processes (user + system, from each one's own getrusage over its loop)
// divided by the hand-overs is what a wake-up costs the two sides together: the waker's send of
// the wake-up (an inter-processor interrupt when the other is asleep on another CPU) and the
// wakee's switch back in. Proxies pay both: each wake-up in is followed by one out to the next hop.
#pragma once

#include <optional>

#include "common/base/result.h"

namespace zt::bench {

struct WakeupCost {
  int round_trips = 0;     // two wake-ups each
  std::optional<int> cpu;  // both processes pinned to this CPU; nullopt: the scheduler places them
  double cpu_s = 0;        // user + system of both processes over their loops
  double wall_s = 0;       // the longer of the two loops, start to end

  double cpu_us_per_wakeup() const {
    return round_trips > 0 ? cpu_s * 1e6 / (2.0 * round_trips) : 0;
  }
  double wall_us_per_round_trip() const { return round_trips > 0 ? wall_s * 1e6 / round_trips : 0; }
};

// Runs `round_trips` hand-overs between two child processes (forked; both reaped before this
// returns, and killed if they have not finished within `timeout_s`). `pin_cpu`: both are pinned
// to that CPU (an error when it cannot be, e.g. a CPU this process may not use).
Result<WakeupCost> measure_wakeup_cost(int round_trips, std::optional<int> pin_cpu,
                                       double timeout_s = 30);

// The first CPU this process may run on (sched_getaffinity), for pinning; nullopt if unknown.
std::optional<int> first_allowed_cpu();

}  // namespace zt::bench
