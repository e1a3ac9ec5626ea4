#include "tools/loadgen/engine.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <memory>
#include <thread>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "tools/loadgen/schedule.h"
#include "tools/loadgen/socks5.h"

#if ZT_LOADGEN_HTTP2
#include "waypoint/http2/http2.h"
#include "waypoint/message/duplex.h"
#include "waypoint/message/message.h"
#endif

namespace zt::loadgen {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// What every connection of the run shares (read-only while running).
struct Plan {
  const Config& cfg;
  Schedule sched;
  Clock::time_point measure_from;  // start + warmup
  Clock::time_point measure_to;    // measure_from + duration
  Clock::time_point give_up;       // measure_to + timeout: nothing is sent after this
  tcp::endpoint connect_to;        // the target, or the SOCKS5 proxy
  std::string request;             // HTTP/1.1 bytes
  bool head = false;
  uint32_t max_streams = 1;

  std::chrono::nanoseconds off(Clock::time_point t) const { return t - sched.start(); }
};

uint64_t to_us(Clock::duration d) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return ns > 0 ? static_cast<uint64_t>((ns + 500) / 1000) : 0;
}

// Closes a socket when an operation takes too long. One armed wait at a time; a generation
// number makes a stale expiry (one that raced with disarm()) harmless.
class Deadline {
 public:
  explicit Deadline(asio::any_io_executor ex) : timer_(ex) {}
  ~Deadline() { *alive_ = false; }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void arm(tcp::socket& s, std::chrono::nanoseconds after) {
    fired_ = false;
    const uint64_t gen = ++gen_;
    timer_.expires_after(after);
    timer_.async_wait([this, &s, gen, alive = alive_](error_code ec) {
      if (ec || !*alive || gen != gen_) return;
      fired_ = true;
      error_code ignored;
      s.close(ignored);
    });
  }
  void disarm() {
    ++gen_;
    timer_.cancel();
  }
  bool fired() const { return fired_; }

 private:
  asio::steady_timer timer_;
  uint64_t gen_ = 0;
  bool fired_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

enum class Failure { kNone, kConnect, kReset, kTimeout, kProtocol, kOther };

Failure classify(const error_code& ec, bool timed_out) {
  if (timed_out) return Failure::kTimeout;
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
      ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) {
    return Failure::kReset;
  }
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category()) {
    return Failure::kProtocol;
  }
  return Failure::kOther;
}

void count_failure(Stats& st, Failure f, const std::string& what) {
  switch (f) {
    case Failure::kNone:
      return;
    case Failure::kConnect:
      ++st.errors.connect;
      break;
    case Failure::kReset:
      ++st.errors.reset;
      break;
    case Failure::kTimeout:
      ++st.errors.timeout;
      break;
    case Failure::kProtocol:
      ++st.errors.protocol;
      break;
    case Failure::kOther:
      ++st.errors.other;
      break;
  }
  if (st.first_error.empty()) st.first_error = what;
}

// Connects `s` (a fresh socket) to the target, through SOCKS5 when configured.
awaitable<Status> open_socket(const Plan& p, tcp::socket& s, Deadline& dl, Stats& st) {
  auto ex = co_await asio::this_coro::executor;
  error_code ignored;
  s.close(ignored);
  s = tcp::socket(ex);
  dl.arm(s, p.cfg.timeout);
  auto [ec] = co_await s.async_connect(p.connect_to, kTuple);
  if (ec) {
    dl.disarm();
    co_return fail(
        ec, dl.fired() ? fmt::format("connect {}: timed out", p.connect_to.address().to_string())
                       : fmt::format("connect {}:{}", p.connect_to.address().to_string(),
                                     p.connect_to.port()));
  }
  s.set_option(tcp::no_delay(true), ignored);
  ++st.connections_opened;
  if (p.cfg.socks5) {
    auto hs = co_await socks5::handshake(s, p.cfg.target.address);
    if (!hs) {
      dl.disarm();
      s.close(ignored);
      co_return tl::unexpected(hs.error());
    }
  }
  dl.disarm();
  co_return Status{};
}

