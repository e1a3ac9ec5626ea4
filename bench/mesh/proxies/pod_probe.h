// Probes the proxies' starters use from the bench process itself: a TCP connect or an HTTP GET
// from inside a pod's network namespace (the caller's cgroup, so no pod capture applies), and the
// end of a process log for error messages.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/base/result.h"
#include "common/netns/netns.h"

namespace zt::bench::mesh {

// Connects to ip:port inside `ns`; true once the connection is established.
bool pod_tcp_connects(const netns::Netns& ns, const std::string& ip, uint16_t port,
                      std::chrono::milliseconds timeout);

// GET http://ip:port<path> inside `ns` (HTTP/1.0); the status code, or an error naming what
// failed (connect, send, no answer, not HTTP).
Result<int> pod_http_status(const netns::Netns& ns, const std::string& ip, uint16_t port,
                            const std::string& path, std::chrono::milliseconds timeout);

// The last `lines` lines of a log file, prefixed with a header naming it ("" when unreadable).
std::string process_log_tail(const std::filesystem::path& log, int lines = 15);

// "ns/name" -> "ns.name" (the prefix of the simulator's process names of a pod).
std::string pod_process_base(const std::string& pod);

}  // namespace zt::bench::mesh
