// serve_http2: one downstream h2c connection. Requests are validated here (nghttp2's own HTTP
// messaging checks are off, so that a bad head is answered with a status, as for HTTP/1.1,
// instead of a bare RST_STREAM).
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "common/async/task_group.h"
#include "common/base/log.h"
#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/http/request_checks.h"
#include "waypoint/http2/http2.h"
#include "waypoint/http2/session.h"

namespace zt::waypoint::http2 {
namespace {

// Per-stream cap the server advertises (and so the number of handlers one connection can run).
constexpr uint32_t kMaxConcurrentStreams = 128;
// Flow-control windows: the peer may have this much in flight per stream / per connection.
constexpr int32_t kStreamWindow = 1024 * 1024;
constexpr int32_t kConnectionWindow = 4 * 1024 * 1024;
// HPACK's per-field accounting (RFC 9113 §6.5.2) on top of names and values.
constexpr size_t kFieldOverhead = 32;

using Clock = std::chrono::steady_clock;

// A configured timeout; zero disables it.
bool enabled(std::chrono::milliseconds d) { return d.count() > 0; }

// A running handler, which its stream cancels when the downstream goes away.
struct HandlerRun {
  asio::cancellation_signal signal;
  bool done = false;  // returned (or threw): nothing left to cancel
};

struct ServerStream {
  int32_t id = -1;
  Request request;
  std::optional<std::string> host;  // a Host field (used when :authority is absent)
  size_t header_bytes = 0;
  size_t header_count = 0;
  bool regular_seen = false;
  bool has_method = false, has_path = false, has_scheme = false, has_authority = false;
  std::optional<uint64_t> content_length;
  std::optional<http::Rejection> rejection;  // decided while the head arrives
  bool head_request = false;                 // a HEAD: the answer's Content-Length is kept
  bool grpc = false;        // gRPC (http::is_native_grpc): a local answer goes out as a gRPC status
  bool dispatched = false;  // the handler runs (or ran) for it
  bool responded = false;
  OutBody out;
  std::shared_ptr<BodyPump> pump;  // a streamed response whose body is still coming
  // A request dispatched before its body ended (gRPC at its head with
  // Limits::stream_grpc_requests; any request once its body passes Limits::stream_bodies_after):
  // the rest of its body arrives here for the handler's Request::source.
  std::shared_ptr<Inbox> in;
  uint64_t in_bytes = 0;  // body bytes received (checked against Content-Length at the end)
  bool body_arriving() const { return in && !in->done; }

  // Timers (ServerConnection::watchdog).
  bool head_done = false;
  Clock::time_point started;                  // the first HEADERS frame began
  Clock::time_point last_progress;            // the last frame in either direction
  std::optional<Clock::time_point> reset_at;  // we reset it for a stalled response
  size_t charged = 0;  // request body bytes counted against the connection's budget

