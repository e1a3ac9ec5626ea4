// waypoint_bench: what ztunnel, and ztunnel plus the waypoint, cost an HTTP/1.1 request, against
// the same request with no mesh, from one run (issue 6, acceptance item 7; DESIGN §10).
//
// It starts the waypoint chain of the integration tests (tests/support/waypoint_chain.h): real
// bin/ztunnel processes in dedicated mode (one for the client workload with a SOCKS5 listener,
// one per backend workload), the real bin/waypoint, and two identical HTTP/1.1 backends in this
// process (ScriptedHttpServer: keep-alive, reads the request body, answers 200). Then it runs
// bin/loadgen as a child process against three paths:
//   no mesh           loadgen -> backend "plain" (127.0.x.y:8080)
//   ztunnel           loadgen -> SOCKS5 -> client ztunnel -> HBONE -> plain's ztunnel -> backend
//                     (service "plain" has no waypoint)
//   ztunnel+waypoint  loadgen -> SOCKS5 -> client ztunnel -> HBONE -> waypoint -> HBONE ->
//                     reviews-v1's ztunnel -> backend (service "reviews-v1" is bound to it)
// Each path runs twice: closed loop over --connections (maximum requests per second), then open
// loop at --rate (latency percentiles from the scheduled send time, no coordinated omission).
// The CPU time (utime + stime from /proc/<pid>/stat) of the waypoint and both ztunnels is read
// before and after every loadgen run and divided by the requests the backend answered in it.
//
// Invariants: every child dies with this process (Daemon sets PR_SET_PDEATHSIG; all are forked
// from the main thread) and is stopped on every way out of main, SIGINT/SIGTERM included; every
// loadgen run has a deadline; a run with non-200 answers or no completed requests fails the
// bench (no table that looks like a result); the waypoint's request count must equal the
// requests its backend saw, i.e. the waypoint numbers really went through the waypoint.
#include <sys/utsname.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include "bench/common/procfs.h"
#include "common/base/result.h"
#include "common/net/address.h"
#include "tests/support/mesh.h"
#include "tests/support/waypoint_chain.h"
#include "tools/loadgen/config.h"

namespace zt::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
  std::chrono::milliseconds duration{5000};
  std::chrono::milliseconds warmup{500};
  int connections = 4;
  double rate = 0;  // 0: automatic (see kUsage)
  int body_size = 1024;
  int slot = 39;
  int repeat = 1;
  bool access_log = false;
  bool help = false;
};

constexpr double kDefaultRate = 1000;

constexpr const char* kUsage = R"(Usage: waypoint_bench [options]

Starts the waypoint chain on loopback (client ztunnel with SOCKS5, bin/waypoint, one ztunnel per
backend, two HTTP/1.1 backends in this process) and measures with bin/loadgen, in one run:
  no mesh           loadgen -> backend
  ztunnel           loadgen -> client ztunnel -> HBONE -> server ztunnel -> backend
  ztunnel+waypoint  loadgen -> client ztunnel -> HBONE -> waypoint -> HBONE -> server ztunnel
                    -> backend
Each path: closed loop over --connections (max req/s), then open loop at --rate (latency
percentiles). Prints req/s, p50/p90/p99, added latency and ratios vs no mesh, and the CPU
seconds per 1000 requests of the waypoint and the ztunnels (/proc/<pid>/stat).

Options:
  --duration D      measured time of every loadgen run: 5s, 2s, 500ms (default 5s; the whole
                    run takes about 6 x (duration + warmup) + a few seconds of start-up)
  --warmup D        loadgen warm-up before each measured window, not counted (default 500ms)
  --connections N   HTTP/1.1 keep-alive connections, both loops (default 4)
  --rate N          open-loop requests/s over all connections (default: 1000, or half the
                    slowest path's closed-loop req/s when that is lower, so that no path is
                    measured saturated)
  --body-size N     request body bytes of every POST (default 1024)
  --repeat N        rounds of the three paths, alternating (default 1); every number is the
                    median over the rounds, CPU the total over them
  --slot N          address slot of the chain, 0..39 (default 39; the tests use low slots)
  --access-log      keep the waypoint's per-request access log (info level); by default the
                    bench sets its log level to warn once it is up, like Istio's default
                    profile, which has no access log
  --help            this text

Binaries come from $ZT_BIN_DIR, or else from the directory of this binary. loadgen, the
backends, the waypoint and three ztunnels share this machine's CPUs: read the ratios, not the
absolute numbers, and compare runs from the same machine only.
)";

