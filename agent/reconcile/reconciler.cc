#include "agent/reconcile/reconciler.h"

#include <sys/stat.h>

#include <utility>

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "agent/locate/locate.h"
#include "common/base/log.h"

namespace zt::agent {

namespace fs = std::filesystem;

namespace {

zds::WorkloadInfo info_of(const DesiredPod& pod) {
  return {.name = pod.name,
          .namespace_name = pod.namespace_name,
          .service_account = pod.service_account};
}

std::string join_ips(const std::vector<asio::ip::address>& ips) {
  std::vector<std::string> text;
  for (const auto& ip : ips) text.push_back(ip.to_string());
  return fmt::format("{}", fmt::join(text, ","));
}

}  // namespace

Reconciler::Reconciler(bpf::CaptureProgram& capture, ReconcilerOptions options)
    : capture_(capture), options_(std::move(options)) {
  for (auto& key : capture_.enrolled()) pinned_.insert(std::move(key));
  if (!pinned_.empty()) {
    ZT_LOG_INFO("found pods pinned by an earlier agent component=agent count={}", pinned_.size());
  }
}

void Reconciler::attach_zds(zds::Server* server) {
  zds_ = server;
  if (zds_ == nullptr) return;
  for (const auto& [uid, e] : enrolled_) announce(uid, e.pod, e.ns);
  // Pinned pods we could not locate yet: ztunnel keeps whatever it serves for them.
  for (const auto& uid : pinned_) {
    auto d = desired_.find(uid);
    if (d == desired_.end()) continue;
    zds_->upsert(uid, info_of(d->second), netns::Netns{});
    waiting_[uid].kept = true;
  }
}

void Reconciler::announce(const std::string& uid, const DesiredPod& pod, const netns::Netns& ns) {
  if (zds_ == nullptr) return;
  auto dup = ns.duplicate();
  if (!dup) {
    ZT_LOG_WARN("cannot duplicate netns for ZDS component=agent pod={} uid={} error=\"{}\"",
                pod.describe(), uid, dup.error().describe());
    counters_.errors++;
    zds_->upsert(uid, info_of(pod), netns::Netns{});
    return;
  }
  zds_->upsert(uid, info_of(pod), std::move(*dup));
}

std::string Reconciler::name_of(const std::string& uid) const {
  if (auto e = enrolled_.find(uid); e != enrolled_.end()) return e->second.pod.describe();
  if (objects_) {
    for (const auto& [_, pod] : objects_->pods) {
      if (meshd::manifest::kube_uid("Pod", pod.meta) == uid) {
        return pod.meta.namespace_ + "/" + pod.meta.name;
      }
    }
  }
  return "unknown";
}

void Reconciler::release(const std::string& uid, const std::string& name,
                         const std::string& reason) {
  // Capture first: from here on the pod's new connections go direct ...
  if (auto st = capture_.release(uid); !st) {
    ZT_LOG_ERROR("release failed component=agent pod={} uid={} error=\"{}\"", name, uid,
                 st.error().describe());
    counters_.errors++;
    release_failed_.insert(uid);
    return;
  }
  // ... then ztunnel, which lets the open ones finish.
  if (zds_ != nullptr) zds_->remove(uid);
  release_failed_.erase(uid);
  enrolled_.erase(uid);
  pinned_.erase(uid);
  waiting_.erase(uid);
  counters_.releases++;
  ZT_LOG_INFO("released pod={} uid={} reason=\"{}\" component=agent", name, uid, reason);
}

void Reconciler::reconcile(ObjectsPtr objects) {
  if (!objects) return;
  objects_ = std::move(objects);
  desired_ = desired_pods(*objects_, options_.node_name);
  for (auto it = release_failed_.begin(); it != release_failed_.end();) {
    it = desired_.count(*it) != 0 ? release_failed_.erase(it) : std::next(it);
  }

  // Releases first: a namespace flipped off must not wait for pods still being located.
  std::vector<std::string> gone;
  for (const auto& [uid, _] : enrolled_) {
    if (desired_.count(uid) == 0) gone.push_back(uid);
  }
  for (const auto& uid : pinned_) {
    if (desired_.count(uid) == 0 && enrolled_.count(uid) == 0) gone.push_back(uid);
  }
  for (const auto& uid : gone) {
    auto reason = release_reason(*objects_, uid, options_.node_name);
    release(uid, name_of(uid), reason);
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (desired_.count(it->first) == 0) {
      ZT_LOG_INFO("no longer waiting for pod component=agent uid={} reason=\"{}\"", it->first,
                  release_reason(*objects_, it->first, options_.node_name));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }

  // New pods, and enrolled pods whose announced data (IPs, service account) changed.
  std::set<std::string> to_locate;
  for (const auto& [uid, pod] : desired_) {
    auto e = enrolled_.find(uid);
    if (e == enrolled_.end() || e->second.stale || !(e->second.pod == pod)) to_locate.insert(uid);
  }
  if (to_locate.empty()) return;
  auto found = find_pod_cgroups(options_.cgroup_root, to_locate);
  for (const auto& uid : to_locate) {
    auto f = found.find(uid);
    try_enroll(desired_.at(uid), f == found.end() ? nullptr : &f->second);
  }
}

void Reconciler::retry() {
  if (objects_) reconcile(objects_);
}

bool Reconciler::needs_retry() const {
  if (!waiting_.empty() || !release_failed_.empty()) return true;
  for (const auto& [_, e] : enrolled_) {
    if (e.stale) return true;
  }
  return false;
}

void Reconciler::verify() {
  for (auto& [uid, e] : enrolled_) {
    if (e.stale) continue;
    auto pid = first_pid(e.cgroup);
    if (!pid || !pid->has_value()) continue;  // gone or between processes: links die with it
    struct stat st {};
    if (::stat(fmt::format("/proc/{}/ns/net", **pid).c_str(), &st) != 0) continue;
    if (static_cast<uint64_t>(st.st_ino) != e.ns.inode() ||
        static_cast<uint64_t>(st.st_dev) != e.ns.device()) {
      ZT_LOG_INFO("pod netns changed component=agent pod={} uid={} old_inode={} new_inode={}",
                  e.pod.describe(), uid, e.ns.inode(), st.st_ino);
      e.stale = true;
    }
  }
}

void Reconciler::try_enroll(const DesiredPod& pod, const fs::path* cgroup) {
  const std::string& uid = pod.uid;
  auto existing = enrolled_.find(uid);
  auto& w = waiting_[uid];
  auto keep_if_pinned = [&] {
    if (zds_ != nullptr && !w.kept && pinned_.count(uid) != 0) {
      zds_->upsert(uid, info_of(pod), netns::Netns{});
      w.kept = true;
    }
  };

  bool not_started = false;
  Result<Enrolled> result = fail("");
  if (cgroup == nullptr) {
    not_started = true;
  } else {
    result = enroll_at(pod, *cgroup, &not_started);
  }
  if (not_started) {
    if (existing != enrolled_.end()) {
      // Enrolled earlier but its processes are gone: its links die with the cgroup; wait.
      existing->second.stale = true;
      waiting_.erase(uid);
      return;
    }
    if (!w.logged_missing) {
      ZT_LOG_INFO("waiting for pod to start component=agent pod={} uid={} cgroup_root={} found={}",
                  pod.describe(), uid, options_.cgroup_root.string(),
                  cgroup == nullptr ? "none" : cgroup->string());
      w.logged_missing = true;
    }
    keep_if_pinned();
    return;
  }
  if (!result) {
    counters_.errors++;
    auto msg = result.error().describe();
    if (existing != enrolled_.end()) {
      existing->second.stale = true;
      waiting_.erase(uid);
      ZT_LOG_WARN("re-enroll failed component=agent pod={} uid={} error=\"{}\"", pod.describe(),
                  uid, msg);
      return;
    }
    if (msg != w.last_error) {
      ZT_LOG_WARN("enroll failed, retrying component=agent pod={} uid={} error=\"{}\"",
                  pod.describe(), uid, msg);
      w.last_error = msg;
    }
    keep_if_pinned();
    return;
  }

  bool restored = pinned_.erase(uid) != 0;
  bool update = existing != enrolled_.end();
  waiting_.erase(uid);
  auto& entry = enrolled_[uid];
  entry = std::move(*result);
  counters_.enrolls++;
  announce(uid, entry.pod, entry.ns);
  ZT_LOG_INFO(
      "enrolled pod={} uid={} ips={} cgroup={} netns_inode={} restored={} updated={} "
      "component=agent",
      pod.describe(), uid, join_ips(entry.ips), entry.cgroup.string(), entry.ns.inode(), restored,
      update);
}

Result<Reconciler::Enrolled> Reconciler::enroll_at(const DesiredPod& pod, const fs::path& cgroup,
                                                   bool* not_started) {
  auto pid = first_pid(cgroup);
  if (!pid) return tl::unexpected(pid.error());
  if (!pid->has_value()) {
    *not_started = true;
    return fail("no process in the pod cgroup yet");
  }
  auto ns = netns::Netns::open(fmt::format("/proc/{}/ns/net", **pid));
  if (!ns) {
    // The process may have exited between reading cgroup.procs and opening its netns.
    return tl::unexpected(wrap(ns.error(), fmt::format("pod process {}", **pid)));
  }
  if (options_.prepare_netns) {
    if (auto st = options_.prepare_netns(*ns); !st) {
      return tl::unexpected(wrap(st.error(), "preparing the pod netns"));
    }
  }
  bpf::PodNetwork net{.ips = {}, .probe_sources = options_.probe_sources};
  for (const auto& text : pod.ips) {
    error_code ec;
    auto ip = asio::ip::make_address(text, ec);
    if (ec) {
      ZT_LOG_WARN("ignoring pod IP component=agent pod={} ip=\"{}\": not an address",
                  pod.describe(), text);
      continue;
    }
    net.ips.push_back(ip);
  }
  if (net.ips.empty()) {
    auto addrs = ns->addresses();
    if (!addrs) return tl::unexpected(wrap(addrs.error(), "reading the pod's addresses"));
    net.ips = std::move(*addrs);
  }
  UniqueFd cgroup_fd(::open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cgroup_fd) {
    return fail(std::error_code(errno, std::system_category()),
                fmt::format("opening cgroup {}", cgroup.string()));
  }
  if (auto st = capture_.enroll(pod.uid, cgroup_fd.get(), ns->fd(), net); !st) {
    return tl::unexpected(wrap(st.error(), "attaching the capture"));
  }
  ZT_LOG_DEBUG("capture attached component=agent pod={} uid={} ips={} probe_sources={}",
               pod.describe(), pod.uid, join_ips(net.ips), join_ips(net.probe_sources));
  return Enrolled{.pod = pod,
                  .ns = std::move(*ns),
                  .cgroup = cgroup,
                  .ips = std::move(net.ips),
                  .stale = false};
}

void Reconciler::release_all(std::string_view reason) {
  std::set<std::string> all = pinned_;
  for (const auto& [uid, _] : enrolled_) all.insert(uid);
  for (const auto& uid : release_failed_) all.insert(uid);
  for (const auto& uid : all) release(uid, name_of(uid), std::string(reason));
  waiting_.clear();
}

ReconcilerStats Reconciler::stats() const {
  auto s = counters_;
  s.enrolled = enrolled_.size();
  s.waiting = waiting_.size();
  return s;
}

std::vector<std::string> Reconciler::enrolled() const {
  std::vector<std::string> out;
  for (const auto& [uid, _] : enrolled_) out.push_back(uid);
  return out;
}

}  // namespace zt::agent
