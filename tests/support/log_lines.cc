#include "tests/support/log_lines.h"

#include <fstream>
#include <sstream>
#include <thread>

namespace zt::testing {

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t count_lines(const std::filesystem::path& log, const std::vector<std::string>& needles) {
  std::ifstream in(log);
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    bool all = true;
    for (const auto& s : needles) all = all && line.find(s) != std::string::npos;
    n += all ? 1 : 0;
  }
  return n;
}

size_t wait_lines(const std::filesystem::path& log, const std::vector<std::string>& needles,
                  size_t at_least, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t n = 0;
  while ((n = count_lines(log, needles)) < at_least &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return n;
}

}  // namespace zt::testing
