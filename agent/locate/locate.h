// Finding a pod on this node from its uid: its cgroup (where the eBPF cgroup programs attach)
// and, through a process in that cgroup, its network namespace.
//
// Kubernetes names the pod-level cgroup after the pod uid: "pod<uid>" with the cgroupfs driver
// (kubepods/besteffort/pod1234-...), "kubepods-besteffort-pod<uid with '-' as '_'>.slice" with
// the systemd driver; the simulator creates "pod<uid>". Containers are child cgroups of it, so
// the pod directory itself usually has no processes: the first pid is searched below it too.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace zt::agent {

// Limits of the searches (a node's cgroup tree is some 5 levels deep under kubepods).
inline constexpr int kMaxPodCgroupDepth = 8;
inline constexpr int kMaxProcessSearchDepth = 4;

// True when a cgroup directory named `dir_name` is the pod cgroup of `uid`: the name contains
// "pod<uid>" or "pod<uid with '-' replaced by '_'>", not followed by another letter, digit,
// '-' or '_' (so "pod<uid>" never matches a longer uid that starts with it).
bool cgroup_name_matches(std::string_view dir_name, std::string_view uid);

// For each uid, the shallowest directory below `root` (at most `max_depth` levels, symlinks not
// followed) whose name matches. Uids without a match are absent. Unreadable directories are
// skipped.
std::map<std::string, std::filesystem::path> find_pod_cgroups(const std::filesystem::path& root,
                                                              const std::set<std::string>& uids,
                                                              int max_depth = kMaxPodCgroupDepth);

// The first pid listed in cgroup.procs of `cgroup_dir` or of a descendant (breadth first);
// nullopt when no process lives there. Error when `cgroup_dir` cannot be read.
Result<std::optional<pid_t>> first_pid(const std::filesystem::path& cgroup_dir,
                                       int max_depth = kMaxProcessSearchDepth);

}  // namespace zt::agent
