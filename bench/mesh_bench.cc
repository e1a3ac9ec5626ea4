// mesh_bench: ambient vs our sidecar mode vs HAProxy sidecars vs no mesh, in one run of the
// simulated cluster, with a report (issue 7, DESIGN §10). The work is in bench/mesh/runner; this
// is the command line. Needs root (the simulator). See bench/README.md.
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "bench/mesh/runner/runner.h"
#include "common/base/log.h"
#include "common/base/result.h"

namespace {

using zt::bench::mesh::RunOptions;

constexpr const char* kUsage = R"(Usage: mesh_bench [--short|--smoke] [options]

Builds the benchmark cluster in the simulator (root only), then measures, in one run, every
scenario against the no-mesh baseline: no-mesh, ambient (L4), ambient-waypoint, sidecar (our
ztunnel dedicated per pod), sidecar-l7 (plus a waypoint per server pod), haproxy (HAProxy
sidecars with mTLS). Writes results.json, report.md and plots/ to the output directory and
prints the issue's targets (achieved / target / met) at the end.

Modes (the defaults of every setting below):
  (none)            full run: rates 500,1000,2000 x connections 1,4,16, 3 repeats of 10 s
                    (+2 s warm-up), pods 1,10,25,50, 5 s single stream and connection rate
  --short           CI-sized, under 5 minutes on 2 cores: rates 500,1000,2000 x 4 connections,
                    1 repeat of 3 s (+1 s), pods 1,5,10, 2 s single stream and connection rate
  --smoke           the test suite's, under 90 s: 500 rps x 2 connections, 1 repeat of 1 s
                    (+0.5 s), pods 1,2, 1 s single stream and connection rate

Options (given after the mode they override it):
  --out DIR         output directory (default bench/results/mesh-<UTC date-time>)
  --scenarios A,B   scenarios to run (no-mesh, the baseline, always runs)
  --rates R,R       request rates, requests/s
  --connections N,N HTTP/1.1 keep-alive connection counts
  --repeats N       runs per point; the worst (highest p99) is dropped when N > 2
  --duration D      measurement window per run: 10s, 500ms, ...
  --warmup D        warm-up per run, not counted
  --pods N,N        pod counts of the memory-vs-pods curves (1..200)
  --bulk-duration D single-stream throughput run (iperf3, whole seconds)
  --conn-duration D new-connection-rate run
  --prefix P        simulator prefix (letters and digits; default zmb): netns, cgroups, pins
  --bin-dir DIR     where ztunnel, meshd, node-agent, waypoint, loadgen... are (default: the
                    directory of this program)
  --rerender DIR    no run: derive the summaries and targets again from DIR/results.json and
                    rewrite DIR/report.md and DIR/plots (after a change to the report code)
  --help            this text
)";

zt::Result<std::vector<std::string>> split(std::string_view flag, std::string_view value) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in{std::string(value)};
  while (std::getline(in, item, ',')) {
    if (item.empty()) return zt::failf("{}: empty item in \"{}\"", flag, value);
    out.push_back(item);
  }
  if (out.empty()) return zt::failf("{}: expected a comma-separated list, got \"{}\"", flag, value);
  return out;
}

zt::Result<long> whole(std::string_view flag, const std::string& s, long min, long max) {
  char* end = nullptr;
  long n = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || n < min || n > max) {
    return zt::failf("{}: expected a whole number from {} to {}, got \"{}\"", flag, min, max, s);
  }
  return n;
}

// "10s", "500ms", "1m", "1.5s"; a plain number is seconds.
zt::Result<std::chrono::milliseconds> duration(std::string_view flag, std::string_view s,
                                               std::chrono::milliseconds min) {
  const std::string text(s);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const std::string unit = end ? std::string(end) : "";
  double scale_ms = 0;
  if (unit.empty() || unit == "s") {
    scale_ms = 1000;
  } else if (unit == "ms") {
    scale_ms = 1;
  } else if (unit == "m") {
    scale_ms = 60000;
  }
  if (text.empty() || end == text.c_str() || scale_ms == 0 || !(v >= 0)) {
    return zt::failf("{}: expected a duration like 10s, 500ms or 1m, got \"{}\"", flag, s);
  }
  const auto ms = std::chrono::milliseconds(static_cast<long>(v * scale_ms + 0.5));
  if (ms < min || ms > std::chrono::minutes(30)) {
    return zt::failf("{}: expected a duration from {} ms to 30m, got \"{}\"", flag, min.count(), s);
  }
  return ms;
}

