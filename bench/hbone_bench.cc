// hbone_bench: what two ztunnels cost a TCP connection, as ratios to a direct connection on the
// same machine, from one run (foundation issue, acceptance item 7; DESIGN §10).
//
// It starts two real ztunnel processes in dedicated mode (A for the client workload
// 127.0.<s>.2 with a SOCKS5 listener, B for the server workload 127.0.<s>.3), signed by a CA
// generated for the run, and three servers on the server workload's address: echo, sink and
// source. Every measurement runs twice with the same client code: straight to the server
// ("direct"), and through SOCKS5 -> ztunnel A -> HBONE (mTLS TLS 1.3 + HTTP/2 CONNECT) ->
// ztunnel B -> server ("tunnel"). The difference is what the two ztunnels cost.
//
//   1. Single-stream throughput, client -> server and server -> client. The clock starts after
//      the connection (and its SOCKS5 handshake) is up and stops when the last byte is at the
//      receiver: the sink answers with its byte count after the client's FIN.
//   2. Request latency: 1 KiB request / 1 KiB response ping-pong on one long-lived connection
//      per path, each request timed with steady_clock, warm-up requests not counted. This is
//      closed-loop (one request in flight): latency without load, not DESIGN §10's open-loop run.
//   3. New connections: connect + 1 KiB round trip + close, one after the other.
// Latency and connections alternate between the paths in blocks, and bulk transfers alternate
// too, so background load on a shared machine falls on both paths alike. CPU seconds of each
// ztunnel (all threads, from /proc) are taken around every measured block.
//
// Invariants: the ztunnels are children that die with this process (Daemon sets
// PR_SET_PDEATHSIG, which follows the forking thread: they are started from the main thread) and
// are stopped with SIGTERM on every way out of main, SIGINT/SIGTERM to the bench included; every
// phase has a deadline, so a stuck proxy fails the run instead of hanging it; a failed phase fails
// the whole run (no partial table that looks like a result).
#include <sys/resource.h>
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

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "bench/common/procfs.h"
#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/net/address.h"
#include "tests/support/mesh.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;
using namespace std::chrono_literals;

constexpr size_t kBulkChunk = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
  uint64_t bytes = 1ull << 30;
  int requests = 20'000;
  int warmup = 2'000;
  size_t message = 1024;
  int connections = 1'000;
  int workers = 1;
  int repeat = 1;
  int subnet = 90;
  std::string json_path;
  bool help = false;
};

constexpr const char* kUsage = R"(Usage: hbone_bench [options]

Starts two ztunnels (dedicated mode, SOCKS5 on A, HBONE between them) and servers on loopback,
and measures, in one run, a direct connection and the same traffic through both ztunnels:
  1. single-stream throughput, client -> server and server -> client (MB/s, 1 MB = 10^6 bytes)
  2. request latency: 1 KiB ping-pong on one long-lived connection (p50/p90/p99/p99.9/max, us)
  3. new connections per second: connect + 1 KiB round trip + close, sequential
and prints a table of both paths, the ratios tunnel/direct and the added latency.

Options:
  --bytes N         bytes per bulk transfer, per direction (suffix K, M, G = KiB, MiB, GiB;
                    default 1G)
  --requests N      measured ping-pong requests (default 20000)
  --warmup N        ping-pong requests before measuring, not counted (default 2000)
  --message N       request and response size in bytes (default 1024)
  --connections N   new connections per path for the connection-rate run; 0 skips it
                    (default 1000)
  --workers N       worker threads of each ztunnel (default 1)
  --repeat N        bulk transfers per direction and path; the median is reported (default 1)
  --subnet N        use 127.0.N.2 (client) and 127.0.N.3 (server) (default 90)
  --json PATH       also write every number as one JSON object to PATH ("-" for stdout)
  --help            this text

The ztunnel binary is taken from $ZT_BIN_DIR, or else from the directory of this binary.
Client, servers and both ztunnels share this machine's CPUs: read the ratios, not the absolute
numbers, and compare runs from the same machine only.
)";

// "1G", "256M", "64K", "1000": bytes (K/M/G are binary).
std::optional<uint64_t> parse_size(std::string_view text) {
  uint64_t mult = 1;
  std::string digits(text);
  for (auto suffix : {"iB", "B"}) {
    std::string_view s(suffix);
    if (digits.size() > s.size() && std::string_view(digits).ends_with(s)) {
      digits.resize(digits.size() - s.size());
      break;
    }
  }
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K':
      case 'k':
        mult = 1ull << 10;
        break;
      case 'M':
      case 'm':
        mult = 1ull << 20;
        break;
      case 'G':
      case 'g':
        mult = 1ull << 30;
        break;
      default:
        break;
    }
    if (mult != 1) digits.pop_back();
  }
  if (digits.empty() || digits.size() > 12 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::stoull(digits) * mult;
}

