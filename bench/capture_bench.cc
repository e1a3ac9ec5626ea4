// capture_bench: what the eBPF capture + two ztunnels cost on a real pod-to-pod path, against
// the same path with no mesh, in one run of the simulated cluster (sim/examples/demo):
//   mesh:  shop/frontend (node-0) -> shop/checkout (node-1): connect() captured by eBPF, ztunnel
//          on node-0, HBONE mTLS across the node link, ztunnel on node-1, delivered to the app
//   plain: legacy/batch (node-0) -> legacy/ledger (node-1): the same hop, not captured
// Both run wrk (closed loop, one connection) inside the client pod against http-echo:
//   latency:          keep-alive requests for --seconds, wrk's p50/p90/p99 and requests/s
//   connection rate:  "Connection: close", so every request is a new TCP (and, on the mesh
//                     path, a new captured connection and HBONE stream)
// The paths alternate, --repeat times; the median of each number is printed with the ratio
// mesh/plain and the added latency. Needs root (it builds the cluster).
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sim/cluster.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct WrkResult {
  double rps = 0;
  std::map<std::string, double> latency_us;  // "50%" -> µs
};

// wrk prints "Requests/sec:  1234.56" and, with --latency, "     50%  123.45us".
std::optional<WrkResult> parse_wrk(const std::string& out) {
  WrkResult r;
  std::istringstream in(out);
  std::string line;
  bool have_rps = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string a, b;
    ls >> a >> b;
    if (a == "Requests/sec:") {
      r.rps = std::stod(b);
      have_rps = true;
    } else if ((a == "50%" || a == "90%" || a == "99%") && !b.empty()) {
      double scale = 1;
      std::string unit;
      size_t i = 0;
      while (i < b.size() && (std::isdigit(static_cast<unsigned char>(b[i])) || b[i] == '.')) ++i;
      unit = b.substr(i);
      if (unit == "ms") scale = 1e3;
      if (unit == "s") scale = 1e6;
      r.latency_us[a] = std::stod(b.substr(0, i)) * scale;
    }
  }
  if (!have_rps) return std::nullopt;
  return r;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Path {
  std::string name, client, url;
  std::vector<double> rps, conn_rate, p50, p90, p99;
};

}  // namespace

int main(int argc, char** argv) {
  fs::path manifests = fs::path(ZT_SOURCE_DIR) / "sim/examples/demo";
  int seconds = 5, repeat = 3;
  std::string prefix = "zbench";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--seconds") {
      seconds = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--repeat") {
      repeat = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--manifests") {
      manifests = next();
    } else if (a == "--prefix") {
      prefix = next();
    } else {
      std::cerr << "usage: capture_bench [--seconds N (5)] [--repeat N (3)] [--manifests DIR] "
                   "[--prefix P]\n";
      return 2;
    }
  }

  zt::sim::ClusterOptions co;
  co.prefix = prefix;
  co.state_dir = zt::sim::default_state_dir(prefix);
  const fs::path work = fs::temp_directory_path() / (prefix + "-manifests");
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work, ec);
  fs::copy(manifests, work, fs::copy_options::recursive, ec);
  if (ec) {
    std::cerr << "cannot copy " << manifests << ": " << ec.message() << "\n";
    return 1;
  }
  // The demo's waypoint and its services (reviews.yaml) are not on the measured paths: left out,
  // they neither need the waypoint binary nor run beside the measurement.
  fs::remove(work / "reviews.yaml", ec);
  co.manifests = work;
  auto cluster = zt::sim::Cluster::up(co);
  if (!cluster) {
    std::cerr << "cluster: " << cluster.error().describe() << "\n";
    return 1;
  }
  auto& c = **cluster;
  auto ip = [&](const std::string& pod) { return c.plan().find_pod(pod)->ip; };
  std::vector<Path> paths = {
      {.name = "plain",
       .client = "legacy/batch",
       .url = fmt::format("http://{}:8080/", ip("legacy/ledger"))},
      {.name = "mesh",
       .client = "shop/frontend",
       .url = fmt::format("http://{}:8080/", ip("shop/checkout"))},
  };

  auto wrk = [&](const Path& p, bool new_connections, int secs) -> std::optional<WrkResult> {
    std::vector<std::string> argv = {"wrk", "-t1", "-c1", fmt::format("-d{}s", secs), "--latency"};
    if (new_connections) {
      argv.push_back("-H");
      argv.push_back("Connection: close");
    }
    argv.push_back(p.url);
    auto r = c.exec_in_pod(p.client, argv, std::chrono::seconds(secs + 30));
    if (!r || r->exit_code != 0) {
      std::cerr << p.name << ": wrk failed: " << (r ? r->err + r->out : r.error().describe())
                << "\n";
      return std::nullopt;
    }
    auto parsed = parse_wrk(r->out);
    if (!parsed) std::cerr << p.name << ": cannot read wrk's output:\n" << r->out << "\n";
    return parsed;
  };

  std::cout << "warm-up (1 s per path and mode, not counted)\n";
  for (auto& p : paths) {
    if (!wrk(p, false, 1) || !wrk(p, true, 1)) return 1;
  }
  for (int round = 0; round < repeat; ++round) {
    for (auto& p : paths) {
      auto keep = wrk(p, false, seconds);
      auto fresh = wrk(p, true, seconds);
      if (!keep || !fresh) return 1;
      p.rps.push_back(keep->rps);
      p.p50.push_back(keep->latency_us["50%"]);
      p.p90.push_back(keep->latency_us["90%"]);
      p.p99.push_back(keep->latency_us["99%"]);
      p.conn_rate.push_back(fresh->rps);
      std::cout << fmt::format(
          "round {} {:5}: {:8.0f} req/s keep-alive, p50 {:6.0f} us, {:7.0f} "
          "new connections/s\n",
          round + 1, p.name, keep->rps, keep->latency_us["50%"], fresh->rps);
    }
  }

  const auto& plain = paths[0];
  const auto& mesh = paths[1];
  std::cout << fmt::format(
      "\neBPF-captured mesh path vs no mesh (2 nodes, cross-node, wrk -c1, median of {} x {} s)\n",
      repeat, seconds);
  std::cout << fmt::format("{:<28} {:>12} {:>12} {:>10} {:>12}\n", "", "no mesh", "mesh", "ratio",
                           "added");
  auto row = [&](const char* name, double a, double b, const char* unit) {
    std::cout << fmt::format("{:<28} {:>10.0f}{:2} {:>10.0f}{:2} {:>10.2f} {:>+10.0f}{:2}\n", name,
                             a, unit, b, unit, a > 0 ? b / a : 0.0, b - a, unit);
  };
  row("requests/s (keep-alive)", median(plain.rps), median(mesh.rps), "");
  row("new connections/s", median(plain.conn_rate), median(mesh.conn_rate), "");
  row("latency p50", median(plain.p50), median(mesh.p50), "us");
  row("latency p90", median(plain.p90), median(mesh.p90), "us");
  row("latency p99", median(plain.p99), median(mesh.p99), "us");
  if (auto st = c.down(); !st) std::cerr << "teardown: " << st.error().describe() << "\n";
  fs::remove_all(work, ec);
  return 0;
}
