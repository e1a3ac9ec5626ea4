#include "sim/host.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "common/netns/netns.h"

extern char** environ;

namespace zt::sim {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::error_code errno_code(int e) { return {e, std::system_category()}; }

// What the child reports through the close-on-exec pipe when a step before exec fails.
struct ChildFailure {
  int step;  // index into kSteps
  int err;
};
constexpr const char* kSteps[] = {"join cgroup (write cgroup.procs)", "setns into netns",
                                  "redirect stdio", "exec", "set the parent-death signal"};

std::string join_argv(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

// Environment of this process with spec.env applied (same key replaced).
std::vector<std::string> merged_env(const std::vector<std::string>& extra) {
  std::map<std::string, std::string> kv;
  std::vector<std::string> order;
  auto add = [&](const std::string& e) {
    auto eq = e.find('=');
    std::string k = eq == std::string::npos ? e : e.substr(0, eq);
    if (!kv.count(k)) order.push_back(k);
    kv[k] = e;
  };
  for (char** p = environ; p && *p; ++p) add(*p);
  for (const auto& e : extra) add(e);
  std::vector<std::string> out;
  out.reserve(order.size());
  for (const auto& k : order) out.push_back(kv[k]);
  return out;
}

// Forks and execs `spec`. stdout/stderr go to `out_fd`/`err_fd` when >= 0, else to the log
// file (or are inherited).
Result<pid_t> spawn_impl(const SpawnSpec& spec, int out_fd, int err_fd) {
  if (spec.argv.empty()) return fail("spawn: empty command");
  const std::string what = join_argv(spec.argv);
  UniqueFd cgroup_fd, netns_fd, log_fd, null_fd;
  if (!spec.cgroup.empty()) {
    auto procs = spec.cgroup / "cgroup.procs";
    cgroup_fd.reset(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (!cgroup_fd)
      return fail(errno_code(errno), fmt::format("spawn {}: open {}", what, procs.string()));
  }
  if (!spec.netns.empty()) {
    netns_fd.reset(::open(spec.netns.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns_fd)
      return fail(errno_code(errno), fmt::format("spawn {}: open netns {}", what, spec.netns));
  }
  if (!spec.log.empty() && out_fd < 0) {
    log_fd.reset(::open(spec.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log_fd)
      return fail(errno_code(errno), fmt::format("spawn {}: open log {}", what, spec.log.string()));
  }
  null_fd.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return fail(errno_code(errno), "spawn: pipe");
  UniqueFd report_r(report[0]), report_w(report[1]);

  std::vector<std::string> env = merged_env(spec.env);
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const bool new_session = spec.new_session;
  const bool die_with_caller = spec.die_with_caller;
  const pid_t caller = ::getpid();
  const int out = out_fd >= 0 ? out_fd : (log_fd ? log_fd.get() : 1);
  const int err = err_fd >= 0 ? err_fd : (log_fd ? log_fd.get() : 2);

  pid_t pid = ::fork();
  if (pid < 0) return fail(errno_code(errno), fmt::format("spawn {}: fork", what));
  if (pid == 0) {
    auto die = [&](int step) {
      ChildFailure f{step, errno};
      [[maybe_unused]] auto n = ::write(report_w.get(), &f, sizeof(f));
      ::_exit(127);
    };
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) ::signal(s, SIG_DFL);
    if (die_with_caller) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die(4);
      if (::getppid() != caller) ::_exit(127);  // killed before the prctl took effect
    }
    if (new_session) {
      ::setsid();
    } else {
      ::setpgid(0, 0);
    }
    if (cgroup_fd && ::write(cgroup_fd.get(), "0", 1) != 1) die(0);
    if (netns_fd && ::setns(netns_fd.get(), CLONE_NEWNET) != 0) die(1);
    if (::dup2(null_fd.get(), 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) die(2);
    ::execvpe(argv[0], argv.data(), envp.data());
    die(3);
  }
  report_w.reset();
  ChildFailure f{};
  ssize_t n;
  do {
    n = ::read(report_r.get(), &f, sizeof(f));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(f))) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return fail(errno_code(f.err), fmt::format("spawn {}: {}", what, kSteps[f.step]));
  }
  return pid;
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::optional<char> process_state(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return std::nullopt;
  return line[close + 2];
}

}  // namespace

Result<pid_t> spawn(const SpawnSpec& spec) { return spawn_impl(spec, -1, -1); }

Result<ExecResult> run_captured(SpawnSpec spec, std::chrono::milliseconds timeout) {
  spec.new_session = false;
  spec.die_with_caller = true;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return fail(errno_code(errno), "run: pipe");
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return fail(errno_code(errno), "run: pipe");
  UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);
  auto pid = spawn_impl(spec, out_w.get(), err_w.get());
  if (!pid) return tl::unexpected(pid.error());
  out_w.reset();
  err_w.reset();

  ExecResult result;
  constexpr size_t kLimit = 16u << 20;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  std::array<char, 65536> buf;
  while (out_r || err_r) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (!killed) {
        ::kill(-*pid, SIGKILL);
        killed = true;
        result.timed_out = true;
      }
      // Grandchildren may keep the pipes open: give up on reading after the kill.
      deadline = std::chrono::steady_clock::now() + 1s;
      if (left.count() < -1000) break;
      left = std::chrono::milliseconds(100);
    }
    pollfd fds[2];
    int nfds = 0;
    if (out_r) fds[nfds++] = {out_r.get(), POLLIN, 0};
    if (err_r) fds[nfds++] = {err_r.get(), POLLIN, 0};
    int r = ::poll(fds, nfds, static_cast<int>(std::min<long>(left.count(), 100)));
    if (r < 0 && errno != EINTR) break;
    for (int i = 0; i < nfds; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      bool is_out = out_r && fds[i].fd == out_r.get();
      ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
      if (n <= 0) {
        (is_out ? out_r : err_r).reset();
        continue;
      }
      auto& dst = is_out ? result.out : result.err;
      if (dst.size() < kLimit) dst.append(buf.data(), static_cast<size_t>(n));
    }
  }
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(*pid, &status, killed ? 0 : WNOHANG);
    if (w == *pid) break;
    if (w < 0 && errno != EINTR) return fail(errno_code(errno), "run: waitpid");
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(-*pid, SIGKILL);
      killed = true;
      result.timed_out = true;
    } else {
      std::this_thread::sleep_for(5ms);
    }
  }
  result.exit_code = exit_code_of(status);
  return result;
}

