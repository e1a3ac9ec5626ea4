// Reading daemons' log files in tests: the whole file, the lines holding every given needle, and
// waiting (polling, bounded) until enough such lines appear.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace zt::testing {

// The file's contents; "" when it cannot be read.
std::string slurp(const std::filesystem::path& path);

// Lines of `log` that contain every needle.
size_t count_lines(const std::filesystem::path& log, const std::vector<std::string>& needles);

// Polls until at least `at_least` such lines exist or `timeout` passed; returns the last count.
size_t wait_lines(const std::filesystem::path& log, const std::vector<std::string>& needles,
                  size_t at_least = 1,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));

}  // namespace zt::testing