Result<Options> parse_options(int argc, char** argv) {
  Options o;
  auto need = [&](int& i, std::string_view flag) -> Result<std::string_view> {
    if (i + 1 >= argc) return failf("{} needs a value", flag);
    return std::string_view(argv[++i]);
  };
  auto integer = [&](int& i, std::string_view flag, long min, long max) -> Result<int> {
    auto v = need(i, flag);
    if (!v) return tl::unexpected(v.error());
    std::string s(*v);
    char* end = nullptr;
    long n = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || n < min || n > max) {
      return failf("{} wants a whole number from {} to {}, got \"{}\"", flag, min, max, s);
    }
    return static_cast<int>(n);
  };
  auto duration = [&](int& i, std::string_view flag,
                      std::chrono::milliseconds min) -> Result<std::chrono::milliseconds> {
    auto v = need(i, flag);
    if (!v) return tl::unexpected(v.error());
    auto d = loadgen::parse_duration(*v);
    if (!d) return failf("{}: {}", flag, d.error().message);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    if (ms < min || ms > 10min) {
      return failf("{} wants a duration from {} ms to 10m, got \"{}\"", flag, min.count(), *v);
    }
    return ms;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      o.help = true;
    } else if (a == "--duration") {
      auto d = duration(i, a, 100ms);
      if (!d) return tl::unexpected(d.error());
      o.duration = *d;
    } else if (a == "--warmup") {
      auto d = duration(i, a, 0ms);
      if (!d) return tl::unexpected(d.error());
      o.warmup = *d;
    } else if (a == "--connections") {
      auto n = integer(i, a, 1, 1000);
      if (!n) return tl::unexpected(n.error());
      o.connections = *n;
    } else if (a == "--rate") {
      auto n = integer(i, a, 1, 1'000'000);
      if (!n) return tl::unexpected(n.error());
      o.rate = *n;
    } else if (a == "--body-size") {
      auto n = integer(i, a, 0, 1 << 20);
      if (!n) return tl::unexpected(n.error());
      o.body_size = *n;
    } else if (a == "--repeat") {
      auto n = integer(i, a, 1, 100);
      if (!n) return tl::unexpected(n.error());
      o.repeat = *n;
    } else if (a == "--slot") {
      auto n = integer(i, a, 0, 39);
      if (!n) return tl::unexpected(n.error());
      o.slot = *n;
    } else if (a == "--access-log") {
      o.access_log = true;
    } else {
      return failf("unknown option \"{}\" (see --help)", a);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The machine and the processes, from /proc.

// The child of this process whose environment says PROXY_WORKLOAD_INFO=default/<workload>/...:
// the dedicated ztunnel the chain started for that workload (WaypointChain does not expose its
// endpoint ztunnels).
std::optional<pid_t> ztunnel_of(const std::string& workload) {
  const std::string want = "PROXY_WORKLOAD_INFO=default/" + workload + "/";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() ||
        !std::all_of(name.begin(), name.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      continue;
    const std::string stat = read_text_file(e.path() / "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(stat.substr(close + 1));
    std::string state;
    pid_t ppid = -1;
    if (!(in >> state >> ppid) || ppid != ::getpid()) continue;
    const std::string env = read_text_file(e.path() / "environ");
    size_t pos = 0;
    while (pos < env.size()) {
      size_t end = env.find('\0', pos);
      if (end == std::string::npos) end = env.size();
      if (env.compare(pos, want.size(), want) == 0) return std::stoi(name);
      pos = end + 1;
    }
  }
  return std::nullopt;
}

// Points bin_path() at the binaries next to this one unless ZT_BIN_DIR says otherwise.
void default_bin_dir() {
  if (std::getenv("ZT_BIN_DIR") != nullptr) return;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) ::setenv("ZT_BIN_DIR", self.parent_path().c_str(), 1);
}

// SIGINT/SIGTERM only set a flag: the loadgen wait loop sees it and main unwinds, so the
// destructors stop every child and remove the temporary directories.
std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) { g_interrupted = true; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

// ---------------------------------------------------------------------------------------------
// One loadgen run

enum PathIndex { kNoMesh = 0, kZtunnel = 1, kWaypoint = 2 };
constexpr std::array<const char*, 3> kPathNames = {"no mesh", "ztunnel", "ztunnel+waypoint"};

struct Cpu {
  double waypoint = 0, client = 0, server = 0;
};

struct RunResult {
  double rps = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;  // µs
  uint64_t completed = 0, errors = 0, late_over_1ms = 0;
  int backend_requests = 0;  // what the backend answered during the run (warm-up included)
  double loadgen_cpu = 0;
  Cpu cpu;  // during the run
  std::string first_error;
};

struct Pids {
  pid_t waypoint = -1, client = -1, server_plain = -1, server_reviews = -1;
};

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {}
  Status setup();
  Status measure();
  Status verify();
  void print() const;

 private:
  Result<RunResult> run(PathIndex path, double rate);
  Cpu cpu_now(PathIndex path) const;

  const Options& o_;
  testing::TempDir dir_;
  std::unique_ptr<testing::WaypointChain> chain_;
  Pids pids_;
  std::string started_ = utc_now();
  std::string load_start_, load_end_;
  double rate_ = 0;
  bool rate_auto_ = false;
  std::array<std::vector<RunResult>, 3> closed_runs_, open_runs_;
  std::array<RunResult, 3> closed_, open_;  // per path: medians over the rounds, CPU totals
  int waypoint_backend_requests_ = 0;       // all reviews-v1 requests, for verify()
  double waypoint_requests_before_ = 0;
};