  // The handler's (from its dispatch): how the downstream went away, and its cancellation.
  std::shared_ptr<DownstreamGone> gone;
  std::shared_ptr<HandlerRun> run;
  bool answer_sent = false;  // our END_STREAM is out: the downstream has the whole answer
  bool reset_sent = false;   // we reset the stream (for a reason of our own)
};

bool is_connection_specific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade";
}

bool has_upper(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

class ServerConnection final : public Session,
                               public std::enable_shared_from_this<ServerConnection> {
 public:
  ServerConnection(asio::any_io_executor ex, Duplex io, const Limits& limits,
                   RequestHandler handler)
      : Session(std::move(ex), std::move(io)),
        limits_(limits),
        handler_(std::move(handler)),
        timer_(executor(), Clock::time_point::max()) {}

  Status init();
  awaitable<void> run(std::string already_read) {
    using namespace asio::experimental::awaitable_operators;
    auto self = shared_from_this();
    idle_since_ = Clock::now();
    // The watchdog returns only to end the connection (idle, or stuck): the pump is then
    // cancelled, which says GOAWAY(NO_ERROR) and closes, as a drain does.
    co_await (pump(std::move(already_read)) || watchdog());
    for (auto& [id, s] : streams_) {
      downstream_gone(*s, "DC", 0, "the downstream connection ended");
      if (s->pump) s->pump->end();
      end_inbox(*s, "the downstream connection ended");
    }
    streams_.clear();
  }

 private:
  struct Callbacks;

  // Once the peer stopped sending, only answers still being computed are worth waiting for: a
  // request without its end can never complete.
  bool idle_after_peer_eof() const override {
    return std::none_of(streams_.begin(), streams_.end(), [](const auto& kv) {
      return (kv.second->dispatched && !kv.second->responded) || kv.second->out.more;
    });
  }

  // A streamed request body still arriving can no longer end: its handler is told and
  // cancelled, and whatever it still answers is dropped (the stream is reset).
  void on_peer_eof() override {
    for (auto& [id, s] : streams_) {
      if (!s->body_arriving()) continue;
      downstream_gone(*s, "DC", 0, "the downstream closed the connection");
      end_inbox(*s, "the downstream closed the connection");
      if (!s->responded) {
        s->responded = true;
        release(*s);
        nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
      }
    }
    wake();
  }

  ServerStream* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  void reject(ServerStream& s, int status, std::string reason);
  void on_header(ServerStream& s, bool trailers, std::string_view name, std::string_view value);
  void on_head_complete(ServerStream& s);
  void on_request_complete(ServerStream& s);
  void respond(ServerStream& s, Response response);
  // Returns the stream's body bytes to the connection's budget.
  void release(ServerStream& s);
  // Wakes the watchdog earlier when `at` comes before what it waits for.
  void arm(Clock::time_point at);
  // Enforces the timeouts; returns (ends the connection) when idle or stuck.
  awaitable<void> watchdog();
  // Times out the streams due by `now`; lowers `next` to the next deadline. False when the
  // connection is stuck (a reset stream could not even be closed in time).
  bool expire_streams(Clock::time_point now, Clock::time_point& next);
  static awaitable<void> run_handler(std::weak_ptr<ServerConnection> weak, int32_t id,
                                     Request request, RequestHandler handler, size_t charge);
  // Runs the handler for the stream's request (`charge`: its buffered body's bytes), which the
  // stream can cancel (downstream_gone).
  void start_handler(ServerStream& s, size_t charge);
  // The downstream went away before the whole answer was out (Envoy's `flag`; `status`: the
  // answer the server gave it itself, else 0): its handler is told (DownstreamGone) and
  // cancelled. Only the first reason counts.
  void downstream_gone(ServerStream& s, std::string_view flag, int status, std::string why);
  // Whether a request whose body reaches `size` bytes with DATA of `len` may go to its handler
  // now: not when those bytes break its Content-Length or the connection's budget (the
  // buffered path refuses it then, before any handler runs: 400, or REFUSED_STREAM).
  bool may_stream(const ServerStream& s, uint64_t size, size_t len) const {
    if (s.content_length && size > *s.content_length) return false;
    const size_t budget = limits_.max_connection_body_bytes;
    return budget == 0 || body_bytes_ + len <= budget;
  }
  // A request dispatched before its body ended: the handler has what arrived so far in
  // Request::body and reads the rest from Request::source.
  void dispatch_streamed(ServerStream& s);
  // DATA of a request dispatched before its body ended, held for its handler.
  void on_streamed_data(ServerStream& s, const uint8_t* data, size_t len);
  // A streamed request body ends (`error` empty) or fails; nothing more of it is read.
  static void end_inbox(ServerStream& s, std::string error);

  OutBody* out_body(int32_t id) override {
    ServerStream* s = find(id);
    return s == nullptr ? nullptr : &s->out;
  }
  // The handler dropped a streamed request body before its end: the rest is taken and dropped
  // as it arrives (the handler answers on its own).
  void gave_up(int32_t id, Inbox& in) override {
    if (!in.done) {
      in.done = true;
      in.error = "given up";
    }
    std::string().swap(in.data);
    consumed(id, in, in.unconsumed);
  }
  // Streamed request body bytes taken by the handler leave the connection's budget.
  void consumed(int32_t id, Inbox& in, size_t n) override {
    const size_t taken = std::min(n, in.unconsumed);
    Session::consumed(id, in, n);
    if (ServerStream* s = find(id)) {
      const size_t m = std::min({taken, s->charged, body_bytes_});
      s->charged -= m;
      body_bytes_ -= m;
    }
  }
  // A streamed request found broken after its dispatch: its handler's body fails; the peer gets
  // `status` while no answer has started, else RST_STREAM(PROTOCOL_ERROR).
  void fail_streamed(ServerStream& s, int status, std::string reason);

  Limits limits_;
  RequestHandler handler_;
  std::unordered_map<int32_t, std::unique_ptr<ServerStream>> streams_;
  asio::steady_timer timer_;      // the watchdog's
  Clock::time_point idle_since_;  // when streams_ last became empty
  size_t body_bytes_ = 0;         // request body bytes held, all streams (the budget's use)
};

// nghttp2 callbacks; `user_data` is the Session base of the ServerConnection.
struct ServerConnection::Callbacks {
  static ServerConnection& conn(void* user_data) {
    return static_cast<ServerConnection&>(*static_cast<Session*>(user_data));
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& c = conn(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto s = std::make_unique<ServerStream>();
    s->id = frame->hd.stream_id;
    s->request.version = HttpVersion::kHttp2;
    s->request.head.scheme.clear();
    s->started = s->last_progress = Clock::now();
    const Limits& l = c.limits_;
    if (enabled(l.request_headers_timeout)) c.arm(s->started + l.request_headers_timeout);
    if (enabled(l.stream_idle_timeout)) c.arm(s->started + l.stream_idle_timeout);
    c.streams_[s->id] = std::move(s);
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                       void* user_data) {
    auto& c = conn(user_data);
    ServerStream* s = c.find(frame->hd.stream_id);
    if (s == nullptr || s->rejection || (s->responded && !s->body_arriving())) return 0;
    s->last_progress = Clock::now();
    c.on_header(*s, frame->headers.cat != NGHTTP2_HCAT_REQUEST,
                {reinterpret_cast<const char*>(name), namelen},
                {reinterpret_cast<const char*>(value), valuelen});
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& c = conn(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    ServerStream* s = c.find(frame->hd.stream_id);
    // (A streamed request's body goes on arriving after its answer has started.)
    if (s == nullptr || (s->responded && !s->body_arriving())) return 0;
    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    s->last_progress = Clock::now();
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->head_done = true;
        c.on_head_complete(*s);
        if (!end && !s->rejection && c.limits_.stream_grpc_requests &&
            http::is_grpc(s->request.head.headers)) {
          c.dispatch_streamed(*s);
        }
      } else if (!end && !s->rejection) {
        c.reject(*s, 400, "http2.trailers_without_end_stream");
      }
    }
    if (s->rejection) {
      auto r = *s->rejection;
      if (!s->responded) {
        c.reject(*s, r.status, r.reason);
      } else if (s->body_arriving()) {
        c.fail_streamed(*s, r.status, r.reason);  // bad trailers after the answer began
      }
      return 0;
    }
    if (s->responded && !s->in) return 0;
    if (end) c.on_request_complete(*s);
    return 0;
  }

  static int on_data_chunk(nghttp2_session* ng, uint8_t, int32_t stream_id, const uint8_t* data,
                           size_t len, void* user_data) {
    auto& c = conn(user_data);
    ServerStream* s = c.find(stream_id);
    if (s != nullptr && s->body_arriving() && !s->rejection) {
      c.on_streamed_data(*s, data, len);
      return 0;
    }
    if (s != nullptr && !s->responded && !s->rejection && !s->dispatched &&
        c.limits_.stream_bodies_after > 0 &&
        s->request.body.size() + len > c.limits_.stream_bodies_after &&
        c.may_stream(*s, s->request.body.size() + len, len)) {
      // Too long to buffer: the handler gets what is here and reads the rest as it arrives.
      c.dispatch_streamed(*s);
      c.on_streamed_data(*s, data, len);
      return 0;
    }
    // Taken at once: buffered below (bounded by the body limits) or dropped.
    nghttp2_session_consume(ng, stream_id, len);
    if (s != nullptr && s->in) s->in_bytes += len;  // a streamed body given up: still counted
    if (s == nullptr || s->responded || s->rejection || s->dispatched) return 0;
    s->last_progress = Clock::now();
    if (s->content_length && s->request.body.size() + len > *s->content_length) {
      c.reject(*s, 400, "http2.content_length_mismatch");
      return 0;
    }
    if (s->request.body.size() + len > c.limits_.max_body_bytes) {
      c.reject(*s, 413, "http2.request_body_too_large");
      return 0;
    }
    const size_t budget = c.limits_.max_connection_body_bytes;
    if (budget > 0 && c.body_bytes_ + len > budget) {
      // Not processed, so safe to retry (on another connection, or here once others end).
      ZT_LOG_DEBUG(
          "component=waypoint_h2 msg=\"request refused\" stream={} "
          "reason=connection_body_budget held={} budget={}",
          s->id, c.body_bytes_, budget);
      s->responded = true;
      s->request = Request{};
      c.release(*s);
      nghttp2_submit_rst_stream(c.ng(), NGHTTP2_FLAG_NONE, s->id, NGHTTP2_REFUSED_STREAM);
      c.wake();
      return 0;
    }
    s->request.body.append(reinterpret_cast<const char*>(data), len);
    s->charged += len;
    c.body_bytes_ += len;
    return 0;
  }

  // An answer that ends the stream before the request did (413, 431, 400): reset the request
  // side once the answer is out, so the client stops sending.
  static int on_frame_send(nghttp2_session* ng, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.stream_id > 0) {
      if (ServerStream* s = conn(user_data).find(frame->hd.stream_id)) {
        s->last_progress = Clock::now();
        if (frame->hd.type == NGHTTP2_RST_STREAM) s->reset_sent = true;
        if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
          s->answer_sent = true;
        }
      }
    }
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    if (nghttp2_session_get_stream_remote_close(ng, frame->hd.stream_id) == 0) {
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t code, void* user_data) {
    auto& c = conn(user_data);
    if (ServerStream* s = c.find(stream_id)) {
      if (!s->reset_sent) {
        c.downstream_gone(*s, "DR", 0, "the downstream reset the stream");
      } else {
        // A reset of ours: its reason was told where it was decided, unless nghttp2 sent it
        // for a protocol error of the peer's (FLOW_CONTROL_ERROR, STREAM_CLOSED ...).
        c.downstream_gone(*s, "DPE", 0,
                          fmt::format("the stream was reset: {}", nghttp2_http2_strerror(code)));
      }
      c.release(*s);
      if (s->pump) s->pump->end();  // its pump stops and drops the source
      end_inbox(*s, "the downstream reset the stream");
    }
    c.streams_.erase(stream_id);  // a handler still running finds it gone
    if (c.streams_.empty()) {
      c.idle_since_ = Clock::now();
      if (enabled(c.limits_.idle_timeout)) c.arm(c.idle_since_ + c.limits_.idle_timeout);
    }
    return 0;
  }
};

Status ServerConnection::init() {
  Setup setup;
  setup.server = true;
  setup.http_messaging = false;
  setup.max_send_header_block = std::max<size_t>(64 * 1024, 2 * limits_.max_header_bytes);
  const auto header_list =
      static_cast<uint32_t>(limits_.max_header_bytes + kFieldOverhead * (limits_.max_headers + 4));
  setup.settings = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
                    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
                    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, header_list}};
  setup.connection_window = kConnectionWindow;
  setup.manual_window = true;  // streamed request bodies give their window back as read
  setup.add_callbacks = [](nghttp2_session_callbacks* cbs) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Callbacks::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &Callbacks::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Callbacks::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Callbacks::on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Callbacks::on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Callbacks::on_stream_close);
  };
  return start_session(setup);
}