// Waits until `due` (open loop).
awaitable<void> wait_until(asio::steady_timer& t, Clock::time_point due) {
  if (Clock::now() >= due) co_return;
  t.expires_at(due);
  co_await t.async_wait(kTuple);
}

// Records the schedule bookkeeping of one request; returns whether it is measured.
bool begin_request(const Plan& p, Stats& st, Clock::time_point due, Clock::time_point sent_at) {
  const bool measured = due >= p.measure_from;
  if (measured && p.sched.open_loop()) {
    auto late = sent_at - due;
    st.late_us.record(to_us(late));
    if (late > 1ms) ++st.late_over_1ms;
  }
  return measured;
}

void note_completion(const Plan& p, Stats& st, Clock::time_point done) {
  st.last_completion_ns = std::max<int64_t>(
      st.last_completion_ns,
      std::chrono::duration_cast<std::chrono::nanoseconds>(done - p.measure_from).count());
}

// --- HTTP/1.1 --------------------------------------------------------------------------------

awaitable<void> http1_connection(const Plan& p, uint32_t c, Stats& st) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  Deadline dl(ex);
  asio::steady_timer pace(ex);
  beast::flat_buffer buf;
  bool open = false;
  const bool open_loop = p.sched.open_loop();
  uint64_t measured_seen = 0;
  const uint64_t measured_total =
      open_loop ? p.sched.count_in(c, p.off(p.measure_from), p.off(p.measure_to)) : 0;
  if (open_loop) st.scheduled += measured_total;

  for (uint64_t i = 0;; ++i) {
    Clock::time_point due;
    if (open_loop) {
      due = p.sched.due(c, i);
      if (due >= p.measure_to) break;
      if (Clock::now() >= p.give_up) break;
      co_await wait_until(pace, due);
    } else {
      due = Clock::now();
      if (due >= p.measure_to) break;
      if (due >= p.measure_from) ++st.scheduled;
    }
    const bool measured_slot = due >= p.measure_from;
    if (measured_slot) ++measured_seen;
    if (!open) {
      auto r = co_await open_socket(p, s, dl, st);
      if (!r) {
        if (measured_slot) count_failure(st, Failure::kConnect, r.error().describe());
        if (!open_loop) {
          pace.expires_after(10ms);  // do not spin on a refused connect
          co_await pace.async_wait(kTuple);
        }
        continue;
      }
      open = true;
      buf.clear();
    }
    const auto sent_at = Clock::now();
    const bool measured = begin_request(p, st, due, sent_at);
    dl.arm(s, p.cfg.timeout);
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(p.request), kTuple);
    Failure f = Failure::kNone;
    std::string what;
    int status = 0;
    bool keep = false;
    if (wec) {
      f = classify(wec, dl.fired());
      what = fmt::format("write request: {}", wec.message());
    } else {
      if (measured) ++st.sent;
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(std::uint64_t{1} << 30);
      if (p.head) parser.skip(true);
      auto [rec, rn] = co_await bhttp::async_read(s, buf, parser, kTuple);
      if (rec) {
        f = classify(rec, dl.fired());
        what = fmt::format("read response: {}", dl.fired() ? "timed out" : rec.message());
      } else {
        status = parser.get().result_int();
        keep = parser.get().keep_alive();
      }
    }
    dl.disarm();
    const auto done = Clock::now();
    if (measured) {
      if (f == Failure::kNone) {
        ++st.completed;
        ++st.status[status];
        note_completion(p, st, done);
        st.latency_us.record(to_us(done - (open_loop ? due : sent_at)));
      } else {
        count_failure(st, f, what);
      }
    }
    if (f != Failure::kNone || !keep || p.cfg.mode == ConnMode::kNewConnection) {
      error_code ignored;
      s.close(ignored);
      open = false;
    }
  }
  if (open_loop && measured_seen < measured_total) st.unsent += measured_total - measured_seen;
  error_code ignored;
  s.close(ignored);
}

// --- HTTP/2 ----------------------------------------------------------------------------------