bool valid_prefix(const std::string& p) {
  if (p.empty() || p.size() > 12) return false;
  for (char c : p) {
    if (!std::isalnum(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

struct Parsed {
  RunOptions options;
  bool help = false;
  std::string rerender;
};

zt::Result<Parsed> parse(int argc, char** argv) {
  Parsed p;
  p.options = zt::bench::mesh::full_options();
  std::string command = "mesh_bench";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    bool has_inline = false;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_inline = true;
    }
    auto next = [&]() -> zt::Result<std::string> {
      if (has_inline) return value;
      if (i + 1 >= argc) return zt::failf("{}: needs a value", a);
      return std::string(argv[++i]);
    };
    auto keep = [&](RunOptions o) {
      o.out_dir = p.options.out_dir;
      o.prefix = p.options.prefix;
      o.bin_dir = p.options.bin_dir;
      o.scenarios = p.options.scenarios;
      p.options = std::move(o);
    };
#define ZT_NEXT(var)                                    \
  auto var##_r = next();                                \
  if (!var##_r) return tl::unexpected(var##_r.error()); \
  const std::string var = *var##_r
    if (a == "--help" || a == "-h") {
      p.help = true;
    } else if (a == "--rerender") {
      ZT_NEXT(v);
      p.rerender = v;
    } else if (a == "--short") {
      keep(zt::bench::mesh::short_options());
    } else if (a == "--smoke") {
      keep(zt::bench::mesh::smoke_options());
    } else if (a == "--out") {
      ZT_NEXT(v);
      p.options.out_dir = v;
    } else if (a == "--prefix") {
      ZT_NEXT(v);
      if (!valid_prefix(v)) {
        return zt::failf("--prefix: expected 1 to 12 letters or digits, got \"{}\"", v);
      }
      p.options.prefix = v;
    } else if (a == "--bin-dir") {
      ZT_NEXT(v);
      p.options.bin_dir = v;
    } else if (a == "--scenarios") {
      ZT_NEXT(v);
      auto items = split(a, v);
      if (!items) return tl::unexpected(items.error());
      p.options.scenarios = *items;
    } else if (a == "--rates") {
      ZT_NEXT(v);
      auto items = split(a, v);
      if (!items) return tl::unexpected(items.error());
      p.options.rates.clear();
      for (const auto& s : *items) {
        auto n = whole(a, s, 1, 1'000'000);
        if (!n) return tl::unexpected(n.error());
        p.options.rates.push_back(static_cast<double>(*n));
      }
    } else if (a == "--connections") {
      ZT_NEXT(v);
      auto items = split(a, v);
      if (!items) return tl::unexpected(items.error());
      p.options.connections.clear();
      for (const auto& s : *items) {
        auto n = whole(a, s, 1, 1000);
        if (!n) return tl::unexpected(n.error());
        p.options.connections.push_back(static_cast<int>(*n));
      }
    } else if (a == "--pods") {
      ZT_NEXT(v);
      auto items = split(a, v);
      if (!items) return tl::unexpected(items.error());
      p.options.pod_counts.clear();
      for (const auto& s : *items) {
        auto n = whole(a, s, 1, 200);
        if (!n) return tl::unexpected(n.error());
        p.options.pod_counts.push_back(static_cast<int>(*n));
      }
    } else if (a == "--repeats") {
      ZT_NEXT(v);
      auto n = whole(a, v, 1, 100);
      if (!n) return tl::unexpected(n.error());
      p.options.repeats = static_cast<int>(*n);
    } else if (a == "--duration") {
      ZT_NEXT(v);
      auto d = duration(a, v, std::chrono::milliseconds(100));
      if (!d) return tl::unexpected(d.error());
      p.options.duration = *d;
    } else if (a == "--warmup") {
      ZT_NEXT(v);
      auto d = duration(a, v, std::chrono::milliseconds(0));
      if (!d) return tl::unexpected(d.error());
      p.options.warmup = *d;
    } else if (a == "--bulk-duration") {
      ZT_NEXT(v);
      auto d = duration(a, v, std::chrono::milliseconds(1000));
      if (!d) return tl::unexpected(d.error());
      p.options.bulk_duration = *d;
    } else if (a == "--conn-duration") {
      ZT_NEXT(v);
      auto d = duration(a, v, std::chrono::milliseconds(100));
      if (!d) return tl::unexpected(d.error());
      p.options.conn_rate_duration = *d;
    } else {
      return zt::failf("{}: unknown option (see --help)", a);
    }
#undef ZT_NEXT
  }
  p.options.command_line = command;
  return p;
}

extern "C" void on_signal(int sig) {
  static volatile std::sig_atomic_t seen = 0;
  if (seen) {
    std::_Exit(128 + sig);  // a second ^C: leave now; the next run removes the leftovers
  }
  seen = 1;
  zt::bench::mesh::interrupt_mesh_bench();
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse(argc, argv);
  if (!parsed) {
    std::cerr << "mesh_bench: " << parsed.error().describe() << "\n";
    return 2;
  }
  if (parsed->help) {
    std::cout << kUsage;
    return 0;
  }
  // Library code (the capture loader of the sidecars) logs through spdlog: keep stdout for the
  // targets table and stderr for progress, warnings only.
  (void)zt::log::init("warn", zt::log::Format::kText);
  if (!parsed->rerender.empty()) {
    auto st = zt::bench::mesh::rerender_report(parsed->rerender);
    if (!st) {
      std::cerr << "mesh_bench: --rerender: " << st.error().describe() << "\n";
      return 1;
    }
    return 0;
  }
  RunOptions& o = parsed->options;
  if (o.out_dir.empty()) {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%S", &tm);
    o.out_dir = std::filesystem::path("bench/results") / (std::string("mesh-") + buf);
  }
  o.out_dir = std::filesystem::absolute(o.out_dir);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  auto st = zt::bench::mesh::run_mesh_bench(o);
  if (!st) {
    std::cerr << "mesh_bench: " << st.error().describe() << "\n";
    return 1;
  }
  return 0;
}
