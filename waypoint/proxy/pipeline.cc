#include "waypoint/proxy/pipeline.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/base/log.h"
#include "common/grpc/client.h"
#include "common/net/address.h"
#include "common/net/copy.h"
#include "waypoint/authz/ext_authz.h"
#include "waypoint/authz/normalize.h"
#include "waypoint/authz/policy.h"
#include "waypoint/authz/request_authn.h"
#include "waypoint/base/random.h"
#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/proxy/access_log.h"
#include "waypoint/proxy/upstream.h"
#include "waypoint/resilience/fault.h"
#include "waypoint/resilience/load_balancer.h"
#include "waypoint/resilience/outlier.h"
#include "waypoint/resilience/pool.h"
#include "waypoint/resilience/retry.h"
#include "waypoint/route/route.h"
#include "ztunnel/state/routing.h"
#include "ztunnel/state/state.h"

namespace zt::waypoint::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using resilience::AttemptResult;
using Members = std::shared_ptr<const std::set<std::string>>;  // a subset's workloads

constexpr std::string_view kNoHealthyUpstream = "no healthy upstream";

// The waypoint's own answer to a CORS preflight (Envoy's CORS filter answers it 200).
Response preflight_answer(route::CorsDecision& cors) {
  Response r;
  r.status = 200;
  r.headers = std::move(cors.headers);
  return r;
}

// The port a backend is sent to: its own; else, as Istio picks a VirtualService destination's,
// the service's only port; else the port the request was addressed to.
uint16_t port_for(const config::BackendRef& backend, const zt::state::Service* svc,
                  uint16_t request_port) {
  if (backend.port) return *backend.port;
  if (svc && svc->ports.size() == 1) return svc->ports.begin()->first;
  return request_port;
}