#if ZT_LOADGEN_HTTP2

namespace wp = zt::waypoint;

struct H2Conn {
  std::shared_ptr<wp::http2::Http2Client> client;
  uint32_t in_flight = 0;
  std::unique_ptr<asio::steady_timer> slot_freed;  // cancelled when a request ends
};

wp::Request make_h2_request(const Config& c) {
  wp::Request r;
  r.version = wp::HttpVersion::kHttp2;
  r.head.method = c.effective_method();
  r.head.target = c.target.path;
  r.head.authority = c.target.authority;
  r.head.scheme = "http";
  for (const auto& [k, v] : c.headers) r.head.headers.push_back({k, v});
  if (c.body_size > 0 || r.head.method == "POST" || r.head.method == "PUT") {
    r.head.headers.push_back({"content-length", std::to_string(c.body_size)});
  }
  r.body.assign(c.body_size, 'x');
  return r;
}

// The outcome of one send, shared between the send and the request's timeout.
struct H2Outcome {
  bool done = false;
  Result<wp::Response> response = fail("pending");
  asio::steady_timer timer;
  explicit H2Outcome(asio::any_io_executor ex) : timer(ex) {}
};

awaitable<void> h2_send(std::shared_ptr<wp::http2::Http2Client> client, wp::Request req,
                        std::shared_ptr<H2Outcome> out) {
  out->response = co_await client->send(std::move(req));
  out->done = true;
  out->timer.cancel();
}

// Sends one request on `client`, records it, frees a slot.
awaitable<void> h2_request(const Plan& p, std::shared_ptr<wp::http2::Http2Client> client,
                           Clock::time_point due, Clock::time_point sent_at, bool measured,
                           Stats& st, std::shared_ptr<H2Conn> conn) {
  auto ex = co_await asio::this_coro::executor;
  auto out = std::make_shared<H2Outcome>(ex);
  out->timer.expires_after(p.cfg.timeout);
  if (measured) ++st.sent;
  asio::co_spawn(ex, h2_send(client, make_h2_request(p.cfg), out), asio::detached);
  if (!out->done) co_await out->timer.async_wait(kTuple);
  const auto done = Clock::now();
  // Like HTTP/1.1, a timed-out request costs its connection: closing it also ends the send
  // still waiting inside the client, so the run cannot hang on a silent server.
  if (!out->done) client->close();
  if (measured) {
    if (!out->done) {
      count_failure(st, Failure::kTimeout, "http2 request timed out");
    } else if (!out->response) {
      const auto& m = out->response.error().message;
      bool reset = m.find("ended") != std::string::npos || m.find("closed") != std::string::npos;
      count_failure(st, reset ? Failure::kReset : Failure::kProtocol,
                    "http2: " + out->response.error().describe());
    } else {
      ++st.completed;
      ++st.status[out->response->status];
      note_completion(p, st, done);
      st.latency_us.record(to_us(done - (p.sched.open_loop() ? due : sent_at)));
    }
  }
  if (p.cfg.mode == ConnMode::kNewConnection) client->close();
  --conn->in_flight;
  conn->slot_freed->cancel();
}

awaitable<Result<std::shared_ptr<wp::http2::Http2Client>>> open_h2(const Plan& p, Stats& st) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  Deadline dl(ex);
  auto r = co_await open_socket(p, s, dl, st);
  if (!r) co_return tl::unexpected(r.error());
  wp::Limits limits;
  limits.max_body_bytes = 1u << 30;
  co_return wp::http2::Http2Client::start(ex, wp::Duplex::of_socket(std::move(s)), limits);
}

