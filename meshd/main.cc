// meshd: the ambient mesh control plane. Parses the flags and hands over to the composition root.
#include <cstdio>

#include "common/base/log.h"
#include "meshd/app/app.h"
#include "meshd/app/config.h"

int main(int argc, char** argv) {
  auto config = zt::meshd::app::parse_config(argc, argv);
  if (!config) {
    std::fprintf(stderr, "meshd: %s\n(see meshd --help)\n", config.error().describe().c_str());
    return 2;
  }
  if (config->help) {
    std::fputs(zt::meshd::app::help_text().c_str(), stdout);
    return 0;
  }
  if (auto st = zt::log::init(config->log_level, config->log_format); !st) {
    std::fprintf(stderr, "meshd: %s\n", st.error().describe().c_str());
    return 2;
  }
  auto app = zt::meshd::app::App::create(std::move(*config));
  if (!app) {
    ZT_LOG_ERROR("meshd failed to start: {}", app.error().describe());
    return 1;
  }
  return (*app)->run();
}