constexpr std::chrono::milliseconds kMirrorTimeout{10'000};

// Per destination (service host and port) of one worker: its traffic policy, outlier state, pool
// limits and picker. A configuration change that leaves the destination's traffic policy as it
// was keeps them (as Envoy keeps a cluster whose definition did not change: a new route does not
// bring an ejected endpoint back or reset the circuit breakers' counts); a changed policy starts
// a new Destination (in-flight requests finish on the old one).
struct Destination {
  Destination(asio::any_io_executor ex, std::string h, uint16_t p, uint64_t gen,
              config::TrafficPolicy tp, std::string sub = {}, Members m = {})
      : host(std::move(h)),
        port(p),
        generation(gen),
        policy(std::move(tp)),
        subset(std::move(sub)),
        members(std::move(m)),
        limiter(policy.connection_pool),
        freed(ex) {
    if (policy.outlier_detection) outlier.emplace(*policy.outlier_detection);
  }

  std::string host;
  uint16_t port;
  uint64_t generation;
  config::TrafficPolicy policy;
  // A DestinationRule subset (VirtualService destination.subset): only its member workloads
  // ("<namespace>/<name>") are endpoints; none when the control plane sent no members.
  std::string subset;
  Members members;
  std::optional<resilience::OutlierDetector> outlier;
  resilience::ConnectionPoolLimiter limiter;
  std::optional<resilience::EndpointPicker> picker;
  std::vector<std::string> keys;
  std::unordered_map<std::string, uint32_t> active;
  Clock::time_point last_sweep = Clock::now();
  async::Event freed;  // a request finished or a connection became idle or closed
  stats::Counter* attempts_counter = nullptr;  // waypoint_upstream_attempts of `host`, cached

  // The service's endpoints as last resolved, with the snapshot, service, port and address
  // family they were resolved for: requests on the same snapshot reuse them, keys and
  // identities included, instead of resolving and formatting them again.
  std::shared_ptr<const std::vector<EndpointTarget>> endpoints;
  std::weak_ptr<const zt::state::State> endpoints_state;
  std::weak_ptr<const zt::state::Service> endpoints_service;
  Members endpoints_members;
  uint16_t endpoints_port = 0;
  bool endpoints_v4 = true;
};

// Whether `w` was set from `p` (the same control block; the weak_ptr keeps a block from being
// reused by another object while it is held).
template <class T>
bool same_object(const std::weak_ptr<const T>& w, const std::shared_ptr<const T>& p) {
  return !w.owner_before(p) && !p.owner_before(w);
}

// How far a streamed request body has come: shared by its ReplayBody, the request's loop and
// its streamed answer's record.
struct RequestProgress {
  explicit RequestProgress(asio::any_io_executor ex) : ended(std::move(ex)) {}
  uint64_t taken = 0;   // body bytes taken from the downstream
  uint64_t before = 0;  // bytes that came with the request (Request::body), not counted above
  uint64_t bytes() const { return before + taken; }  // the request body's size so far
  std::optional<Clock::time_point> ended_at;         // when the body ended (or failed)
  async::Event ended;                                // notified then
};

// A streamed request body (gRPC, or any body too long to buffer) shared by the attempts of its
// request. Each attempt reads it through a reader of its own, which replays what earlier
// attempts took (kept up to `limit` bytes), then pulls on from the downstream; one pull at a
// time, whichever reader asks. Once the answer has begun (commit) nothing more is kept, and a
// body longer than `limit` is not kept at all: no further attempt can start then (replayable()
// is false), as with Envoy's buffer limit. A mirror waits for the whole body (when_whole) and
// is skipped if it is not kept. Only the newest reader reads: an older one (an attempt given up
// whose stream is not closed yet) fails at once.
class ReplayBody : public std::enable_shared_from_this<ReplayBody> {
 public:
  using Whole = std::function<void(std::string body, http::HeaderList trailers)>;
  ReplayBody(asio::any_io_executor ex, std::shared_ptr<BodySource> source, size_t limit)
      : inner_(std::move(source)),
        limit_(limit),
        changed_(ex),
        progress_(std::make_shared<RequestProgress>(ex)) {}

  // A body for the next attempt, from its first byte; the readers before it stop.
  std::shared_ptr<BodySource> reader() {
    ++generation_;
    changed_.notify();
    return std::make_shared<Reader>(shared_from_this(), generation_);
  }
  // Whether another attempt can still be given the whole body.
  bool replayable() const { return !dropped_ && error_.empty(); }
  // The answer has begun: no attempt follows; the copy goes (unless a mirror still waits).
  void commit() {
    committed_ = true;
    if (whole_.empty()) drop();
  }
  // Calls `f` with the whole body once it has ended, if it was kept; never otherwise.
  void when_whole(Whole f) {
    if (dropped_) return;
    if (ended_ && error_.empty()) return f(copy_, trailers_);
    if (!ended_) whole_.push_back(std::move(f));
  }
  // Bytes taken, and the end (shared with the request's loop and record).
  const std::shared_ptr<RequestProgress>& progress() const { return progress_; }

 private:
  class Reader final : public BodySource {
   public:
    Reader(std::shared_ptr<ReplayBody> body, uint64_t generation)
        : body_(std::move(body)), generation_(generation) {}
    awaitable<Piece> next() override { return body_->next(pos_, generation_); }
    awaitable<void> until_done() override { return body_->until_done(generation_); }

   private:
    std::shared_ptr<ReplayBody> body_;
    uint64_t generation_;
    uint64_t pos_ = 0;  // bytes of the body this reader has had
  };

  // Done for a reader: superseded, or the body is all here (ended, or its sender done).
  awaitable<void> until_done(uint64_t generation) {
    using namespace asio::experimental::awaitable_operators;
    auto keep = shared_from_this();
    for (;;) {
      if (generation != generation_ || ended_ || !inner_) co_return;
      auto inner = inner_;
      auto woke = co_await (inner->until_done() || changed_.wait());
      if (woke.index() == 0 || !std::get<1>(woke)) co_return;  // done, or cancelled
    }
  }

  awaitable<BodySource::Piece> next(uint64_t& pos, uint64_t generation) {
    BodySource::Piece piece;
    for (;;) {
      if (generation != generation_) {
        piece.error = "the request body went to a later attempt";
        co_return piece;
      }
      if (pos < progress_->taken) {
        if (dropped_) {
          piece.error = "the request body is no longer kept for another attempt";
          co_return piece;
        }
        piece.data = copy_.substr(pos);
        pos = progress_->taken;
        co_return piece;
      }
      if (ended_) {
        if (error_.empty()) {
          piece.end = true;
          piece.trailers = trailers_;
        } else {
          piece.error = error_;
        }
        co_return piece;
      }
      if (pulling_) {
        if (!co_await changed_.wait()) {
          piece.error = "cancelled";
          co_return piece;
        }
        continue;
      }
      auto keep = shared_from_this();
      struct Pulling {  // released however the pull ends (it may throw when cancelled)
        ReplayBody& body;
        explicit Pulling(ReplayBody& b) : body(b) { body.pulling_ = true; }
        ~Pulling() {
          body.pulling_ = false;
          body.changed_.notify();
        }
      };
      {
        Pulling pulling(*this);
        auto inner = inner_;
        piece = co_await inner->next();
      }
      auto state = co_await asio::this_coro::cancellation_state;
      if (state.cancelled() != asio::cancellation_type::none && piece.data.empty() && !piece.end) {
        co_return piece;  // an interrupted pull (its attempt went away), not the body's end
      }
      progress_->taken += piece.data.size();
      pos = progress_->taken;
      if (!dropped_ && (!committed_ || !whole_.empty())) {
        copy_ += piece.data;
        if (copy_.size() > limit_) drop();
      } else if (!dropped_ && whole_.empty()) {
        drop();
      }
      if (piece.end || !piece.error.empty()) finish(piece);
      co_return piece;
    }
  }

  void finish(const BodySource::Piece& last) {
    ended_ = true;
    progress_->ended_at = Clock::now();
    progress_->ended.notify();
    error_ = last.error;
    inner_.reset();
    if (!error_.empty()) {
      whole_.clear();
      return;
    }
    trailers_ = last.trailers;
    auto waiting = std::move(whole_);
    whole_.clear();
    for (auto& f : waiting) f(copy_, trailers_);
    if (committed_) drop();
  }

  void drop() {
    dropped_ = true;
    whole_.clear();
    std::string().swap(copy_);
  }

  std::shared_ptr<BodySource> inner_;
  size_t limit_;
  async::Event changed_;  // a pull ended
  std::shared_ptr<RequestProgress> progress_;
  std::string copy_;  // bytes [0, progress_->taken) while not dropped
  http::HeaderList trailers_;
  std::string error_;
  std::vector<Whole> whole_;
  uint64_t generation_ = 0;  // the newest reader's
  bool pulling_ = false;
  bool ended_ = false;
  bool committed_ = false;
  bool dropped_ = false;
};

// One upstream attempt, run on its own task so that a deadline can abandon it.
struct AttemptSlot {
  explicit AttemptSlot(asio::any_io_executor ex)
      : timer(ex, Clock::time_point::max()), gave_up(ex) {}

  std::shared_ptr<Upstream> upstream;
  std::shared_ptr<Destination> dest;
  EndpointTarget target;
  TunnelInfo info;
  std::shared_ptr<const Request> request;  // shared by the attempts (and retries) of a request
  std::shared_ptr<ReplayBody> body;        // its streamed body, if any (a reader per attempt)
  Limits limits;
  bool http2 = false;
  bool counted_connection = false;  // a new connection was admitted for it

  asio::steady_timer timer;  // cancelled when the attempt is done
  async::Event gave_up;      // notified by abandon(): an HTTP/2 request still waiting is reset
  bool done = false;
  bool abandoned = false;       // deadline passed or the caller went away
  bool connect_failed = false;  // no stream to the endpoint
  std::optional<Result<Response>> result;
  IdleHttp1 h1;  // the HTTP/1.1 client in use; kept after a 101 for the relay

  // A client still held (a 101 whose relay never ran: the downstream went away, or the answer
  // could not be written) gives its connection's place back.
  ~AttemptSlot();

  void abandon() {
    abandoned = true;
    gave_up.notify();
    if (h1.client) h1.client->abort();
  }
};

void drop_client(IdleHttp1& idle) {
  if (idle.client) idle.client->abort();
  idle.client.reset();
  if (idle.on_close) {
    auto f = std::move(idle.on_close);
    idle.on_close = nullptr;
    f();
  }
}

AttemptSlot::~AttemptSlot() { drop_client(h1); }

IdleHttp1 new_http1(Duplex stream, const AttemptSlot& slot) {
  IdleHttp1 idle;
  idle.client = std::make_unique<http1::Http1Client>(std::move(stream), slot.limits);
  if (slot.counted_connection) {
    std::weak_ptr<Destination> weak = slot.dest;
    idle.on_close = [weak] {
      if (auto d = weak.lock()) {
        d->limiter.connection_closed();
        d->freed.notify();
      }
    };
  }
  return idle;
}

// A streamed HTTP/1.1 response body, which holds its connection until it has ended: then the
// connection goes back to the pool when it can carry another request, else it is closed (and
// gives its place in the pool accounting back), as it is when the body is dropped early.
class ConnectionHeldBody final : public BodySource {
 public:
  ConnectionHeldBody(std::shared_ptr<BodySource> inner, IdleHttp1 h1,
                     std::shared_ptr<Upstream> upstream, std::string key,
                     std::shared_ptr<Destination> dest)
      : inner_(std::move(inner)),
        h1_(std::move(h1)),
        upstream_(std::move(upstream)),
        key_(std::move(key)),
        dest_(std::move(dest)) {}
  ~ConnectionHeldBody() override {
    inner_.reset();
    drop_client(h1_);
  }
  awaitable<Piece> next() override {
    auto keep = inner_;
    if (!keep) {
      Piece ended;
      ended.error = "body already ended";
      co_return ended;
    }
    Piece piece = co_await keep->next();
    if (piece.end && h1_.client && h1_.client->reusable() &&
        dest_->limiter.connection_reusable(h1_.served)) {
      inner_.reset();
      upstream_->put_idle_http1(key_, std::exchange(h1_, IdleHttp1{}));
      dest_->freed.notify();
    } else if (piece.end || !piece.error.empty()) {
      inner_.reset();
      drop_client(h1_);
    }
    co_return piece;
  }
  std::chrono::steady_clock::time_point deadline() const override {
    return inner_ ? inner_->deadline() : std::chrono::steady_clock::time_point::max();
  }

 private:
  std::shared_ptr<BodySource> inner_;
  IdleHttp1 h1_;
  std::shared_ptr<Upstream> upstream_;
  std::string key_;
  std::shared_ptr<Destination> dest_;
};

// True when this coroutine was asked to stop (an attempt run inline by a request that is being
// cancelled must not open a new connection).
awaitable<bool> cancelled() {
  auto state = co_await asio::this_coro::cancellation_state;
  co_return state.cancelled() != asio::cancellation_type::none;
}

// The attempt's request on its HTTP/1.1 client; a streamed body is read through a reader of
// its own (a copy of the request carries it).
awaitable<Result<Response>> send_http1(AttemptSlot& slot) {
  if (!slot.body) co_return co_await slot.h1.client->send(*slot.request);
  Request request = *slot.request;
  request.source = slot.body->reader();
  co_return co_await slot.h1.client->send(request);
}

awaitable<void> run_attempt(std::shared_ptr<AttemptSlot> slot) {
  auto finish = [&] {
    slot->done = true;
    slot->timer.cancel();
  };
  auto key = slot->target.key();
  if (slot->http2) {
    auto client = co_await slot->upstream->http2_client(slot->target, slot->info);
    if (!client) {
      slot->connect_failed = true;
      slot->result = tl::unexpected(client.error());
    } else if (!slot->abandoned) {
      // An abandoned attempt (per-try timeout, the request gone) cancels its send, which
      // resets the stream instead of leaving it open upstream, unseen and uncounted.
      using namespace asio::experimental::awaitable_operators;
      Request request = *slot->request;
      if (slot->body) request.source = slot->body->reader();
      auto sent = co_await ((*client)->send(std::move(request)) || slot->gave_up.wait());
      if (sent.index() == 0) {
        slot->result = std::move(std::get<0>(sent));
      } else {
        slot->result = Result<Response>(fail("HTTP/2 request abandoned"));
      }
    }
    finish();
    co_return;
  }
  bool reused = false;
  // A connection's place in the pool not yet handed to a client (whose on_close gives it back)
  // is given back however this ends: a failed open, or an open that throws because the
  // request was cancelled meanwhile.
  struct PlaceBack {
    std::function<void()> give;
    ~PlaceBack() {
      if (give) give();
    }
  };
  auto give_place_back = [dest = slot->dest] {
    dest->limiter.connection_closed();
    dest->freed.notify();
  };
  // Admitted for a new connection: open one (the pool counted it), else reuse an idle one.
  std::optional<IdleHttp1> idle;
  if (!slot->counted_connection) idle = slot->upstream->take_idle_http1(key);
  if (idle) {
    slot->h1 = std::move(*idle);
    reused = true;
  } else {
    PlaceBack place{slot->counted_connection ? std::function<void()>(give_place_back) : nullptr};
    auto stream = co_await slot->upstream->open(slot->target, slot->info);
    if (!stream) {
      slot->connect_failed = true;
      slot->result = tl::unexpected(stream.error());
      finish();
      co_return;
    }
    place.give = nullptr;  // new_http1's on_close takes it over
    slot->h1 = new_http1(std::move(*stream), *slot);
  }
  if (slot->abandoned) {
    drop_client(slot->h1);
    finish();
    co_return;
  }
  slot->result = co_await send_http1(*slot);
  // (A streamed body goes again only while it is kept whole for another attempt.)
  bool again =
      !*slot->result && reused && !slot->abandoned && (!slot->body || slot->body->replayable());
  if (again) again = !(co_await cancelled());
  if (again) {
    // A kept-alive connection the endpoint had closed meanwhile: once more on a new one, which
    // takes over the old one's place in the pool accounting.
    PlaceBack place{std::move(slot->h1.on_close)};
    slot->h1.on_close = nullptr;
    drop_client(slot->h1);
    auto stream = co_await slot->upstream->open(slot->target, slot->info);
    if (!stream) {
      slot->connect_failed = true;
      slot->result = tl::unexpected(stream.error());
      finish();
      co_return;
    }
    slot->h1 = new_http1(std::move(*stream), *slot);
    slot->h1.on_close = std::exchange(place.give, nullptr);
    if (!slot->abandoned) slot->result = co_await send_http1(*slot);
  }
  bool upgraded = *slot->result && (*slot->result)->status == 101;
  if (!upgraded) {
    ++slot->h1.served;
    if (*slot->result && (*slot->result)->source) {
      // A body too long to buffer: the connection goes with it.
      auto& res = **slot->result;
      res.source = std::make_shared<ConnectionHeldBody>(std::move(res.source),
                                                        std::exchange(slot->h1, IdleHttp1{}),
                                                        slot->upstream, key, slot->dest);
      if (slot->abandoned) {  // (its body is dropped, and the connection with it)
        slot->result = Result<Response>(fail("upstream attempt abandoned"));
      }
    } else if (*slot->result && slot->h1.client->reusable() && !slot->abandoned &&
               slot->dest->limiter.connection_reusable(slot->h1.served)) {
      slot->upstream->put_idle_http1(key, std::move(slot->h1));
      slot->h1 = {};
      slot->dest->freed.notify();
    } else {
      drop_client(slot->h1);
    }
  }
  finish();
}

// Waits for the attempt until `deadline`; abandons it then (or when this coroutine is
// cancelled). True when it completed.
awaitable<bool> await_attempt(std::shared_ptr<AttemptSlot> slot,
                              std::optional<Clock::time_point> deadline) {
  if (!slot->done) {
    slot->timer.expires_at(deadline.value_or(Clock::time_point::max()));
    co_await slot->timer.async_wait(kTuple);
    // Not done: the deadline passed, or this coroutine was cancelled (the caller went away).
    if (!slot->done) {
      slot->abandon();
      co_return false;
    }
  }
  co_return true;
}

// An attempt of a request whose body is still streaming: not timed until the body has ended
// (the timeouts start then, as in Envoy), then as await_attempt until `deadline_from(end)`.
awaitable<bool> await_streamed_attempt(
    std::shared_ptr<AttemptSlot> slot, std::shared_ptr<RequestProgress> progress,
    std::function<std::optional<Clock::time_point>(Clock::time_point)> deadline_from) {
  using namespace asio::experimental::awaitable_operators;
  while (!slot->done && !progress->ended_at) {
    slot->timer.expires_at(Clock::time_point::max());  // run_attempt cancels it when done
    co_await (slot->timer.async_wait(kTuple) || progress->ended.wait());
    auto state = co_await asio::this_coro::cancellation_state;
    if (!slot->done && state.cancelled() != asio::cancellation_type::none) {
      slot->abandon();  // the caller went away
      co_return false;
    }
  }
  if (slot->done) co_return true;
  co_return co_await await_attempt(slot, deadline_from(*progress->ended_at));
}

// How an attempt went, for outlier detection (and its metrics): the pipeline's report().
using ReportOutcome = std::function<void(Destination&, const std::string&, const AttemptResult&)>;

awaitable<void> run_mirror(async::TaskGroup& tasks, std::shared_ptr<AttemptSlot> slot,
                           ReportOutcome report) {
  tasks.spawn(run_attempt(slot), "waypoint mirror attempt");
  // On a timeout the attempt is abandoned (aborted); run_attempt drops its client itself.
  bool completed = co_await await_attempt(slot, Clock::now() + kMirrorTimeout);
  const auto key = slot->target.key();
  if (completed && slot->result && *slot->result) {
    report(*slot->dest, key, AttemptResult::response((**slot->result).status));
  } else {
    report(*slot->dest, key, AttemptResult::failure(AttemptResult::Kind::kReset));
  }
}

awaitable<void> relay_upgraded(std::shared_ptr<AttemptSlot> slot, Duplex downstream,
                               std::string already_read) {
  Duplex upstream = slot->h1.client->stream();
  std::string extra = slot->h1.client->take_already_read();
  if (!already_read.empty()) {
    if (auto ec = co_await upstream.write_all(asio::buffer(already_read)); ec) {
      drop_client(slot->h1);
      co_return;
    }
  }
  if (!extra.empty()) {
    if (auto ec = co_await downstream.write_all(asio::buffer(extra)); ec) {
      drop_client(slot->h1);
      co_return;
    }
  }
  std::atomic<uint64_t> up{0}, down{0};
  co_await net::copy_bidirectional(downstream, upstream, up, down);
  drop_client(slot->h1);
}

awaitable<void> relay_tcp_streams(Duplex downstream, Duplex upstream, TcpRecord& rec) {
  std::atomic<uint64_t> up{0}, down{0};
  auto result = co_await net::copy_bidirectional(downstream, upstream, up, down);
  rec.bytes_received = up.load();
  rec.bytes_sent = down.load();
  if (result.error && result.error != asio::error::operation_aborted) {
    rec.error = result.error.message();
  }
}

Response overflow_response() {
  auto r = local_response(resilience::kOverflowStatus,
                          "upstream connect error or disconnect/reset before headers. reset "
                          "reason: overflow");
  r.headers.push_back({"x-envoy-overloaded", "true"});
  return r;
}

// The local answer for an attempt that produced no response.
Response failure_response(const AttemptResult& r, RequestRecord& rec) {
  switch (r.kind) {
    case AttemptResult::Kind::kPerTryTimeout:
      rec.add_flag("UT");
      return local_response(504, "upstream request timeout");
    case AttemptResult::Kind::kConnectFailure:
      rec.add_flag("UF");
      return local_response(503,
                            "upstream connect error or disconnect/reset before headers. reset "
                            "reason: connection failure");
    case AttemptResult::Kind::kRefusedStream:
      rec.add_flag("UF");
      return local_response(503,
                            "upstream connect error or disconnect/reset before headers. reset "
                            "reason: remote refused stream reset");
    default:
      rec.add_flag("UC");
      return local_response(503,
                            "upstream connect error or disconnect/reset before headers. reset "
                            "reason: connection termination");
  }
}

std::optional<int> grpc_status_in(const http::HeaderList& fields) {
  auto v = http::find_header(fields, "grpc-status");
  if (!v) return std::nullopt;
  int out = 0;
  for (char c : *v) {
    if (c < '0' || c > '9') return std::nullopt;
    out = out * 10 + (c - '0');
  }
  return out;
}

std::optional<int> grpc_status_of(const Response& r) {
  auto in_trailers = grpc_status_in(r.trailers);
  return in_trailers ? in_trailers : grpc_status_in(r.headers);
}

// What a streamed response's body takes over from the attempt that produced it.
struct StreamedEnd {
  // The route timeout's deadline, when its clock had started by the head.
  std::optional<Clock::time_point> deadline;
  // Else the route timeout, to start once the request body has ended (`progress`).
  std::optional<config::Duration> route_timeout;
  std::function<void()> on_end;                // gives the attempt's books back
  std::function<void()> on_upstream_failure;   // tells outlier detection of a mid-body failure
  std::shared_ptr<RequestProgress> progress;   // a streamed request's
  std::shared_ptr<const DownstreamGone> gone;  // how the downstream went away, if it did
};

// A streamed response's body on its way downstream, with the request's books: the metric
// sample and the access log line are written when the body ends (or fails, or is given up), with
// the bytes that passed and the trailers' grpc-status, and the attempt's place in the pool and
// the load balancer is given back then (`on_end`). The route timeout still bounds the whole
// response (for a streamed request, from the end of its body). `alive` is the pipeline's: a body
// outliving it touches nothing.
class RecordedBody final : public BodySource {
 public:
  using Finish = void (*)(void* pipeline, RequestRecord& rec);
  RecordedBody(std::shared_ptr<BodySource> inner, RequestRecord rec, StreamedEnd end,
               std::weak_ptr<void> alive, void* pipeline, Finish finish)
      : inner_(std::move(inner)),
        rec_(std::move(rec)),
        end_(std::move(end)),
        alive_(std::move(alive)),
        pipeline_(pipeline),
        finish_(finish) {}
  ~RecordedBody() override {
    if (!done_) give_up();
  }

  Clock::time_point deadline() const override {
    return current_deadline().value_or(Clock::time_point::max());
  }
  // Also returns at the route deadline when it starts only during the wait (the request body
  // ended meanwhile), so that a sender held back by its peer pulls and answers the timeout.
  awaitable<void> until_done() override {
    using namespace asio::experimental::awaitable_operators;
    auto inner = inner_;
    if (!inner) co_return co_await BodySource::until_done();
    if (deadline_may_come()) {
      auto progress = end_.progress;
      auto woke = co_await (inner->until_done() || progress->ended.wait());
      if (woke.index() == 0 || !std::get<1>(woke)) co_return;  // done, or cancelled
      if (auto deadline = current_deadline()) {
        asio::steady_timer at(co_await asio::this_coro::executor, *deadline);
        co_await (inner->until_done() || at.async_wait(kTuple));
        co_return;
      }
    }
    co_await inner->until_done();
  }

  awaitable<Piece> next() override {
    using namespace asio::experimental::awaitable_operators;
    Piece piece;
    if (done_) {
      piece.error = "body already ended";
      co_return piece;
    }
    bool timed_out = false;
    for (;;) {
      const auto deadline = current_deadline();
      if (deadline && Clock::now() >= *deadline) {
        timed_out = true;
      } else if (deadline) {
        auto got = co_await async::with_timeout(inner_->next(), *deadline - Clock::now());
        if (got) {
          piece = std::move(*got);
        } else {
          timed_out = true;
        }
      } else if (deadline_may_come()) {
        // The route timeout starts when the request body ends: wait for that too (a pull
        // cancelled then takes nothing).
        auto got = co_await (inner_->next() || end_.progress->ended.wait());
        if (got.index() == 1) continue;
        piece = std::get<0>(std::move(got));
      } else {
        piece = co_await inner_->next();
      }
      break;
    }
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) {
      give_up();  // the sender stopped waiting: its stream ended
      co_return piece;
    }
    if (timed_out) {
      piece.error = "upstream request timeout";
      rec_.add_flag("UT");
    } else if (!piece.error.empty()) {
      // Envoy's flags for an upstream that failed in mid-body: the stream reset (UR), or its
      // connection gone (UC).
      // Outlier detection hears of it too (Envoy reports an upstream reset at any point), unless
      // the reset was ours because the downstream went away first.
      const bool stream_reset = piece.error.starts_with("stream ");
      // ("HTTP/2 connection closed" is our own close, in a drain: no upstream failure. An
      // HTTP/1.1 body fails only with its connection.)
      const bool connection_gone = piece.error.starts_with("HTTP/2 connection ended") ||
                                   piece.error.starts_with("upstream connection closed") ||
                                   piece.error.starts_with("reading upstream response");
      if (end_.gone && end_.gone->happened()) {
        // The reset was ours, because the downstream went away first: logged as that.
        if (!end_.gone->flag.empty()) rec_.add_flag(end_.gone->flag);
        piece.error = end_.gone->why;
      } else if (stream_reset || connection_gone) {
        rec_.add_flag(stream_reset ? "UR" : "UC");
        if (end_.on_upstream_failure && !alive_.expired()) end_.on_upstream_failure();
      }
    }
    rec_.response_bytes += piece.data.size();
    if (piece.end) {
      if (auto g = grpc_status_in(piece.trailers)) rec_.grpc_status = std::to_string(*g);
      record();
    } else if (!piece.error.empty()) {
      rec_.error = piece.error;
      record();
    }
    co_return piece;
  }

 private:
  std::optional<Clock::time_point> current_deadline() const {
    if (end_.deadline) return end_.deadline;
    if (end_.route_timeout && end_.progress && end_.progress->ended_at) {
      return *end_.progress->ended_at + *end_.route_timeout;
    }
    return std::nullopt;
  }
  bool deadline_may_come() const {
    return !end_.deadline && end_.route_timeout && end_.progress && !end_.progress->ended_at;
  }
  // The downstream stopped taking the body: the server says why (the stream reset, the
  // connection gone, the stream idle timeout), else its connection is taken to have ended.
  void give_up() {
    if (end_.gone && end_.gone->happened()) {
      if (!end_.gone->flag.empty()) rec_.add_flag(end_.gone->flag);
      rec_.error = end_.gone->why;
    } else {
      rec_.add_flag("DC");
      rec_.error = "the downstream gave up the response body";
    }
    record();
  }
  void record() {
    done_ = true;
    inner_.reset();  // an upstream stream not read to its end is reset now
    if (end_.progress) rec_.request_bytes = end_.progress->bytes();
    if (alive_.expired()) return;
    if (end_.on_end) end_.on_end();
    finish_(pipeline_, rec_);
  }

  std::shared_ptr<BodySource> inner_;
  RequestRecord rec_;
  StreamedEnd end_;
  std::weak_ptr<void> alive_;
  void* pipeline_;
  Finish finish_;
  bool done_ = false;
};

}  // namespace