awaitable<void> http2_connection(const Plan& p, uint32_t c, Stats& st) {
  auto ex = co_await asio::this_coro::executor;
  auto conn = std::make_shared<H2Conn>();
  conn->slot_freed = std::make_unique<asio::steady_timer>(ex);
  asio::steady_timer pace(ex);
  const bool open_loop = p.sched.open_loop();
  uint64_t measured_seen = 0;
  const uint64_t measured_total =
      open_loop ? p.sched.count_in(c, p.off(p.measure_from), p.off(p.measure_to)) : 0;
  if (open_loop) st.scheduled += measured_total;

  for (uint64_t i = 0;; ++i) {
    Clock::time_point due;
    if (open_loop) {
      due = p.sched.due(c, i);
      if (due >= p.measure_to || Clock::now() >= p.give_up) break;
      co_await wait_until(pace, due);
    }
    // A free stream slot (closed loop: this is what paces the sender).
    while (conn->in_flight >= p.max_streams) {
      conn->slot_freed->expires_at(Clock::time_point::max());
      co_await conn->slot_freed->async_wait(kTuple);
    }
    if (!open_loop) {
      due = Clock::now();
      if (due >= p.measure_to) break;
      if (due >= p.measure_from) ++st.scheduled;
    }
    const bool measured_slot = due >= p.measure_from;
    if (measured_slot) ++measured_seen;
    std::shared_ptr<wp::http2::Http2Client> client = conn->client;
    if (p.cfg.mode == ConnMode::kNewConnection || !client || !client->usable()) {
      auto r = co_await open_h2(p, st);
      if (!r) {
        if (measured_slot) count_failure(st, Failure::kConnect, r.error().describe());
        if (!open_loop) {
          pace.expires_after(10ms);
          co_await pace.async_wait(kTuple);
        }
        continue;
      }
      client = *r;
      if (p.cfg.mode == ConnMode::kKeepAlive) conn->client = client;
    }
    const auto sent_at = Clock::now();
    const bool measured = begin_request(p, st, due, sent_at);
    ++conn->in_flight;
    asio::co_spawn(ex, h2_request(p, client, due, sent_at, measured, st, conn), asio::detached);
  }
  while (conn->in_flight > 0) {
    conn->slot_freed->expires_at(Clock::time_point::max());
    co_await conn->slot_freed->async_wait(kTuple);
  }
  if (open_loop && measured_seen < measured_total) st.unsent += measured_total - measured_seen;
  if (conn->client) conn->client->close();
}

#endif  // ZT_LOADGEN_HTTP2

// --- TCP bulk ----------------------------------------------------------------------------------

awaitable<void> bulk_send(const Plan& p, tcp::socket& s, Stats& st) {
  std::vector<uint8_t> chunk(p.cfg.chunk_size, 0x5a);
  while (Clock::now() < p.measure_to) {
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(chunk), kTuple);
    if (ec) {
      if (Clock::now() < p.measure_to) {
        count_failure(st, classify(ec, false), fmt::format("bulk send: {}", ec.message()));
      }
      co_return;
    }
    const auto now = Clock::now();
    if (now >= p.measure_from && now < p.measure_to) st.bytes_sent += n;
  }
  error_code ignored;
  s.shutdown(tcp::socket::shutdown_send, ignored);
}

awaitable<void> bulk_recv(const Plan& p, tcp::socket& s, Stats& st) {
  std::vector<uint8_t> chunk(p.cfg.chunk_size);
  while (Clock::now() < p.measure_to) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), kTuple);
    if (ec) {
      if (Clock::now() < p.measure_to && ec != asio::error::eof) {
        count_failure(st, classify(ec, false), fmt::format("bulk receive: {}", ec.message()));
      }
      co_return;
    }
    const auto now = Clock::now();
    if (now >= p.measure_from && now < p.measure_to) st.bytes_received += n;
  }
}

awaitable<void> bulk_stream(const Plan& p, uint32_t c, Stats& st) {
  using namespace asio::experimental::awaitable_operators;
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  Deadline dl(ex);
  auto r = co_await open_socket(p, s, dl, st);
  if (!r) {
    count_failure(st, Failure::kConnect, r.error().describe());
    co_return;
  }
  // Ends the stream at the end of the window even when the peer stopped reading or sending.
  const auto left = p.measure_to - Clock::now();
  dl.arm(s, left.count() > 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(left) : 0ns);
  switch (p.cfg.direction) {
    case Direction::kSend:
      co_await bulk_send(p, s, st);
      break;
    case Direction::kRecv:
      co_await bulk_recv(p, s, st);
      break;
    case Direction::kBoth:
      co_await (bulk_send(p, s, st) && bulk_recv(p, s, st));
      break;
  }
  dl.disarm();
  error_code ignored;
  s.close(ignored);
}

