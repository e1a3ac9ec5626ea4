#include "bpf/loader/internal.h"

#include <cerrno>
#include <cstring>
#include <system_error>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>

namespace zt::bpf::detail {

// The kernel's view of these structs must match ours exactly (capture_abi.h checks the C side).
static_assert(sizeof(zt_addr) == 16);
static_assert(sizeof(zt_origin) == 24 && offsetof(zt_origin, family) == 18);
static_assert(sizeof(zt_origin_key) == 32 && offsetof(zt_origin_key, port) == 24);
static_assert(sizeof(zt_listener_key) == 20 && offsetof(zt_listener_key, kind) == 16);
static_assert(sizeof(zt_tuple) == 36 && offsetof(zt_tuple, dst_port) == 34);
static_assert(sizeof(zt_pod_ips) == 16 * ZT_MAX_POD_IPS + 8);
static_assert(ZT_LISTENER_PLAINTEXT == static_cast<uint32_t>(ListenerKind::kPlaintext));
static_assert(ZT_LISTENER_HBONE == static_cast<uint32_t>(ListenerKind::kHbone));
// Every counter slot has a Counters member (kCounterSlots below keeps the order).
static_assert(sizeof(Counters) == ZT_CTR_COUNT * sizeof(uint64_t));

std::string maps_dir(const std::string& pin_root) { return pin_root + "/maps"; }
std::string map_path(const std::string& pin_root, std::string_view map) {
  return maps_dir(pin_root) + "/" + std::string(map);
}
std::string pods_dir(const std::string& pin_root) { return pin_root + "/pods"; }
std::string proxy_dir(const std::string& pin_root) { return pin_root + "/proxy"; }

tl::unexpected<Error> errno_error(int err, std::string message) {
  return fail(std::error_code(err, std::system_category()), std::move(message));
}

zt_addr to_abi(const asio::ip::address& a) {
  zt_addr out{};
  asio::ip::address_v6::bytes_type b;
  if (a.is_v4()) {
    b = asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()).to_bytes();
  } else {
    b = a.to_v6().to_bytes();
  }
  std::memcpy(out.w, b.data(), sizeof(out.w));
  return out;
}

asio::ip::address from_abi(const zt_addr& a, bool v4) {
  asio::ip::address_v6::bytes_type b;
  std::memcpy(b.data(), a.w, sizeof(a.w));
  asio::ip::address_v6 v6(b);
  if (v4 && v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6);
  return v6;
}

namespace {
// Counters members in the order of enum zt_counter.
constexpr uint64_t Counters::*kCounterSlots[ZT_CTR_COUNT] = {
    &Counters::connect_redirected,    &Counters::connect_skipped_proxy,
    &Counters::connect_skipped_local, &Counters::origin_recorded,
    &Counters::lookup_assigned,       &Counters::lookup_dropped,
    &Counters::lookup_bypassed,       &Counters::bind_refused,
    &Counters::getsockopt_answered,
};
}  // namespace

Counters read_counters(int fd) {
  Counters c;
  const int cpus = libbpf_num_possible_cpus();
  if (fd < 0 || cpus <= 0) return c;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
  for (uint32_t i = 0; i < ZT_CTR_COUNT; ++i) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) continue;
    uint64_t sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    c.*kCounterSlots[i] = sum;
  }
  return c;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    out.emplace_back(n);
  }
  ::closedir(d);
  return out;
}

}  // namespace zt::bpf::detail