struct Pipeline::Impl {
  Impl(WaypointContext& c, asio::any_io_executor e, async::TaskGroup& t)
      : ctx(c),
        ex(e),
        tasks(t),
        upstream(std::make_shared<Upstream>(c, e, t)),
        rng(SeededRandom::from_entropy()) {}

  WaypointContext& ctx;
  asio::any_io_executor ex;
  async::TaskGroup& tasks;
  std::shared_ptr<Upstream> upstream;
  SeededRandom rng;
  std::unordered_map<std::string, std::shared_ptr<Destination>> destinations;
  RequestSeriesCache series_cache;
  std::shared_ptr<void> alive = std::make_shared<char>(0);  // RecordedBody's check

  // The state of `host:port` under the config generation `cfg`.
  // `subset`: a DestinationRule subset of `host` (one the rule has), "" for the whole service.
  std::shared_ptr<Destination> destination(const state::ConfigSnapshot& cfg,
                                           const std::string& host, uint16_t port,
                                           const std::string& subset = {}) {
    std::string key;
    key.reserve(host.size() + 6 + subset.size());
    key.append(host).append(":");
    append_decimal(key, port);
    if (!subset.empty()) key.append("/").append(subset);
    auto& d = destinations[key];
    if (!d || d->generation != cfg.generation) {
      config::TrafficPolicy tp;
      Members members;
      if (cfg.config) {
        if (const auto* p = cfg.config->destination(host)) {
          const auto* sub = subset.empty() ? nullptr : p->subset(subset);
          tp = p->for_port(port, sub);
          if (sub) members = sub->members;
        }
      }
      if (d && d->policy == tp) {
        if (cfg.generation > d->generation) d->members = std::move(members);
        d->generation = std::max(d->generation, cfg.generation);
      } else if (d && d->generation > cfg.generation) {
        // A request that began under an older configuration (held by a fault's delay) and
        // whose policy is gone: its own state, so the newer one stays.
        return std::make_shared<Destination>(ex, host, port, cfg.generation, std::move(tp), subset,
                                             std::move(members));
      } else {
        d = std::make_shared<Destination>(ex, host, port, cfg.generation, std::move(tp), subset,
                                          std::move(members));
      }
    }
    return d;
  }