void ServerConnection::on_header(ServerStream& s, bool trailers, std::string_view name,
                                 std::string_view value) {
  s.header_bytes += name.size() + value.size() + kFieldOverhead;
  ++s.header_count;
  // Pseudo-headers (at most 4 valid ones) are not counted against the field limit.
  const size_t max_fields = limits_.max_headers + 4;
  const size_t max_bytes = limits_.max_header_bytes + kFieldOverhead * max_fields;
  if (s.header_count > max_fields || s.header_bytes > max_bytes) {
    s.rejection = http::Rejection{431, "http2.headers_too_large"};
    s.request.head.headers.clear();
    s.request.trailers.clear();
    return;
  }
  auto refuse = [&](std::string reason) { s.rejection = http::Rejection{400, std::move(reason)}; };
  if (name.empty()) return refuse("http2.empty_header_name");
  if (has_upper(name)) return refuse("http2.uppercase_header_name");
  if (trailers) {
    if (name.front() == ':') return refuse("http2.pseudo_header_in_trailers");
    (s.in ? s.in->trailers : s.request.trailers).push_back({std::string(name), std::string(value)});
    return;
  }
  auto& head = s.request.head;
  if (name.front() == ':') {
    if (s.regular_seen) return refuse("http2.pseudo_header_after_regular");
    auto once = [&](bool& seen, std::string& field) {
      if (seen) return refuse(fmt::format("http2.duplicate_{}", name.substr(1)));
      seen = true;
      field = value;
    };
    if (name == ":method") return once(s.has_method, head.method);
    if (name == ":path") return once(s.has_path, head.target);
    if (name == ":scheme") return once(s.has_scheme, head.scheme);
    if (name == ":authority") return once(s.has_authority, head.authority);
    return refuse("http2.unknown_pseudo_header");
  }
  s.regular_seen = true;
  if (is_connection_specific(name)) return refuse("http2.connection_specific_header");
  if (name == "te" && value != "trailers") return refuse("http2.invalid_te_header");
  if (name == "host") {
    if (s.host) return refuse("http2.duplicate_host");
    s.host = std::string(value);
    return;
  }
  head.headers.push_back({std::string(name), std::string(value)});
}

