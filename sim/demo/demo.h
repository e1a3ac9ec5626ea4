// The main job (`meshsim demo`, run by scripts/demo.sh): a two-node simulated cluster with an
// ambient namespace and a plain one, real traffic between them, and a short report of what
// happened, every line read from the system itself:
//   - per connection: captured or not, the path it took, the client IP the app saw;
//   - through the waypoint (shop/reviews): the route each request took (by a header), a DELETE
//     refused by an L7 AuthorizationPolicy, the waypoint's access lines and request metrics;
//   - the SPIFFE identities on each side and the bytes, from both ztunnels' access logs;
//   - a packet capture of node-0's link: TLS 1.3 on port 15008 for mesh traffic, the plaintext
//     marker of each mesh request never on the wire, and seen on the plain requests (so the
//     capture does see plaintext when there is some);
//   - the eBPF programs' counters per node.
// Returns 0 when every check held, 1 otherwise (the report says which did not).
#pragma once

#include <filesystem>
#include <iosfwd>
#include <string>

namespace zt::sim {

struct DemoOptions {
  std::filesystem::path manifests;  // the demo's manifests (sim/examples/demo); copied first
  std::string prefix = "zdemo";
  std::filesystem::path bin_dir;  // default: next to the running binary
  bool keep = false;              // leave the cluster running (meshsim down --prefix to remove)
};

int run_demo(const DemoOptions& options, std::ostream& out);

}  // namespace zt::sim
