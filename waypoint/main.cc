// waypoint: the ambient mesh's L7 proxy. Parses the command line (README "Waypoint", see
// waypoint/app/config.h) and hands over to the composition root.
#include <sys/resource.h>

#include <cstdio>

#include "common/base/log.h"
#include "waypoint/app/app.h"
#include "waypoint/app/config.h"

int main(int argc, char** argv) {
  auto config = zt::waypoint::app::parse_config(argc, argv, zt::config::process_getenv);
  if (!config) {
    std::fprintf(stderr, "waypoint: %s\n(see waypoint --help)\n",
                 config.error().describe().c_str());
    return 2;
  }
  if (config->help) {
    std::fputs(zt::waypoint::app::help_text().c_str(), stdout);
    return 0;
  }
  if (auto st = zt::log::init(config->log_level, config->log_format); !st) {
    std::fprintf(stderr, "waypoint: %s\n", st.error().describe().c_str());
    return 2;
  }
  // Every proxied stream may cost an upstream connection; take what the hard limit allows.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  auto app = zt::waypoint::app::App::create(std::move(*config));
  if (!app) {
    ZT_LOG_ERROR("waypoint failed to start: {}", app.error().describe());
    return 1;
  }
  return (*app)->run();
}
