#include "tests/support/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "common/net/address.h"

extern char** environ;

namespace zt::testing {

std::string bin_path(const std::string& name) {
  const char* dir = std::getenv("ZT_BIN_DIR");
  return std::string(dir != nullptr ? dir : "build/bin") + "/" + name;
}

Result<std::unique_ptr<Daemon>> Daemon::start(const std::string& path,
                                              const std::vector<std::string>& args,
                                              const std::vector<std::string>& env) {
  if (::access(path.c_str(), X_OK) != 0) return failf("{} is not an executable", path);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail(std::error_code(errno, std::system_category()), "pipe");

  std::vector<std::string> argv_s{path};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) env_s.emplace_back(*e);
  env_s.insert(env_s.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) return fail(std::error_code(errno, std::system_category()), "fork");
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    // Die with the test process, whatever way it ends.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execve(path.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::unique_ptr<Daemon> d(new Daemon());
  d->pid_ = pid;
  d->reader_ = std::thread([raw = d.get(), fd = fds[0]] { raw->read_output(fd); });
  return d;
}

Daemon::~Daemon() {
  if (pid_ > 0 && !exit_code_) {
    if (!stop(SIGTERM, std::chrono::seconds(10))) stop(SIGKILL, std::chrono::seconds(5));
  }
  if (reader_.joinable()) reader_.join();
}

void Daemon::read_output(int fd) {
  std::string partial;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    partial.append(buf, static_cast<size_t>(n));
    size_t pos;
    std::lock_guard lock(mu_);
    while ((pos = partial.find('\n')) != std::string::npos) {
      lines_.push_back(partial.substr(0, pos));
      partial.erase(0, pos + 1);
    }
    cv_.notify_all();
  }
  ::close(fd);
  std::lock_guard lock(mu_);
  if (!partial.empty()) lines_.push_back(partial);
  eof_ = true;
  cv_.notify_all();
}

std::optional<std::string> Daemon::wait_for(const std::regex& re,
                                            std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  size_t checked = 0;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (; checked < lines_.size(); ++checked) {
      std::smatch m;
      if (std::regex_search(lines_[checked], m, re)) {
        return m.size() > 1 ? m[1].str() : m[0].str();
      }
    }
    if (eof_) return std::nullopt;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && checked == lines_.size()) {
      return std::nullopt;
    }
  }
}

std::optional<tcp::endpoint> Daemon::listening(const std::string& component,
                                               std::chrono::milliseconds timeout) {
  auto addr = wait_for(std::regex("listening component=" + component + " address=(\\S+)"), timeout);
  if (!addr) return std::nullopt;
  auto ep = net::parse_endpoint(*addr);
  if (!ep) return std::nullopt;
  return *ep;
}

bool Daemon::saw(const std::regex& re) const {
  std::lock_guard lock(mu_);
  for (const auto& l : lines_) {
    if (std::regex_search(l, re)) return true;
  }
  return false;
}

std::vector<std::string> Daemon::lines() const {
  std::lock_guard lock(mu_);
  return lines_;
}

std::string Daemon::output() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& l : lines_) out += l + "\n";
  return out;
}

std::optional<int> Daemon::stop(int sig, std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  if (pid_ <= 0) return std::nullopt;
  ::kill(pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // Wait for the exit by waiting for the output pipe to close (the child's stdout/stderr end
  // with it), then reap.
  {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline, [&] { return eof_; });
  }
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    // The pipe closed but the process is still exiting: wait for it with a blocking waitpid
    // bounded by an alarm-free short poll.
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(10));
  }
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

bool Daemon::running() {
  if (exit_code_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

}  // namespace zt::testing