Result<Options> parse_options(int argc, char** argv) {
  Options o;
  auto need = [&](int& i, std::string_view flag) -> Result<std::string_view> {
    if (i + 1 >= argc) return failf("{} needs a value", flag);
    return std::string_view(argv[++i]);
  };
  auto number = [&](int& i, std::string_view flag, int min, int max) -> Result<int> {
    auto v = need(i, flag);
    if (!v) return tl::unexpected(v.error());
    auto n = parse_size(*v);
    if (!n || *n < static_cast<uint64_t>(min) || *n > static_cast<uint64_t>(max)) {
      return failf("{} wants a number from {} to {}, got \"{}\"", flag, min, max, *v);
    }
    return static_cast<int>(*n);
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    Result<int> n = 0;
    if (a == "--help" || a == "-h") {
      o.help = true;
    } else if (a == "--bytes") {
      auto v = need(i, a);
      if (!v) return tl::unexpected(v.error());
      auto b = parse_size(*v);
      if (!b || *b == 0)
        return failf("--bytes wants a size like 1G, 256M or 1000000, got \"{}\"", *v);
      o.bytes = *b;
    } else if (a == "--requests") {
      if (!(n = number(i, a, 1, 100'000'000))) return tl::unexpected(n.error());
      o.requests = *n;
    } else if (a == "--warmup") {
      if (!(n = number(i, a, 0, 100'000'000))) return tl::unexpected(n.error());
      o.warmup = *n;
    } else if (a == "--message") {
      if (!(n = number(i, a, 1, 1 << 20))) return tl::unexpected(n.error());
      o.message = static_cast<size_t>(*n);
    } else if (a == "--connections") {
      if (!(n = number(i, a, 0, 1'000'000))) return tl::unexpected(n.error());
      o.connections = *n;
    } else if (a == "--workers") {
      if (!(n = number(i, a, 1, 64))) return tl::unexpected(n.error());
      o.workers = *n;
    } else if (a == "--repeat") {
      if (!(n = number(i, a, 1, 100))) return tl::unexpected(n.error());
      o.repeat = *n;
    } else if (a == "--subnet") {
      if (!(n = number(i, a, 1, 254))) return tl::unexpected(n.error());
      o.subnet = *n;
    } else if (a == "--json") {
      auto v = need(i, a);
      if (!v) return tl::unexpected(v.error());
      o.json_path = *v;
    } else {
      return failf("unknown option \"{}\"", a);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Servers on the server workload's address, each on its own thread (LoopbackServer).

std::array<uint8_t, 8> encode_u64(uint64_t v) {
  std::array<uint8_t, 8> out{};
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
  return out;
}

uint64_t decode_u64(const std::array<uint8_t, 8>& in) {
  uint64_t v = 0;
  for (uint8_t b : in) v = (v << 8) | b;
  return v;
}

// Echoes until EOF. No Nagle, so a response never waits for an ACK.
class EchoServer final : public testing::LoopbackServer {
 public:
  static std::unique_ptr<EchoServer> start(const tcp::endpoint& at) {
    std::unique_ptr<EchoServer> s(new EchoServer(at));
    s->LoopbackServer::start();
    return s;
  }

 private:
  explicit EchoServer(const tcp::endpoint& at) : LoopbackServer(at) {}
  awaitable<void> serve(tcp::socket s) override {
    error_code ec;
    s.set_option(tcp::no_delay(true), ec);
    std::vector<uint8_t> buf(64 * 1024);
    for (;;) {
      auto [rec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
      if (n > 0) {
        auto [wec, wn] = co_await asio::async_write(s, asio::buffer(buf.data(), n), kTuple);
        if (wec) co_return;
      }
      if (rec) break;
    }
    s.shutdown(tcp::socket::shutdown_send, ec);
  }
};

// Reads until EOF, then answers with the 8-byte count it received: the client's clock stops
// only when every byte has arrived here.
class SinkServer final : public testing::LoopbackServer {
 public:
  static std::unique_ptr<SinkServer> start(const tcp::endpoint& at) {
    std::unique_ptr<SinkServer> s(new SinkServer(at));
    s->LoopbackServer::start();
    return s;
  }

 private:
  explicit SinkServer(const tcp::endpoint& at) : LoopbackServer(at) {}
  awaitable<void> serve(tcp::socket s) override {
    std::vector<uint8_t> buf(kBulkChunk);
    uint64_t received = 0;
    for (;;) {
      auto [rec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
      received += n;
      if (rec == asio::error::eof) break;
      if (rec) co_return;
    }
    auto ack = encode_u64(received);
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(ack), kTuple);
    if (wec) co_return;
    error_code ec;
    s.shutdown(tcp::socket::shutdown_send, ec);
  }
};

// Reads an 8-byte count, sends that many bytes, then closes.
class SourceServer final : public testing::LoopbackServer {
 public:
  static std::unique_ptr<SourceServer> start(const tcp::endpoint& at) {
    std::unique_ptr<SourceServer> s(new SourceServer(at));
    s->LoopbackServer::start();
    return s;
  }

 private:
  explicit SourceServer(const tcp::endpoint& at) : LoopbackServer(at) {}
  awaitable<void> serve(tcp::socket s) override {
    std::array<uint8_t, 8> req{};
    auto [rec, rn] = co_await asio::async_read(s, asio::buffer(req), kTuple);
    if (rec) co_return;
    // The same bytes over and over: generating them must not cost what we measure.
    std::vector<uint8_t> buf(kBulkChunk);
    testing::ByteStream(2).fill(buf.data(), buf.size());
    for (uint64_t left = decode_u64(req); left > 0;) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer(buf.data(), k), kTuple);
      if (wec) co_return;
      left -= k;
    }
    error_code ec;
    s.shutdown(tcp::socket::shutdown_send, ec);
  }
};

// ---------------------------------------------------------------------------------------------
// CPU and memory of the processes involved, from /proc.

struct CpuTimes {
  double ztunnel_a = 0;  // on-CPU seconds, all threads
  double ztunnel_b = 0;
  double bench = 0;         // this process: client and servers
  double machine_busy = 0;  // all CPUs, not idle
  double wall = 0;

  CpuTimes operator-(const CpuTimes& o) const {
    return {ztunnel_a - o.ztunnel_a, ztunnel_b - o.ztunnel_b, bench - o.bench,
            machine_busy - o.machine_busy, wall - o.wall};
  }
  CpuTimes& operator+=(const CpuTimes& o) {
    ztunnel_a += o.ztunnel_a;
    ztunnel_b += o.ztunnel_b;
    bench += o.bench;
    machine_busy += o.machine_busy;
    wall += o.wall;
    return *this;
  }
  double ztunnels() const { return ztunnel_a + ztunnel_b; }
  // CPU that neither the bench nor the ztunnels used: other work on the machine, i.e. noise.
  double other() const { return std::max(0.0, machine_busy - bench - ztunnels()); }
};

// On-CPU time of every thread of `pid`, from schedstat (nanoseconds; /proc/<pid>/stat counts
// in clock ticks, too coarse for a few hundred connections).
double process_oncpu_seconds(pid_t pid) {
  std::error_code ec;
  double ns = 0;
  for (const auto& task :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::istringstream in(read_text_file((task.path() / "schedstat").string()));
    double run_ns = 0;
    if (in >> run_ns) ns += run_ns;
  }
  return ns / 1e9;
}

double machine_busy_seconds() {
  std::istringstream in(read_text_file("/proc/stat"));
  std::string cpu;
  in >> cpu;
  double busy = 0;
  double v;
  for (int i = 0; in >> v && i < 8; ++i) {
    if (i != 3 && i != 4) busy += v;  // idle, iowait
  }
  return busy / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct Pids {
  pid_t ztunnel_a = -1;  // -1: not started, counts as 0
  pid_t ztunnel_b = -1;
};

CpuTimes cpu_now(Pids pids) {
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  auto of = [](pid_t pid) { return pid > 0 ? process_oncpu_seconds(pid) : 0.0; };
  return {of(pids.ztunnel_a), of(pids.ztunnel_b), tv(self.ru_utime) + tv(self.ru_stime),
          machine_busy_seconds(),
          std::chrono::duration<double>(Clock::now().time_since_epoch()).count()};
}

// VmRSS and VmHWM in KiB.
std::pair<uint64_t, uint64_t> rss_kib(pid_t pid) {
  std::istringstream in(read_text_file(fmt::format("/proc/{}/status", pid)));
  std::string line;
  uint64_t rss = 0, peak = 0;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) rss = std::strtoull(line.c_str() + 6, nullptr, 10);
    if (line.starts_with("VmHWM:")) peak = std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return {rss, peak};
}

Json cpu_json(const CpuTimes& c) {
  return Json{{"ztunnel_a_cpu_s", c.ztunnel_a},
              {"ztunnel_b_cpu_s", c.ztunnel_b},
              {"bench_cpu_s", c.bench},
              {"machine_busy_cpu_s", c.machine_busy},
              {"other_processes_cpu_s", c.other()},
              {"wall_s", c.wall}};
}

// ---------------------------------------------------------------------------------------------
// Statistics

struct Percentiles {
  size_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;  // microseconds
};

Percentiles percentiles(std::vector<int64_t> ns) {
  Percentiles p;
  if (ns.empty()) return p;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    // Nearest rank: the smallest sample with at least q of all samples at or below it.
    auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(ns.size())));
    return static_cast<double>(ns[std::clamp<size_t>(rank, 1, ns.size()) - 1]) / 1000.0;
  };
  p.count = ns.size();
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = static_cast<double>(ns.back()) / 1000.0;
  double sum = 0;
  for (auto v : ns) sum += static_cast<double>(v);
  p.mean = sum / static_cast<double>(ns.size()) / 1000.0;
  return p;
}

