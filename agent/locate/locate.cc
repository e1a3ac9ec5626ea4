#include "agent/locate/locate.h"

#include <algorithm>
#include <cctype>
#include <deque>
#include <fstream>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace zt::agent {

namespace fs = std::filesystem;

namespace {

bool contains_bounded(std::string_view name, std::string_view needle) {
  for (size_t pos = name.find(needle); pos != std::string_view::npos;
       pos = name.find(needle, pos + 1)) {
    size_t end = pos + needle.size();
    if (end == name.size()) return true;
    unsigned char next = static_cast<unsigned char>(name[end]);
    if (!std::isalnum(next) && next != '-' && next != '_') return true;
  }
  return false;
}

// Subdirectories of `dir` (not symlinks), sorted for a deterministic search order.
std::vector<fs::path> subdirectories(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) return out;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    std::error_code type_ec;
    if (it->is_symlink(type_ec) || !it->is_directory(type_ec)) continue;
    out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

bool cgroup_name_matches(std::string_view dir_name, std::string_view uid) {
  if (uid.empty()) return false;
  std::string plain = fmt::format("pod{}", uid);
  if (contains_bounded(dir_name, plain)) return true;
  std::string underscored = plain;
  for (auto& ch : underscored) {
    if (ch == '-') ch = '_';
  }
  return underscored != plain && contains_bounded(dir_name, underscored);
}

std::map<std::string, fs::path> find_pod_cgroups(const fs::path& root,
                                                 const std::set<std::string>& uids, int max_depth) {
  std::map<std::string, fs::path> found;
  if (uids.empty()) return found;
  // Breadth first, so the first match is the shallowest (the pod, not a container below it).
  std::deque<std::pair<fs::path, int>> queue;
  queue.emplace_back(root, 0);
  while (!queue.empty() && found.size() < uids.size()) {
    auto [dir, depth] = std::move(queue.front());
    queue.pop_front();
    if (depth >= max_depth) continue;
    for (auto& child : subdirectories(dir)) {
      auto name = child.filename().string();
      bool matched = false;
      if (name.find("pod") != std::string::npos) {
        for (const auto& uid : uids) {
          if (found.count(uid) == 0 && cgroup_name_matches(name, uid)) {
            found.emplace(uid, child);
            matched = true;
          }
        }
      }
      // A pod's cgroup holds only its containers: no other pod lives below it.
      if (!matched) queue.emplace_back(std::move(child), depth + 1);
    }
  }
  return found;
}

Result<std::optional<pid_t>> first_pid(const fs::path& cgroup_dir, int max_depth) {
  std::error_code ec;
  if (!fs::is_directory(cgroup_dir, ec)) {
    return failf("cgroup {} is not a directory", cgroup_dir.string());
  }
  std::deque<std::pair<fs::path, int>> queue;
  queue.emplace_back(cgroup_dir, 0);
  while (!queue.empty()) {
    auto [dir, depth] = std::move(queue.front());
    queue.pop_front();
    std::ifstream procs(dir / "cgroup.procs");
    long pid = 0;
    if (procs && (procs >> pid) && pid > 0) return static_cast<pid_t>(pid);
    if (depth >= max_depth) continue;
    for (auto& child : subdirectories(dir)) queue.emplace_back(std::move(child), depth + 1);
  }
  return std::optional<pid_t>{};
}

}  // namespace zt::agent
