// CaptureProgram: the node agent's side. Loads the embedded skeleton with its maps pinned by
// name under <pin root>/maps (reused when already there), attaches per-pod links and pins them
// under <pin root>/pods/<key>/<program>, so captures outlive the agent process.
//
// Invariant: a pinned link under pods/<key>/ is attached to that pod's cgroup or netns; enroll()
// on such a key swaps the program inside the link (bpf_link_update), so capture never stops.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>
#include <unistd.h>

#include "bpf/loader/capture.h"
#include "bpf/loader/internal.h"
#include "common/base/log.h"
#include "common/base/unique_fd.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include "capture.skel.h"
#pragma GCC diagnostic pop

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace zt::bpf {
namespace {

using detail::errno_error;

// libbpf reports verifier logs and attach errors through one global print callback: they go to
// the debug log, and the last lines of the calling thread are added to load errors.
thread_local std::deque<std::string> t_libbpf_tail;

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  char buf[1024];
  const int n = std::vsnprintf(buf, sizeof(buf), format, args);
  if (n <= 0) return 0;
  std::string line(buf, std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (level == LIBBPF_WARN) {
    ZT_LOG_WARN("component=bpf libbpf: {}", line);
  } else {
    ZT_LOG_DEBUG("component=bpf libbpf: {}", line);
  }
  t_libbpf_tail.push_back(std::move(line));
  if (t_libbpf_tail.size() > 12) t_libbpf_tail.pop_front();
  return 0;
}

std::string take_libbpf_tail() {
  std::string out;
  for (auto& l : t_libbpf_tail) {
    if (!out.empty()) out += " | ";
    out += l;
  }
  t_libbpf_tail.clear();
  return out.empty() ? std::string() : " (libbpf: " + out + ")";
}

Status make_dirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(ec, fmt::format("creating pin directory {}", dir));
  return {};
}

Result<uint64_t> inode_of(int fd, const char* what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    return errno_error(err, fmt::format("fstat of the {} fd {}", what, fd));
  }
  return static_cast<uint64_t>(st.st_ino);
}

// The netns cookie of the namespace behind `netns_fd`: a socket made inside it on a short-lived
// thread (setns only changes the calling thread, which then exits).
Result<uint64_t> netns_cookie_of(int netns_fd) {
  Result<uint64_t> out = fail("no result");
  std::thread worker([&] {
    if (::setns(netns_fd, CLONE_NEWNET) != 0) {
      const int err = errno;
      out = errno_error(err, fmt::format("setns into the pod netns (fd {})", netns_fd));
      return;
    }
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s) s.reset(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s) {
      const int err = errno;
      out = errno_error(err, "creating a socket in the pod netns");
      return;
    }
    uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    if (::getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
      const int err = errno;
      out = errno_error(err, "getsockopt(SO_NETNS_COOKIE) in the pod netns");
      return;
    }
    out = cookie;
  });
  worker.join();
  return out;
}

Status valid_key(std::string_view key) {
  if (key.empty() || key.size() >= ZT_POD_KEY_LEN || key == "." || key == ".." ||
      key.find('/') != std::string_view::npos || key.find('\0') != std::string_view::npos) {
    return failf("invalid pod key '{}': 1 to {} characters, no '/'", key, ZT_POD_KEY_LEN - 1);
  }
  return {};
}

// Detaches the pinned link at `path` (whoever else holds it) and removes the pin.
Status unpin_link(const std::string& path) {
  const int fd = bpf_obj_get(path.c_str());
  if (fd >= 0) {
    bpf_link_detach(fd);  // may fail for a defunct link: removing the pin is what matters
    ::close(fd);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    return errno_error(err, fmt::format("removing pinned link {}", path));
  }
  return {};
}

Status remove_dir(const std::string& dir) {
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    return errno_error(err, fmt::format("removing pin directory {}", dir));
  }
  return {};
}

// Unpins every link under `dir` (one level) and removes it.
Status unpin_link_dir(const std::string& dir) {
  Status first;
  for (const auto& name : detail::list_dir(dir)) {
    auto st = unpin_link(dir + "/" + name);
    if (!st && first) first = st;
  }
  auto st = remove_dir(dir);
  if (!st && first) first = st;
  return first;
}

