// Shared by the loader's .cc files (not part of the interface): ABI conversions, pin paths,
// errno-carrying errors and small bpffs helpers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/loader/capture.h"
#include "capture_abi.h"
#include "common/base/result.h"

namespace zt::bpf::detail {

// Map names as pinned under <pin root>/maps/ (the names in capture.bpf.c).
inline constexpr const char* kMapOrigins = "origins";
inline constexpr const char* kMapPodIps = "pod_ips";
inline constexpr const char* kMapPodKeys = "pod_keys";
inline constexpr const char* kMapProbeSources = "probe_sources";
inline constexpr const char* kMapBypass = "bypass";
inline constexpr const char* kMapListeners = "listeners";
inline constexpr const char* kMapCounters = "counters";

std::string maps_dir(const std::string& pin_root);
std::string map_path(const std::string& pin_root, std::string_view map);
std::string pods_dir(const std::string& pin_root);
std::string proxy_dir(const std::string& pin_root);

// "<what>: <strerror(err)>" with the error code kept. `err` is a positive errno.
tl::unexpected<Error> errno_error(int err, std::string message);

zt_addr to_abi(const asio::ip::address& a);
asio::ip::address from_abi(const zt_addr& a, bool v4);

// Sums the per-CPU counters array behind `fd` (missing slots stay 0).
Counters read_counters(int fd);

// Names (not paths) of the entries of a directory; empty when it does not exist.
std::vector<std::string> list_dir(const std::string& dir);

}  // namespace zt::bpf::detail
