#include "bench/mesh/proxies/pod_probe.h"

#include <algorithm>

#include "sim/host.h"

namespace zt::bench::mesh {

bool pod_tcp_connects(const netns::Netns& ns, const std::string& ip, uint16_t port,
                      std::chrono::milliseconds timeout) {
  return sim::connect_in(ns, ip, port, timeout).has_value();
}

Result<int> pod_http_status(const netns::Netns& ns, const std::string& ip, uint16_t port,
                            const std::string& path, std::chrono::milliseconds timeout) {
  return sim::http_status_in(ns, ip, port, path, timeout);
}

std::string process_log_tail(const std::filesystem::path& log, int lines) {
  return sim::log_tail(log, lines);
}

std::string pod_process_base(const std::string& pod) {
  std::string out = pod;
  std::replace(out.begin(), out.end(), '/', '.');
  return out;
}

}  // namespace zt::bench::mesh
