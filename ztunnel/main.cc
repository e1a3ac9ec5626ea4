// ztunnel: the per-node L4 proxy of the ambient mesh. Parses the configuration and hands over
// to the composition root.
#include <cstdio>

#include "common/base/log.h"
#include "ztunnel/app/app.h"
#include "ztunnel/config/config.h"

int main(int argc, char** argv) {
  auto config = zt::config::parse_config(argc, argv, zt::config::process_getenv);
  if (!config) {
    std::fprintf(stderr, "ztunnel: %s\n(see ztunnel --help)\n", config.error().describe().c_str());
    return 2;
  }
  if (config->help) {
    std::fputs(zt::config::help_text().c_str(), stdout);
    return 0;
  }
  if (auto st = zt::log::init(config->log_level, config->log_format); !st) {
    std::fprintf(stderr, "ztunnel: %s\n", st.error().describe().c_str());
    return 2;
  }
  auto app = zt::app::App::create(std::move(*config));
  if (!app) {
    ZT_LOG_ERROR("ztunnel failed to start: {}", app.error().describe());
    return 1;
  }
  return (*app)->run();
}
