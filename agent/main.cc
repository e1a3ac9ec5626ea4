// node-agent: enrolls this node's ambient pods (eBPF capture + ZDS to ztunnel). Parses the flags
// and hands over to the composition root.
#include <cstdio>

#include "agent/app/app.h"
#include "agent/config/config.h"
#include "common/base/log.h"

int main(int argc, char** argv) {
  auto config = zt::agent::parse_config(argc, argv);
  if (!config) {
    std::fprintf(stderr, "node-agent: %s\n(see node-agent --help)\n",
                 config.error().describe().c_str());
    return 2;
  }
  if (config->help) {
    std::fputs(zt::agent::help_text().c_str(), stdout);
    return 0;
  }
  if (auto st = zt::log::init(config->log_level, config->log_format); !st) {
    std::fprintf(stderr, "node-agent: --log-level: %s\n", st.error().describe().c_str());
    return 2;
  }
  auto app = zt::agent::App::create(std::move(*config));
  if (!app) {
    ZT_LOG_ERROR("node-agent failed to start: {}", app.error().describe());
    return 1;
  }
  return (*app)->run();
}