Status Bench::setup() {
  load_start_ = load_average();
  testing::ChainOptions co;
  co.slot = o_.slot;
  co.backends = {testing::Backend::kReviewsV1, testing::Backend::kPlain};
  try {
    auto chain = testing::WaypointChain::start(std::move(co));
    if (!chain) return tl::unexpected(wrap(chain.error(), "starting the waypoint chain"));
    chain_ = std::move(*chain);
  } catch (const std::exception& e) {
    return failf("starting the waypoint chain: {}", e.what());
  }
  pids_.waypoint = chain_->waypoint().pid();
  pids_.client = chain_->client().daemon().pid();
  auto plain = ztunnel_of("plain");
  auto reviews = ztunnel_of("reviews-v1");
  if (!plain || !reviews) return failf("cannot find the backends' ztunnel processes in /proc");
  pids_.server_plain = *plain;
  pids_.server_reviews = *reviews;
  if (!o_.access_log) {
    auto r = testing::http_request(chain_->waypoint_admin, "POST", "/logging?level=warn");
    if (!r || r->status != 200) {
      return failf("could not set the waypoint's log level to warn: {}",
                   r ? fmt::format("status {} {}", r->status, r->body) : r.error().describe());
    }
  }
  waypoint_requests_before_ = testing::metric_sum(
      chain_->waypoint_metrics_text(), "istio_requests_total", {"reporter=\"waypoint\""});
  return {};
}

Cpu Bench::cpu_now(PathIndex path) const {
  auto of = [](pid_t pid) { return process_cpu_seconds(pid).value_or(0.0); };
  return {of(pids_.waypoint), of(pids_.client),
          of(path == kWaypoint ? pids_.server_reviews : pids_.server_plain)};
}