void ServerConnection::on_head_complete(ServerStream& s) {
  s.grpc = http::is_native_grpc(s.request.head.headers);
  if (s.rejection) return;
  auto& head = s.request.head;
  if (!s.has_method) return reject(s, 400, "http2.missing_method");
  if (head.method == "CONNECT") {
    if (!s.has_authority || s.has_path || s.has_scheme) {
      return reject(s, 400, "http2.invalid_connect");
    }
    head.target = head.authority;
  } else if (!s.has_scheme || !s.has_path || head.target.empty()) {
    return reject(s, 400, "http2.missing_pseudo_header");
  }
  if (!s.has_authority && s.host) head.authority = *s.host;
  if (s.has_authority && s.host && *s.host != head.authority) {
    return reject(s, 400, "http2.host_authority_mismatch");
  }
  const http::HeadLimits head_limits{limits_.max_header_bytes, limits_.max_headers};
  auto framing = http::check_request_head(head, http::Version::kHttp2, head_limits);
  if (!framing) return reject(s, framing.error().status, framing.error().reason);
  if (framing->has_content_length) {
    // (A streamed request body is not bounded by max_body_bytes: a gRPC one dispatched at its
    // head, or any body longer than stream_bodies_after.)
    const bool streams = (limits_.stream_grpc_requests && http::is_grpc(head.headers)) ||
                         limits_.stream_bodies_after > 0;
    if (!streams && framing->content_length > limits_.max_body_bytes) {
      return reject(s, 413, "http2.request_body_too_large");
    }
    s.content_length = framing->content_length;
  }
}