Status ip(const std::vector<std::string>& args) {
  SpawnSpec spec;
  spec.argv = {"ip"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  auto r = run_captured(spec, 20s);
  if (!r) return tl::unexpected(r.error());
  if (r->exit_code != 0) {
    auto msg = r->err;
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return failf("{} failed (exit {}): {}", join_argv(spec.argv), r->exit_code, msg);
  }
  return {};
}

Status write_sysctl(const std::string& netns_name, const std::string& key,
                    const std::string& value) {
  auto ns = netns::Netns::open(netns_path(netns_name));
  if (!ns) return tl::unexpected(ns.error());
  int err = 0;
  auto ran = ns->run([&] {
    auto path = "/proc/sys/" + key;
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      err = errno;
      return;
    }
    if (::write(fd, value.data(), value.size()) < 0) err = errno;
    ::close(fd);
  });
  if (!ran) return ran;
  if (err != 0) {
    return fail(errno_code(err), fmt::format("sysctl {}={} in netns {}", key, value, netns_name));
  }
  return {};
}

Result<fs::path> cgroup2_root() {
  for (const char* candidate : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    struct statfs st {};
    if (::statfs(candidate, &st) == 0 && st.f_type == 0x63677270 /* CGROUP2_SUPER_MAGIC */) {
      return fs::path(candidate);
    }
  }
  return fail("no cgroup v2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup");
}

std::vector<pid_t> cgroup_pids(const fs::path& dir) {
  std::vector<pid_t> out;
  std::ifstream in(dir / "cgroup.procs");
  pid_t p;
  while (in >> p) out.push_back(p);
  return out;
}

namespace {

// `dir` and every cgroup below it, deepest first.
std::vector<fs::path> cgroup_dirs_deepest_first(const fs::path& dir) {
  std::vector<fs::path> dirs{dir};
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec)) dirs.push_back(it->path());
  }
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    auto da = std::distance(a.begin(), a.end()), db = std::distance(b.begin(), b.end());
    return da > db;
  });
  return dirs;
}

}  // namespace

