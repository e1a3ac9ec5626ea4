// loadgen: an open-loop HTTP/1.1, HTTP/2 and TCP bulk load generator (tools/loadgen/README.md).
#include <fstream>
#include <iostream>

#include "tools/loadgen/config.h"
#include "tools/loadgen/engine.h"
#include "tools/loadgen/report.h"

int main(int argc, char** argv) {
  using namespace zt::loadgen;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto cfg = parse_args(args);
  if (!cfg) {
    std::cerr << "loadgen: " << cfg.error().message << "\n";
    return 2;
  }
  if (cfg->help) {
    std::cout << usage();
    return 0;
  }
  auto result = run(*cfg);
  if (!result) {
    std::cerr << "loadgen: " << result.error().describe() << "\n";
    return 1;
  }
  std::cerr << summary(*cfg, *result);
  if (!result->stats.first_error.empty()) {
    std::cerr << "  first error: " << result->stats.first_error << "\n";
  }
  const std::string json = report_json(*cfg, *result).dump(2) + "\n";
  if (cfg->json_path.empty()) {
    std::cout << json;
  } else {
    std::ofstream out(cfg->json_path);
    out << json;
    if (!out) {
      std::cerr << "loadgen: cannot write " << cfg->json_path << "\n";
      return 1;
    }
  }
  return 0;
}