void ServerConnection::on_request_complete(ServerStream& s) {
  if (s.rejection) return;
  if (s.in) {
    if (s.content_length && *s.content_length != s.in_bytes) {
      return fail_streamed(s, 400, "http2.content_length_mismatch");
    }
    end_inbox(s, {});
    return;
  }
  if (s.dispatched) return;
  if (s.content_length && *s.content_length != s.request.body.size()) {
    return reject(s, 400, "http2.content_length_mismatch");
  }
  s.dispatched = true;
  s.head_request = s.request.head.method == "HEAD";
  // The body goes to the handler and stays counted until the handler is done with it, even if
  // the peer resets the stream meanwhile.
  const size_t charge = s.charged;
  s.charged = 0;
  start_handler(s, charge);
}

void ServerConnection::start_handler(ServerStream& s, size_t charge) {
  s.gone = std::make_shared<DownstreamGone>();
  s.request.gone = s.gone;
  s.run = std::make_shared<HandlerRun>();
  auto run = s.run;
  asio::co_spawn(ex_, run_handler(weak_from_this(), s.id, std::move(s.request), handler_, charge),
                 asio::bind_cancellation_slot(run->signal.slot(), [run](std::exception_ptr e) {
                   run->done = true;
                   async::log_exception("waypoint h2 request handler", e);
                 }));
}

