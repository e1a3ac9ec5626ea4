// CaptureMaps: ztunnel's side of the pinned maps (bpf_obj_get by path, plain map syscalls).
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <bpf/bpf.h>

#include "bpf/loader/capture.h"
#include "bpf/loader/internal.h"
#include "common/base/unique_fd.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace zt::bpf {
namespace {

using detail::errno_error;
using detail::to_abi;

class CaptureMapsImpl final : public CaptureMaps {
 public:
  CaptureMapsImpl(std::string pin_root, UniqueFd listeners, UniqueFd origins, UniqueFd bypass,
                  UniqueFd counters)
      : pin_root_(std::move(pin_root)),
        listeners_(std::move(listeners)),
        origins_(std::move(origins)),
        bypass_(std::move(bypass)),
        counters_(std::move(counters)) {}

  Status set_listener(const asio::ip::address& pod_ip, ListenerKind kind,
                      int listener_fd) override {
    zt_listener_key key{};
    key.ip = to_abi(pod_ip);
    key.kind = static_cast<uint32_t>(kind);
    uint64_t value = static_cast<uint64_t>(listener_fd);
    if (bpf_map_update_elem(listeners_.get(), &key, &value, BPF_ANY) != 0) {
      const int err = errno;
      return errno_error(err, fmt::format("adding listener fd {} for {} ({}) to {}", listener_fd,
                                          pod_ip.to_string(), kind_name(kind),
                                          detail::map_path(pin_root_, detail::kMapListeners)));
    }
    return {};
  }

  void remove_listener(const asio::ip::address& pod_ip, ListenerKind kind) override {
    zt_listener_key key{};
    key.ip = to_abi(pod_ip);
    key.kind = static_cast<uint32_t>(kind);
    bpf_map_delete_elem(listeners_.get(), &key);
  }

  std::optional<tcp::endpoint> take_original_destination(uint64_t netns_cookie,
                                                         const tcp::endpoint& peer) override {
    zt_origin_key key{};
    key.netns_cookie = netns_cookie;
    key.ip = to_abi(peer.address());
    key.port = peer.port();
    zt_origin origin{};
    if (bpf_map_lookup_elem(origins_.get(), &key, &origin) != 0) return std::nullopt;
    bpf_map_delete_elem(origins_.get(), &key);
    return tcp::endpoint(detail::from_abi(origin.ip, origin.family == ZT_AF_INET), origin.port);
  }

  Status add_bypass(const tcp::endpoint& src, const tcp::endpoint& dst) override {
    const zt_tuple key = tuple(src, dst);
    const uint8_t one = 1;
    if (bpf_map_update_elem(bypass_.get(), &key, &one, BPF_ANY) != 0) {
      const int err = errno;
      return errno_error(
          err, fmt::format("adding bypass {}:{} -> {}:{} to {}", src.address().to_string(),
                           src.port(), dst.address().to_string(), dst.port(),
                           detail::map_path(pin_root_, detail::kMapBypass)));
    }
    return {};
  }

  void remove_bypass(const tcp::endpoint& src, const tcp::endpoint& dst) override {
    const zt_tuple key = tuple(src, dst);
    bpf_map_delete_elem(bypass_.get(), &key);
  }

  Counters counters() const override { return detail::read_counters(counters_.get()); }

 private:
  static const char* kind_name(ListenerKind kind) {
    return kind == ListenerKind::kHbone ? "hbone" : "plaintext";
  }
  static zt_tuple tuple(const tcp::endpoint& src, const tcp::endpoint& dst) {
    zt_tuple t{};
    t.src = to_abi(src.address());
    t.dst = to_abi(dst.address());
    t.src_port = src.port();
    t.dst_port = dst.port();
    return t;
  }

  std::string pin_root_;
  UniqueFd listeners_, origins_, bypass_, counters_;
};

Result<UniqueFd> open_pinned(const std::string& pin_root, const char* name) {
  const std::string path = detail::map_path(pin_root, name);
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return errno_error(
          err, fmt::format("no capture maps under {} ({} is missing): is the node agent running?",
                           pin_root, path));
    }
    return errno_error(err, fmt::format("opening pinned map {}", path));
  }
  return UniqueFd(fd);
}

}  // namespace

Result<std::unique_ptr<CaptureMaps>> CaptureMaps::open(const std::string& pin_root) {
  auto listeners = open_pinned(pin_root, detail::kMapListeners);
  if (!listeners) return tl::unexpected(listeners.error());
  auto origins = open_pinned(pin_root, detail::kMapOrigins);
  if (!origins) return tl::unexpected(origins.error());
  auto bypass = open_pinned(pin_root, detail::kMapBypass);
  if (!bypass) return tl::unexpected(bypass.error());
  auto counters = open_pinned(pin_root, detail::kMapCounters);
  if (!counters) return tl::unexpected(counters.error());
  return std::make_unique<CaptureMapsImpl>(pin_root, std::move(*listeners), std::move(*origins),
                                           std::move(*bypass), std::move(*counters));
}

Result<uint64_t> socket_netns_cookie(int socket_fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(socket_fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    const int err = errno;
    return errno_error(err, fmt::format("getsockopt(SO_NETNS_COOKIE) on fd {}", socket_fd));
  }
  return cookie;
}

}  // namespace zt::bpf
