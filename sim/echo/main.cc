// http-echo: the simulated pods' app (see echo_server.h).
//   http-echo [--port P]... [--address A] [--threads N] [--pod-name NAME] [--ext-authz]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sim/echo/echo_server.h"

namespace {

constexpr const char* kHelp =
    "Usage: http-echo [--port P]... [--address ADDR] [--threads N] [--pod-name NAME]\n"
    "                 [--ext-authz]\n"
    "HTTP/1.1 server answering every request with\n"
    "  peer=<client ip:port> local=<server ip:port> pod=<POD_NAME>\\n<request body>\n"
    "  --port P        port to listen on; repeat for several (default 8080)\n"
    "  --address ADDR  address to bind (default 0.0.0.0)\n"
    "  --threads N     worker threads (default 1)\n"
    "  --pod-name NAME name to report (default $POD_NAME)\n"
    "  --ext-authz     be an HTTP authorizer instead (Istio's sample ext-authz): 200 for a\n"
    "                  request with x-ext-authz: allow, else 403\n";

}  // namespace

int main(int argc, char** argv) {
  zt::sim::echo::EchoOptions o;
  o.ports.clear();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "http-echo: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (a == "--port") {
      long p = std::strtol(value(), nullptr, 10);
      if (p <= 0 || p > 65535) {
        std::fprintf(stderr, "http-echo: bad port\n");
        return 2;
      }
      o.ports.push_back(static_cast<uint16_t>(p));
    } else if (a == "--address") {
      o.address = value();
    } else if (a == "--threads") {
      o.threads = std::atoi(value());
    } else if (a == "--pod-name") {
      o.pod_name = value();
    } else if (a == "--ext-authz") {
      o.ext_authz = true;
    } else {
      std::fprintf(stderr, "http-echo: unknown argument %s\n%s", a.c_str(), kHelp);
      return 2;
    }
  }
  if (o.ports.empty()) o.ports.push_back(8080);
  auto st = zt::sim::echo::run_echo_server(o);
  if (!st) {
    std::fprintf(stderr, "http-echo: %s\n", st.error().describe().c_str());
    return 1;
  }
  return 0;
}