struct Attachment {
  const char* pin;  // file name under the pod's pin directory
  bpf_program* prog;
  bool netns;  // sk_lookup: attached to the netns, else to the cgroup
};

class CaptureProgramImpl final : public CaptureProgram {
 public:
  CaptureProgramImpl(std::string pin_root, capture_bpf* skel)
      : pin_root_(std::move(pin_root)), skel_(skel) {}
  ~CaptureProgramImpl() override { capture_bpf__destroy(skel_); }

  Status enroll(std::string_view key, int cgroup_fd, int netns_fd, const PodNetwork& net) override {
    if (auto st = valid_key(key); !st) return st;
    const std::string k(key);
    if (net.ips.size() > ZT_MAX_POD_IPS) {
      return failf("enrolling pod {}: {} addresses, at most {} supported", k, net.ips.size(),
                   ZT_MAX_POD_IPS);
    }
    auto cookie = netns_cookie_of(netns_fd);
    if (!cookie) return tl::unexpected(wrap(cookie.error(), "enrolling pod " + k));
    auto cg_id = inode_of(cgroup_fd, "cgroup");
    if (!cg_id) return tl::unexpected(wrap(cg_id.error(), "enrolling pod " + k));
    auto ns_ino = inode_of(netns_fd, "netns");
    if (!ns_ino) return tl::unexpected(wrap(ns_ino.error(), "enrolling pod " + k));

    // Maps first, so the pod's own IPs are exempt from the first redirected connect on.
    if (auto st = write_pod(k, *cookie, net); !st) return st;

    const std::string dir = detail::pods_dir(pin_root_) + "/" + k;
    const bool fresh = detail::list_dir(dir).empty();
    if (auto st = make_dirs(dir); !st) return st;
    const Attachment attachments[] = {
        {"connect4", skel_->progs.zt_connect4, false},
        {"connect6", skel_->progs.zt_connect6, false},
        {"sockops", skel_->progs.zt_sockops, false},
        {"getpeername4", skel_->progs.zt_getpeername4, false},
        {"getpeername6", skel_->progs.zt_getpeername6, false},
        {"bind4", skel_->progs.zt_bind4, false},
        {"bind6", skel_->progs.zt_bind6, false},
        {"sk_lookup", skel_->progs.zt_sk_lookup, true},
    };
    std::vector<std::string> created;
    for (const auto& a : attachments) {
      const int target = a.netns ? netns_fd : cgroup_fd;
      const uint64_t identity = a.netns ? *ns_ino : *cg_id;
      auto st = attach_or_update(dir + "/" + a.pin, a.prog, a.netns, target, identity, created);
      if (!st) {
        for (const auto& p : created) (void)unpin_link(p);
        if (fresh) {
          (void)remove_dir(dir);
          erase_pod(k);
        }
        return tl::unexpected(wrap(st.error(), "enrolling pod " + k));
      }
    }
    ZT_LOG_INFO("component=bpf pod={} enrolled cookie={} links={} new={}", k, *cookie,
                std::size(attachments), created.size());
    return {};
  }

  Status release(std::string_view key) override {
    if (auto st = valid_key(key); !st) return st;
    const std::string k(key);
    const std::string dir = detail::pods_dir(pin_root_) + "/" + k;
    // Links first: from here on the pod's new connections go direct.
    auto st = unpin_link_dir(dir);
    erase_pod(k);
    if (!st) return tl::unexpected(wrap(st.error(), "releasing pod " + k));
    return {};
  }

  std::vector<std::string> enrolled() const override {
    return detail::list_dir(detail::pods_dir(pin_root_));
  }