Json percentiles_json(const Percentiles& p) {
  return Json{{"count", p.count},   {"p50_us", p.p50}, {"p90_us", p.p90},  {"p99_us", p.p99},
              {"p99_9_us", p.p999}, {"max_us", p.max}, {"mean_us", p.mean}};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double ratio(double a, double b) { return b > 0 ? a / b : 0; }

// ---------------------------------------------------------------------------------------------
// Client side: the same code for both paths.

enum class Path { kDirect = 0, kTunnel = 1 };
constexpr std::array<Path, 2> kPaths = {Path::kDirect, Path::kTunnel};
const char* path_name(Path p) { return p == Path::kDirect ? "direct" : "tunnel"; }

// Straight to `dst`, or through ztunnel A's SOCKS5 listener at `socks5`.
awaitable<Result<tcp::socket>> open_connection(Path path, tcp::endpoint socks5, tcp::endpoint dst) {
  if (path == Path::kTunnel) co_return co_await testing::socks5_connect(socks5, dst);
  tcp::socket s(co_await asio::this_coro::executor);
  auto [ec] = co_await s.async_connect(dst, kTuple);
  if (ec) co_return fail(ec, "connect to " + net::format_endpoint(dst));
  s.set_option(tcp::no_delay(true), ec);
  co_return s;
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Sends `bytes` then FIN; returns the seconds until the sink confirmed it had them all.
awaitable<Result<double>> upload(Path path, tcp::endpoint socks5, tcp::endpoint dst,
                                 uint64_t bytes) {
  auto sock = co_await open_connection(path, socks5, dst);
  if (!sock) co_return tl::unexpected(sock.error());
  tcp::socket& s = *sock;
  std::vector<uint8_t> buf(kBulkChunk);
  testing::ByteStream(1).fill(buf.data(), buf.size());
  auto t0 = Clock::now();
  for (uint64_t left = bytes; left > 0;) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(buf.data(), k), kTuple);
    if (ec) co_return fail(ec, fmt::format("writing after {} bytes", bytes - left));
    left -= k;
  }
  error_code ec;
  s.shutdown(tcp::socket::shutdown_send, ec);
  if (ec) co_return fail(ec, "shutdown after the upload");
  std::array<uint8_t, 8> ack{};
  auto [rec, rn] = co_await asio::async_read(s, asio::buffer(ack), kTuple);
  if (rec) co_return fail(rec, "reading the sink's byte count");
  auto t1 = Clock::now();
  if (decode_u64(ack) != bytes) {
    co_return failf("the sink received {} of {} bytes", decode_u64(ack), bytes);
  }
  co_return seconds_between(t0, t1);
}