void ServerConnection::downstream_gone(ServerStream& s, std::string_view flag, int status,
                                       std::string why) {
  if (!s.gone || s.gone->happened() || s.answer_sent) return;
  ZT_LOG_DEBUG("component=waypoint_h2 msg=\"downstream gone\" stream={} flag={} why=\"{}\"", s.id,
               flag, why);
  s.gone->flag = flag;
  s.gone->status = status;
  s.gone->why = std::move(why);
  if (!s.run || s.run->done) return;
  // Posted: the handler must not resume inside an nghttp2 callback.
  asio::post(ex_, [run = s.run] {
    if (!run->done) run->signal.emit(asio::cancellation_type::terminal);
  });
}

void ServerConnection::dispatch_streamed(ServerStream& s) {
  s.dispatched = true;
  s.in = std::make_shared<Inbox>(ex_);
  s.request.source = inbox_source(shared_from_this(), s.id, s.in);
  // What arrived before (a body found too long to buffer) goes in Request::body, counted
  // against the budget until the handler returns, as a buffered body is.
  s.in_bytes = s.request.body.size();
  s.head_request = s.request.head.method == "HEAD";
  start_handler(s, std::exchange(s.charged, 0));
}

void ServerConnection::on_streamed_data(ServerStream& s, const uint8_t* data, size_t len) {
  s.last_progress = Clock::now();
  s.in_bytes += len;
  // The connection window is given back at once: a stream nobody reads must not hold up the
  // others. Its own window (kStreamWindow) holds its sender back until the handler reads.
  nghttp2_session_consume_connection(ng_, len);
  if (s.content_length && s.in_bytes > *s.content_length) {
    return fail_streamed(s, 400, "http2.content_length_mismatch");
  }
  const size_t budget = limits_.max_connection_body_bytes;
  if (budget > 0 && body_bytes_ + len > budget) {
    // Unread streamed bodies fill the connection's budget: this stream is reset, its body
    // failed (RST_STREAM(ENHANCE_YOUR_CALM): gRPC's RESOURCE_EXHAUSTED).
    ZT_LOG_DEBUG(
        "component=waypoint_h2 msg=\"streamed request reset\" stream={} "
        "reason=connection_body_budget held={} budget={}",
        s.id, body_bytes_, budget);
    downstream_gone(s, "", 0, "the connection's request body budget is spent");
    end_inbox(s, "the connection's request body budget is spent");
    s.rejection = http::Rejection{503, "http2.connection_body_budget"};
    s.responded = true;  // an answer still to come is dropped
    release(s);
    nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_ENHANCE_YOUR_CALM);
    wake();
    return;
  }
  s.charged += len;
  body_bytes_ += len;
  hold(*s.in, data, len);
}

void ServerConnection::fail_streamed(ServerStream& s, int status, std::string reason) {
  if (!s.responded) return reject(s, status, std::move(reason));
  downstream_gone(s, "DPE", 0, fmt::format("request refused: {}", reason));  // (reset, no status)
  end_inbox(s, fmt::format("request refused: {}", reason));
  ZT_LOG_DEBUG("component=waypoint_h2 msg=\"streamed request reset\" stream={} reason={}", s.id,
               reason);
  s.rejection = http::Rejection{status, std::move(reason)};
  release(s);
  nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_PROTOCOL_ERROR);
  wake();
}

void ServerConnection::end_inbox(ServerStream& s, std::string error) {
  if (!s.in || s.in->done) return;
  s.in->done = true;
  s.in->error = std::move(error);
  // A failed body's unread bytes are of no use: not kept past the budget's release.
  if (!s.in->error.empty()) std::string().swap(s.in->data);
  s.in->changed.notify();
}

