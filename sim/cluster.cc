#include "sim/cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <unistd.h>

#include "meshd/manifest/source.h"
#include "sim/manifest_edit.h"

namespace zt::sim {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kMarker = "meshsim.prefix";
constexpr const char* kPinBase = "/sys/fs/bpf/ambient-mesh";
constexpr uint16_t kReadinessPort = 15021;
constexpr uint16_t kHbonePort = 15008;  // a waypoint pod's HBONE listener

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Status write_text(const fs::path& p, const std::string& text, fs::perms perms = fs::perms::none) {
  auto tmp = p;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) return failf("cannot write {}", tmp.string());
  }
  std::error_code ec;
  if (perms != fs::perms::none) fs::permissions(tmp, perms, ec);
  fs::rename(tmp, p, ec);
  if (ec) return failf("cannot write {}: {}", p.string(), ec.message());
  return {};
}

std::string random_token() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char bytes[16] = {};
  in.read(reinterpret_cast<char*>(bytes), sizeof(bytes));
  std::string out;
  for (auto b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

// The readiness endpoint (ztunnel's, or a waypoint's) inside `ns` answers 200.
bool ready_in(const netns::Netns& ns) {
  auto status = http_status_in(ns, "127.0.0.1", kReadinessPort, "/healthz/ready", 1500ms);
  return status && *status == 200;
}

std::string ip_batch_file(const fs::path& dir, const std::string& ns,
                          const std::vector<std::string>& lines) {
  auto p = dir / fmt::format("ip-{}.batch", ns);
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  std::ofstream(p) << text;
  return p.string();
}

bool is_bpffs(const fs::path& p) {
  struct statfs st {};
  return ::statfs(p.c_str(), &st) == 0 && st.f_type == 0xcafe4a11 /* BPF_FS_MAGIC */;
}

// Where the nodes' pin roots go: /sys/fs/bpf/ambient-mesh when /sys/fs/bpf is a bpffs, else a
// private bpffs mounted at <state dir>/bpffs (removed again at teardown); the host's mounts
// are never changed.
Result<fs::path> prepare_pin_base(const fs::path& state_dir) {
  if (bpffs_mounted()) return fs::path(kPinBase);
  auto dir = state_dir / "bpffs";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!is_bpffs(dir) && ::mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") != 0) {
    return fail(
        std::error_code(errno, std::system_category()),
        "no bpffs at /sys/fs/bpf, and mounting a private one at " + dir.string() + " failed");
  }
  return dir;
}

std::string process_file_name(const std::string& name) {
  std::string out = name;
  std::replace(out.begin(), out.end(), '/', '_');
  return out;
}

json plan_to_json(const Plan& plan) {
  json nodes = json::array();
  for (const auto& n : plan.nodes) {
    json pods = json::array();
    for (const auto& p : n.pods) {
      pods.push_back({{"namespace", p.namespace_},
                      {"name", p.name},
                      {"uid", p.uid},
                      {"serviceAccount", p.service_account},
                      {"ip", p.ip},
                      {"ports", p.ports},
                      {"index", p.index},
                      {"netns", p.netns},
                      {"nodeIf", p.node_if},
                      {"cgroup", p.cgroup_name},
                      {"waypoint", p.waypoint}});
    }
    nodes.push_back({{"name", n.name},
                     {"index", n.index},
                     {"ip", n.ip},
                     {"netns", n.netns},
                     {"fabricIf", n.fabric_if},
                     {"pods", pods}});
  }
  return {{"prefix", plan.prefix},
          {"fabricNetns", plan.fabric_netns},
          {"nodes", nodes},
          {"skipped", plan.skipped}};
}

Plan plan_from_json(const json& j) {
  Plan plan;
  plan.prefix = j.at("prefix").get<std::string>();
  plan.fabric_netns = j.at("fabricNetns").get<std::string>();
  plan.skipped = j.value("skipped", std::vector<std::string>{});
  for (const auto& jn : j.at("nodes")) {
    NodePlan n;
    n.name = jn.at("name").get<std::string>();
    n.index = jn.at("index").get<size_t>();
    n.ip = jn.at("ip").get<std::string>();
    n.netns = jn.at("netns").get<std::string>();
    n.fabric_if = jn.at("fabricIf").get<std::string>();
    for (const auto& jp : jn.at("pods")) {
      PodPlan p;
      p.namespace_ = jp.at("namespace").get<std::string>();
      p.name = jp.at("name").get<std::string>();
      p.uid = jp.at("uid").get<std::string>();
      p.service_account = jp.value("serviceAccount", "");
      p.node = n.name;
      p.ip = jp.at("ip").get<std::string>();
      p.ports = jp.at("ports").get<std::vector<uint16_t>>();
      p.index = jp.at("index").get<size_t>();
      p.netns = jp.at("netns").get<std::string>();
      p.node_if = jp.at("nodeIf").get<std::string>();
      p.cgroup_name = jp.at("cgroup").get<std::string>();
      p.waypoint = jp.value("waypoint", "");
      n.pods.push_back(std::move(p));
    }
    plan.nodes.push_back(std::move(n));
  }
  return plan;
}

}  // namespace