// Asks the source for `bytes`; returns the seconds until its FIN arrived after all of them.
awaitable<Result<double>> download(Path path, tcp::endpoint socks5, tcp::endpoint dst,
                                   uint64_t bytes) {
  auto sock = co_await open_connection(path, socks5, dst);
  if (!sock) co_return tl::unexpected(sock.error());
  tcp::socket& s = *sock;
  std::vector<uint8_t> buf(kBulkChunk);
  auto req = encode_u64(bytes);
  auto t0 = Clock::now();
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(req), kTuple);
  if (wec) co_return fail(wec, "asking the source for data");
  uint64_t received = 0;
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
    received += n;
    if (ec == asio::error::eof) break;
    if (ec) co_return fail(ec, fmt::format("reading after {} bytes", received));
  }
  auto t1 = Clock::now();
  if (received != bytes) co_return failf("received {} of {} bytes", received, bytes);
  co_return seconds_between(t0, t1);
}

// One path's share of an interleaved run.
struct PathSamples {
  std::vector<int64_t> ns;  // one per request or connection, in order
  CpuTimes cpu;             // over the measured blocks only
  double seconds = 0;       // wall time of the measured blocks
};
using Paired = std::array<PathSamples, 2>;  // indexed by Path

// `n` round trips of out.size() bytes on `s`; appends each one's time to `samples` if given.
awaitable<Status> round_trips(tcp::socket& s, std::vector<uint8_t>& out, std::vector<uint8_t>& in,
                              int n, std::vector<int64_t>* samples) {
  for (int i = 0; i < n; ++i) {
    ++out[0];  // a stale or misordered echo cannot pass the check below
    auto t0 = Clock::now();
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(out), kTuple);
    if (wec) co_return fail(wec, "request write");
    auto [rec, rn] = co_await asio::async_read(s, asio::buffer(in), kTuple);
    if (rec) co_return fail(rec, "response read");
    auto t1 = Clock::now();
    if (in != out) co_return fail("the echo differs from the request");
    if (samples != nullptr)
      samples->push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  }
  co_return Status{};
}

// Ping-pong on one long-lived connection per path: `warmup` round trips on each, then
// `requests` on each in alternating blocks of `block`, so both paths see the same background
// load over time (this machine is shared; a burst of other work lands on both or neither).
awaitable<Result<Paired>> latency_run(tcp::endpoint socks5, tcp::endpoint dst, size_t size,
                                      int warmup, int requests, int block, Pids pids) {
  std::array<std::optional<tcp::socket>, 2> socks;
  for (Path p : kPaths) {
    auto s = co_await open_connection(p, socks5, dst);
    if (!s) co_return tl::unexpected(wrap(s.error(), path_name(p)));
    socks[static_cast<size_t>(p)].emplace(std::move(*s));
  }
  std::vector<uint8_t> out(size), in(size);
  testing::ByteStream(3).fill(out.data(), out.size());
  for (Path p : kPaths) {
    auto st = co_await round_trips(*socks[static_cast<size_t>(p)], out, in, warmup, nullptr);
    if (!st) co_return tl::unexpected(wrap(st.error(), fmt::format("{} warm-up", path_name(p))));
  }
  Paired r;
  for (auto& ps : r) ps.ns.reserve(static_cast<size_t>(requests));
  for (int done = 0; done < requests; done += block) {
    int n = std::min(block, requests - done);
    for (Path p : kPaths) {
      auto& ps = r[static_cast<size_t>(p)];
      auto c0 = cpu_now(pids);
      auto t0 = Clock::now();
      auto st = co_await round_trips(*socks[static_cast<size_t>(p)], out, in, n, &ps.ns);
      ps.seconds += seconds_between(t0, Clock::now());
      ps.cpu += cpu_now(pids) - c0;
      if (!st)
        co_return tl::unexpected(
            wrap(st.error(), fmt::format("{} request {}", path_name(p), done)));
    }
  }
  for (auto& s : socks) {
    error_code ec;
    s->shutdown(tcp::socket::shutdown_send, ec);
  }
  co_return r;
}

// One new connection: connect, one round trip, close.
awaitable<Status> connect_once(Path path, tcp::endpoint socks5, tcp::endpoint dst,
                               std::vector<uint8_t>& out, std::vector<uint8_t>& in) {
  auto sock = co_await open_connection(path, socks5, dst);
  if (!sock) co_return tl::unexpected(sock.error());
  ++out[0];
  auto [wec, wn] = co_await asio::async_write(*sock, asio::buffer(out), kTuple);
  if (wec) co_return fail(wec, "write");
  auto [rec, rn] = co_await asio::async_read(*sock, asio::buffer(in), kTuple);
  if (rec) co_return fail(rec, "read");
  error_code ec;
  sock->close(ec);
  if (in != out) co_return fail("the echo differs from the request");
  co_return Status{};
}

// `count` connections per path, one after the other, in alternating blocks of `block`.
awaitable<Result<Paired>> connections_run(tcp::endpoint socks5, tcp::endpoint dst, size_t size,
                                          int count, int block, Pids pids) {
  std::vector<uint8_t> out(size), in(size);
  testing::ByteStream(4).fill(out.data(), out.size());
  Paired r;
  for (auto& ps : r) ps.ns.reserve(static_cast<size_t>(count));
  for (int done = 0; done < count; done += block) {
    int n = std::min(block, count - done);
    for (Path p : kPaths) {
      auto& ps = r[static_cast<size_t>(p)];
      auto c0 = cpu_now(pids);
      auto start = Clock::now();
      for (int i = 0; i < n; ++i) {
        auto t0 = Clock::now();
        auto st = co_await connect_once(p, socks5, dst, out, in);
        if (!st)
          co_return tl::unexpected(
              wrap(st.error(), fmt::format("{} connection {}", path_name(p), done + i)));
        ps.ns.push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
      }
      ps.seconds += seconds_between(start, Clock::now());
      ps.cpu += cpu_now(pids) - c0;
    }
  }
  co_return r;
}