  // Keeps, of a subset's destination, only the endpoints of its member workloads.
  static void keep_members(const Destination& d, std::vector<EndpointTarget>& endpoints) {
    if (d.subset.empty()) return;
    std::erase_if(endpoints, [&](const EndpointTarget& e) {
      return !d.members || !e.workload ||
             !d.members->contains(e.workload->namespace_name + "/" + e.workload->name);
    });
  }

  // The endpoints of service `svc` for `port` in snapshot `st`, from `d`'s cache while the
  // snapshot is the same (a snapshot never changes); on a new one resolved again, and `d`'s hosts
  // follow them.
  // (`like` only chooses the address family of dual-stack endpoints.)
  static std::shared_ptr<const std::vector<EndpointTarget>> endpoints_of(
      Destination& d, const std::shared_ptr<const zt::state::State>& st,
      const std::shared_ptr<const zt::state::Service>& svc, uint16_t port,
      const asio::ip::address& like) {
    if (d.endpoints && same_object(d.endpoints_state, st) &&
        same_object(d.endpoints_service, svc) && d.endpoints_port == port &&
        d.endpoints_v4 == like.is_v4() && d.endpoints_members == d.members) {
      return d.endpoints;
    }
    auto resolved =
        std::make_shared<std::vector<EndpointTarget>>(service_endpoints(*st, *svc, port, like));
    keep_members(d, *resolved);
    set_hosts(d, *resolved);
    d.endpoints = resolved;
    d.endpoints_state = st;
    d.endpoints_service = svc;
    d.endpoints_members = d.members;
    d.endpoints_port = port;
    d.endpoints_v4 = like.is_v4();
    return resolved;
  }

  // Makes `endpoints` the hosts `pick` chooses among (indexes into `endpoints`). Other hosts than
  // the cached endpoints' drop the cache.
  static void set_hosts(Destination& d, const std::vector<EndpointTarget>& endpoints) {
    std::vector<std::string> keys;
    keys.reserve(endpoints.size());
    for (const auto& e : endpoints) keys.push_back(e.key());
    if (keys == d.keys && d.picker) return;
    d.endpoints.reset();
    d.keys = keys;
    if (d.outlier) d.outlier->set_hosts(keys);
    d.picker.emplace(d.policy.load_balancer, keys);
  }

  void sweep(Destination& d, Clock::time_point now) {
    if (!d.outlier) return;
    if (now - d.last_sweep >= d.outlier->config().interval) {
      d.outlier->sweep(now);
      d.last_sweep = now;
    }
  }

  std::optional<size_t> pick(Destination& d, const http::RequestHead& head,
                             const std::string& source_ip) {
    std::vector<resilience::HostView> hosts(d.keys.size());
    bool panic = d.outlier && d.outlier->panic();
    for (size_t i = 0; i < d.keys.size(); ++i) {
      hosts[i].available = !d.outlier || panic || !d.outlier->ejected(d.keys[i]);
      auto it = d.active.find(d.keys[i]);
      hosts[i].active_requests = it == d.active.end() ? 0 : it->second;
    }
    return d.picker->pick(hosts, head, source_ip, rng);
  }

  // Endpoints of service `svc` for `port`, with the identities their ztunnels may present.
  static std::vector<EndpointTarget> service_endpoints(const zt::state::State& st,
                                                       const zt::state::Service& svc, uint16_t port,
                                                       const asio::ip::address& like) {
    std::vector<EndpointTarget> out;
    for (auto& e : zt::state::usable_service_endpoints(st, svc, port, {}, like)) {
      EndpointTarget t{.workload = e.workload, .ip = e.ip, .port = e.port, .identities = {}};
      t.identities.push_back(e.workload->identity());
      for (const auto& san : svc.subject_alt_names) t.identities.push_back(san);
      out.push_back(std::move(t));
    }
    return out;
  }

  void report(Destination& d, const std::string& key, const AttemptResult& r,
              Clock::time_point now) {
    if (!d.outlier) return;
    size_t before = d.outlier->ejected_count();
    if (r.kind == AttemptResult::Kind::kResponse) {
      d.outlier->report_status(key, r.status, now);
    } else {
      d.outlier->report_local_failure(key, now);
    }
    if (d.outlier->ejected_count() > before) {
      ctx.metrics.ejections.with({{"destination_service", d.host}}).inc();
      ZT_LOG_INFO("component=waypoint msg=\"outlier ejected\" endpoint={} destination={}:{}", key,
                  d.host, d.port);
    }
  }

  awaitable<Response> handle(std::shared_ptr<const StreamContext> stream, Request request) {
    RequestRecord rec;
    rec.src_addr = stream->source_ip.to_string();
    rec.src_identity = stream->peer_identity;
    if (stream->source_workload) rec.set_source(*stream->source_workload);
    rec.method = request.head.method;
    rec.path = request.head.target;
    rec.authority = request.head.authority;
    rec.protocol = http::is_grpc(request.head.headers) ? "grpc" : "http";
    const bool grpc_request_seen = http::is_native_grpc(request.head.headers);
    rec.request_bytes = request.body.size();
    const auto gone = request.gone;
    Response resp;
    StreamedEnd streamed;
    streamed.gone = gone;
    authz::HeaderEdits response_edits;
    http::HeaderList cors_headers;
    try {
      resp = co_await process(*stream, std::move(request), rec, streamed, response_edits,
                              cors_headers);
    } catch (const std::exception& e) {
      if (!gone || !gone->happened()) {  // (else: cancelled because the downstream went away)
        rec.error = e.what();
        ctx.metrics.error("pipeline", "exception");
      }
      resp = local_response(500, "internal error");
    }
    if (gone && gone->happened()) {
      // The downstream went away first: none of this answer reaches it. Recorded as Envoy
      // does: what the downstream got (0: nothing), and why.
      if (resp.source && streamed.on_end) streamed.on_end();
      resp.source.reset();  // resets the upstream stream
      rec.status = gone->status;
      if (!gone->flag.empty()) rec.add_flag(gone->flag);
      rec.error = gone->why;
      if (streamed.progress) rec.request_bytes = streamed.progress->bytes();
      rec.finish(ctx.metrics, &series_cache);
      co_return resp;
    }
    // (CORS's headers, then the provider's edits over them: Envoy's encoders run ext_authz's
    // after the CORS filter's)
    for (const auto& h : cors_headers) http::set_header(resp.headers, h.name, h.value);
    response_edits.apply(resp.headers);
    // (Logged as sent, 200 with its grpc-status and flags, as Envoy logs a gRPC local reply.)
    if (resp.local && grpc_request_seen) to_grpc_local_reply(resp);
    rec.status = resp.status;
    rec.response_bytes = resp.body.size();
    if (streamed.progress) rec.request_bytes = streamed.progress->bytes();
    if (auto g = grpc_status_of(resp)) rec.grpc_status = std::to_string(*g);
    if (resp.source) {
      // Recorded when the body ends.
      resp.source = std::make_shared<RecordedBody>(std::move(resp.source), std::move(rec),
                                                   std::move(streamed), alive, this,
                                                   [](void* self, RequestRecord& r) {
                                                     auto& impl = *static_cast<Impl*>(self);
                                                     r.finish(impl.ctx.metrics, &impl.series_cache);
                                                   });
      co_return resp;
    }
    rec.finish(ctx.metrics, &series_cache);
    co_return resp;
  }