void ServerConnection::reject(ServerStream& s, int status, std::string reason) {
  ZT_LOG_DEBUG("component=waypoint_h2 msg=\"request refused\" stream={} status={} reason={}", s.id,
               status, reason);
  s.rejection = http::Rejection{status, reason};
  s.grpc = s.grpc || http::is_native_grpc(s.request.head.headers);  // (a head cut short)
  s.request = Request{};
  // A request whose handler runs already: the stream idle timeout (408) or a broken body. (A
  // gRPC one is answered 200 with a grpc-status, below.)
  downstream_gone(s, status == 408 ? "SI" : "DPE", s.grpc ? 200 : status,
                  fmt::format("request refused: {}", reason));
  end_inbox(s, fmt::format("request refused: {}", reason));
  release(s);
  const char* body = status == 431   ? "request header fields too large"
                     : status == 413 ? "payload too large"
                     : status == 408 ? "request timeout"
                     : status == 400 ? "bad request"
                                     : "request refused";
  respond(s, local_response(status, body));
}

void ServerConnection::respond(ServerStream& s, Response response) {
  if (s.responded || ended_) return;
  s.responded = true;
  if (response.status < 200 || response.status > 999) {
    // 1xx (an upgrade's 101 included) has no meaning as a final HTTP/2 answer.
    response = local_response(502, "invalid upstream response");
  }
  // (The proxy's own answers come converted already; the codec's refusals and failures here.)
  if (response.local && s.grpc) to_grpc_local_reply(response);
  http::strip_hop_by_hop(response.headers);
  http::remove_header(response.headers, "host");
  // An HTTP/2 peer checks Content-Length against the DATA it gets: never announce other bytes.
  // (A streamed body's length is not known here: its sender's Content-Length stays.)
  if (!s.head_request && !response.source &&
      http::find_header(response.headers, "content-length")) {
    http::set_header(response.headers, "content-length", std::to_string(response.body.size()));
  }
  http::strip_hop_by_hop(response.trailers);
  HeaderBlock block;
  block.add(":status", std::to_string(response.status));
  block.add_regular(response.headers);
  s.out.stream_id = s.id;
  s.out.data = std::move(response.body);
  s.out.offset = 0;
  s.out.trailers = std::move(response.trailers);
  if (response.source) {
    s.pump = std::make_shared<BodyPump>(ex_);
    s.out.more = true;
    s.out.sent = &s.pump->sent;
  }
  nghttp2_data_provider prd = provider(s.out);
  const int rv = nghttp2_submit_response(ng_, s.id, block.data(), block.size(),
                                         needs_provider(s.out) ? &prd : nullptr);
  if (rv != 0) {
    ZT_LOG_DEBUG("component=waypoint_h2 msg=\"response not sent\" stream={} error=\"{}\"", s.id,
                 nghttp2_strerror(rv));
    nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_INTERNAL_ERROR);
    s.out.more = false;  // the source is dropped here, which gives up its upstream
  } else if (response.source) {
    async::spawn_logged(ex_,
                        pump_body(weak_from_this(), s.id, s.pump, std::move(response.source),
                                  NGHTTP2_INTERNAL_ERROR),
                        "waypoint h2 response body");
  }
  wake();
}

void ServerConnection::release(ServerStream& s) {
  body_bytes_ -= std::min(body_bytes_, s.charged);
  s.charged = 0;
}

void ServerConnection::arm(Clock::time_point at) {
  if (at < timer_.expiry()) timer_.expires_at(at);  // wakes the watchdog to recompute
}