Result<size_t> destroy_cgroup_tree(const fs::path& dir, std::chrono::milliseconds timeout) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  auto dirs = cgroup_dirs_deepest_first(dir);
  size_t running = 0;
  for (const auto& d : dirs) running += cgroup_pids(d).size();
  bool have_kill = fs::exists(dir / "cgroup.kill", ec);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t left = 0;
    if (have_kill) {
      std::ofstream(dir / "cgroup.kill") << "1";
    }
    for (const auto& d : dirs) {
      for (pid_t p : cgroup_pids(d)) {
        ++left;
        if (!have_kill) ::kill(p, SIGKILL);
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      return failf("cgroup {}: {} processes still running after SIGKILL", dir.string(), left);
    }
    std::this_thread::sleep_for(10ms);
  }
  for (const auto& d : dirs) {
    for (int attempt = 0;; ++attempt) {
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
        return fail(errno_code(errno), fmt::format("rmdir cgroup {}", d.string()));
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  return running;
}

std::optional<std::string> process_cgroup(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cgroup", pid));
  std::string line;
  std::optional<std::string> out;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) out = line.substr(3);
  }
  return out;
}

std::vector<std::string> list_netns(const std::string& name_prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/var/run/netns", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    auto name = it->path().filename().string();
    if (name.rfind(name_prefix, 0) == 0) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status delete_netns(const std::string& name) {
  auto path = netns_path(name);
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return fail(errno_code(errno), "umount netns " + path);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return fail(errno_code(errno), "remove netns " + path);
  }
  return {};
}

bool bpffs_mounted() {
  struct statfs st {};
  return ::statfs("/sys/fs/bpf", &st) == 0 && st.f_type == 0xcafe4a11 /* BPF_FS_MAGIC */;
}

fs::path self_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

bool process_alive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  auto st = process_state(pid);
  return st && *st != 'Z' && *st != 'X';
}

bool stop_process(pid_t pid, int sig, std::chrono::milliseconds timeout) {
  if (pid <= 0) return true;
  ::kill(pid, sig);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) return true;
    if (w < 0 && errno == ECHILD && !process_alive(pid)) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
}

Result<UniqueFd> connect_in(const netns::Netns& ns, const std::string& ip, uint16_t port,
                            std::chrono::milliseconds timeout) {
  auto sock = ns.socket(AF_INET, SOCK_STREAM);
  if (!sock) return tl::unexpected(sock.error());
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) return failf("bad IPv4 address {}", ip);
  if (::connect(sock->get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 &&
      errno != EINPROGRESS) {
    return fail(std::error_code(errno, std::system_category()),
                fmt::format("connect to {}:{}", ip, port));
  }
  pollfd p{sock->get(), POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    return failf("connect to {}:{} timed out", ip, port);
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(sock->get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    return fail(std::error_code(err, std::system_category()),
                fmt::format("connect to {}:{}", ip, port));
  }
  return sock;
}

Result<int> http_status_in(const netns::Netns& ns, const std::string& ip, uint16_t port,
                           const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto sock = connect_in(ns, ip, port, timeout);
  if (!sock) return tl::unexpected(sock.error());
  auto req = fmt::format("GET {} HTTP/1.0\r\nHost: {}:{}\r\n\r\n", path, ip, port);
  if (::send(sock->get(), req.data(), req.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(req.size())) {
    return fail(std::error_code(errno, std::system_category()), "send");
  }
  std::string answer;
  char buf[512];
  while (answer.find("\r\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{sock->get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 1))) != 1) continue;
    ssize_t n = ::recv(sock->get(), buf, sizeof(buf), 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  if (answer.empty()) return failf("no answer from {}:{}{}", ip, port, path);
  // "HTTP/1.x NNN ..."
  if (answer.rfind("HTTP/1.", 0) != 0 || answer.size() < 12) {
    return failf("{}:{}{} did not answer HTTP: {}", ip, port, path,
                 answer.substr(0, std::min<size_t>(answer.size(), 40)));
  }
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (answer[i] < '0' || answer[i] > '9') return failf("bad status line from {}:{}", ip, port);
    code = code * 10 + (answer[i] - '0');
  }
  return code;
}

std::string log_tail(const std::filesystem::path& log, int lines) {
  std::ifstream in(log, std::ios::binary);
  if (!in) return "";
  std::ostringstream s;
  s << in.rdbuf();
  auto text = s.str();
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (int n = 0; n < lines && pos > 0; ++n) {
    auto nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
  }
  return fmt::format("\n--- last lines of {} ---\n{}", log.string(),
                     text.substr(pos == 0 ? 0 : pos + 1));
}

}  // namespace zt::sim
