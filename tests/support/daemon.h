// Starts one of our binaries as a child process and follows its output line by line, so a test
// can wait for an event ("listening component=socks5 address=...") instead of sleeping.
// The destructor stops the process (SIGTERM, then SIGKILL) even when the test failed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"

namespace zt::testing {

// Path of a binary in build/bin (from ZT_BIN_DIR, set by ctest).
std::string bin_path(const std::string& name);

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> start(const std::string& path,
                                               const std::vector<std::string>& args,
                                               const std::vector<std::string>& env = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Waits for an output line matching `re`; returns the first submatch (or the whole line).
  std::optional<std::string> wait_for(const std::regex& re,
                                      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The address from "listening component=<component> address=<ip:port>".
  std::optional<tcp::endpoint> listening(const std::string& component,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10));
  bool saw(const std::regex& re) const;
  std::vector<std::string> lines() const;
  std::string output() const;

  // Sends `sig` and waits for the exit; returns the exit code (128+signal when killed), or
  // nullopt when it did not exit in time.
  std::optional<int> stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(15));
  bool running();
  pid_t pid() const { return pid_; }

 private:
  Daemon() = default;
  void read_output(int fd);

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  bool eof_ = false;
};

}  // namespace zt::testing
