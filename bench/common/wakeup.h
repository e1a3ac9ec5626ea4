// What one wake-up costs on this machine, in CPU time: two processes hand one byte back and
// forth over two pipes, each blocking in read() until the other writes, so every hand-over is one
// sleep and one wake-up, the same kind of event as a proxy sleeping in epoll_wait until a packet
// arrives. The CPU of both processes (user + system, from each one's own getrusage over its loop)
// divided by the hand-overs is what a wake-up costs the two sides together: the waker's send of
// the wake-up (an inter-processor interrupt when the other is asleep on another CPU) and the
// wakee's switch back in. Proxies pay both: each wake-up in is followed by one out to the next hop.
#pragma once

#include <atomic>
#include <chrono>
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

// How late a sleeping thread is woken. It sleeps `period` at a time (nanosleep), and each
// wake-up's lateness is the time past the end of its sleep: the kernel's timer slack (50 us for a
// normal thread), the wait for a CPU, and, in a VM whose idle vCPUs halt, the wait until the
// hypervisor runs a halted vCPU again. A proxy asleep between packets is woken the same way, so
// a delay that strikes here strikes the requests whose path has a process waiting there.
struct TimerLateness {
  std::chrono::microseconds period{0};
  int wakeups = 0;
  int late_over_200us = 0;  // woken more than 200 us after the end of its sleep
  int late_over_1ms = 0;    // more than 1 ms
  double p50_us = 0, p99_us = 0, max_us = 0;

  double late_fraction() const {
    return wakeups > 0 ? static_cast<double>(late_over_1ms) / wakeups : 0;
  }
};

// Sleeps `period` at a time on the calling thread until `duration` has passed, or until `stop`
// (when given) is set. An error when the period is not positive or the duration is shorter than
// one period.
Result<TimerLateness> measure_timer_lateness(std::chrono::microseconds period,
                                             std::chrono::microseconds duration,
                                             const std::atomic<bool>* stop = nullptr);

}  // namespace zt::bench