// ---------------------------------------------------------------------------------------------
// Running phases on the client's io_context, with a deadline and Ctrl-C.

// SIGINT/SIGTERM stop the client's io_context from a thread of their own, so main unwinds and
// the destructors stop the ztunnels and remove the temporary directory.
class Interrupt {
 public:
  explicit Interrupt(asio::io_context& client) : client_(client), signals_(io_, SIGINT, SIGTERM) {
    signals_.async_wait([this](const error_code& ec, int) {
      if (ec) return;
      requested_ = true;
      client_.stop();
    });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Interrupt() {
    asio::post(io_, [this] {
      error_code ec;
      signals_.cancel(ec);
    });
    thread_.join();
  }
  Interrupt(const Interrupt&) = delete;
  Interrupt& operator=(const Interrupt&) = delete;
  bool requested() const { return requested_; }

 private:
  asio::io_context& client_;
  asio::io_context io_;
  asio::signal_set signals_;
  std::thread thread_;
  std::atomic<bool> requested_ = false;
};

class Runner {
 public:
  Runner(asio::io_context& io, const Interrupt& interrupt) : io_(io), interrupt_(interrupt) {}

  template <class T>
  Result<T> run(awaitable<Result<T>> task, std::chrono::seconds limit, const std::string& what) {
    if (interrupt_.requested()) return failf("{}: interrupted", what);
    std::optional<Result<T>> out;
    asio::co_spawn(io_, std::move(task), [&](std::exception_ptr e, Result<T> r) {
      if (!e) {
        out = std::move(r);
        return;
      }
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        out = fail(x.what());
      } catch (...) {
        out = fail("unknown exception");
      }
    });
    io_.restart();
    io_.run_for(limit);
    if (!out) {
      if (interrupt_.requested()) return failf("{}: interrupted", what);
      return failf("{}: did not finish within {} s", what, limit.count());
    }
    if (!*out) return tl::unexpected(wrap(out->error(), what));
    return std::move(**out);
  }

 private:
  asio::io_context& io_;
  const Interrupt& interrupt_;
};

// ---------------------------------------------------------------------------------------------
// The run

struct Throughput {
  std::array<std::vector<double>, 2> mbps;  // every transfer, by path
  std::array<CpuTimes, 2> cpu;
  double median_mbps(Path p) const { return median(mbps[static_cast<size_t>(p)]); }
  double ratio() const {
    return zt::bench::ratio(median_mbps(Path::kTunnel), median_mbps(Path::kDirect));
  }
};

struct Summary {
  Percentiles direct, tunnel;
  static Summary of(const Paired& r) { return {percentiles(r[0].ns), percentiles(r[1].ns)}; }
};

std::string human_bytes(uint64_t n) {
  for (auto [unit, name] : {std::pair<uint64_t, const char*>{1ull << 30, "GiB"},
                            {1ull << 20, "MiB"},
                            {1ull << 10, "KiB"}}) {
    if (n >= unit && n % unit == 0) return fmt::format("{} {}", n / unit, name);
  }
  return fmt::format("{} B", n);
}

std::string mesh_yaml(const std::string& client_ip, const std::string& server_ip) {
  return fmt::format(R"(workloads:
- uid: cluster1//v1/Pod/bench/client
  name: client
  namespace: bench
  serviceAccount: client
  workloadIps: ["{}"]
  protocol: HBONE
  node: node-a
- uid: cluster1//v1/Pod/bench/server
  name: server
  namespace: bench
  serviceAccount: server
  workloadIps: ["{}"]
  protocol: HBONE
  node: node-b
)",
                     client_ip, server_ip);
}

// Points bin_path() at the ztunnel next to this binary unless ZT_BIN_DIR says otherwise.
void default_bin_dir() {
  if (std::getenv("ZT_BIN_DIR") != nullptr) return;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) ::setenv("ZT_BIN_DIR", self.parent_path().c_str(), 1);
}

class Bench {
 public:
  Bench(const Options& o, asio::io_context& io, const Interrupt& interrupt)
      : o_(o), runner_(io, interrupt) {}

  Status setup();
  Status measure();
  void print_table() const;
  Json json() const;

 private:
  static constexpr int kLatencyBlock = 1000;
  static constexpr int kConnectionBlock = 100;

  Pids pids() const { return {a_->daemon().pid(), b_->daemon().pid()}; }
  tcp::endpoint socks5() const { return a_->socks5; }

  const Options& o_;
  Runner runner_;
  std::chrono::seconds limit_{900};
  std::string started_ = utc_now();
  std::string client_ip_, server_ip_;
  testing::TempDir dir_;
  std::unique_ptr<EchoServer> echo_;
  std::unique_ptr<SinkServer> sink_;
  std::unique_ptr<SourceServer> source_;
  std::unique_ptr<testing::ZtunnelProcess> a_, b_;

  Throughput up_, down_;
  Paired latency_;
  std::optional<Paired> connections_;
  int tunnel_connections_ = 0;  // what we opened through A, to check A's HBONE stream count
  double hbone_streams_ = -1;
  std::pair<uint64_t, uint64_t> rss_a_, rss_b_;  // KiB: current, peak
  CpuTimes quiet_;  // one second before anything started: the machine's own load
  CpuTimes all_;    // the whole measurement
};