  // `response_edits`: headers the answer gets (an ext_authz provider's on allow), whatever
  // answers.
  // `cors_headers`: the route's CORS headers, which every answer after the route's faults gets.
  awaitable<Response> process(const StreamContext& stream, Request request, RequestRecord& rec,
                              StreamedEnd& streamed, authz::HeaderEdits& response_edits,
                              http::HeaderList& cors_headers) {
    auto cfg = ctx.config.current();
    auto st = ctx.state.current();
    // The downstream went away (serve_http2 says how, then cancels this coroutine), or this
    // request is cancelled otherwise (a drain): nothing more is started for it (no mirror, no
    // attempt), no attempt is judged (a reset of our own is not the endpoint's failure) and
    // none is retried. Checked after every wait that holds books: once cancelled, the next
    // co_await would throw and leave them unbalanced.
    const auto cancellation = co_await asio::this_coro::cancellation_state;
    const auto gone = request.gone;
    auto stopped = [&] {
      return (gone && gone->happened()) ||
             cancellation.cancelled() != asio::cancellation_type::none;
    };
    auto stopped_answer = [&] {
      rec.error = gone && gone->happened() ? gone->why : "the request was cancelled";
      return local_response(503, rec.error);
    };

    // 1. Normalise: what policy checks is what is forwarded.
    auto normalized = authz::normalize_target(request.head.target, ctx.settings.path_normalization);
    if (!normalized) {
      rec.error = normalized.error().reason;
      co_return local_response(normalized.error().status, "Bad Request");
    }
    request.head.target = std::move(*normalized);
    rec.path = request.head.target;

    // The service addressed: what a request refused from here on (policy, no route, a redirect,
    // a backend with no service) is reported against, as Envoy reports the cluster its route
    // resolved to; a route to another backend replaces it below. (A target refused above, by
    // normalisation, stays "unknown", as Envoy's refusal before routing.)
    if (stream.service) rec.set_service(*stream.service);

    // 2. Request authentication (JWT), then L7 authorization, which sees its identity.
    std::string svc_ns = stream.service ? stream.service->namespace_name : std::string();
    std::string svc_name = stream.service ? stream.service->name : std::string();
    std::optional<authz::JwtIdentity> jwt;
    const auto authns =
        cfg->authentications_for(ctx.self.namespace_name, ctx.self.name, svc_ns, svc_name);
    if (!authns.empty()) {
      auto authn = authz::authenticate(authns, request.head, std::chrono::system_clock::now());
      if (authn.rejected) {
        rec.error = "JWT refused: " + authn.reason;
        auto r = local_response(401, authn.reason);
        r.headers.push_back(
            {"www-authenticate",
             fmt::format("Bearer realm=\"{}://{}{}\", error=\"invalid_token\"", request.head.scheme,
                         request.head.authority, request.head.path())});
        co_return r;
      }
      jwt = std::move(authn.identity);
    }
    auto policies = cfg->policies_for(ctx.self.namespace_name, ctx.self.name, svc_ns, svc_name);
    if (!policies.empty()) {
      authz::RequestInfo info;
      info.method = request.head.method;
      info.path = request.head.path();
      info.host = request.head.authority;
      info.destination_port = stream.port;
      info.headers = &request.head.headers;
      info.principal = stream.principal;
      if (jwt) {
        info.request_principal = jwt->principal;
        info.jwt = &*jwt;
      }
      info.source_ip = stream.source_ip;
      info.destination_ip = stream.destination_ip;
      // CUSTOM first: its provider is asked once, and what it allows DENY and ALLOW still see
      // (with the headers it set).
      bool custom_allowed = false;
      if (const auto* custom = authz::matching_custom_policy(policies, info)) {
        auto refused = co_await ask_provider(*cfg, *st, *custom, policies, stream, request, rec,
                                             response_edits);
        if (stopped()) co_return stopped_answer();
        if (refused) co_return std::move(*refused);
        custom_allowed = true;
      }
      auto decision =
          authz::evaluate(policies, info, [&](const authz::Policy&) { return custom_allowed; });
      if (!decision.allowed()) {
        rec.error = "RBAC: access denied" +
                    (decision.policy.empty() ? std::string() : " by " + decision.policy);
        co_return local_response(403, "RBAC: access denied");
      }
    }

    // 3. Route.
    const config::RouteRule* rule = nullptr;
    const config::BackendRef* chosen_backend = nullptr;
    std::optional<route::CorsDecision> cors;  // the route's CORS policy's, for its request
    std::vector<const config::RequestMirror*> mirrors;
    std::shared_ptr<const zt::state::Service> backend_svc;
    uint16_t backend_port = stream.port;
    std::string backend_host;
    std::string backend_subset;
    std::string cluster_domain = cfg->config ? cfg->config->cluster_domain : "cluster.local";
    if (stream.service) {
      const auto& svc = *stream.service;
      if (cfg->routes.attached(svc.hostname, stream.port)) {
        // (CORS looks at the request as it came, before the route's edits)
        route::CorsRequest cors_request{
            .method = request.head.method,
            .origin = http::joined_header(request.head.headers, "origin"),
            .request_method =
                http::joined_header(request.head.headers, "access-control-request-method"),
            .request_headers =
                http::joined_header(request.head.headers, "access-control-request-headers")};
        auto decision = route::route_request(cfg->routes, svc.hostname, stream.port, request.head,
                                             rng, stream.source_namespace);
        if (decision.selection.route) rec.route = decision.selection.route->key();
        // Istio's waypoint filters run Fault, then CORS, then the router: a forwarded route's
        // preflight is answered, and its CORS headers go on every answer, after the faults.
        // (Envoy's CORS filter has no policy for a redirect or a direct response.)
        if (decision.kind == route::RouteDecision::Kind::kForward &&
            decision.selection.rule->cors) {
          cors = route::decide_cors(*decision.selection.rule->cors, cors_request);
        }
        switch (decision.kind) {
          case route::RouteDecision::Kind::kNoRoute:
            rec.add_flag("NR");
            co_return local_response(404, "");
          case route::RouteDecision::Kind::kNoBackend:
            rec.error = "the route rule has no usable backend";
            co_return local_response(500, "");
          case route::RouteDecision::Kind::kRedirect: {
            Response r;
            r.local = true;  // (Envoy's redirect is a local reply: to gRPC, a status too)
            r.status = decision.redirect.status;
            r.headers.push_back({"location", decision.redirect.location});
            if (decision.selection.rule) {
              route::apply_response_filters(*decision.selection.rule, nullptr, r.headers);
            }
            co_return r;
          }
          case route::RouteDecision::Kind::kDirect: {
            // (Envoy answers a direct response as a local reply: to gRPC, a status too)
            const auto& direct = *decision.selection.rule->direct_response;
            Response r = local_response(direct.status, direct.body);
            route::apply_response_filters(*decision.selection.rule, nullptr, r.headers);
            co_return r;
          }
          case route::RouteDecision::Kind::kForward:
            break;
        }
        rule = decision.selection.rule;
        chosen_backend = decision.backend;
        mirrors = decision.mirrors;
        backend_host = decision.backend->hostname(cluster_domain);
        backend_svc = st->find_service_by_hostname(backend_host, decision.backend->namespace_name);
        backend_port = port_for(*decision.backend, backend_svc.get(), stream.port);
        backend_subset = decision.backend->subset;
        if (decision.original_target != request.head.target) {
          http::set_header(request.head.headers, "x-envoy-original-path", decision.original_target);
        }
      } else {
        rec.route = "default";
        backend_svc = stream.service;
        backend_host = svc.hostname;
      }
      if (backend_svc && backend_svc != stream.service) rec.set_service(*backend_svc);
    }

    // 4. Fault injection.
    if (rule && rule->fault) {
      auto fault = resilience::decide_fault(*rule->fault, rng);
      if (fault.delay) {
        rec.add_flag("DI");
        asio::steady_timer t(ex, *fault.delay);
        co_await t.async_wait(kTuple);
      }
      if (fault.aborts()) {
        rec.add_flag("FI");
        if (fault.abort_grpc_status) {
          Response r;
          r.status = 200;
          r.headers.push_back({"content-type", "application/grpc"});
          r.headers.push_back({"grpc-status", std::to_string(*fault.abort_grpc_status)});
          r.headers.push_back({"grpc-message", "fault filter abort"});
          co_return r;
        }
        co_return local_response(*fault.abort_status, "fault filter abort");
      }
    }
    if (cors) {  // (a forwarded route's: after its faults)
      if (cors->answer) co_return preflight_answer(*cors);
      cors_headers = std::move(cors->headers);
    }
    if (rule && !backend_svc) {  // (Envoy: no such cluster, from the router, after the filters)
      rec.add_flag("NC");
      rec.error = "no service " + backend_host;
      co_return local_response(500, "");
    }

    // 5. Endpoints.
    std::shared_ptr<const std::vector<EndpointTarget>> resolved;
    std::shared_ptr<Destination> dest;
    if (!backend_subset.empty()) {
      // (Envoy: no such cluster, 503 NC; its fault filter has run by then)
      const auto* rule = cfg->config ? cfg->config->destination(backend_host) : nullptr;
      if (!rule || !rule->subset(backend_subset)) {
        rec.add_flag("NC");
        rec.error = "no subset " + backend_subset + " of " + backend_host;
        co_return local_response(503, "");
      }
    }
    if (backend_svc) {
      dest = destination(*cfg, backend_host, backend_port, backend_subset);
      resolved = endpoints_of(*dest, st, backend_svc, backend_port, stream.destination_ip);
    } else if (stream.workload) {
      EndpointTarget t{.workload = stream.workload,
                       .ip = stream.destination_ip,
                       .port = stream.port,
                       .identities = {stream.workload->identity()}};
      resolved = std::make_shared<const std::vector<EndpointTarget>>(1, std::move(t));
      dest = destination(*cfg, net::format_endpoint(tcp::endpoint(stream.destination_ip, 0)),
                         stream.port);  // its hosts are set before the pick below
      rec.route = "workload";
    }
    if (!resolved || resolved->empty() || !dest) {
      rec.add_flag("UH");
      co_return local_response(503, std::string(kNoHealthyUpstream));
    }
    const std::vector<EndpointTarget>& endpoints = *resolved;

    // Forwarding headers.
    bool upgrade = http::find_header(request.head.headers, "upgrade").has_value();
    auto hop = http::strip_hop_by_hop(
        request.head.headers,
        {.keep_upgrade = upgrade, .keep_te_trailers = request.version == HttpVersion::kHttp2});
    upgrade = hop.upgrade.has_value();
    rec.request_id = http::ensure_request_id(request.head.headers, rng);
    http::ensure_traceparent(request.head.headers, rng);
    http::append_forwarded_for(request.head.headers, rec.src_addr);

    TunnelInfo tunnel{.client_ip = stream.source_ip,
                      .service_host = backend_svc ? backend_svc->hostname : std::string(),
                      .source = stream.source_workload};

    // A streamed request body (gRPC, or one too long to buffer): read by each attempt in turn
    // after what came with the request (Request::body), kept for a retry or a mirror up to
    // the retry buffer limit.
    std::shared_ptr<ReplayBody> body;
    if (request.source) {
      body = std::make_shared<ReplayBody>(ex, std::move(request.source),
                                          ctx.settings.limits.retry_buffer_bytes);
      streamed.progress = body->progress();
      streamed.progress->before = request.body.size();
    }
    struct CommitAtEnd {
      ReplayBody* body;
      ~CommitAtEnd() {
        if (body != nullptr) body->commit();
      }
    } commit_at_end{body.get()};

    if (stopped()) co_return stopped_answer();  // (during a fault's delay)

    // 9b. Mirrors: fire and forget, never delaying the primary. A streamed request is mirrored
    // once its body is whole, and only if it was kept.
    for (const auto* m : mirrors) {
      if (!body) {
        start_mirror(*st, *cfg, *m, request, tunnel, cluster_domain, backend_port);
        continue;
      }
      body->when_whole([this, guard = std::weak_ptr<void>(alive), cfg, st, m, head = request,
                        tunnel, cluster_domain,
                        backend_port](std::string whole, http::HeaderList trailers) {
        // (Not after a configuration change: the mirror was chosen by the old one's route.)
        if (guard.expired() || ctx.config.current()->generation != cfg->generation) return;
        Request copy = head;
        copy.body += whole;  // after what came with the request
        copy.trailers = std::move(trailers);
        start_mirror(*st, *cfg, *m, copy, tunnel, cluster_domain, backend_port);
      });
    }

    // 6-8. Attempts with retries and timeouts.
    config::RetryPolicy retry =
        rule ? rule->effective_retry() : config::RetryPolicy::istio_default();
    if (upgrade) retry = config::RetryPolicy::disabled();
    std::optional<config::Duration> timeout = rule ? rule->timeouts.request : std::nullopt;
    resilience::RetryState retries(retry, Clock::now(), timeout);
    // A streamed request's timeouts start once its body has ended (Envoy starts them when the
    // downstream request is complete): until then its attempts are not timed.
    const auto progress = body ? body->progress() : nullptr;
    bool clock_started = !progress;
    if (!clock_started) retries.pause_clock();
    auto start_clock = [&] {
      if (!clock_started && progress->ended_at) {
        retries.start_clock(*progress->ended_at);
        clock_started = true;
      }
      return clock_started;
    };
    const std::string& source_ip = rec.src_addr;
    // gRPC from HTTP/2 to HTTP/2 is answered as soon as the response head is in, its body
    // following as it arrives (server streaming); retries decide on the head alone, as in Envoy.
    // Mirrors (started above) keep their own copy.
    request.stream_response =
        !upgrade && request.version == HttpVersion::kHttp2 && http::is_grpc(request.head.headers);
    // Any other answer is streamed once it is too long to buffer (Envoy streams every body).
    if (!upgrade) request.stream_response_after = ctx.settings.limits.stream_bodies_after;
    // From here on the request is only read: every attempt shares it.
    const auto shared_request = std::make_shared<const Request>(std::move(request));
    const Request& req = *shared_request;
    bool in_retry = false;
    auto end_retry = [&] {
      if (in_retry) dest->limiter.finish_retry();
      in_retry = false;
    };
    auto stop = [&] {
      end_retry();
      return stopped_answer();
    };

    for (;;) {
      if (stopped()) co_return stop();
      auto now = Clock::now();
      sweep(*dest, now);
      // A mirror started above, or another request while this one waited, may have set other
      // hosts on the destination (dropping the cache); pick's index must point into `endpoints`.
      if (dest->endpoints != resolved) set_hosts(*dest, endpoints);
      auto index = pick(*dest, req.head, source_ip);
      if (!index) {
        end_retry();
        rec.add_flag("UH");
        co_return local_response(503, std::string(kNoHealthyUpstream));
      }
      const auto& ep = endpoints[*index];
      const std::string& key = ep.key();
      if (ep.workload) rec.set_destination(*ep.workload, ep.identities);
      rec.upstream = key;

      bool http2 = req.version == HttpVersion::kHttp2;
      bool idle = http2 ? upstream->has_http2(key) : upstream->has_idle_http1(key);
      auto admission = dest->limiter.admit(idle);
      if (admission == resilience::ConnectionPoolLimiter::Admission::kOverflow) {
        end_retry();
        rec.add_flag(resilience::kOverflowFlag);
        co_return overflow_response();
      }
      if (admission == resilience::ConnectionPoolLimiter::Admission::kQueued) {
        auto limit = retries.request_deadline().value_or(
            Clock::now() + dest->policy.connection_pool.connect_timeout);
        // Waits for a connection of this destination to become idle (or to close, making
        // room under maxConnections), then leaves the queue.
        bool dispatched = false;
        for (;;) {
          bool free_connection =
              (http2 ? upstream->has_http2(key) : upstream->has_idle_http1(key)) ||
              dest->limiter.connections() < dest->policy.connection_pool.max_connections;
          if (free_connection && dest->limiter.dispatch_pending()) {
            dispatched = true;
            break;
          }
          auto left = limit - Clock::now();
          if (left <= Clock::duration::zero()) break;
          auto woke = co_await async::with_timeout(dest->freed.wait(), left);
          // Cancelled (or woken and cancelled in the same turn): it leaves the queue below.
          if (woke && (!*woke || stopped())) break;
        }
        if (dispatched && !(http2 ? upstream->has_http2(key) : upstream->has_idle_http1(key))) {
          // A connection closed: this request opens the new one, counted like any other.
          dest->limiter.finish_request();
          admission = dest->limiter.admit(false);
          if (admission == resilience::ConnectionPoolLimiter::Admission::kQueued ||
              admission == resilience::ConnectionPoolLimiter::Admission::kOverflow) {
            dispatched = false;  // (a kQueued one leaves the queue below)
          }
        } else if (dispatched) {
          admission = resilience::ConnectionPoolLimiter::Admission::kReuseConnection;
        }
        if (!dispatched) {
          if (admission == resilience::ConnectionPoolLimiter::Admission::kQueued) {
            dest->limiter.cancel_pending();
          }
          if (stopped()) co_return stop();
          end_retry();
          rec.add_flag(resilience::kOverflowFlag);
          co_return overflow_response();
        }
      }

      if (stopped()) {
        // (Dispatched from the queue in the turn it was cancelled: its admission goes back.)
        dest->limiter.finish_request();
        if (admission == resilience::ConnectionPoolLimiter::Admission::kNewConnection) {
          dest->limiter.connection_closed();
        }
        dest->freed.notify();
        co_return stop();
      }

      auto slot = std::make_shared<AttemptSlot>(ex);
      slot->upstream = upstream;
      slot->dest = dest;
      slot->target = ep;
      slot->info = tunnel;
      slot->request = shared_request;
      slot->body = body;
      slot->limits = ctx.settings.limits;
      slot->http2 = http2;
      slot->counted_connection =
          admission == resilience::ConnectionPoolLimiter::Admission::kNewConnection && !http2;
      ++dest->active[key];
      ++rec.attempts;
      if (dest->attempts_counter == nullptr) {
        dest->attempts_counter =
            &ctx.metrics.upstream_attempts.with({{"destination_service", dest->host}});
      }
      dest->attempts_counter->inc();
      bool completed = true;
      const bool untimed_for_now = !start_clock() && retries.timed();
      const auto attempt_deadline = untimed_for_now ? std::nullopt : retries.attempt_deadline(now);
      if (untimed_for_now) {
        tasks.spawn(run_attempt(slot), "waypoint upstream attempt");
        completed = co_await await_streamed_attempt(slot, progress, [&](Clock::time_point end) {
          start_clock();
          return retries.attempt_deadline(std::max(now, end));
        });
      } else if (attempt_deadline) {
        // On its own task, so that the deadline can abandon it.
        tasks.spawn(run_attempt(slot), "waypoint upstream attempt");
        completed = co_await await_attempt(slot, attempt_deadline);
      } else {
        // No deadline: nothing would abandon it but a cancellation of this request, which
        // reaches it here as well. Inline: no task, no timer.
        try {
          co_await run_attempt(slot);
        } catch (const std::exception& e) {
          // Cancelled (a drain past its deadline) or failed: the books below are still kept.
          drop_client(slot->h1);
          slot->result = Result<Response>(failf("upstream attempt failed: {}", e.what()));
          slot->done = true;
        }
      }
      // The attempt's books: given back now, or, for a streamed response that becomes the
      // answer, when its body ends (a running stream is an active request to its endpoint).
      auto release = [dest, key = std::string(key), http2, admission] {
        if (--dest->active[key] == 0) dest->active.erase(key);
        dest->limiter.finish_request();
        if (http2 && admission == resilience::ConnectionPoolLimiter::Admission::kNewConnection) {
          dest->limiter.connection_closed();  // HTTP/2 shares one connection per endpoint
        }
        dest->freed.notify();
      };
      const bool streaming =
          completed && !slot->connect_failed && *slot->result && (*slot->result)->source != nullptr;
      // A streamed answer's books go with its body; until handed over they are given back on
      // any way out of this iteration (an exception included).
      std::function<void()> books = std::move(release);
      struct GiveBackUnlessHandedOver {
        std::function<void()>& books;
        ~GiveBackUnlessHandedOver() {
          if (books) std::exchange(books, nullptr)();
        }
      } give_back{books};
      // Dropping a streamed response that is not the answer resets its upstream stream.
      auto drop_streamed = [&] {
        if (!streaming) return;
        slot->result.reset();
        std::exchange(books, nullptr)();
      };
      if (!streaming) std::exchange(books, nullptr)();
      if (stopped()) {
        drop_streamed();
        co_return stop();
      }

      AttemptResult result;
      if (!completed) {
        result = AttemptResult::failure(AttemptResult::Kind::kPerTryTimeout);
      } else if (slot->connect_failed) {
        result = AttemptResult::failure(AttemptResult::Kind::kConnectFailure);
        rec.error = slot->result->error().describe();
      } else if (!*slot->result) {
        auto why = slot->result->error().describe();
        rec.error = why;
        result = AttemptResult::failure(why.find("REFUSED_STREAM") != std::string::npos
                                            ? AttemptResult::Kind::kRefusedStream
                                            : AttemptResult::Kind::kReset);
      } else {
        // An answer asked for as a stream is judged by its head alone (grpc-status in a
        // trailers-only answer), as Envoy does, whether or not its trailers happen to be in.
        const Response& r = **slot->result;
        result = AttemptResult::response(
            r.status, req.stream_response ? grpc_status_in(r.headers) : grpc_status_of(r));
        rec.error.clear();
      }
      auto after = Clock::now();
      report(*dest, key, result, after);
      auto decision = retries.on_attempt(result, after, rng);
      end_retry();
      using Kind = resilience::RetryState::Decision::Kind;
      // A streamed request body longer than the retry buffer (or failed) cannot be sent again.
      if (decision.kind == Kind::kRetry && body && !body->replayable()) {
        decision.kind = Kind::kDone;
      }
      if (decision.kind == Kind::kRetry) {
        if (!dest->limiter.try_start_retry()) {
          decision.kind = Kind::kDone;  // retry budget (maxRetries) spent: answer this one
        } else {
          drop_streamed();
          in_retry = true;
          asio::steady_timer backoff(ex, decision.backoff);
          co_await backoff.async_wait(kTuple);
          continue;
        }
      }
      if (decision.kind == Kind::kTimedOut) {
        drop_streamed();
        rec.add_flag("UT");
        co_return local_response(504, "upstream request timeout");
      }
      if (decision.kind == Kind::kExhausted) rec.add_flag("URX");
      if (result.kind != AttemptResult::Kind::kResponse) co_return failure_response(result, rec);

      Response resp = std::move(**slot->result);
      if (rule) route::apply_response_filters(*rule, chosen_backend, resp.headers);
      if (resp.status == 101 && slot->h1.client) {
        resp.upgraded = [slot](Duplex downstream, std::string already_read) {
          return relay_upgraded(slot, std::move(downstream), std::move(already_read));
        };
      }
      if (streaming) {
        // The route timeout bounds the body; the per-try timeout no longer applies once the
        // answer has started (Envoy lets it continue up to the route timeout).
        if (start_clock()) {
          streamed.deadline = retries.request_deadline();
        } else {
          streamed.route_timeout = timeout;  // from the request body's end
        }
        streamed.on_end = std::exchange(books, nullptr);
        streamed.on_upstream_failure = [this, dest, key = std::string(key)] {
          report(*dest, key, AttemptResult::failure(AttemptResult::Kind::kReset), Clock::now());
        };
      }
      co_return resp;
    }
  }