awaitable<void> run_connection(const Plan& p, uint32_t c, Stats& st) {
  if (p.cfg.tcp_bulk) {
    co_await bulk_stream(p, c, st);
  } else if (p.cfg.protocol == Protocol::kHttp2) {
#if ZT_LOADGEN_HTTP2
    co_await http2_connection(p, c, st);
#endif
  } else {
    co_await http1_connection(p, c, st);
  }
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

Result<tcp::endpoint> resolve(const HostPort& hp) {
  asio::io_context io;
  tcp::resolver resolver(io);
  error_code ec;
  auto results = resolver.resolve(hp.host, std::to_string(hp.port), ec);
  if (ec || results.empty()) return fail(ec, fmt::format("resolve {}", hp.to_string()));
  return results.begin()->endpoint();
}

}  // namespace

bool http2_available() { return ZT_LOADGEN_HTTP2 != 0; }

std::string build_http1_request(const Config& c) {
  const std::string method = c.effective_method();
  std::string r =
      fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\n", method, c.target.path, c.target.authority);
  bool has_length = false;
  for (const auto& [k, v] : c.headers) {
    r += fmt::format("{}: {}\r\n", k, v);
    if (beast::iequals(k, "content-length") || beast::iequals(k, "transfer-encoding")) {
      has_length = true;
    }
  }
  if (!has_length && (c.body_size > 0 || method == "POST" || method == "PUT")) {
    r += fmt::format("Content-Length: {}\r\n", c.body_size);
  }
  if (c.mode == ConnMode::kNewConnection) r += "Connection: close\r\n";
  r += "\r\n";
  r.append(c.body_size, 'x');
  return r;
}

Result<RunResult> run(const Config& c) {
  if (!c.tcp_bulk && c.protocol == Protocol::kHttp2 && !http2_available()) {
    return fail("--protocol http2: this build has no HTTP/2 client (waypoint/http2 missing)");
  }
  auto connect_to = resolve(c.socks5 ? *c.socks5 : c.target.address);
  if (!connect_to) return tl::unexpected(connect_to.error());

  const uint32_t threads = std::max<uint32_t>(1, std::min(c.threads, c.connections));
  // A little time to start the threads before the first request is due.
  const auto start = Clock::now() + 20ms;
  Plan plan{.cfg = c, .sched = Schedule(c.rate, c.connections, start)};
  plan.measure_from = start + c.warmup;
  plan.measure_to = plan.measure_from + c.duration;
  plan.give_up = plan.measure_to + c.timeout;
  plan.connect_to = *connect_to;
  plan.request = build_http1_request(c);
  plan.head = c.effective_method() == "HEAD";
  plan.max_streams = c.max_streams ? c.max_streams : (c.rate > 0 ? 100 : 1);

  RunResult result;
  result.started_at = utc_now();
  std::vector<Stats> stats(threads);
  std::vector<std::thread> workers;
  const double cpu_start = process_cpu_seconds();
  const auto wall_start = Clock::now();
  for (uint32_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      asio::io_context io(1);
      for (uint32_t conn = t; conn < c.connections; conn += threads) {
        asio::co_spawn(io, run_connection(plan, conn, stats[t]), asio::detached);
      }
      io.run();
    });
  }
  for (auto& w : workers) w.join();
  result.wall_seconds = std::chrono::duration<double>(Clock::now() - wall_start).count();
  result.cpu_seconds = process_cpu_seconds() - cpu_start;
  for (const auto& s : stats) result.stats.merge(s);
  result.measured_seconds = std::chrono::duration<double>(c.duration).count();
  result.completion_seconds =
      std::max(result.measured_seconds, static_cast<double>(result.stats.last_completion_ns) / 1e9);
  return result;
}

}  // namespace zt::loadgen