Status Bench::setup() {
  {
    auto before = cpu_now({});
    std::this_thread::sleep_for(1s);
    quiet_ = cpu_now({}) - before;
  }
  client_ip_ = fmt::format("127.0.{}.2", o_.subnet);
  server_ip_ = fmt::format("127.0.{}.3", o_.subnet);
  // The PKI and the servers report failures by throwing; this is start-up, so turn that into
  // an error here.
  try {
    testing::TestPki pki;
    auto ca = pki.write_ca_files(dir_.path());
    auto config = dir_.path() / "mesh.yaml";
    testing::write_file(config, mesh_yaml(client_ip_, server_ip_));
    auto server_ip = asio::ip::make_address(server_ip_);
    echo_ = EchoServer::start({server_ip, 0});
    sink_ = SinkServer::start({server_ip, 0});
    source_ = SourceServer::start({server_ip, 0});
    auto a = testing::ZtunnelProcess::start({.ns = "bench",
                                             .name = "client",
                                             .config = config,
                                             .ca_cert = ca.cert_path,
                                             .ca_key = ca.key_path,
                                             .workers = o_.workers});
    if (!a) return tl::unexpected(wrap(a.error(), "starting ztunnel A"));
    a_ = std::move(*a);
    auto b = testing::ZtunnelProcess::start({.ns = "bench",
                                             .name = "server",
                                             .config = config,
                                             .ca_cert = ca.cert_path,
                                             .ca_key = ca.key_path,
                                             .socks5 = false,
                                             .workers = o_.workers});
    if (!b) return tl::unexpected(wrap(b.error(), "starting ztunnel B"));
    b_ = std::move(*b);
  } catch (const std::exception& e) {
    return failf("setting up: {}", e.what());
  }
  // Both paths once before measuring; the HBONE connection (TLS handshake) is pooled from here on.
  auto warm = runner_.run(latency_run(socks5(), echo_->endpoint(), o_.message, 10, 0, 1, pids()),
                          limit_, "warm-up");
  if (!warm) return tl::unexpected(warm.error());
  ++tunnel_connections_;
  return {};
}

Status Bench::measure() {
  auto start = cpu_now(pids());
  const double mb = static_cast<double>(o_.bytes) / 1e6;
  for (int r = 0; r < o_.repeat; ++r) {
    for (Path p : kPaths) {
      auto before = cpu_now(pids());
      auto s = runner_.run(upload(p, socks5(), sink_->endpoint(), o_.bytes), limit_,
                           fmt::format("{} client -> server transfer", path_name(p)));
      if (!s) return tl::unexpected(s.error());
      up_.cpu[static_cast<size_t>(p)] += cpu_now(pids()) - before;
      up_.mbps[static_cast<size_t>(p)].push_back(mb / *s);
    }
    for (Path p : kPaths) {
      auto before = cpu_now(pids());
      auto s = runner_.run(download(p, socks5(), source_->endpoint(), o_.bytes), limit_,
                           fmt::format("{} server -> client transfer", path_name(p)));
      if (!s) return tl::unexpected(s.error());
      down_.cpu[static_cast<size_t>(p)] += cpu_now(pids()) - before;
      down_.mbps[static_cast<size_t>(p)].push_back(mb / *s);
    }
    tunnel_connections_ += 2;
  }

  auto latency = runner_.run(latency_run(socks5(), echo_->endpoint(), o_.message, o_.warmup,
                                         o_.requests, kLatencyBlock, pids()),
                             limit_, "request latency");
  if (!latency) return tl::unexpected(latency.error());
  latency_ = std::move(*latency);
  ++tunnel_connections_;

  if (o_.connections > 0) {
    auto c = runner_.run(connections_run(socks5(), echo_->endpoint(), o_.message, o_.connections,
                                         kConnectionBlock, pids()),
                         limit_, "new connections");
    if (!c) return tl::unexpected(c.error());
    connections_ = std::move(*c);
    tunnel_connections_ += o_.connections;
  }
  all_ = cpu_now(pids()) - start;

  rss_a_ = rss_kib(a_->daemon().pid());
  rss_b_ = rss_kib(b_->daemon().pid());
  // Proof that the tunnel runs went through both ztunnels over HBONE, not around them.
  hbone_streams_ = testing::metric_sum(a_->metrics_text(), "ztunnel_hbone_streams_opened_total",
                                       {"direction=\"outbound\""});
  if (hbone_streams_ != tunnel_connections_) {
    return failf("ztunnel A opened {} HBONE streams for {} tunnelled connections", hbone_streams_,
                 tunnel_connections_);
  }
  return {};
}