  // CUSTOM authorization: asks `custom`'s provider about `request` (applying what it allows to
  // the request's headers, and to `response_edits`). Returns the answer when the request is
  // refused: the provider's denial, statusOnError, or 403 when the provider is missing or the
  // workload's CUSTOM policies name more than one (as istiod denies what such a policy matches).
  awaitable<std::optional<Response>> ask_provider(
      const state::ConfigSnapshot& cfg, const zt::state::State& st, const authz::Policy& custom,
      const std::vector<authz::Policy>& policies, const StreamContext& stream, Request& request,
      RequestRecord& rec, authz::HeaderEdits& response_edits) {
    auto refuse = [&](std::string why) {
      rec.error = fmt::format("ext_authz: {} (CUSTOM policy {})", why, custom.key());
      return std::optional<Response>(local_response(403, "RBAC: access denied"));
    };
    for (const auto& p : policies) {
      if (p.action == authz::Action::kCustom && !p.dry_run && p.provider != custom.provider) {
        co_return refuse(
            fmt::format("CUSTOM policies name providers \"{}\" and \"{}\"; one "
                        "provider per workload",
                        custom.provider, p.provider));
      }
    }
    const auto* provider = cfg.provider(custom.provider);
    if (!provider) co_return refuse(fmt::format("no extension provider \"{}\"", custom.provider));

    // The body, when the provider wants it: up to its limit (a streamed one is read that far).
    authz::CheckInput input;
    if (provider->body) {
      // (bounded by what the waypoint buffers of any body; one piece past it shows it is longer)
      const size_t max =
          std::min<size_t>(provider->body->max_bytes, ctx.settings.limits.max_body_bytes);
      while (request.source && request.body.size() <= max) {
        auto piece = co_await request.source->next();
        if (!piece.error.empty()) {
          rec.error = "request body: " + piece.error;
          co_return local_response(400, "Bad Request");
        }
        request.body += piece.data;
        if (piece.end) {
          request.trailers = std::move(piece.trailers);
          request.source.reset();
        }
      }
      const bool longer = request.source || request.body.size() > max;
      if (longer && !provider->body->allow_partial) {
        rec.error = "ext_authz: the request body is longer than includeRequestBodyInCheck allows";
        co_return local_response(413, "Payload Too Large");
      }
      input.body_included = true;
      input.body_partial = longer;
      input.body = std::string_view(request.body).substr(0, max);
    }
    // The request's id, as the provider and the access log will know it.
    rec.request_id = http::ensure_request_id(request.head.headers, rng);
    input.head = &request.head;
    input.protocol = request.version == HttpVersion::kHttp2 ? "HTTP/2" : "HTTP/1.1";
    auto request_id = http::find_header(request.head.headers, "x-request-id");
    input.request_id = request_id.value_or("");
    input.source_ip = stream.source_ip;
    input.source_principal = stream.peer_identity;
    input.destination_ip = stream.destination_ip;
    input.destination_port = stream.port;
    input.destination_principal = ctx.self.identity.uri();
    input.now = std::chrono::system_clock::now();

    auto verdict = co_await check(cfg, st, *provider, input);
    switch (verdict.kind) {
      case authz::ExtAuthzVerdict::Kind::kAllowed:
        if (!verdict.reason.empty()) {
          rec.error = fmt::format("ext_authz failed open: {}", verdict.reason);
          ctx.metrics.error("ext_authz", "failed_open");
        }
        verdict.upstream.apply(request.head.headers);
        response_edits = std::move(verdict.downstream);
        co_return std::nullopt;
      case authz::ExtAuthzVerdict::Kind::kDenied:
        break;
      case authz::ExtAuthzVerdict::Kind::kError:
        ctx.metrics.error("ext_authz", "check_failed");
        break;
    }
    rec.add_flag("UAEX");
    rec.error = fmt::format("ext_authz {}: {} (CUSTOM policy {})", provider->name, verdict.reason,
                            custom.key());
    Response r = local_response(verdict.status, std::move(verdict.body));
    if (r.body.empty()) r.headers.clear();  // (no content-type for no content)
    // (the provider's headers replace the local answer's of the same names, content-type)
    authz::HeaderEdits{.set = std::move(verdict.headers)}.apply(r.headers);
    co_return r;
  }

