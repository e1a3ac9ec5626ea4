#include "waypoint/http2/session.h"

#include <algorithm>
#include <cstring>

#include "common/base/log.h"
#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"

namespace zt::waypoint::http2 {

// ---------------------------------------------------------------------------------------------
// HeaderBlock

void HeaderBlock::add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void HeaderBlock::add_regular(const http::HeaderList& headers) {
  for (const auto& h : headers) {
    if (h.name.empty() || h.name.front() == ':') continue;
    add(to_lower(h.name), h.value);
  }
}

const nghttp2_nv* HeaderBlock::data() {
  nva_.clear();
  nva_.reserve(fields_.size());
  for (auto& [name, value] : fields_) {
    nva_.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(name.data()),
                              reinterpret_cast<uint8_t*>(value.data()), name.size(), value.size(),
                              NGHTTP2_NV_FLAG_NONE});
  }
  return nva_.data();
}

std::string_view error_code_name(uint32_t code) { return nghttp2_http2_strerror(code); }

// ---------------------------------------------------------------------------------------------
// Callbacks shared by both roles. `user_data` is always the Session.

struct CommonCallbacks {
  static Session& session(void* user_data) { return *static_cast<Session*>(user_data); }

  static ssize_t on_send(nghttp2_session*, const uint8_t* data, size_t length, int,
                         void* user_data) {
    auto& s = session(user_data);
    if (s.out_.size() >= Session::kOutHighWater) return NGHTTP2_ERR_WOULDBLOCK;
    s.out_.append(reinterpret_cast<const char*>(data), length);
    return static_cast<ssize_t>(length);
  }

  // The payload goes from the body straight into the output buffer (NGHTTP2_DATA_FLAG_NO_COPY).
  static int on_send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                          size_t length, nghttp2_data_source* source, void* user_data) {
    auto& s = session(user_data);
    auto* body = static_cast<OutBody*>(source->ptr);
    if (s.out_.size() >= Session::kOutHighWater) return NGHTTP2_ERR_WOULDBLOCK;
    s.out_.append(reinterpret_cast<const char*>(framehd), 9);
    const size_t padlen = frame->data.padlen;
    if (padlen > 0) s.out_.push_back(static_cast<char>(padlen - 1));
    s.out_.append(body->data, body->offset, length);
    if (padlen > 1) s.out_.append(padlen - 1, '\0');
    body->offset += length;
    if (body->offset == body->data.size()) {
      // Sent: do not keep a large body until the stream closes.
      std::string().swap(body->data);
      body->offset = 0;
    }
    if (body->sent != nullptr) body->sent->notify();
    return 0;
  }

  static ssize_t read_body(nghttp2_session* ng, int32_t stream_id, uint8_t*, size_t length,
                           uint32_t* data_flags, nghttp2_data_source* source, void*) {
    auto* body = static_cast<OutBody*>(source->ptr);
    const size_t left = body->data.size() - body->offset;
    const size_t n = std::min(left, length);
    if (n == 0 && body->more) return NGHTTP2_ERR_DEFERRED;
    if (n > 0) *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == left && !body->more) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!body->trailers.empty()) {
        HeaderBlock block;
        block.add_regular(body->trailers);
        if (nghttp2_submit_trailer(ng, stream_id, block.data(), block.size()) == 0) {
          *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
      }
    }
    return static_cast<ssize_t>(n);
  }

  // DATA frames as large as the windows and the peer's frame size allow (nghttp2 otherwise
  // stops at 16 KiB), capped so one stream does not fill the output buffer alone.
  static ssize_t data_length(nghttp2_session*, uint8_t, int32_t, int32_t session_window,
                             int32_t stream_window, uint32_t remote_max_frame, void*) {
    const int64_t n =
        std::min<int64_t>({session_window, stream_window, remote_max_frame, 64 * 1024});
    return static_cast<ssize_t>(std::max<int64_t>(n, 1));
  }
};

Status Session::start_session(const Setup& setup) {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return fail("nghttp2: out of memory");
  nghttp2_session_callbacks_set_send_callback(cbs, &CommonCallbacks::on_send);
  nghttp2_session_callbacks_set_send_data_callback(cbs, &CommonCallbacks::on_send_data);
  nghttp2_session_callbacks_set_data_source_read_length_callback(cbs,
                                                                 &CommonCallbacks::data_length);
  if (setup.add_callbacks != nullptr) setup.add_callbacks(cbs);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return fail("nghttp2: out of memory");
  }
  if (!setup.http_messaging) nghttp2_option_set_no_http_messaging(opt, 1);
  if (setup.manual_window) nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_send_header_block_length(opt, setup.max_send_header_block);
  void* user_data = static_cast<Session*>(this);
  const int rv = setup.server ? nghttp2_session_server_new2(&ng_, cbs, user_data, opt)
                              : nghttp2_session_client_new2(&ng_, cbs, user_data, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    ng_ = nullptr;
    return failf("nghttp2 session: {}", nghttp2_strerror(rv));
  }
  if (int e = nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, setup.settings.data(),
                                      setup.settings.size());
      e != 0) {
    return failf("nghttp2 settings: {}", nghttp2_strerror(e));
  }
  if (int e =
          nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0, setup.connection_window);
      e != 0) {
    return failf("nghttp2 connection window: {}", nghttp2_strerror(e));
  }
  return {};
}

