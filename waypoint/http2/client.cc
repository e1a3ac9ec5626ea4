// Http2Client: one upstream h2c connection; every send() is a stream of its own.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <unordered_map>

#include "common/async/task_group.h"
#include "common/base/log.h"
#include "waypoint/http2/http2.h"
#include "waypoint/http2/session.h"

namespace zt::waypoint::http2 {
namespace {

constexpr int32_t kStreamWindow = 1024 * 1024;
constexpr int32_t kConnectionWindow = 4 * 1024 * 1024;

struct ClientStream {
  explicit ClientStream(const asio::any_io_executor& ex) : in(std::make_shared<Inbox>(ex)) {}
  int32_t id = -1;
  OutBody out;
  std::shared_ptr<BodyPump> pump;  // a streamed request body (Request::source) being sent
  Response response;               // status and headers (the body and trailers arrive in `in`)
  size_t header_bytes = 0;
  size_t header_count = 0;
  bool final_head = false;  // a non-1xx :status arrived
  bool streaming = false;   // the caller takes the body as it arrives (Request::stream_response)
  // Request::stream_response_after: a body longer than this streams from then on (0: never);
  // what was buffered until then is answered in Response::body (`prefix`).
  size_t stream_after = 0;
  std::string prefix;
  // The response body (buffered whole unless streaming), its trailers and its end; `in->error`
  // is set when the stream failed. `in->changed` tells send() about the head as well.
  std::shared_ptr<Inbox> in;
  bool done() const { return in->done; }
};

class ClientConnection final : public Session,
                               public std::enable_shared_from_this<ClientConnection> {
 public:
  ClientConnection(asio::any_io_executor ex, Duplex io, Limits limits)
      : Session(std::move(ex), std::move(io)), limits_(limits) {}

  Status init();
  awaitable<void> run() {
    auto self = shared_from_this();
    co_await pump({});
    fail_all("HTTP/2 connection ended");
  }
  awaitable<Result<Response>> send(Request request);
  bool usable() const {
    return ng_ != nullptr && !ended_ && !fatal_ && !peer_eof_ && !goaway_ && !closing_ &&
           nghttp2_session_check_request_allowed(ng_) != 0;
  }
  size_t active_streams() const { return streams_.size(); }
  // A streamed body's reader went away before its end: reset the stream (what it held of the
  // stream window no longer matters; the connection window was given back on arrival).
  void gave_up(int32_t id, Inbox& in) override {
    if (ng_ == nullptr || ended_) return;
    if (!in.done && streams_.count(id) != 0) {
      nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    }
    finish(in, "body given up");
    std::string().swap(in.data);
    consumed(id, in, in.unconsumed);
    wake();
  }
  OutBody* out_body(int32_t id) override {
    ClientStream* s = find(id);
    return s == nullptr ? nullptr : &s->out;
  }
  void close() {
    if (ng_ == nullptr) ended_ = true;
    if (ended_ || closing_) return;
    closing_ = true;
    nghttp2_session_terminate_session(ng_, NGHTTP2_NO_ERROR);
    fail_all("HTTP/2 connection closed");
    wake();
  }

 private:
  struct Callbacks;

  bool idle_after_peer_eof() const override { return true; }
  ClientStream* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  static void finish(Inbox& in, std::string error) {
    if (in.done) return;
    in.done = true;
    in.error = std::move(error);
    in.changed.notify();
  }
  static void finish(ClientStream& s, std::string error) { finish(*s.in, std::move(error)); }
  void fail_all(const std::string& why) {
    for (auto& [id, s] : streams_) {
      finish(*s, why);
      if (s->pump) s->pump->end();
    }
    if (ended_) streams_.clear();
  }

  Limits limits_;
  bool goaway_ = false;
  bool closing_ = false;
  std::unordered_map<int32_t, std::shared_ptr<ClientStream>> streams_;
};

struct ClientConnection::Callbacks {
  static ClientConnection& conn(void* user_data) {
    return static_cast<ClientConnection&>(*static_cast<Session*>(user_data));
  }