  Status attach_proxy_cgroup(int cgroup_fd) override {
    auto cg_id = inode_of(cgroup_fd, "proxy cgroup");
    if (!cg_id) return tl::unexpected(cg_id.error());
    const std::string dir = detail::proxy_dir(pin_root_) + "/" + std::to_string(*cg_id);
    if (auto st = make_dirs(dir); !st) return st;
    const Attachment attachments[] = {
        {"getsockopt", skel_->progs.zt_getsockopt, false},
        {"sockops", skel_->progs.zt_proxy_sockops, false},
    };
    std::vector<std::string> created;
    for (const auto& a : attachments) {
      auto st = attach_or_update(dir + "/" + a.pin, a.prog, false, cgroup_fd, *cg_id, created);
      if (!st) {
        for (const auto& p : created) (void)unpin_link(p);
        return tl::unexpected(wrap(st.error(), "attaching to the proxy cgroup"));
      }
    }
    return {};
  }

  Counters counters() const override {
    return detail::read_counters(bpf_map__fd(skel_->maps.counters));
  }

  const std::string& pin_root() const override { return pin_root_; }

 private:
  // Updates the pinned link at `path` in place when it is attached to `identity` (cgroup id or
  // netns inode); otherwise (absent, stale or defunct) attaches `prog` anew and pins it.
  Status attach_or_update(const std::string& path, bpf_program* prog, bool netns, int target,
                          uint64_t identity, std::vector<std::string>& created) {
    const char* prog_name = bpf_program__name(prog);
    bpf_link* old = ::access(path.c_str(), F_OK) == 0 ? bpf_link__open(path.c_str()) : nullptr;
    if (old) {
      bpf_link_info info{};
      uint32_t len = sizeof(info);
      bool same = false;
      if (bpf_obj_get_info_by_fd(bpf_link__fd(old), &info, &len) == 0) {
        same = netns ? info.netns.netns_ino == static_cast<uint32_t>(identity)
                     : info.cgroup.cgroup_id == identity;
      }
      if (same) {
        const int err = bpf_link__update_program(old, prog);
        bpf_link__destroy(old);  // closes our fd; the pin keeps the link
        if (err != 0) {
          return errno_error(-err, fmt::format("updating pinned link {} to program {}{}", path,
                                               prog_name, take_libbpf_tail()));
        }
        return {};
      }
      bpf_link__destroy(old);
      if (auto st = unpin_link(path); !st) return st;
    }
    bpf_link* link =
        netns ? bpf_program__attach_netns(prog, target) : bpf_program__attach_cgroup(prog, target);
    if (!link) {
      const int err = errno;
      return errno_error(err, fmt::format("attaching program {} to {} fd {}{}", prog_name,
                                          netns ? "netns" : "cgroup", target, take_libbpf_tail()));
    }
    const int err = bpf_link__pin(link, path.c_str());
    if (err != 0) {
      bpf_link__destroy(link);  // not pinned: this detaches it again
      return errno_error(-err, fmt::format("pinning link of program {} at {}{}", prog_name, path,
                                           take_libbpf_tail()));
    }
    bpf_link__destroy(link);
    created.push_back(path);
    return {};
  }

  Status write_pod(const std::string& key, uint64_t cookie, const PodNetwork& net) {
    zt_pod_key pk{};
    std::memcpy(pk.name, key.data(), key.size());
    uint64_t old = 0;
    const int keys_fd = bpf_map__fd(skel_->maps.pod_keys);
    const int ips_fd = bpf_map__fd(skel_->maps.pod_ips);
    if (bpf_map_lookup_elem(keys_fd, &pk, &old) == 0 && old != cookie) {
      bpf_map_delete_elem(ips_fd, &old);  // the pod got a new netns under the same key
    }
    zt_pod_ips ips{};
    for (const auto& ip : net.ips) ips.ip[ips.count++] = detail::to_abi(ip);
    if (bpf_map_update_elem(ips_fd, &cookie, &ips, BPF_ANY) != 0) {
      const int err = errno;
      return errno_error(err, fmt::format("writing the addresses of pod {} to {}", key,
                                          detail::map_path(pin_root_, detail::kMapPodIps)));
    }
    if (bpf_map_update_elem(keys_fd, &pk, &cookie, BPF_ANY) != 0) {
      const int err = errno;
      return errno_error(err, fmt::format("recording pod {} in {}", key,
                                          detail::map_path(pin_root_, detail::kMapPodKeys)));
    }
    const int probes_fd = bpf_map__fd(skel_->maps.probe_sources);
    for (const auto& src : net.probe_sources) {
      const zt_addr a = detail::to_abi(src);
      const uint8_t one = 1;
      if (bpf_map_update_elem(probes_fd, &a, &one, BPF_ANY) != 0) {
        const int err = errno;
        return errno_error(err, fmt::format("adding probe source {} to {}", src.to_string(),
                                            detail::map_path(pin_root_, detail::kMapProbeSources)));
      }
    }
    return {};
  }