Result<RunResult> Bench::run(PathIndex path, double rate) {
  const std::string label = fmt::format(
      "{} ({})", kPathNames[path], rate > 0 ? fmt::format("{:.0f} req/s", rate) : "closed loop");
  testing::ScriptedHttpServer& backend =
      chain_->backend(path == kWaypoint ? "reviews-v1" : "plain");
  tcp::endpoint target = path == kNoMesh    ? chain_->endpoint("plain")
                         : path == kZtunnel ? chain_->vip("plain")
                                            : chain_->vip("reviews-v1");
  const auto json_path = dir_.path() / "loadgen.json";
  std::filesystem::remove(json_path);
  std::vector<std::string> args = {"--connections", std::to_string(o_.connections),
                                   "--duration",    fmt::format("{}ms", o_.duration.count()),
                                   "--warmup",      fmt::format("{}ms", o_.warmup.count()),
                                   "--body-size",   std::to_string(o_.body_size),
                                   "--method",      "POST",
                                   "--rate",        fmt::format("{:.0f}", rate),
                                   "--json",        json_path.string()};
  if (path != kNoMesh) {
    args.insert(args.end(), {"--socks5", net::format_endpoint(chain_->client().socks5)});
  }
  args.push_back("http://" + net::format_endpoint(target) + "/bench");

  backend.reset_counts();  // also drops what it kept of earlier requests
  const Cpu before = cpu_now(path);
  auto lg = testing::Daemon::start(testing::bin_path("loadgen"), args);
  if (!lg) return tl::unexpected(wrap(lg.error(), "starting bin/loadgen"));
  const auto deadline = Clock::now() + o_.warmup + o_.duration + 30s;
  while ((*lg)->running()) {
    if (g_interrupted) return failf("{}: interrupted", label);
    if (Clock::now() > deadline) {
      return failf("{}: loadgen did not finish in time; its output:\n{}", label, (*lg)->output());
    }
    std::this_thread::sleep_for(10ms);
  }
  const Cpu after = cpu_now(path);
  const int code = (*lg)->stop(SIGKILL, 1s).value_or(-1);
  RunResult r;
  r.backend_requests = backend.hits();
  backend.reset_counts();
  if (code != 0) {
    std::this_thread::sleep_for(100ms);  // let the reader thread take the last lines
    return failf("{}: loadgen exited with {}; its output:\n{}", label, code, (*lg)->output());
  }
  Json j;
  try {
    j = Json::parse(read_text_file(json_path.string()));
    r.rps = j.at("achieved_rps").get<double>();
    const auto& l = j.at("latency_us");
    r.p50 = l.at("p50").get<double>();
    r.p90 = l.at("p90").get<double>();
    r.p99 = l.at("p99").get<double>();
    r.max = l.at("max").get<double>();
    r.completed = j.at("requests").at("completed").get<uint64_t>();
    r.errors = j.at("errors").at("total").get<uint64_t>();
    r.loadgen_cpu = j.at("loadgen_cpu_s").get<double>();
    if (j.contains("late_send_us"))
      r.late_over_1ms = j["late_send_us"].at("over_1ms").get<uint64_t>();
    for (const auto& [status, n] : j.at("status").items()) {
      if (status != "200") {
        return failf("{}: {} answers with status {} (the path is broken, not slow); loadgen: {}",
                     label, n.get<uint64_t>(), status, (*lg)->output());
      }
    }
  } catch (const std::exception& e) {
    return failf("{}: cannot read loadgen's report {}: {}", label, json_path.string(), e.what());
  }
  if (r.completed == 0) {
    return failf("{}: no request completed; loadgen: {}", label, (*lg)->output());
  }
  if (r.errors > 0) {
    for (const auto& line : (*lg)->lines()) {
      if (line.find("first error:") != std::string::npos) r.first_error = line;
    }
  }
  r.cpu = {after.waypoint - before.waypoint, after.client - before.client,
           after.server - before.server};
  if (path == kWaypoint) waypoint_backend_requests_ += r.backend_requests;
  return r;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// One path's rounds as one result: percentiles and req/s are medians over the rounds; counts,
// CPU and requests are totals, so CPU per 1000 requests stays a ratio of totals.
RunResult combine(const std::vector<RunResult>& runs) {
  RunResult out;
  auto med = [&](double RunResult::*field) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*field);
    return median(v);
  };
  out.rps = med(&RunResult::rps);
  out.p50 = med(&RunResult::p50);
  out.p90 = med(&RunResult::p90);
  out.p99 = med(&RunResult::p99);
  out.max = med(&RunResult::max);
  for (const auto& r : runs) {
    out.completed += r.completed;
    out.errors += r.errors;
    out.late_over_1ms += r.late_over_1ms;
    out.backend_requests += r.backend_requests;
    out.loadgen_cpu += r.loadgen_cpu;
    out.cpu.waypoint += r.cpu.waypoint;
    out.cpu.client += r.cpu.client;
    out.cpu.server += r.cpu.server;
    if (out.first_error.empty()) out.first_error = r.first_error;
  }
  return out;
}

Status Bench::measure() {
  for (int round = 0; round < o_.repeat; ++round) {
    for (auto p : {kNoMesh, kZtunnel, kWaypoint}) {
      auto r = run(p, 0);
      if (!r) return tl::unexpected(r.error());
      closed_runs_[p].push_back(*r);
    }
  }
  for (auto p : {kNoMesh, kZtunnel, kWaypoint}) closed_[p] = combine(closed_runs_[p]);
  rate_ = o_.rate;
  if (rate_ <= 0) {
    double slowest = std::min({closed_[0].rps, closed_[1].rps, closed_[2].rps});
    rate_ = kDefaultRate;
    if (slowest / 2 < rate_) {
      rate_ = std::max(50.0, std::floor(slowest / 2 / 50) * 50);
      rate_auto_ = true;
    }
  }
  for (int round = 0; round < o_.repeat; ++round) {
    for (auto p : {kNoMesh, kZtunnel, kWaypoint}) {
      auto r = run(p, rate_);
      if (!r) return tl::unexpected(r.error());
      open_runs_[p].push_back(*r);
    }
  }
  for (auto p : {kNoMesh, kZtunnel, kWaypoint}) open_[p] = combine(open_runs_[p]);
  load_end_ = load_average();
  return {};
}

