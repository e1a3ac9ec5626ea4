// What one run measured: kept per thread, merged at the end.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "tools/loadgen/histogram.h"

namespace zt::loadgen {

struct Errors {
  uint64_t connect = 0;   // TCP connect or SOCKS5 handshake failed
  uint64_t reset = 0;     // the peer closed or reset the connection mid-request
  uint64_t timeout = 0;   // no (complete) response within --timeout
  uint64_t protocol = 0;  // malformed response, HTTP/2 stream error
  uint64_t other = 0;
  uint64_t total() const { return connect + reset + timeout + protocol + other; }
};

struct Stats {
  // Requests scheduled in the measurement window (open loop; closed loop: started in it).
  uint64_t scheduled = 0;
  uint64_t sent = 0;       // request written (measured requests only)
  uint64_t completed = 0;  // whole response received, any status
  uint64_t unsent = 0;     // scheduled but never sent: the run ended first (hopelessly late)
  std::map<int, uint64_t> status;
  Errors errors;
  uint64_t connections_opened = 0;  // in the whole run, warm-up included
  Histogram latency_us;             // completion - scheduled time (open loop) / - send (closed)
  Histogram late_us;                // send time - scheduled time (open loop)
  uint64_t late_over_1ms = 0;       // sends more than 1 ms behind schedule
  // TCP bulk, measurement window only.
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  // When the last measured response arrived, in ns after the window's start (0: none).
  int64_t last_completion_ns = 0;
  std::string first_error;  // the first failure's message, for the summary

  void merge(const Stats& o) {
    scheduled += o.scheduled;
    sent += o.sent;
    completed += o.completed;
    unsent += o.unsent;
    for (const auto& [code, n] : o.status) status[code] += n;
    errors.connect += o.errors.connect;
    errors.reset += o.errors.reset;
    errors.timeout += o.errors.timeout;
    errors.protocol += o.errors.protocol;
    errors.other += o.errors.other;
    connections_opened += o.connections_opened;
    latency_us.merge(o.latency_us);
    late_us.merge(o.late_us);
    late_over_1ms += o.late_over_1ms;
    bytes_sent += o.bytes_sent;
    bytes_received += o.bytes_received;
    last_completion_ns = std::max(last_completion_ns, o.last_completion_ns);
    if (first_error.empty()) first_error = o.first_error;
  }
};

}  // namespace zt::loadgen