  static int on_header(nghttp2_session* ng, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                       void* user_data) {
    auto& c = conn(user_data);
    ClientStream* s = c.find(frame->hd.stream_id);
    if (s == nullptr || s->done() || frame->hd.type != NGHTTP2_HEADERS) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    s->header_bytes += namelen + valuelen;
    if (++s->header_count > c.limits_.max_headers + 1 ||
        s->header_bytes > c.limits_.max_header_bytes) {
      c.finish(*s, "response headers too large");
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
      return 0;
    }
    if (s->final_head) {  // after the final head: trailers
      if (n.front() != ':') s->in->trailers.push_back({std::string(n), std::string(v)});
      return 0;
    }
    if (n == ":status") {
      int status = 0;
      for (char ch : v) status = status * 10 + (ch - '0');  // nghttp2 checked: 3 digits
      s->response.status = status;
    } else if (n.front() != ':') {
      s->response.headers.push_back({std::string(n), std::string(v)});
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& c = conn(user_data);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      c.goaway_ = true;
      return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    ClientStream* s = c.find(frame->hd.stream_id);
    if (s == nullptr || s->done()) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && !s->final_head) {
      if (s->response.status >= 200) {
        s->final_head = true;
        // send() answers with the head, or starts the late body's clock
        if (s->streaming || s->stream_after > 0) s->in->changed.notify();
      } else {  // 1xx: informational, wait for the real head
        s->response.headers.clear();
        s->header_bytes = 0;
        s->header_count = 0;
      }
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
      c.finish(*s, {});
      // A gRPC call is over once its status is in: the rest of a streamed request is not sent
      // (the stream closes, and its pump drops the source).
      if (s->pump && nghttp2_session_get_stream_local_close(c.ng(), s->id) == 0) {
        nghttp2_submit_rst_stream(c.ng(), NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
        c.wake();
      }
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* ng, uint8_t, int32_t stream_id, const uint8_t* data,
                           size_t len, void* user_data) {
    auto& c = conn(user_data);
    ClientStream* s = c.find(stream_id);
    if (s != nullptr && !s->done() && !s->streaming && s->final_head && s->stream_after > 0 &&
        s->in->data.size() + len > s->stream_after) {
      // Too long to buffer: answered now with what is here, the rest streamed.
      s->streaming = true;
      s->prefix = std::move(s->in->data);
      s->in->data.clear();
    }
    if (s != nullptr && !s->done() && s->streaming) {
      // Held until the reader takes it; the stream window (kStreamWindow) bounds it.
      nghttp2_session_consume_connection(ng, len);
      hold(*s->in, data, len);
      return 0;
    }
    // Taken at once: buffered below (bounded by max_body_bytes) or dropped.
    nghttp2_session_consume(ng, stream_id, len);
    if (s == nullptr || s->done()) return 0;
    if (s->in->data.size() + len > c.limits_.max_body_bytes) {
      c.finish(*s, "response body too large");
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
      return 0;
    }
    s->in->data.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t code, void* user_data) {
    auto& c = conn(user_data);
    auto it = c.streams_.find(stream_id);
    if (it == c.streams_.end()) return 0;
    auto s = std::move(it->second);
    c.streams_.erase(it);
    if (s->pump) s->pump->end();  // a request body still being sent: its pump drops its source
    if (code == NGHTTP2_NO_ERROR) {
      c.finish(*s, "stream closed before the response ended");
    } else {
      c.finish(*s, fmt::format("stream reset: {}", error_code_name(code)));
    }
    return 0;
  }
};

Status ClientConnection::init() {
  Setup setup;
  setup.max_send_header_block = std::max<size_t>(64 * 1024, 2 * limits_.max_header_bytes);
  setup.settings = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow}};
  setup.connection_window = kConnectionWindow;
  setup.manual_window = true;
  setup.add_callbacks = [](nghttp2_session_callbacks* cbs) {
    nghttp2_session_callbacks_set_on_header_callback(cbs, &Callbacks::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Callbacks::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Callbacks::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Callbacks::on_stream_close);
  };
  return start_session(setup);
}

awaitable<Result<Response>> ClientConnection::send(Request request) {
  auto self = shared_from_this();
  if (!usable()) co_return fail("HTTP/2 connection is not usable (closed or GOAWAY received)");
  auto& head = request.head;
  std::string authority = head.authority;
  if (authority.empty()) {
    if (auto host = http::find_header(head.headers, "host")) authority = *host;
  }
  HeaderBlock block;
  block.add(":method", head.method);
  if (head.method != "CONNECT") {
    block.add(":scheme", head.scheme.empty() ? "http" : head.scheme);
    block.add(":path", head.target.empty() ? "/" : head.target);
  }
  if (!authority.empty()) block.add(":authority", authority);
  http::remove_header(head.headers, "host");
  block.add_regular(head.headers);

  auto s = std::make_shared<ClientStream>(ex_);
  s->streaming = request.stream_response;
  s->stream_after = request.stream_response_after;
  s->out.data = std::move(request.body);
  s->out.trailers = std::move(request.trailers);
  if (request.source) {
    // Sent as it comes, after `body`: the stream stays open for it.
    s->pump = std::make_shared<BodyPump>(ex_);
    s->out.more = true;
    s->out.sent = &s->pump->sent;
  }
  nghttp2_data_provider prd = provider(s->out);
  const int32_t id = nghttp2_submit_request(ng_, nullptr, block.data(), block.size(),
                                            needs_provider(s->out) ? &prd : nullptr, s.get());
  if (id < 0) co_return failf("HTTP/2 request not sent: {}", nghttp2_strerror(id));
  s->id = id;
  s->out.stream_id = id;
  streams_[id] = s;
  if (request.source) {
    // A source that fails (the downstream gave its request up) cancels the stream.
    async::spawn_logged(
        ex_, pump_body(weak_from_this(), id, s->pump, std::move(request.source), NGHTTP2_CANCEL),
        "waypoint h2 request body");
  }
  wake();
  const auto late = limits_.stream_late_bodies_after;
  std::optional<std::chrono::steady_clock::time_point> late_at;  // the head is in: stream then
  while (!s->done() && !(s->streaming && s->final_head)) {
    bool woke = false;
    if (s->final_head && s->stream_after > 0 && late.count() > 0) {
      if (!late_at) late_at = std::chrono::steady_clock::now() + late;
      const auto wake = co_await s->in->changed.wait_until(*late_at);
      if (wake == async::Event::Wake::kExpired && !s->done() && !s->streaming) {
        // A body still coming: streamed from now on (what is here goes first).
        s->streaming = true;
        s->prefix = std::move(s->in->data);
        s->in->data.clear();
        break;
      }
      woke = wake != async::Event::Wake::kCancelled;
    } else {
      woke = co_await s->in->changed.wait();
    }
    if (woke || s->done()) continue;
    // Cancelled by the caller (a timeout): the stream is given up.
    if (!ended_ && streams_.count(id) != 0) {
      nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
      wake();
    }
    co_return fail("HTTP/2 request cancelled");
  }
  // A streamed answer whose head is in is answered with it even if its stream failed already
  // (in the same read): the failure is its body's, not a reset before the head.
  const bool head_in = s->streaming && s->final_head;
  if (!s->in->error.empty() && !head_in) co_return fail(s->in->error);
  // Complete already (a trailers-only gRPC answer, or all of it in one read): whole. The
  // caller must not decide on more than the head of an answer it asked to stream, however the
  // bytes were split (proxy/pipeline.cc reads grpc-status from the head only).
  if (s->done() && s->in->error.empty()) {
    if (s->prefix.empty()) {
      s->response.body = std::move(s->in->data);
    } else {
      s->response.body = std::move(s->prefix);
      s->response.body += s->in->data;
    }
    s->response.trailers = std::move(s->in->trailers);
    consumed(id, *s->in, s->in->unconsumed);
    co_return std::move(s->response);
  }
  // Streaming: the head now, the body through the source.
  Response streamed;
  streamed.status = s->response.status;
  streamed.headers = std::move(s->response.headers);
  streamed.body = std::move(s->prefix);
  streamed.source = inbox_source(std::move(self), id, s->in);
  co_return streamed;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Http2Client::Impl {
  std::shared_ptr<ClientConnection> conn;
};

std::shared_ptr<Http2Client> Http2Client::start(asio::any_io_executor ex, Duplex upstream,
                                                Limits limits) {
  auto conn = std::make_shared<ClientConnection>(ex, std::move(upstream), limits);
  if (auto st = conn->init(); !st) {
    ZT_LOG_WARN("component=waypoint_h2 msg=\"client session not started\" error=\"{}\"",
                st.error().message);
    conn->close();
  } else {
    async::spawn_logged(ex, conn->run(), "waypoint h2 client connection");
  }
  auto impl = std::make_unique<Impl>();
  impl->conn = std::move(conn);
  return std::shared_ptr<Http2Client>(new Http2Client(std::move(impl)));
}

Http2Client::Http2Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Http2Client::~Http2Client() { impl_->conn->close(); }

awaitable<Result<Response>> Http2Client::send(Request request) {
  auto conn = impl_->conn;
  co_return co_await conn->send(std::move(request));
}

bool Http2Client::usable() const { return impl_->conn->usable(); }
size_t Http2Client::active_streams() const { return impl_->conn->active_streams(); }
void Http2Client::close() { impl_->conn->close(); }

}  // namespace zt::waypoint::http2