  // One check at `provider`: an HTTP request, or a gRPC Check over HTTP/2, to an endpoint of its
  // service, within its timeout.
  awaitable<authz::ExtAuthzVerdict> check(const state::ConfigSnapshot& cfg,
                                          const zt::state::State& st,
                                          const authz::ExtAuthzProvider& provider,
                                          const authz::CheckInput& input) {
    const bool grpc = provider.kind == authz::ExtAuthzProvider::Kind::kGrpc;
    auto svc = provider.service_namespace.empty()
                   ? st.find_service_by_hostname(provider.service)
                   : st.find_service(provider.service_namespace, provider.service);
    if (!svc) co_return authz::check_failed(provider, "no service " + provider.service);
    auto endpoints = service_endpoints(st, *svc, provider.port, {});
    if (endpoints.empty()) {
      co_return authz::check_failed(
          provider, fmt::format("no endpoint of {} port {}", provider.service, provider.port));
    }
    auto dest = destination(cfg, svc->hostname, provider.port);
    set_hosts(*dest, endpoints);
    sweep(*dest, Clock::now());
    auto index = pick(*dest, *input.head, input.source_ip.to_string());
    if (!index) co_return authz::check_failed(provider, std::string(kNoHealthyUpstream));

    auto ask = std::make_shared<Request>();
    if (grpc) {
      ask->version = HttpVersion::kHttp2;
      ask->head.method = "POST";
      ask->head.target = std::string(authz::kCheckMethodPath);
      ask->head.authority = provider.service;
      ask->head.headers = {{"content-type", "application/grpc"}, {"te", "trailers"}};
      ask->body = zt::grpc::frame_message(authz::grpc_check_request(provider, input));
    } else {
      ask->head = authz::http_check_head(provider, input);
      ask->body = std::string(input.body);
    }
    auto slot = std::make_shared<AttemptSlot>(ex);
    slot->upstream = upstream;
    slot->dest = dest;
    slot->target = endpoints[*index];
    // (the check is the waypoint's own request: it is its client)
    slot->info =
        TunnelInfo{.client_ip = ctx.self.ips.empty() ? input.source_ip : ctx.self.ips.front(),
                   .service_host = svc->hostname};
    slot->request = std::move(ask);
    slot->limits = ctx.settings.limits;
    slot->http2 = grpc;
    tasks.spawn(run_attempt(slot), "waypoint ext_authz check");
    const auto deadline = Clock::now() + provider.timeout;
    const bool completed = co_await await_attempt(slot, deadline);
    const auto& key = slot->target.key();
    if (!completed) {
      // (the provider's own failure only when its time ran out, not when the caller left)
      if (Clock::now() >= deadline) {
        report(*dest, key, AttemptResult::failure(AttemptResult::Kind::kPerTryTimeout),
               Clock::now());
      }
      co_return authz::check_failed(
          provider, fmt::format("no answer from {} within {} ms", key, provider.timeout.count()));
    }
    if (!*slot->result) {
      report(*dest, key,
             AttemptResult::failure(slot->connect_failed ? AttemptResult::Kind::kConnectFailure
                                                         : AttemptResult::Kind::kReset),
             Clock::now());
      co_return authz::check_failed(provider,
                                    fmt::format("{}: {}", key, slot->result->error().describe()));
    }
    Response& answer = **slot->result;
    report(*dest, key, AttemptResult::response(answer.status), Clock::now());
    if (!grpc) {
      co_return authz::read_http_check_answer(provider, answer.status, answer.headers,
                                              std::move(answer.body));
    }
    auto status = grpc_status_of(answer);
    if (answer.status != 200 || !status || *status != 0) {
      co_return authz::check_failed(
          provider, fmt::format("the Check call failed (HTTP {}, grpc-status {})", answer.status,
                                status ? std::to_string(*status) : std::string("none")));
    }
    auto message = zt::grpc::single_message(answer.body);
    if (!message) {
      co_return authz::check_failed(provider, "the Check answer is not one gRPC message");
    }
    auto verdict = authz::read_grpc_check_answer(*message);
    if (verdict.kind == authz::ExtAuthzVerdict::Kind::kError) {
      co_return authz::check_failed(provider, std::move(verdict.reason));
    }
    co_return verdict;
  }