void Bench::print_table() const {
  const unsigned cpus = std::thread::hardware_concurrency();
  constexpr size_t kD = static_cast<size_t>(Path::kDirect);
  constexpr size_t kT = static_cast<size_t>(Path::kTunnel);
  fmt::print("hbone_bench  {}  {} CPUs ({}), {}\n", started_, cpus, machine_info().cpu_model,
             machine_info().kernel);
  fmt::print(
      "tunnel: client -> SOCKS5 -> ztunnel A -> HBONE (mTLS + HTTP/2 CONNECT) -> ztunnel B -> "
      "server\n");
  fmt::print(
      "direct: client -> server.   Each ztunnel runs {} worker thread(s); the client, the "
      "servers and both ztunnels share the {} CPUs.\n",
      o_.workers, cpus);

  constexpr int kLabel = 26;
  auto header = [&](const std::string& title, bool added) {
    fmt::print("\n{}\n  {:<{}} {:>10} {:>10} {:>9}{}\n", title, "", kLabel, "direct", "tunnel",
               added ? "added" : "ratio", added ? fmt::format(" {:>8}", "ratio") : "");
  };
  auto row = [&](const std::string& label, double d, double t, int decimals) {
    fmt::print("  {:<{}} {:>10.{}f} {:>10.{}f} {:>9.3f}\n", label, kLabel, d, decimals, t, decimals,
               ratio(t, d));
  };

  const double gb = static_cast<double>(o_.bytes) * o_.repeat / 1e9;
  header(fmt::format("Throughput of one TCP stream, {} per transfer{}", human_bytes(o_.bytes),
                     o_.repeat > 1 ? fmt::format(", median of {}", o_.repeat) : ""),
         false);
  row("client -> server, MB/s", up_.median_mbps(Path::kDirect), up_.median_mbps(Path::kTunnel), 1);
  row("server -> client, MB/s", down_.median_mbps(Path::kDirect), down_.median_mbps(Path::kTunnel),
      1);
  fmt::print(
      "  ztunnel CPU seconds per GB: client -> server A {:.2f}, B {:.2f}; server -> client A "
      "{:.2f}, B {:.2f}\n",
      up_.cpu[kT].ztunnel_a / gb, up_.cpu[kT].ztunnel_b / gb, down_.cpu[kT].ztunnel_a / gb,
      down_.cpu[kT].ztunnel_b / gb);

  auto ld = percentiles(latency_[kD].ns);
  auto lt = percentiles(latency_[kT].ns);
  header(fmt::format("Request latency, {} request and response, one connection, us",
                     human_bytes(o_.message)),
         true);
  for (auto [name, dv, tv] : {std::tuple<const char*, double, double>{"p50", ld.p50, lt.p50},
                              {"p90", ld.p90, lt.p90},
                              {"p99", ld.p99, lt.p99},
                              {"p99.9", ld.p999, lt.p999},
                              {"max", ld.max, lt.max},
                              {"mean", ld.mean, lt.mean}}) {
    fmt::print("  {:<{}} {:>10.1f} {:>10.1f} {:>9.1f} {:>8.2f}\n", name, kLabel, dv, tv, tv - dv,
               ratio(tv, dv));
  }
  const double reqs = o_.requests;
  fmt::print(
      "  {} requests per path after {} warm-up, in alternating blocks of {}.\n"
      "  ztunnel CPU per request: A {:.1f} us, B {:.1f} us (= vCPU per 1000 requests/s)\n",
      o_.requests, o_.warmup, kLatencyBlock, latency_[kT].cpu.ztunnel_a / reqs * 1e6,
      latency_[kT].cpu.ztunnel_b / reqs * 1e6);

  if (connections_) {
    const auto& c = *connections_;
    auto cd = percentiles(c[kD].ns);
    auto ct = percentiles(c[kT].ns);
    double rate_d = ratio(static_cast<double>(c[kD].ns.size()), c[kD].seconds);
    double rate_t = ratio(static_cast<double>(c[kT].ns.size()), c[kT].seconds);
    header(fmt::format("New connections: connect, {} round trip, close; one at a time",
                       human_bytes(o_.message)),
           false);
    row("connections/s", rate_d, rate_t, 0);
    row("p50 us", cd.p50, ct.p50, 1);
    row("p99 us", cd.p99, ct.p99, 1);
    const double n = o_.connections;
    fmt::print(
        "  {} connections per path, in alternating blocks of {}.\n"
        "  ztunnel CPU per connection: A {:.1f} us, B {:.1f} us\n",
        o_.connections, kConnectionBlock, c[kT].cpu.ztunnel_a / n * 1e6,
        c[kT].cpu.ztunnel_b / n * 1e6);
  }

  fmt::print("\nztunnel RSS at the end (peak): A {:.1f} MiB ({:.1f}), B {:.1f} MiB ({:.1f})\n",
             rss_a_.first / 1024.0, rss_a_.second / 1024.0, rss_b_.first / 1024.0,
             rss_b_.second / 1024.0);
  fmt::print("HBONE streams opened by ztunnel A: {} for {} tunnelled connections\n", hbone_streams_,
             tunnel_connections_);
  const double other = ratio(all_.other(), all_.wall);
  const double before = ratio(quiet_.other(), quiet_.wall);
  // Kernel threads doing network work for the bench (ksoftirqd) count as other processes too;
  // on a quiet machine that stays well below 0.1 CPUs.
  const bool noisy = before > 0.1 || other > 0.1;
  fmt::print("Other processes used {:.2f} CPUs on average while measuring ({:.2f} just before){}\n",
             other, before, noisy ? ": the machine was not quiet, expect noise" : "");

  fmt::print(
      "\nratios (tunnel/direct): throughput c->s {:.3f}, s->c {:.3f}; latency p50 {:.2f} "
      "({:+.1f} us), p99 {:.2f} ({:+.1f} us)",
      up_.ratio(), down_.ratio(), ratio(lt.p50, ld.p50), lt.p50 - ld.p50, ratio(lt.p99, ld.p99),
      lt.p99 - ld.p99);
  if (connections_) {
    const auto& c = *connections_;
    fmt::print("; connections/s {:.3f}",
               ratio(ratio(static_cast<double>(c[kT].ns.size()), c[kT].seconds),
                     ratio(static_cast<double>(c[kD].ns.size()), c[kD].seconds)));
  }
  fmt::print("\n");
}