std::string_view to_string(NodeDaemon d) { return d == NodeDaemon::kZtunnel ? "ztunnel" : "agent"; }

fs::path default_state_dir(const std::string& prefix) { return fs::path("/run/meshsim") / prefix; }

std::vector<pid_t> orphaned_commands(const std::string& prefix) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    auto name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(it->path() / "cmdline");
    std::vector<std::string> argv;
    for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
    if (argv.empty() || fs::path(argv[0]).filename() != "ip") continue;
    if (std::none_of(argv.begin() + 1, argv.end(),
                     [&](const std::string& a) { return a.rfind(prefix + "-", 0) == 0; })) {
      continue;
    }
    const auto pid = static_cast<pid_t>(std::stol(name));
    auto cg = process_cgroup(pid);
    if (cg && cg->rfind("/" + prefix + "/", 0) == 0) continue;  // the cluster's own
    if (process_alive(pid)) pids.push_back(pid);
  }
  return pids;
}

Result<std::vector<std::string>> remove_leftovers(const std::string& prefix,
                                                  const fs::path& state_dir, bool keep_logs) {
  if (auto ok = validate_prefix(prefix); !ok) return tl::unexpected(ok.error());
  std::vector<std::string> removed;
  std::vector<std::string> errors;

  // First let the earlier run's last commands finish (a pidfd becomes readable when its process
  // exits): what they create is removed below. One still running after 10 s is killed.
  const auto orphan_deadline = std::chrono::steady_clock::now() + 10s;
  for (auto pid : orphaned_commands(prefix)) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) continue;  // already gone
    int polled = 0;
    do {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          orphan_deadline - std::chrono::steady_clock::now());
      pollfd p{pidfd.get(), POLLIN, 0};
      polled = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    } while (polled < 0 && errno == EINTR);
    if (polled == 0 && ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) == 0) {
      removed.push_back(fmt::format("killed ip command {} left running by an earlier run", pid));
    }
  }
  auto mount = cgroup2_root();
  std::error_code ec;

  // Pids recorded by the earlier run, killed only while they still live in its cgroups (a pid
  // may have been reused by an unrelated process since).
  auto state_file = state_dir / "state.json";
  if (fs::exists(state_file, ec)) {
    auto j = json::parse(read_text(state_file), nullptr, false);
    if (j.is_object() && j.contains("processes") && j["processes"].is_object()) {
      std::vector<std::string> killed;
      for (const auto& [name, pid_json] : j["processes"].items()) {
        if (!pid_json.is_number_integer()) continue;
        auto pid = pid_json.get<pid_t>();
        auto cg = process_cgroup(pid);
        if (cg && cg->rfind("/" + prefix + "/", 0) == 0 && process_alive(pid)) {
          ::kill(pid, SIGKILL);
          killed.push_back(fmt::format("{} ({})", name, pid));
        }
      }
      if (!killed.empty()) {
        std::string list;
        for (const auto& k : killed) list += (list.empty() ? "" : ", ") + k;
        removed.push_back(fmt::format("killed {} processes recorded in {}: {}", killed.size(),
                                      state_file.string(), list));
      }
    }
  }
  if (mount) {
    auto dir = *mount / prefix;
    bool existed = fs::exists(dir, ec);
    auto killed = destroy_cgroup_tree(dir);
    if (!killed) {
      errors.push_back(killed.error().describe());
    } else if (existed) {
      removed.push_back(
          fmt::format("removed cgroup {} ({} processes killed)", dir.string(), *killed));
    }
  }
  for (const auto& name : list_netns(prefix + "-")) {
    if (auto ok = delete_netns(name); !ok) {
      errors.push_back(ok.error().describe());
    } else {
      removed.push_back("removed netns " + name);
    }
  }
  if (bpffs_mounted()) {
    for (auto it = fs::directory_iterator(kPinBase, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      auto name = it->path().filename().string();
      if (name.rfind(prefix + "-", 0) != 0) continue;
      std::error_code rec;
      fs::remove_all(it->path(), rec);
      if (rec) {
        errors.push_back(
            fmt::format("remove bpffs pins {}: {}", it->path().string(), rec.message()));
      } else {
        removed.push_back("removed bpffs pins " + it->path().string());
      }
    }
  }
  // A private bpffs the earlier run mounted in its state dir (no bpffs at /sys/fs/bpf).
  auto private_bpffs = state_dir / "bpffs";
  if (is_bpffs(private_bpffs)) {
    for (auto it = fs::directory_iterator(private_bpffs, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      std::error_code rec;
      fs::remove_all(it->path(), rec);
      if (!rec) removed.push_back("removed bpffs pins " + it->path().string());
    }
    if (::umount2(private_bpffs.c_str(), MNT_DETACH) != 0) {
      errors.push_back(
          fmt::format("umount private bpffs {}: {}", private_bpffs.string(), std::strerror(errno)));
    } else {
      removed.push_back("unmounted private bpffs " + private_bpffs.string());
    }
  }
  if (fs::exists(state_dir, ec)) {
    auto marker = state_dir / kMarker;
    bool ours = fs::exists(marker, ec) && read_text(marker) == prefix;
    bool empty = fs::is_empty(state_dir, ec);
    if (!ours && !empty) {
      errors.push_back(
          fmt::format("state dir {} exists but is not a meshsim state dir of prefix {} (no {}); "
                      "not touching it",
                      state_dir.string(), prefix, kMarker));
    } else if (ours) {
      bool any = false;
      for (auto it = fs::directory_iterator(state_dir, ec); !ec && it != fs::directory_iterator();
           it.increment(ec)) {
        auto name = it->path().filename().string();
        if (keep_logs && (name == "logs" || name == kMarker)) continue;
        std::error_code rec;
        fs::remove_all(it->path(), rec);
        any = true;
      }
      if (!keep_logs) fs::remove(state_dir, ec);
      if (any || !keep_logs) {
        removed.push_back(fmt::format("removed state dir {}{}", state_dir.string(),
                                      keep_logs ? " (logs kept)" : ""));
      }
    }
  }
  if (!errors.empty()) {
    std::string msg = "cleaning up prefix " + prefix + ":";
    for (const auto& e : errors) msg += "\n  " + e;
    return fail(msg);
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------

std::vector<std::string> remove_leftovers_of_dead_owners(const std::string& stem) {
  std::vector<std::string> names = list_netns(stem);
  if (auto root = cgroup2_root()) {
    std::error_code ec;
    for (auto it = fs::directory_iterator(*root, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      auto name = it->path().filename().string();
      if (name.rfind(stem, 0) == 0) names.push_back(name);
    }
  }
  std::set<std::string> dead;
  for (const auto& n : names) {
    auto dash = n.find('-');
    auto digits =
        n.substr(stem.size(), dash == std::string::npos ? std::string::npos : dash - stem.size());
    if (digits.empty() || digits.size() > 9 ||
        digits.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    if (::kill(std::stoi(digits), 0) != 0 && errno == ESRCH) dead.insert(stem + digits);
  }
  // The owner's state dir is unknown (tests keep theirs in a temporary folder): only the
  // machine-wide things (processes, netns, cgroups, pins) are removed.
  for (const auto& p : dead) (void)remove_leftovers(p, "/nonexistent/" + p);
  return {dead.begin(), dead.end()};
}

Result<std::unique_ptr<Cluster>> Cluster::up(ClusterOptions options) {
  if (auto ok = validate_prefix(options.prefix); !ok) return tl::unexpected(ok.error());
  std::error_code ec;
  if (options.manifests.empty()) return fail("no manifests directory given");
  if (!fs::is_directory(options.manifests, ec)) {
    return failf("manifests directory {} does not exist", options.manifests.string());
  }
  options.manifests = fs::absolute(options.manifests);
  if (options.state_dir.empty()) options.state_dir = default_state_dir(options.prefix);
  options.state_dir = fs::absolute(options.state_dir);
  if (options.bin_dir.empty()) {
    const char* env = std::getenv("ZT_BIN_DIR");
    options.bin_dir = env && *env ? fs::path(env) : self_dir();
  }
  options.bin_dir = fs::absolute(options.bin_dir);
  std::vector<std::string> needed = {"meshd", "http-echo", "meshsim"};
  if (options.mesh) {
    needed.push_back("node-agent");
    needed.push_back("ztunnel");
  }
  for (const auto& b : needed) {
    if (::access((options.bin_dir / b).c_str(), X_OK) != 0) {
      return failf("binary {} not found in {} (build it, or pass --bin-dir{})", b,
                   options.bin_dir.string(), options.mesh ? ", or --no-mesh" : "");
    }
  }
  auto mount = cgroup2_root();
  if (!mount) return tl::unexpected(mount.error());

  std::unique_ptr<Cluster> c(new Cluster());
  c->options_ = std::move(options);
  c->cgroup_mount_ = *mount;
  c->cgroup_root_ = *mount / c->options_.prefix;
  c->detached_ = true;  // nothing of ours exists yet: do not tear down on an early return

  auto removed = remove_leftovers(c->options_.prefix, c->options_.state_dir);
  if (!removed) return tl::unexpected(wrap(removed.error(), "removing leftovers"));
  for (const auto& line : *removed) c->say("leftover: " + line);
  c->leftovers_removed_ = std::move(*removed);
  // From here on a failure tears down whatever was made (the state dir's bpffs mount too).
  c->detached_ = false;

  const auto& sd = c->options_.state_dir;
  fs::create_directories(sd / "logs", ec);
  if (ec) return failf("cannot create state dir {}: {}", sd.string(), ec.message());
  if (auto ok = write_text(sd / kMarker, c->options_.prefix); !ok)
    return tl::unexpected(ok.error());
  // Also without mesh: private pin roots (bpf_pin_root, e.g. a sidecar pod's own capture)
  // need a bpffs too.
  auto pins = prepare_pin_base(sd);
  if (!pins) return tl::unexpected(pins.error());
  c->pin_base_ = *pins;

  meshd::manifest::ManifestSource source(c->options_.manifests);
  auto loaded = source.reload();
  for (const auto& e : loaded.errors) c->say("manifest: " + e.message);
  auto plan = plan_cluster(*loaded.objects, c->options_.prefix, c->options_.extra_nodes);
  if (!plan) return tl::unexpected(wrap(plan.error(), "planning the cluster"));
  if (plan->nodes.empty()) {
    return failf("no node: no pod in {} has spec.nodeName and an IPv4 status.podIP",
                 c->options_.manifests.string());
  }
  c->plan_ = std::move(*plan);
  for (const auto& s : c->plan_.skipped) c->say("skipped pod " + s);
  for (const auto& n : c->plan_.nodes) {
    for (const auto& p : n.pods) {
      auto binary = c->options_.bin_dir / "waypoint";
      if (!p.waypoint.empty() && ::access(binary.c_str(), X_OK) != 0) {
        return failf("pod {} runs the waypoint, but {} is not there (build the waypoint target)",
                     p.key(), binary.string());
      }
    }
  }

  if (auto ok = c->build(); !ok) {
    c->say("up failed, tearing down: " + ok.error().describe());
    return tl::unexpected(ok.error());  // the destructor tears down (logs are kept)
  }
  return c;
}

Result<std::unique_ptr<Cluster>> Cluster::attach(const fs::path& state_dir) {
  auto file = state_dir / "state.json";
  std::error_code ec;
  if (!fs::exists(file, ec)) return failf("no simulated cluster: {} does not exist", file.string());
  auto j = json::parse(read_text(file), nullptr, false);
  if (!j.is_object()) return failf("{} is not valid JSON", file.string());
  std::unique_ptr<Cluster> c(new Cluster());
  try {
    c->options_.prefix = j.at("prefix").get<std::string>();
    c->options_.manifests = j.at("manifests").get<std::string>();
    c->options_.state_dir = j.at("stateDir").get<std::string>();
    c->options_.bin_dir = j.at("binDir").get<std::string>();
    c->options_.mesh = j.at("mesh").get<bool>();
    c->options_.log_level = j.value("logLevel", "info");
    c->cgroup_mount_ = j.at("cgroupMount").get<std::string>();
    c->pin_base_ = j.value("pinBase", std::string(kPinBase));
    c->plan_ = plan_from_json(j.at("plan"));
    for (const auto& [name, pid] : j.at("processes").items()) c->pids_[name] = pid.get<pid_t>();
  } catch (const json::exception& e) {
    return failf("{}: {}", file.string(), e.what());
  }
  c->cgroup_root_ = c->cgroup_mount_ / c->options_.prefix;
  c->detached_ = true;  // attaching never tears down by itself; call down()
  return c;
}

Cluster::~Cluster() {
  if (detached_ || down_) return;
  if (auto ok = down(); !ok) {
    std::fprintf(stderr, "meshsim: teardown of %s: %s\n", options_.prefix.c_str(),
                 ok.error().describe().c_str());
  }
}

void Cluster::say(std::string_view message) const {
  if (options_.progress) options_.progress(message);
}

std::string Cluster::meshd_address() const { return fmt::format("{}:{}", kBridgeIp, kMeshdPort); }

fs::path Cluster::node_cgroup(const std::string& node) const { return cgroup_root_ / node; }

fs::path Cluster::pod_cgroup(const std::string& pod) const {
  const auto* p = plan_.find_pod(pod);
  if (!p) return {};
  return cgroup_root_ / p->node / p->cgroup_name;
}

fs::path Cluster::bpf_pin_root(const std::string& node) const {
  return pin_base_ / (options_.prefix + "-" + node);
}

fs::path Cluster::zds_socket(const std::string& node) const {
  return options_.state_dir / node / "ztunnel.sock";
}

fs::path Cluster::log_path(const std::string& process) const {
  return options_.state_dir / "logs" / (process_file_name(process) + ".log");
}

std::string Cluster::log_tail(const std::string& process) const {
  return sim::log_tail(log_path(process));
}

Status Cluster::write_state() const {
  json processes = json::object();
  for (const auto& [name, pid] : pids_) processes[name] = pid;
  json j = {{"prefix", options_.prefix},
            {"manifests", options_.manifests.string()},
            {"stateDir", options_.state_dir.string()},
            {"binDir", options_.bin_dir.string()},
            {"mesh", options_.mesh},
            {"logLevel", options_.log_level},
            {"cgroupMount", cgroup_mount_.string()},
            {"pinBase", pin_base_.string()},
            {"meshdAddress", meshd_address()},
            {"plan", plan_to_json(plan_)},
            {"processes", processes}};
  return write_text(options_.state_dir / "state.json", j.dump(2) + "\n");
}

Result<pid_t> Cluster::launch(const std::string& name, const SpawnSpec& spec_in) {
  SpawnSpec spec = spec_in;
  spec.log = log_path(name);
  { std::ofstream(spec.log, std::ios::app) << fmt::format("=== meshsim: starting {} ===\n", name); }
  auto pid = spawn(spec);
  if (!pid) return tl::unexpected(wrap(pid.error(), "starting " + name));
  pids_[name] = *pid;
  if (auto ok = write_state(); !ok) return tl::unexpected(ok.error());
  return pid;
}

Status Cluster::build() {
  if (auto ok = write_state(); !ok) return ok;
  // cgroups
  std::vector<fs::path> dirs = {cgroup_root_, cgroup_root_ / "meshd"};
  for (const auto& n : plan_.nodes) {
    dirs.push_back(node_cgroup(n.name));
    dirs.push_back(node_cgroup(n.name) / "ztunnel");
    dirs.push_back(node_cgroup(n.name) / "agent");
    for (const auto& p : n.pods) dirs.push_back(node_cgroup(n.name) / p.cgroup_name);
    std::error_code ec;
    fs::create_directories(options_.state_dir / n.name, ec);
  }
  for (const auto& d : dirs) {
    std::error_code ec;
    fs::create_directory(d, ec);
    if (ec) return failf("cannot create cgroup {}: {}", d.string(), ec.message());
  }
  say(fmt::format("cgroups under {}", cgroup_root_.string()));
  if (auto ok = build_network(); !ok) return ok;
  if (auto ok = start_meshd(); !ok) return ok;
  for (const auto& n : plan_.nodes) {
    for (const auto& p : n.pods) {
      if (auto ok = start_pod(p); !ok) return ok;
    }
  }
  for (const auto& n : plan_.nodes) {
    for (const auto& p : n.pods) {
      if (auto ok = wait_pod_ready(p); !ok) return ok;
    }
  }
  say(fmt::format(
      "{} pods running on {} nodes",
      [&] {
        size_t k = 0;
        for (const auto& n : plan_.nodes) k += n.pods.size();
        return k;
      }(),
      plan_.nodes.size()));
  if (options_.mesh) {
    for (const auto& n : plan_.nodes) {
      for (auto d : {NodeDaemon::kAgent, NodeDaemon::kZtunnel}) {
        std::error_code ec;
        if (d == NodeDaemon::kAgent) fs::remove(options_.state_dir / n.name / "agent.ready", ec);
        auto name = n.name + "." + std::string(to_string(d));
        if (auto pid = launch(name, daemon_spec(n, d)); !pid) return tl::unexpected(pid.error());
      }
    }
    for (const auto& n : plan_.nodes) {
      for (auto d : {NodeDaemon::kAgent, NodeDaemon::kZtunnel}) {
        if (auto ok = wait_daemon_ready(n, d); !ok) return ok;
      }
    }
    say("node agents and ztunnels ready");
  }
  return write_state();
}

Status Cluster::build_network() {
  auto tmp = options_.state_dir / "net";
  std::error_code ec;
  fs::create_directories(tmp, ec);
  // Namespaces first, so veths can be created with their peer directly in the target (no
  // interface ever appears in the root namespace).
  std::vector<std::string> all = {plan_.fabric_netns};
  for (const auto& n : plan_.nodes) {
    all.push_back(n.netns);
    for (const auto& p : n.pods) all.push_back(p.netns);
  }
  for (const auto& ns : all) {
    if (auto ok = ip({"netns", "add", ns}); !ok) return ok;
  }

  std::vector<std::string> fabric = {"link set lo up", "link add br0 type bridge",
                                     fmt::format("addr add {}/24 dev br0", kBridgeIp),
                                     "link set br0 up"};
  for (const auto& n : plan_.nodes) {
    fabric.push_back(
        fmt::format("link add {} type veth peer name eth0 netns {}", n.fabric_if, n.netns));
    fabric.push_back(fmt::format("link set {} master br0", n.fabric_if));
    fabric.push_back(fmt::format("link set {} up", n.fabric_if));
    for (const auto& p : n.pods)
      fabric.push_back(fmt::format("route add {}/32 via {}", p.ip, n.ip));
  }
  if (auto ok =
          ip({"-n", plan_.fabric_netns, "-batch", ip_batch_file(tmp, plan_.fabric_netns, fabric)});
      !ok) {
    return ok;
  }
  for (const auto& n : plan_.nodes) {
    std::vector<std::string> node = {"link set lo up", fmt::format("addr add {}/24 dev eth0", n.ip),
                                     "link set eth0 up"};
    for (const auto& p : n.pods) {
      node.push_back(
          fmt::format("link add {} type veth peer name eth0 netns {}", p.node_if, p.netns));
      node.push_back(fmt::format("addr add {}/32 dev {}", kPodGateway, p.node_if));
      node.push_back(fmt::format("link set {} up", p.node_if));
      // src: the node's own IP, so the node's connections to its pods (kubelet probes)
      // come from the node IP as in a real cluster, not from the gateway address.
      node.push_back(
          fmt::format("route add {}/32 dev {} scope link src {}", p.ip, p.node_if, n.ip));
    }
    for (const auto& other : plan_.nodes) {
      if (other.name == n.name) continue;
      for (const auto& p : other.pods) {
        node.push_back(fmt::format("route add {}/32 via {}", p.ip, other.ip));
      }
    }
    if (auto ok = ip({"-n", n.netns, "-batch", ip_batch_file(tmp, n.netns, node)}); !ok) return ok;
    for (const auto& [key, value] :
         std::vector<std::pair<std::string, std::string>>{{"net/ipv4/ip_forward", "1"},
                                                          {"net/ipv4/conf/all/rp_filter", "0"},
                                                          {"net/ipv4/conf/default/rp_filter", "0"},
                                                          {"net/ipv4/conf/eth0/rp_filter", "0"}}) {
      if (auto ok = write_sysctl(n.netns, key, value); !ok) return ok;
    }
    for (const auto& p : n.pods) {
      if (auto ok = write_sysctl(n.netns, "net/ipv4/conf/" + p.node_if + "/rp_filter", "0"); !ok) {
        return ok;
      }
      std::vector<std::string> pod = {
          "link set lo up", fmt::format("addr add {}/32 dev eth0", p.ip), "link set eth0 up",
          fmt::format("route add {} dev eth0 scope link", kPodGateway),
          fmt::format("route add default via {} dev eth0", kPodGateway)};
      if (auto ok = ip({"-n", p.netns, "-batch", ip_batch_file(tmp, p.netns, pod)}); !ok) return ok;
      for (const auto& key : {"net/ipv4/conf/all/rp_filter", "net/ipv4/conf/eth0/rp_filter"}) {
        if (auto ok = write_sysctl(p.netns, key, "0"); !ok) return ok;
      }
    }
  }
  fs::remove_all(tmp, ec);
  say(fmt::format("network: fabric {} ({}), {} nodes", plan_.fabric_netns, kBridgeIp,
                  plan_.nodes.size()));
  return {};
}

Status Cluster::start_meshd() {
  std::string tokens;
  for (const auto& n : plan_.nodes) {
    auto token = random_token();
    tokens += fmt::format("{}: {}\n", token, n.name);
    if (auto ok = write_text(options_.state_dir / n.name / "token", token + "\n",
                             fs::perms::owner_read | fs::perms::owner_write);
        !ok) {
      return ok;
    }
  }
  if (auto ok = write_text(options_.state_dir / "tokens", tokens,
                           fs::perms::owner_read | fs::perms::owner_write);
      !ok) {
    return ok;
  }
  SpawnSpec spec;
  spec.argv = {(options_.bin_dir / "meshd").string(),
               "--manifests",
               options_.manifests.string(),
               "--grpc-address",
               meshd_address(),
               "--ca-dir",
               (options_.state_dir / "ca").string(),
               "--tokens",
               (options_.state_dir / "tokens").string(),
               "--log-level",
               options_.log_level};
  spec.cgroup = cgroup_root_ / "meshd";
  spec.netns = netns_path(plan_.fabric_netns);
  auto pid = launch("meshd", spec);
  if (!pid) return tl::unexpected(pid.error());
  auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
  while (read_text(log_path("meshd")).find("meshd ready") == std::string::npos) {
    if (!process_alive(*pid)) return failf("meshd exited during start-up{}", log_tail("meshd"));
    if (std::chrono::steady_clock::now() > deadline) {
      return failf("meshd not ready after {} s{}", options_.ready_timeout.count() / 1000,
                   log_tail("meshd"));
    }
    std::this_thread::sleep_for(20ms);
  }
  say("meshd ready on " + meshd_address());
  return {};
}

Status Cluster::start_pod(const PodPlan& pod) {
  std::vector<std::string> env = {"POD_NAME=" + pod.name, "POD_NAMESPACE=" + pod.namespace_,
                                  "POD_IP=" + pod.ip, "NODE_NAME=" + pod.node};
  auto base = pod.namespace_ + "." + pod.name;
  SpawnSpec pause;
  pause.argv = {(options_.bin_dir / "meshsim").string(), "pause"};
  pause.env = env;
  pause.cgroup = pod_cgroup(pod.key());
  pause.netns = netns_path(pod.netns);
  if (auto pid = launch(base + ".pause", pause); !pid) return tl::unexpected(pid.error());
  SpawnSpec app = pause;
  if (!pod.waypoint.empty()) {
    // What deploy/daemonset/waypoint gives it, with the simulator's addresses: workloads and its
    // L7 configuration from meshd, its certificate signed with meshd's CA.
    app.argv = {(options_.bin_dir / "waypoint").string(),
                "--instance-ip",
                pod.ip,
                "--hbone-address",
                fmt::format("{}:{}", pod.ip, kHbonePort),
                "--service-account",
                pod.service_account,
                "--ca-cert",
                (options_.state_dir / "ca" / "ca-cert.pem").string(),
                "--ca-key",
                (options_.state_dir / "ca" / "ca-key.pem").string(),
                "--xds-address",
                "http://" + meshd_address(),
                "--log-level",
                options_.log_level};
    app.env.push_back("WAYPOINT_NAME=" + pod.waypoint);
  } else {
    app.argv = {(options_.bin_dir / "http-echo").string()};
    if (pod.ext_authz) app.argv.push_back("--ext-authz");
    for (auto port : pod.ports) {
      app.argv.push_back("--port");
      app.argv.push_back(std::to_string(port));
    }
  }
  if (auto pid = launch(base + ".app", app); !pid) return tl::unexpected(pid.error());
  return {};
}

Status Cluster::wait_pod_ready(const PodPlan& pod) {
  auto ns = netns::Netns::open(netns_path(pod.netns));
  if (!ns) return tl::unexpected(ns.error());
  auto name = pod.namespace_ + "." + pod.name + ".app";
  auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
  if (!pod.waypoint.empty()) {
    // Ready once it has its certificate and meshd's configuration (its readiness endpoint).
    return wait_ready(name, [&] { return ready_in(*ns); });
  }
  for (auto port : pod.ports) {
    while (!connect_in(*ns, "127.0.0.1", port, 200ms)) {
      if (!process_alive(pids_[name])) {
        return failf("app of pod {} exited during start-up{}", pod.key(), log_tail(name));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return failf("app of pod {} not listening on port {}{}", pod.key(), port, log_tail(name));
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  return {};
}

SpawnSpec Cluster::daemon_spec(const NodePlan& node, NodeDaemon daemon) const {
  SpawnSpec spec;
  auto cgroup = node_cgroup(node.name);
  spec.netns = netns_path(node.netns);
  auto pins = bpf_pin_root(node.name).string();
  auto sock = zds_socket(node.name).string();
  if (daemon == NodeDaemon::kAgent) {
    spec.argv = {(options_.bin_dir / "node-agent").string(),
                 "--manifests",
                 options_.manifests.string(),
                 "--node-name",
                 node.name,
                 "--cgroup-root",
                 cgroup.string(),
                 "--bpf-pin-root",
                 pins,
                 "--zds-socket",
                 sock,
                 "--ready-file",
                 (options_.state_dir / node.name / "agent.ready").string(),
                 "--ztunnel-cgroup",
                 (cgroup / "ztunnel").string(),
                 "--log-level",
                 options_.log_level};
    spec.cgroup = cgroup / "agent";
  } else {
    auto url = "http://" + meshd_address();
    spec.argv = {(options_.bin_dir / "ztunnel").string()};
    spec.env = {"PROXY_MODE=shared",
                "NODE_NAME=" + node.name,
                "XDS_ADDRESS=" + url,
                "CA_ADDRESS=" + url,
                "AUTH_TOKEN=" + (options_.state_dir / node.name / "token").string(),
                "INPOD_UDS=" + sock,
                "BPF_PIN_ROOT=" + pins,
                "INSTANCE_IP=" + node.ip,
                "POD_NAME=ztunnel-" + node.name,
                "POD_NAMESPACE=istio-system",
                "RUST_LOG=" + options_.log_level};
    spec.cgroup = cgroup / "ztunnel";
  }
  return spec;
}

Status Cluster::wait_daemon_ready(const NodePlan& node, NodeDaemon daemon) {
  auto name = node.name + "." + std::string(to_string(daemon));
  auto ns = netns::Netns::open(netns_path(node.netns));
  if (!ns) return tl::unexpected(ns.error());
  auto ready_file = options_.state_dir / node.name / "agent.ready";
  return wait_ready(name, [&] {
    std::error_code ec;
    return daemon == NodeDaemon::kAgent ? fs::exists(ready_file, ec) : ready_in(*ns);
  });
}

Status Cluster::wait_ready(const std::string& name, const std::function<bool()>& ready) {
  auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
  for (;;) {
    if (ready()) return {};
    auto it = pids_.find(name);
    if (it == pids_.end() || !process_alive(it->second)) {
      return failf("{} exited during start-up{}", name, log_tail(name));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return failf("{} not ready after {} s{}", name, options_.ready_timeout.count() / 1000,
                   log_tail(name));
    }
    std::this_thread::sleep_for(20ms);
  }
}

Status Cluster::start(const std::string& node, NodeDaemon daemon) {
  const auto* n = plan_.find_node(node);
  if (!n) return failf("no node {}", node);
  if (running(node, daemon)) return failf("{} of {} is already running", to_string(daemon), node);
  if (daemon == NodeDaemon::kAgent) {
    std::error_code ec;
    fs::remove(options_.state_dir / node / "agent.ready", ec);
  }
  auto pid = launch(node + "." + std::string(to_string(daemon)), daemon_spec(*n, daemon));
  if (!pid) return tl::unexpected(pid.error());
  return wait_daemon_ready(*n, daemon);
}

Status Cluster::stop(const std::string& node, NodeDaemon daemon, int sig) {
  return stop_named(node + "." + std::string(to_string(daemon)), sig);
}

bool Cluster::running(const std::string& node, NodeDaemon daemon) const {
  auto it = pids_.find(node + "." + std::string(to_string(daemon)));
  return it != pids_.end() && process_alive(it->second);
}

Result<ExecResult> Cluster::exec_in_pod(const std::string& pod,
                                        const std::vector<std::string>& argv,
                                        std::chrono::milliseconds timeout) {
  const auto* p = plan_.find_pod(pod);
  if (!p) return failf("no pod {} in the simulated cluster", pod);
  SpawnSpec spec;
  spec.argv = argv;
  spec.env = {"POD_NAME=" + p->name, "POD_NAMESPACE=" + p->namespace_, "POD_IP=" + p->ip,
              "NODE_NAME=" + p->node};
  spec.cgroup = pod_cgroup(pod);
  spec.netns = netns_path(p->netns);
  return run_captured(spec, timeout);
}

fs::path Cluster::sidecar_cgroup(const std::string& pod) const {
  auto cg = pod_cgroup(pod);
  if (cg.empty()) return {};
  return cg.parent_path() / (cg.filename().string() + "-proxy");
}

Result<pid_t> Cluster::start_in_pod(const std::string& pod, const std::string& name,
                                    std::vector<std::string> argv, std::vector<std::string> env,
                                    PodCgroup where) {
  const auto* p = plan_.find_pod(pod);
  if (!p) return failf("no pod {} in the simulated cluster", pod);
  if (argv.empty()) return failf("start_in_pod {}: empty command", name);
  if (auto it = pids_.find(name); it != pids_.end() && process_alive(it->second)) {
    return failf("a process named {} is already running (pid {})", name, it->second);
  }
  SpawnSpec spec;
  spec.argv = std::move(argv);
  spec.env = {"POD_NAME=" + p->name, "POD_NAMESPACE=" + p->namespace_, "POD_IP=" + p->ip,
              "NODE_NAME=" + p->node};
  for (auto& e : env) spec.env.push_back(std::move(e));
  spec.netns = netns_path(p->netns);
  if (where == PodCgroup::kSidecar) {
    spec.cgroup = sidecar_cgroup(pod);
    std::error_code ec;
    fs::create_directories(spec.cgroup, ec);
    if (ec) return failf("cannot create cgroup {}: {}", spec.cgroup.string(), ec.message());
  } else {
    spec.cgroup = pod_cgroup(pod);
  }
  return launch(name, spec);
}

Status Cluster::stop_named(const std::string& name, int sig) {
  auto it = pids_.find(name);
  if (it == pids_.end()) return {};
  if (!stop_process(it->second, sig, 15s)) {
    return failf("{} (pid {}) did not exit within 15 s of signal {}", name, it->second, sig);
  }
  pids_.erase(it);
  return write_state();
}

std::optional<pid_t> Cluster::pid_of(const std::string& name) const {
  auto it = pids_.find(name);
  if (it == pids_.end()) return std::nullopt;
  return it->second;
}

Result<ExecResult> Cluster::exec_in_node(const std::string& node,
                                         const std::vector<std::string>& argv,
                                         std::chrono::milliseconds timeout) {
  const auto* n = plan_.find_node(node);
  if (!n) return failf("no node {} in the simulated cluster", node);
  SpawnSpec spec;
  spec.argv = argv;
  spec.netns = netns_path(n->netns);
  return run_captured(spec, timeout);
}

Status Cluster::label_namespace(const std::string& ns, const std::string& key,
                                const std::optional<std::string>& value) {
  auto file = set_namespace_label(options_.manifests, ns, key, value);
  if (!file) return tl::unexpected(file.error());
  return {};
}

Result<netns::Netns> Cluster::node_netns(const std::string& node) const {
  const auto* n = plan_.find_node(node);
  if (!n) return failf("no node {}", node);
  return netns::Netns::open(netns_path(n->netns));
}

Result<netns::Netns> Cluster::pod_netns(const std::string& pod) const {
  const auto* p = plan_.find_pod(pod);
  if (!p) return failf("no pod {}", pod);
  return netns::Netns::open(netns_path(p->netns));
}

std::vector<ProcessInfo> Cluster::processes() const {
  std::vector<ProcessInfo> out;
  for (const auto& [name, pid] : pids_) {
    out.push_back({name, pid, process_alive(pid), log_path(name)});
  }
  return out;
}

Status Cluster::down() {
  down_ = true;
  // Node daemons first and gently, so they can unpin and close cleanly; the rest is killed.
  std::vector<pid_t> gentle;
  for (const auto& [name, pid] : pids_) {
    if (name.ends_with(".ztunnel") || name.ends_with(".agent") || name == "meshd") {
      if (process_alive(pid)) {
        ::kill(pid, SIGTERM);
        gentle.push_back(pid);
      }
    }
  }
  auto deadline = std::chrono::steady_clock::now() + 3s;
  for (pid_t pid : gentle) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    stop_process(pid, 0, std::max(left, 1ms));
  }
  auto removed = remove_leftovers(options_.prefix, options_.state_dir, /*keep_logs=*/true);
  // Reap the processes that were our children.
  for (const auto& [name, pid] : pids_) stop_process(pid, 0, 200ms);
  pids_.clear();
  if (!removed) return tl::unexpected(removed.error());
  for (const auto& line : *removed) say("down: " + line);
  return {};
}

}  // namespace zt::sim