  void start_mirror(const zt::state::State& st, const state::ConfigSnapshot& cfg,
                    const config::RequestMirror& mirror, const Request& request,
                    const TunnelInfo& tunnel, const std::string& cluster_domain,
                    uint16_t default_port) {
    auto host = mirror.backend.hostname(cluster_domain);
    auto svc = st.find_service_by_hostname(host, mirror.backend.namespace_name);
    if (!svc) return;
    const uint16_t port = port_for(mirror.backend, svc.get(), default_port);
    if (!mirror.backend.subset.empty()) {
      const auto* rule = cfg.config ? cfg.config->destination(host) : nullptr;
      if (!rule || !rule->subset(mirror.backend.subset)) return;
    }
    auto dest = destination(cfg, host, port, mirror.backend.subset);
    auto endpoints = service_endpoints(st, *svc, port, {});
    keep_members(*dest, endpoints);
    if (endpoints.empty()) return;
    set_hosts(*dest, endpoints);
    sweep(*dest, Clock::now());
    auto index = pick(*dest, request.head, tunnel.client_ip.to_string());
    if (!index) return;
    auto slot = std::make_shared<AttemptSlot>(ex);
    slot->upstream = upstream;
    slot->dest = dest;
    slot->target = endpoints[*index];
    slot->info = tunnel;
    slot->info.service_host = svc->hostname;
    auto copy = std::make_shared<Request>(request);
    copy->head.authority = route::shadow_authority(request.head.authority);
    // Answered at its head when its body is long or late (the body is dropped, unread): a long
    // answer is no failure of the shadow's.
    copy->stream_response_after = ctx.settings.limits.stream_bodies_after;
    slot->request = std::move(copy);
    slot->limits = ctx.settings.limits;
    slot->http2 = request.version == HttpVersion::kHttp2;
    // (Reported as the pipeline's own attempts are: an ejection is counted and logged.)
    ReportOutcome report_outcome = [this, guard = std::weak_ptr<void>(alive)](
                                       Destination& d, const std::string& key,
                                       const AttemptResult& r) {
      if (!guard.expired()) report(d, key, r, Clock::now());
    };
    tasks.spawn(run_mirror(tasks, slot, std::move(report_outcome)), "waypoint mirror");
  }

  awaitable<void> relay(std::shared_ptr<const StreamContext> stream, Duplex downstream,
                        std::string already_read) {
    TcpRecord rec;
    rec.src_addr = stream->source_ip.to_string();
    rec.src_identity = stream->peer_identity;
    auto cfg = ctx.config.current();
    auto st = ctx.state.current();
    std::shared_ptr<const std::vector<EndpointTarget>> resolved;
    std::shared_ptr<Destination> dest;
    if (stream->service) {
      rec.dst_service = stream->service->hostname;
      dest = destination(*cfg, stream->service->hostname, stream->port);
      resolved = endpoints_of(*dest, st, stream->service, stream->port, stream->destination_ip);
    } else if (stream->workload) {
      resolved = std::make_shared<const std::vector<EndpointTarget>>(
          1, EndpointTarget{.workload = stream->workload,
                            .ip = stream->destination_ip,
                            .port = stream->port,
                            .identities = {stream->workload->identity()}});
      dest = destination(*cfg, net::format_endpoint(tcp::endpoint(stream->destination_ip, 0)),
                         stream->port);
      set_hosts(*dest, *resolved);
    }
    const std::vector<EndpointTarget> none_resolved;
    const std::vector<EndpointTarget>& endpoints = resolved ? *resolved : none_resolved;
    std::optional<size_t> index;
    if (!endpoints.empty()) {
      sweep(*dest, Clock::now());
      http::RequestHead none;
      index = pick(*dest, none, rec.src_addr);
    }
    if (!index) {
      rec.flags = "UH";
      rec.error = std::string(kNoHealthyUpstream);
      downstream.abort();
      rec.finish();
      co_return;
    }
    const auto& ep = endpoints[*index];
    rec.upstream = ep.key();
    if (ep.workload) {
      rec.dst_workload = ep.workload->name;
      rec.dst_namespace = ep.workload->namespace_name;
    }
    TunnelInfo tunnel{.client_ip = stream->source_ip,
                      .service_host = stream->service ? stream->service->hostname : std::string(),
                      .source = stream->source_workload};
    auto opened = co_await upstream->open(ep, tunnel);
    if (!opened) {
      report(*dest, ep.key(), AttemptResult::failure(AttemptResult::Kind::kConnectFailure),
             Clock::now());
      rec.flags = "UF";
      rec.error = opened.error().describe();
      downstream.abort();
      rec.finish();
      co_return;
    }
    Duplex up = std::move(*opened);
    if (!already_read.empty()) {
      if (auto ec = co_await up.write_all(asio::buffer(already_read)); ec) {
        rec.error = ec.message();
        up.abort();
        downstream.abort();
        rec.finish();
        co_return;
      }
    }
    co_await relay_tcp_streams(downstream, up, rec);
    rec.bytes_received += already_read.size();
    rec.finish();
  }
};

Pipeline::Pipeline(WaypointContext& ctx, asio::any_io_executor ex, async::TaskGroup& tasks)
    : impl_(std::make_unique<Impl>(ctx, ex, tasks)) {}

Pipeline::~Pipeline() = default;

awaitable<Response> Pipeline::handle(std::shared_ptr<const StreamContext> stream, Request request) {
  co_return co_await impl_->handle(std::move(stream), std::move(request));
}

awaitable<void> Pipeline::relay_tcp(std::shared_ptr<const StreamContext> stream, Duplex downstream,
                                    std::string already_read) {
  co_await impl_->relay(std::move(stream), std::move(downstream), std::move(already_read));
}

void Pipeline::close_idle() { impl_->upstream->close_idle(); }

}  // namespace zt::waypoint::proxy