Json Bench::json() const {
  constexpr size_t kD = static_cast<size_t>(Path::kDirect);
  constexpr size_t kT = static_cast<size_t>(Path::kTunnel);
  Json j;
  j["benchmark"] = "hbone_bench";
  j["date"] = started_;
  j["host"] = {{"cpus", std::thread::hardware_concurrency()},
               {"cpu_model", machine_info().cpu_model},
               {"kernel", machine_info().kernel}};
  j["options"] = {{"bytes", o_.bytes},
                  {"requests", o_.requests},
                  {"warmup", o_.warmup},
                  {"message_bytes", o_.message},
                  {"connections", o_.connections},
                  {"ztunnel_workers", o_.workers},
                  {"repeat", o_.repeat},
                  {"client_ip", client_ip_},
                  {"server_ip", server_ip_}};
  auto throughput = [&](const Throughput& t) {
    const double gb = static_cast<double>(o_.bytes) * o_.repeat / 1e9;
    return Json{{"direct_mb_per_s", t.median_mbps(Path::kDirect)},
                {"tunnel_mb_per_s", t.median_mbps(Path::kTunnel)},
                {"ratio", t.ratio()},
                {"direct_runs_mb_per_s", t.mbps[kD]},
                {"tunnel_runs_mb_per_s", t.mbps[kT]},
                {"ztunnel_a_cpu_s_per_gb", t.cpu[kT].ztunnel_a / gb},
                {"ztunnel_b_cpu_s_per_gb", t.cpu[kT].ztunnel_b / gb},
                {"direct_cpu", cpu_json(t.cpu[kD])},
                {"tunnel_cpu", cpu_json(t.cpu[kT])}};
  };
  j["throughput"] = {{"unit", "MB/s, 1 MB = 10^6 bytes"},
                     {"client_to_server", throughput(up_)},
                     {"server_to_client", throughput(down_)}};
  auto paired = [&](const Paired& r, double units, const char* per) {
    auto d = percentiles(r[kD].ns);
    auto t = percentiles(r[kT].ns);
    return Json{{"direct", percentiles_json(d)},
                {"tunnel", percentiles_json(t)},
                {"added_us",
                 {{"p50", t.p50 - d.p50},
                  {"p90", t.p90 - d.p90},
                  {"p99", t.p99 - d.p99},
                  {"p99_9", t.p999 - d.p999},
                  {"max", t.max - d.max},
                  {"mean", t.mean - d.mean}}},
                {"ratio",
                 {{"p50", ratio(t.p50, d.p50)},
                  {"p90", ratio(t.p90, d.p90)},
                  {"p99", ratio(t.p99, d.p99)},
                  {"p99_9", ratio(t.p999, d.p999)},
                  {"max", ratio(t.max, d.max)},
                  {"mean", ratio(t.mean, d.mean)}}},
                {fmt::format("ztunnel_a_cpu_us_per_{}", per), r[kT].cpu.ztunnel_a / units * 1e6},
                {fmt::format("ztunnel_b_cpu_us_per_{}", per), r[kT].cpu.ztunnel_b / units * 1e6},
                {"direct_cpu", cpu_json(r[kD].cpu)},
                {"tunnel_cpu", cpu_json(r[kT].cpu)}};
  };
  j["latency"] = paired(latency_, o_.requests, "request");
  j["latency"]["unit"] = "us";
  if (connections_) {
    const auto& c = *connections_;
    j["connections"] = paired(c, o_.connections, "connection");
    double rate_d = ratio(static_cast<double>(c[kD].ns.size()), c[kD].seconds);
    double rate_t = ratio(static_cast<double>(c[kT].ns.size()), c[kT].seconds);
    j["connections"]["direct_per_s"] = rate_d;
    j["connections"]["tunnel_per_s"] = rate_t;
    j["connections"]["per_s_ratio"] = ratio(rate_t, rate_d);
  } else {
    j["connections"] = nullptr;
  }
  j["ztunnel"] = {{"a", {{"rss_kib", rss_a_.first}, {"peak_rss_kib", rss_a_.second}}},
                  {"b", {{"rss_kib", rss_b_.first}, {"peak_rss_kib", rss_b_.second}}},
                  {"hbone_streams_opened", hbone_streams_},
                  {"tunnelled_connections", tunnel_connections_}};
  j["noise"] = {{"other_processes_cpus_while_measuring", ratio(all_.other(), all_.wall)},
                {"other_processes_cpus_before", ratio(quiet_.other(), quiet_.wall)},
                {"measurement_cpu", cpu_json(all_)}};
  return j;
}

int run(int argc, char** argv) {
  auto options = parse_options(argc, argv);
  if (!options) {
    std::fprintf(stderr, "hbone_bench: %s\n(see hbone_bench --help)\n",
                 options.error().describe().c_str());
    return 2;
  }
  if (options->help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  default_bin_dir();
  auto io = std::make_unique<asio::io_context>();
  auto interrupt = std::make_unique<Interrupt>(*io);
  auto bench = std::make_unique<Bench>(*options, *io, *interrupt);
  auto st = bench->setup();
  if (st) st = bench->measure();
  if (!st) {
    std::fprintf(stderr, "hbone_bench: %s\n", st.error().describe().c_str());
    // A phase that failed or was interrupted may leave its coroutine suspended with a
    // connection through the ztunnels open; destroying the io_context closes it, so the
    // ztunnels' drain on SIGTERM has nothing to wait for. Then the ztunnels stop, then the
    // servers, then the temporary directory goes.
    interrupt.reset();
    io.reset();
    bench.reset();
    return 1;
  }
  bench->print_table();
  if (!options->json_path.empty()) {
    auto text = bench->json().dump(2) + "\n";
    if (options->json_path == "-") {
      std::fputs(text.c_str(), stdout);
    } else {
      std::ofstream out(options->json_path, std::ios::trunc);
      out << text;
      if (!out) {
        std::fprintf(stderr, "hbone_bench: cannot write %s\n", options->json_path.c_str());
        return 1;
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace zt::bench

int main(int argc, char** argv) { return zt::bench::run(argc, argv); }