nghttp2_data_provider Session::provider(OutBody& body) {
  nghttp2_data_provider p{};
  p.source.ptr = &body;
  p.read_callback = &CommonCallbacks::read_body;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Streamed bodies

namespace {

// The source's next piece; a source that throws has failed (an exception would leave `||`
// waiting for the stream to close instead).
awaitable<BodySource::Piece> next_piece(BodySource& source) {
  try {
    co_return co_await source.next();
  } catch (const std::exception& e) {
    BodySource::Piece failed;
    failed.error = fmt::format("body source failed: {}", e.what());
    co_return failed;
  }
}

// The stream's outgoing body, while the session and the stream are still there.
OutBody* alive(const std::weak_ptr<Session>& weak, int32_t id, std::shared_ptr<Session>& held) {
  held = weak.lock();
  return held && !held->ended() ? held->out_body(id) : nullptr;
}

void reset_stream(Session& session, int32_t id, uint32_t code) {
  nghttp2_submit_rst_stream(session.ng(), NGHTTP2_FLAG_NONE, id, code);
  session.wake();
}

// The body of a streamed Inbox, for its reader.
class InboxSource final : public BodySource {
 public:
  InboxSource(std::shared_ptr<Session> session, int32_t id, std::shared_ptr<Inbox> inbox)
      : session_(std::move(session)), id_(id), in_(std::move(inbox)) {}
  ~InboxSource() override {
    if (!finished_) session_->gave_up(id_, *in_);
  }

  awaitable<void> until_done() override {
    auto in = in_;
    while (!in->done) {
      if (!co_await in->changed.wait()) co_return;  // cancelled
    }
  }

  awaitable<Piece> next() override {
    Piece piece;
    if (finished_) {
      piece.error = "body already ended";
      co_return piece;
    }
    Inbox& in = *in_;
    for (;;) {
      if (!in.data.empty()) {
        // At most kPumpAhead at a time: what the reader takes leaves the stream's window (and
        // the server's body budget), so a pump held back by its own peer keeps little of it.
        if (in.data.size() <= Session::kPumpAhead) {
          piece.data.swap(in.data);
        } else {
          piece.data.assign(in.data, 0, Session::kPumpAhead);
          in.data.erase(0, Session::kPumpAhead);
        }
        session_->consumed(id_, in, piece.data.size());
        co_return piece;
      }
      if (in.done) {
        finished_ = true;
        if (in.error.empty()) {
          piece.end = true;
          piece.trailers = std::move(in.trailers);
        } else {
          piece.error = in.error;
        }
        co_return piece;
      }
      const bool notified = co_await in.changed.wait();
      auto state = co_await asio::this_coro::cancellation_state;
      if (!notified || state.cancelled() != asio::cancellation_type::none) {
        // The reader was cancelled: it takes nothing (what arrived stays for its next call);
        // dropping us gives the body up.
        piece.error = "cancelled";
        co_return piece;
      }
    }
  }

 private:
  std::shared_ptr<Session> session_;
  int32_t id_;
  std::shared_ptr<Inbox> in_;
  bool finished_ = false;  // `end` or `error` was answered
};

}  // namespace

awaitable<void> Session::pump_body(std::weak_ptr<Session> weak, int32_t id,
                                   std::shared_ptr<BodyPump> pump,
                                   std::shared_ptr<BodySource> source, uint32_t reset_code) {
  using namespace asio::experimental::awaitable_operators;
  // However the pump ends while its stream still waits for more (a wait cancelled), the
  // stream is reset rather than left deferred until an idle timeout.
  struct ResetUnfinished {
    const std::weak_ptr<Session>& weak;
    int32_t id;
    uint32_t code;
    ~ResetUnfinished() {
      std::shared_ptr<Session> held;
      OutBody* out = alive(weak, id, held);
      if (out == nullptr || !out->more) return;
      out->more = false;
      reset_stream(*held, id, code);
    }
  } reset_unfinished{weak, id, reset_code};
  for (;;) {
    for (;;) {
      std::shared_ptr<Session> held;
      OutBody* out = alive(weak, id, held);
      if (out == nullptr) co_return;
      if (out->data.size() - out->offset < kPumpAhead) break;
      held.reset();
      // (A source whose sender is done meanwhile is pulled at once: its rest is here already,
      // and a failure resets the stream.)
      auto waited = co_await (pump->sent.wait_until(source->deadline()) || source->until_done());
      if (waited.index() == 1) break;
      auto woke = std::get<0>(waited);
      if (woke == async::Event::Wake::kCancelled) co_return;
      if (woke == async::Event::Wake::kExpired) break;
    }
    auto next = co_await (next_piece(*source) || pump->closed.wait());
    if (next.index() == 1) co_return;  // the stream ended first: dropping the source gives it up
    BodySource::Piece piece = std::get<0>(std::move(next));
    std::shared_ptr<Session> held;
    OutBody* out = alive(weak, id, held);
    if (out == nullptr) co_return;
    if (!piece.error.empty()) {
      ZT_LOG_DEBUG(
          "component=waypoint_h2 msg=\"body source failed, stream reset\" stream={} "
          "error=\"{}\"",
          id, piece.error);
      out->more = false;
      reset_stream(*held, id, reset_code);
      co_return;
    }
    out->data += piece.data;
    if (piece.end) {
      http::strip_hop_by_hop(piece.trailers);
      out->trailers = std::move(piece.trailers);
      out->more = false;
    }
    nghttp2_session_resume_data(held->ng_, id);
    held->wake();
    if (piece.end) co_return;
  }
}

std::shared_ptr<BodySource> Session::inbox_source(std::shared_ptr<Session> session, int32_t id,
                                                  std::shared_ptr<Inbox> inbox) {
  return std::make_shared<InboxSource>(std::move(session), id, std::move(inbox));
}

void Session::hold(Inbox& in, const uint8_t* data, size_t len) {
  in.unconsumed += len;
  in.data.append(reinterpret_cast<const char*>(data), len);
  in.changed.notify();
}

void Session::consumed(int32_t id, Inbox& in, size_t n) {
  n = std::min(n, in.unconsumed);
  in.unconsumed -= n;
  if (n == 0 || ng_ == nullptr || ended_) return;
  nghttp2_session_consume_stream(ng_, id, n);
  wake();
}

// ---------------------------------------------------------------------------------------------
// Session

Session::Session(asio::any_io_executor ex, Duplex io)
    : ex_(std::move(ex)), io_(std::move(io)), writer_(ex_), parked_(ex_) {}

Session::~Session() {
  if (ng_ != nullptr) nghttp2_session_del(ng_);
}

bool Session::feed(const uint8_t* data, size_t n) {
  const ssize_t rv = nghttp2_session_mem_recv(ng_, data, n);
  wake();
  if (rv < 0) {
    ZT_LOG_DEBUG("component=waypoint_h2 msg=\"protocol error\" error=\"{}\"",
                 nghttp2_strerror(static_cast<int>(rv)));
    fatal_ = true;
    return false;
  }
  return true;
}

awaitable<void> Session::pump(std::string already_read) {
  using namespace asio::experimental::awaitable_operators;
  // A cancelled session (a drain) still says goodbye below; the caller's setting is restored.
  const bool throw_if_cancelled = co_await asio::this_coro::throw_if_cancelled();
  co_await asio::this_coro::throw_if_cancelled(false);
  co_await (read_loop(std::move(already_read)) || write_loop());
  auto cancelled = (co_await asio::this_coro::cancellation_state).cancelled();
  if (cancelled != asio::cancellation_type::none && !fatal_) {
    nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
  }
  // A protocol error or a drain cancels the writer with the reader: flush the GOAWAY once.
  if (!out_.empty() || nghttp2_session_want_write(ng_) != 0) {
    nghttp2_session_send(ng_);
    if (!out_.empty()) {
      std::string last;
      last.swap(out_);
      co_await async::with_timeout(io_.write_all(asio::buffer(last)), std::chrono::seconds(1));
    }
  }
  ended_ = true;
  co_await io_.shutdown_write();
  co_await asio::this_coro::throw_if_cancelled(throw_if_cancelled);
}

awaitable<void> Session::read_loop(std::string already_read) {
  if (!already_read.empty() &&
      !feed(reinterpret_cast<const uint8_t*>(already_read.data()), already_read.size())) {
    co_await parked_.wait();
    co_return;
  }
  std::vector<uint8_t> buf(kReadBufferSize);
  for (;;) {
    auto [ec, n] = co_await io_.read_some(asio::buffer(buf));
    if (ec) {
      if (ec != asio::error::eof) {
        ZT_LOG_DEBUG("component=waypoint_h2 msg=\"read failed\" error=\"{}\"", ec.message());
        co_return;  // nothing more can be written either
      }
      // The peer sent everything: the writer may still owe answers.
      peer_eof_ = true;
      on_peer_eof();
      wake();
      co_await parked_.wait();
      co_return;
    }
    if (!feed(buf.data(), n)) {
      co_await parked_.wait();
      co_return;
    }
  }
}

awaitable<void> Session::write_loop() {
  std::string writing;
  for (;;) {
    const int rv = nghttp2_session_send(ng_);
    if (rv != 0) {
      ZT_LOG_DEBUG("component=waypoint_h2 msg=\"send failed\" error=\"{}\"", nghttp2_strerror(rv));
      co_return;
    }
    if (!out_.empty()) {
      writing.swap(out_);
      const error_code ec = co_await io_.write_all(asio::buffer(writing));
      if (ec) co_return;
      writing.clear();
      continue;
    }
    if (fatal_) co_return;
    if (nghttp2_session_want_read(ng_) == 0 && nghttp2_session_want_write(ng_) == 0) co_return;
    if (peer_eof_ && idle_after_peer_eof()) co_return;
    if (!co_await writer_.wait()) co_return;
  }
}

}  // namespace zt::waypoint::http2