Status Bench::verify() {
  const double now = testing::metric_sum(chain_->waypoint_metrics_text(), "istio_requests_total",
                                         {"reporter=\"waypoint\""});
  const double served = now - waypoint_requests_before_;
  if (std::llround(served) != waypoint_backend_requests_) {
    return failf(
        "the waypoint counted {} requests (istio_requests_total) for {} that reached its backend",
        served, waypoint_backend_requests_);
  }
  return {};
}

std::string us(double v) { return fmt::format("{:.0f}", v); }
std::string added(double v, double base) { return fmt::format("{:+.0f}", v - base); }
std::string ratio(double v, double base) {
  return base > 0 ? fmt::format("{:.3f}", v / base) : std::string("-");
}
// vCPU-seconds per 1000 requests.
std::string per_k(double cpu, int requests) {
  return requests > 0 ? fmt::format("{:.3f}", cpu * 1000 / requests) : std::string("-");
}

void Bench::print() const {
  const unsigned cpus = std::thread::hardware_concurrency();
  fmt::print("waypoint_bench  {}  {} CPUs ({}), {}\n", started_, cpus, machine_info().cpu_model,
             machine_info().kernel);
  fmt::print("load average (1, 5, 15 min): {} at the start, {} at the end\n", load_start_,
             load_end_);
  fmt::print(
      "paths: no mesh          loadgen -> backend\n"
      "       ztunnel          loadgen -> SOCKS5 -> client ztunnel -> HBONE -> server ztunnel -> "
      "backend\n"
      "       ztunnel+waypoint loadgen -> SOCKS5 -> client ztunnel -> HBONE -> waypoint -> HBONE "
      "-> server ztunnel -> backend\n"
      "HTTP/1.1 POST, {}-byte body, keep-alive, {} connection(s); bin/loadgen; each proxy runs 1 "
      "worker thread; waypoint access log {}\n",
      o_.body_size, o_.connections, o_.access_log ? "on" : "off");

  constexpr int kL = 30;
  auto header = [&](const std::string& title) {
    fmt::print("\n{}\n  {:<{}} {:>10} {:>10} {:>17}\n", title, "", kL, kPathNames[0], kPathNames[1],
               kPathNames[2]);
  };
  auto row = [&](const std::string& label, const std::string& a, const std::string& b,
                 const std::string& c) {
    fmt::print("  {:<{}} {:>10} {:>10} {:>17}\n", label, kL, a, b, c);
  };
  const double secs = o_.duration.count() / 1000.0;
  const std::string each =
      o_.repeat > 1 ? fmt::format("{:.1f} s per path and round, median of {} alternating rounds",
                                  secs, o_.repeat)
                    : fmt::format("{:.1f} s per path", secs);

  header(fmt::format("Closed loop (max throughput), {} connections, {}", o_.connections, each));
  const auto& c = closed_;
  row("req/s", us(c[0].rps), us(c[1].rps), us(c[2].rps));
  row("ratio vs no mesh", "1.000", ratio(c[1].rps, c[0].rps), ratio(c[2].rps, c[0].rps));
  row("p50 us", us(c[0].p50), us(c[1].p50), us(c[2].p50));
  row("p99 us", us(c[0].p99), us(c[1].p99), us(c[2].p99));

  header(fmt::format(
      "Open loop at {:.0f} req/s{} over {} connections, {} (latency from the scheduled send)",
      rate_, rate_auto_ ? " (half the slowest path's max)" : "", o_.connections, each));
  const auto& p = open_;
  row("achieved req/s", us(p[0].rps), us(p[1].rps), us(p[2].rps));
  row("p50 us", us(p[0].p50), us(p[1].p50), us(p[2].p50));
  row("p90 us", us(p[0].p90), us(p[1].p90), us(p[2].p90));
  row("p99 us", us(p[0].p99), us(p[1].p99), us(p[2].p99));
  row("max us", us(p[0].max), us(p[1].max), us(p[2].max));
  row("added p50 us vs no mesh", "-", added(p[1].p50, p[0].p50), added(p[2].p50, p[0].p50));
  row("added p90 us vs no mesh", "-", added(p[1].p90, p[0].p90), added(p[2].p90, p[0].p90));
  row("added p99 us vs no mesh", "-", added(p[1].p99, p[0].p99), added(p[2].p99, p[0].p99));
  row("ratio p50 vs no mesh", "1.000", ratio(p[1].p50, p[0].p50), ratio(p[2].p50, p[0].p50));
  row("ratio p99 vs no mesh", "1.000", ratio(p[1].p99, p[0].p99), ratio(p[2].p99, p[0].p99));
  row("sends > 1 ms late", std::to_string(p[0].late_over_1ms), std::to_string(p[1].late_over_1ms),
      std::to_string(p[2].late_over_1ms));
  fmt::print("  the waypoint's own share (ztunnel+waypoint - ztunnel): p50 {} us, p99 {} us\n",
             added(p[2].p50, p[1].p50), added(p[2].p99, p[1].p99));

  header(
      "CPU seconds per 1000 requests (vCPU-s; = vCPU per 1000 req/s), utime+stime over each "
      "loadgen run / requests the backend answered");
  auto cpu_row = [&](const std::string& label, auto get) {
    row(label + ", closed loop", per_k(get(c[0]), c[0].backend_requests),
        per_k(get(c[1]), c[1].backend_requests), per_k(get(c[2]), c[2].backend_requests));
    row(label + ", open loop", per_k(get(p[0]), p[0].backend_requests),
        per_k(get(p[1]), p[1].backend_requests), per_k(get(p[2]), p[2].backend_requests));
  };
  cpu_row("waypoint", [](const RunResult& r) { return r.cpu.waypoint; });
  cpu_row("client ztunnel", [](const RunResult& r) { return r.cpu.client; });
  cpu_row("server ztunnel", [](const RunResult& r) { return r.cpu.server; });
  cpu_row("loadgen", [](const RunResult& r) { return r.loadgen_cpu; });
  fmt::print(
      "  (/proc/<pid>/stat counts in 1/{} s ticks; the server ztunnel is plain's on the ztunnel "
      "path and reviews-v1's on the waypoint path)\n",
      ::sysconf(_SC_CLK_TCK));

  uint64_t errors = 0;
  for (const auto* set : {&closed_runs_, &open_runs_}) {
    for (const auto& runs : *set) {
      for (const auto& r : runs) {
        errors += r.errors;
        if (!r.first_error.empty()) fmt::print("  loadgen:{}\n", r.first_error);
      }
    }
  }
  fmt::print("\nrequests with transport errors (connect/reset/timeout): {}\n", errors);
  fmt::print(
      "waypoint: {} vCPU-s per 1000 requests at {:.0f} req/s (open loop), {} at {:.0f} req/s "
      "(closed loop)\n",
      per_k(p[2].cpu.waypoint, p[2].backend_requests), p[2].rps,
      per_k(c[2].cpu.waypoint, c[2].backend_requests), c[2].rps);
  fmt::print(
      "ratios vs no mesh: req/s ztunnel {} ztunnel+waypoint {}; p50 ztunnel {} ({} us) "
      "ztunnel+waypoint {} ({} us)\n",
      ratio(c[1].rps, c[0].rps), ratio(c[2].rps, c[0].rps), ratio(p[1].p50, p[0].p50),
      added(p[1].p50, p[0].p50), ratio(p[2].p50, p[0].p50), added(p[2].p50, p[0].p50));
}

int run(int argc, char** argv) {
  auto o = parse_options(argc, argv);
  if (!o) {
    fmt::print(stderr, "waypoint_bench: {}\n", o.error().describe());
    return 2;
  }
  if (o->help) {
    fmt::print("{}", kUsage);
    return 0;
  }
  default_bin_dir();
  install_signal_handlers();
  Bench bench(*o);
  Status st = bench.setup();
  if (st) st = bench.measure();
  if (st) st = bench.verify();
  if (!st) {
    fmt::print(stderr, "waypoint_bench: {}\n", st.error().describe());
    return 1;
  }
  bench.print();
  return 0;
}

}  // namespace
}  // namespace zt::bench

int main(int argc, char** argv) { return zt::bench::run(argc, argv); }
