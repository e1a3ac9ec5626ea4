// ztunnel: the per-node L4 proxy of the ambient mesh. Parses the configuration and hands over
// to the composition root.
#include <sys/resource.h>

#include <cstdio>

#include "common/base/log.h"
#include "common/base/memory.h"
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
  // A bulk transfer's buffers must not leave MiBs resident in a worker's arena.
  zt::fix_large_block_thresholds();
  // Every proxied connection costs two descriptors; take what the hard limit allows.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  auto app = zt::app::App::create(std::move(*config));
  if (!app) {
    ZT_LOG_ERROR("ztunnel failed to start: {}", app.error().describe());
    return 1;
  }
  return (*app)->run();
}