  void erase_pod(const std::string& key) {
    zt_pod_key pk{};
    std::memcpy(pk.name, key.data(), key.size());
    uint64_t cookie = 0;
    const int keys_fd = bpf_map__fd(skel_->maps.pod_keys);
    if (bpf_map_lookup_elem(keys_fd, &pk, &cookie) == 0) {
      bpf_map_delete_elem(bpf_map__fd(skel_->maps.pod_ips), &cookie);
      bpf_map_delete_elem(keys_fd, &pk);
    }
  }

  std::string pin_root_;
  capture_bpf* skel_;
};

}  // namespace

Result<std::unique_ptr<CaptureProgram>> CaptureProgram::load(std::string pin_root) {
  static std::once_flag print_once;
  std::call_once(print_once, [] { libbpf_set_print(libbpf_print); });
  while (pin_root.size() > 1 && pin_root.back() == '/') pin_root.pop_back();

  if (auto st = make_dirs(detail::maps_dir(pin_root)); !st) {
    Error e = st.error();
    e.message += " (needs a bpffs at or above it: mount -t bpf bpf /sys/fs/bpf)";
    return tl::unexpected(std::move(e));
  }
  struct statfs fs {};
  if (::statfs(pin_root.c_str(), &fs) != 0 || static_cast<uint64_t>(fs.f_type) != BPF_FS_MAGIC) {
    return failf("pin root {} is not on a bpffs (mount -t bpf bpf /sys/fs/bpf)", pin_root);
  }

  t_libbpf_tail.clear();
  capture_bpf* skel = capture_bpf__open();
  if (!skel) {
    const int err = errno;
    return errno_error(err, "opening the embedded capture programs" + take_libbpf_tail());
  }
  bpf_map* map;
  bpf_object__for_each_map(map, skel->obj) {
    if (bpf_map__is_internal(map)) continue;
    const std::string path = detail::map_path(pin_root, bpf_map__name(map));
    if (int err = bpf_map__set_pin_path(map, path.c_str()); err != 0) {
      capture_bpf__destroy(skel);
      return errno_error(-err, fmt::format("setting pin path {}", path));
    }
  }
  if (int err = capture_bpf__load(skel); err != 0) {
    capture_bpf__destroy(skel);
    return errno_error(-err, fmt::format("loading the capture programs with maps under {}{}",
                                         detail::maps_dir(pin_root), take_libbpf_tail()));
  }
  ZT_LOG_INFO("component=bpf loaded capture programs pin_root={}", pin_root);
  return std::make_unique<CaptureProgramImpl>(std::move(pin_root), skel);
}

Status remove_pins(const std::string& pin_root) {
  Status first;
  auto keep = [&](Status st) {
    if (!st && first) first = std::move(st);
  };
  // Links first, so every pod is released before the maps its programs use disappear.
  for (const char* group : {"/pods", "/proxy"}) {
    const std::string dir = pin_root + group;
    for (const auto& sub : detail::list_dir(dir)) keep(unpin_link_dir(dir + "/" + sub));
    keep(remove_dir(dir));
  }
  const std::string maps = detail::maps_dir(pin_root);
  for (const auto& name : detail::list_dir(maps)) {
    const std::string path = maps + "/" + name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      const int err = errno;
      keep(errno_error(err, fmt::format("removing pinned map {}", path)));
    }
  }
  keep(remove_dir(maps));
  keep(remove_dir(pin_root));
  return first;
}

}  // namespace zt::bpf