bool ServerConnection::expire_streams(Clock::time_point now, Clock::time_point& next) {
  const auto idle = limits_.stream_idle_timeout;
  const auto head = limits_.request_headers_timeout;
  std::vector<ServerStream*> due;
  for (auto& [id, sp] : streams_) {
    ServerStream& s = *sp;
    Clock::time_point deadline = Clock::time_point::max();
    if (s.reset_at) {
      // Reset, yet not closed: nothing leaves the connection (the peer reads nothing).
      if (enabled(idle) && now >= *s.reset_at + idle) return false;
      if (enabled(idle)) deadline = *s.reset_at + idle;
    } else if (s.responded) {
      // The answer is out or going out: the peer must keep taking it.
      if (enabled(idle)) deadline = s.last_progress + idle;
    } else if (!s.dispatched || s.body_arriving()) {
      // The request is still arriving (a streamed one while its handler runs).
      if (enabled(idle)) deadline = s.last_progress + idle;
      if (!s.head_done && enabled(head)) deadline = std::min(deadline, s.started + head);
    }
    // (dispatched and whole, not responded: the handler's time is the route timeouts' business)
    if (deadline == Clock::time_point::max()) continue;
    if (now >= deadline) {
      due.push_back(&s);
    } else {
      next = std::min(next, deadline);
    }
  }
  for (ServerStream* s : due) {
    if (s->responded) {
      ZT_LOG_DEBUG("component=waypoint_h2 msg=\"response stalled, stream reset\" stream={}", s->id);
      downstream_gone(*s, "SI", 0, "the stream idle timeout cut the response");
      s->reset_at = now;
      nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
      if (enabled(idle)) next = std::min(next, now + idle);
    } else {
      const bool head_expired = !s->head_done && enabled(head) && now >= s->started + head;
      reject(*s, 408, head_expired ? "http2.request_header_timeout" : "http2.stream_idle_timeout");
      if (enabled(idle)) next = std::min(next, now + idle);
    }
  }
  if (!due.empty()) wake();
  return true;
}

awaitable<void> ServerConnection::watchdog() {
  for (;;) {
    const Clock::time_point now = Clock::now();
    Clock::time_point next = Clock::time_point::max();
    if (streams_.empty()) {
      if (enabled(limits_.idle_timeout)) {
        if (now >= idle_since_ + limits_.idle_timeout) {
          ZT_LOG_DEBUG("component=waypoint_h2 msg=\"connection idle, closing\" idle_ms={}",
                       limits_.idle_timeout.count());
          co_return;
        }
        next = idle_since_ + limits_.idle_timeout;
      }
    } else if (!expire_streams(now, next)) {
      ZT_LOG_DEBUG("component=waypoint_h2 msg=\"connection stuck, closing\"");
      co_return;
    }
    timer_.expires_at(next);
    auto [ec] = co_await timer_.async_wait(kTuple);
    (void)ec;  // expired, or re-armed earlier: recompute either way
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) co_return;
  }
}

awaitable<void> ServerConnection::run_handler(std::weak_ptr<ServerConnection> weak, int32_t id,
                                              Request request, RequestHandler handler,
                                              size_t charge) {
  Response response;
  try {
    response = co_await handler(std::move(request));
  } catch (const boost::system::system_error& e) {
    // (Cancelled, its downstream gone, a handler may end so: that is no failure.)
    if (e.code() == asio::error::operation_aborted) {
      ZT_LOG_DEBUG("component=waypoint_h2 msg=\"request handler cancelled\" stream={}", id);
    } else {
      ZT_LOG_ERROR("component=waypoint_h2 msg=\"request handler failed\" error=\"{}\"", e.what());
    }
    response = local_response(500, "internal error");
  } catch (const std::exception& e) {
    ZT_LOG_ERROR("component=waypoint_h2 msg=\"request handler failed\" error=\"{}\"", e.what());
    response = local_response(500, "internal error");
  }
  auto c = weak.lock();
  if (c) c->body_bytes_ -= std::min(c->body_bytes_, charge);  // the handler let the body go
  if (!c || c->ended_) co_return;
  if (ServerStream* s = c->find(id)) c->respond(*s, std::move(response));
}

}  // namespace

awaitable<void> serve_http2(Duplex downstream, std::string already_read, const Limits& limits,
                            RequestHandler handler) {
  auto ex = co_await asio::this_coro::executor;
  auto conn =
      std::make_shared<ServerConnection>(ex, std::move(downstream), limits, std::move(handler));
  if (auto st = conn->init(); !st) {
    ZT_LOG_WARN("component=waypoint_h2 msg=\"session not started\" error=\"{}\"",
                st.error().message);
    co_return;
  }
  co_await conn->run(std::move(already_read));
}

}  // namespace zt::waypoint::http2
