// serve_http1(): the downstream HTTP/1.1 session. One request at a time: head (raw checks,
// Beast, field checks), optional 100 Continue, body, handler, response; then the next request
// from the bytes already buffered (pipelining) or a new read (keep-alive). While the handler
// runs, an HBONE downstream is watched for its peer's end (Watch).
#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "common/base/log.h"
#include "waypoint/base/strings.h"
#include "waypoint/http/forwarding.h"
#include "waypoint/http/request_checks.h"
#include "waypoint/http1/http1.h"
#include "waypoint/http1/wire.h"

namespace zt::waypoint::http1 {

using namespace detail;  // NOLINT(google-build-using-namespace): private helpers of this folder

namespace {

// Beast needs the head in one piece; its own limit is only a backstop behind check_raw_head.
constexpr size_t kBeastHeadSlack = 4096;

using Clock = std::chrono::steady_clock;
using Wait = std::optional<Clock::duration>;  // nullopt: no limit

// A configured timeout; zero disables it.
Wait limit_of(std::chrono::milliseconds d) {
  if (d.count() <= 0) return std::nullopt;
  return Clock::duration(d);
}

Wait shorter(Wait a, Wait b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

struct StreamedRequest;

struct Rejected {
  int status;
  std::string reason;
};

// What one request produced: the message for the handler, or a rejection, or nothing (the peer
// closed or the stream failed; the session ends without an answer).
struct ReadOutcome {
  std::optional<Request> request;
  std::optional<Rejected> rejected;
  bool keep_alive = false;
  bool upgrade = false;
  std::shared_ptr<StreamedRequest> streamed;  // the request's body streams (Request::source)
};

// The head as check_request_head wants it, split by hand (used when Beast refused a head whose
// lines check_raw_head accepted, so the answer carries the check's status when it has one).
http::RequestHead split_head(std::string_view head, http::Version& version) {
  http::RequestHead out;
  version = http::Version::kHttp11;
  size_t pos = head.find("\r\n");
  const std::string_view line = head.substr(0, pos);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = line.rfind(' ');
  if (sp1 != line.npos && sp2 != line.npos && sp2 > sp1) {
    out.method = std::string(line.substr(0, sp1));
    out.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
    if (line.substr(sp2 + 1) == "HTTP/1.0") version = http::Version::kHttp10;
  }
  while (pos != head.npos) {
    pos += 2;
    const size_t end = head.find("\r\n", pos);
    const std::string_view field = head.substr(pos, end == head.npos ? head.npos : end - pos);
    pos = end;
    if (field.empty()) break;
    const size_t colon = field.find(':');
    if (colon == field.npos) continue;
    out.headers.push_back(
        {std::string(field.substr(0, colon)), std::string(trim_ows(field.substr(colon + 1)))});
  }
  return out;
}

std::string serialize_rejection(const Rejected& r) {
  std::string out = "HTTP/1.1 ";
  out.append(std::to_string(r.status));
  out.push_back(' ');
  out.append(reason_phrase(r.status));
  out.append("\r\ncontent-type: text/plain\r\ncontent-length: ");
  out.append(std::to_string(r.reason.size()));
  out.append("\r\nconnection: close\r\n\r\n");
  out.append(r.reason);
  return out;
}

// The downstream, watched while a request is handled, where the stream can tell without a read
// that its peer ended (an HBONE stream). A peer that ends its side then has gone away: as Envoy
// resets the request of an HTTP/1.1 client that closes (downstream_remote_disconnect, flag DC),
// the handler is told (Request::gone) and cancelled, and the request is not answered.
struct Watch {
  asio::cancellation_signal signal;  // the session coroutine's
  std::shared_ptr<DownstreamGone> gone = std::make_shared<DownstreamGone>();
  bool handling = false;  // a handler runs
  bool ended = false;     // the peer ended its side

  // Posted by the stream, so never inside its own callbacks.
  void peer_ended() {
    ended = true;
    if (handling) cancel_handler();
  }
  // Also called by the session itself when a handler starts after the end: the cancellation
  // then stays on the session coroutine, so the handler's first wait ends at once.
  void cancel_handler(std::string_view flag = "DC",
                      std::string why = "the downstream connection ended") {
    if (gone->happened()) return;
    gone->flag = flag;
    gone->why = std::move(why);
    signal.emit(asio::cancellation_type::terminal);
  }
};

// A request body past Limits::stream_bodies_after, read from the downstream as the handler
// pulls it (Request::source): the parser goes on where read_request left it, with the bytes
// read past the head. What it reads past the body (a pipelined request) goes back to the
// session once the body has ended; a body the handler left unread, or that broke, ends the
// connection after the answer (its framing is lost).
struct StreamedRequest {
  Duplex stream;  // the downstream (a handle of its own: a read may outlive the session)
  std::string buffer;
  std::unique_ptr<RequestParser> parser;
  Limits limits;
  std::shared_ptr<Watch> watch;  // null: not watched
  bool reading = false;          // a read of the downstream is pending
  bool ended = false;            // the body ended whole
  bool failed = false;
  bool closed = false;  // the session is done with the request: nothing more is read
};

class StreamedRequestBody final : public BodySource {
 public:
  explicit StreamedRequestBody(std::shared_ptr<StreamedRequest> st) : st_(std::move(st)) {}

  awaitable<Piece> next() override {
    const auto keep = st_;
    StreamedRequest& st = *keep;
    RequestParser& parser = *st.parser;
    if (st.ended || st.failed) co_return failed("body already ended");
    if (st.closed) co_return failed("the request is no longer being read");
    if (st.reading) co_return refused("the body is being read by another reader");
    for (;;) {
      if (!parser.body.empty()) {
        Piece piece;
        piece.data = std::exchange(parser.body, std::string());
        co_return piece;
      }
      if (parser.is_done()) {
        st.ended = true;
        Piece piece;
        piece.end = true;
        piece.trailers = std::move(parser.trailers);
        co_return piece;
      }
      const error_code ec = feed(parser, st.buffer);
      if (!ec || !parser.body.empty()) continue;  // what it parsed goes out first
      if (ec == bhttp::error::header_limit) co_return failed("request trailers too large");
      if (ec != bhttp::error::need_more) {
        co_return failed(fmt::format("invalid request body: {}", ec.message()));
      }
      if (st.buffer.size() > st.limits.max_header_bytes) {
        co_return failed("request chunk line or trailers too large");
      }
      st.reading = true;
      const std::optional<error_code> rec =
          co_await read_more_within(st.stream, st.buffer, limit_of(st.limits.stream_idle_timeout));
      st.reading = false;
      if (rec && *rec == asio::error::operation_aborted) {
        // The reader stopped waiting (its pull was cancelled): nothing was taken, the body
        // goes on for the next pull.
        co_return refused("the read was cancelled");
      }
      if (!rec) {
        // As Envoy's stream idle timeout: the request is given up (its handler cancelled).
        gone(co_await asio::this_coro::executor, "SI",
             "the stream idle timeout passed inside the request body");
        co_return failed("stream idle timeout inside the request body");
      }
      if (*rec) {
        gone(co_await asio::this_coro::executor, "DC",
             "the downstream connection ended inside the request body");
        co_return failed(
            fmt::format("the downstream ended inside the request body: {}", rec->message()));
      }
    }
  }

 private:
  Piece failed(std::string why) {
    if (!st_->ended) st_->failed = true;
    return refused(std::move(why));
  }
  // An error for this pull only; the body itself goes on.
  static Piece refused(std::string why) {
    Piece piece;
    piece.error = std::move(why);
    return piece;
  }
  // The downstream went away: its handler is told and cancelled (posted: this runs inside it).
  // Told at once (the handler may answer before the post runs: that answer is not written),
  // cancelled from the post.
  void gone(const asio::any_io_executor& ex, std::string_view flag, std::string why) {
    const auto& watch = st_->watch;
    if (!watch || st_->closed || watch->gone->happened()) return;
    watch->gone->flag = flag;
    watch->gone->why = std::move(why);
    asio::post(ex, [watch] {
      if (watch->handling) watch->signal.emit(asio::cancellation_type::terminal);
    });
  }

  std::shared_ptr<StreamedRequest> st_;
};

class Session {
 public:
  Session(Duplex downstream, std::string already_read, const Limits& limits, RequestHandler handler,
          std::shared_ptr<Watch> watch)
      : stream_(std::move(downstream)),
        buffer_(std::move(already_read)),
        limits_(limits),
        handler_(std::move(handler)),
        watch_(std::move(watch)),
        idle_since_(Clock::now()) {}

  awaitable<void> run() {
    for (;;) {
      ReadOutcome in = co_await read_request();
      if (in.rejected) {
        ZT_LOG_DEBUG("http1: request rejected with {}: {}", in.rejected->status,
                     in.rejected->reason);
        const std::string rejection_wire = serialize_rejection(*in.rejected);
        if (!co_await stream_.write_all(asio::buffer(rejection_wire))) co_await close();
        co_return;
      }
      if (!in.request) co_return;  // the peer closed, the stream failed, or the idle timeout

      const bool head_request = in.request->head.method == "HEAD";
      const HttpVersion version = in.request->version;
      if (watch_) {
        in.request->gone = watch_->gone;
        watch_->handling = true;
        if (watch_->ended) watch_->cancel_handler();  // ended with (or before) the request
      }
      Response res;
      try {
        res = co_await handler_(std::move(*in.request));
      } catch (const std::exception& e) {
        if (!watch_ || !watch_->gone->happened()) {
          ZT_LOG_ERROR("http1: request handler failed: {}", e.what());
        }
        res = local_response(500, "internal error");
        in.keep_alive = false;
      }
      if (const auto& body = in.streamed) {
        // The session reads again only after a body read to its end (the bytes past it are
        // the next request's); else the connection ends after this answer.
        body->closed = true;
        if (body->ended) {
          buffer_ = std::move(body->buffer);
        } else {
          in.keep_alive = false;
          if (body->reading) {
            // (An attempt given up still waits for its bytes: the stream has a reader.)
            stream_.abort();
            co_return;
          }
        }
      }
      if (watch_) {
        watch_->handling = false;
        if (watch_->gone->happened()) {
          // Nothing reaches the downstream any more; this coroutine may be cancelled, so it
          // awaits nothing else.
          ZT_LOG_DEBUG("http1: {} while its request was handled; not answered", watch_->gone->why);
          co_return;
        }
      }

      if (res.status == 101 || res.upgraded) {
        const bool relay = res.status == 101 && res.upgraded && in.upgrade;
        if (!relay) {
          // A 101 nobody relays, or a relay without a 101 (or for a request that did not ask
          // to upgrade): refuse rather than leave the client waiting on a dead tunnel.
          ZT_LOG_WARN("http1: handler answered status {} {} a relay to a request that {} upgrade",
                      res.status, res.upgraded ? "with" : "without",
                      in.upgrade ? "asked for an" : "did not ask for an");
          res = local_response(502, "upgrade failed");
          in.keep_alive = false;
        } else {
          std::string upgrade_head = "HTTP/1.1 101 Switching Protocols\r\n";
          append_fields(upgrade_head, res.headers);
          upgrade_head.append("\r\n");
          if (co_await stream_.write_all(asio::buffer(upgrade_head))) co_return;
          // Locals, not temporaries, across the suspension (g++ 12 coroutine pitfall).
          const auto relay_fn = std::move(res.upgraded);
          awaitable<void> relay = relay_fn(stream_, std::move(buffer_));
          co_await std::move(relay);
          co_return;
        }
      }

      const http::HopByHop hop = http::strip_hop_by_hop(res.headers);
      const bool keep_alive = in.keep_alive && !hop.connection_close;
      if (res.source && (head_request || bodyless_status(res.status))) res.source.reset();
      if (res.source) {
        if (!co_await write_streamed(res, version, keep_alive)) co_return;
        idle_since_ = Clock::now();
        continue;
      }
      const std::string response_wire = serialize_response(res, head_request, version, keep_alive);
      if (!co_await write_within_idle(response_wire)) co_return;
      if (!keep_alive) {
        co_await close();
        co_return;
      }
      idle_since_ = Clock::now();
    }
  }

 private:
  awaitable<void> close() {
    awaitable<void> linger = linger_close(stream_);  // no temporary across the suspension
    co_await std::move(linger);
  }

  static ReadOutcome reject(int status, std::string reason) {
    ReadOutcome out;
    out.rejected = Rejected{status, std::move(reason)};
    return out;
  }

  http::HeadLimits head_limits() const {
    http::HeadLimits l;
    l.max_head_bytes = limits_.max_header_bytes;
    l.max_headers = limits_.max_headers;
    return l;
  }

  // Drops empty lines before a request line (RFC 9112 §2.2: a server SHOULD ignore at least one;
  // some clients send a CRLF after a POST body).
  void skip_leading_empty_lines() {
    size_t i = 0;
    while (i + 1 < buffer_.size() && buffer_[i] == '\r' && buffer_[i + 1] == '\n') i += 2;
    if (i > 0) buffer_.erase(0, i);
  }

  awaitable<ReadOutcome> read_request() {
    const http::HeadLimits hl = head_limits();
    // 1. The raw head, checked before the parser sees it.
    size_t head_end = 0;
    size_t scanned = 0;    // where the blank line was last looked for
    bool new_line = true;  // a line ended in the last read: worth checking again
    std::optional<Clock::time_point> head_started;  // the first byte of this head
    for (;;) {
      if (scanned == 0) skip_leading_empty_lines();
      head_end = http::find_head_end(std::string_view(buffer_).substr(scanned));
      if (head_end != std::string::npos) {
        head_end += scanned;
        break;
      }
      scanned = buffer_.size() > 3 ? buffer_.size() - 3 : 0;
      // Incomplete: refuse early (bare LF, obs-fold, too large, too many fields). Checked only
      // when a line ended (at most max_headers times before 431) or the size limit is passed,
      // so a client sending a byte at a time costs no quadratic work.
      if (new_line || buffer_.size() > limits_.max_header_bytes) {
        if (auto ok = http::check_raw_head(buffer_, hl); !ok) {
          co_return reject(ok.error().status, ok.error().reason);
        }
        if (buffer_.size() > limits_.max_header_bytes) {
          co_return reject(431, "http1.headers_too_large");
        }
      }
      // Between requests the connection's idle timeout runs; from the head's first byte the
      // head timeout, and the stream idle timeout between reads.
      Wait wait;
      const Clock::time_point now = Clock::now();
      if (buffer_.empty()) {
        // Counted from the last answer: blank lines between requests do not reset it.
        if (auto t = limit_of(limits_.idle_timeout)) wait = idle_since_ + *t - now;
      } else {
        if (!head_started) head_started = now;
        Wait head_left;
        if (auto t = limit_of(limits_.request_headers_timeout)) {
          head_left = *head_started + *t - now;
        }
        wait = shorter(head_left, limit_of(limits_.stream_idle_timeout));
      }
      const size_t before = buffer_.size();
      const std::optional<error_code> ec = co_await read_more_within(stream_, buffer_, wait);
      if (!ec) {
        if (buffer_.empty()) {
          ZT_LOG_DEBUG("http1: connection idle for {} ms, closing", limits_.idle_timeout.count());
          co_return ReadOutcome{};
        }
        const bool head_expired = limits_.request_headers_timeout.count() > 0 &&
                                  Clock::now() >= *head_started + limits_.request_headers_timeout;
        co_return reject(408, head_expired ? "request_header_timeout" : "stream_idle_timeout");
      }
      if (*ec) {
        if (!buffer_.empty()) {
          ZT_LOG_DEBUG("http1: downstream ended inside a request head: {}", ec->message());
        }
        co_return ReadOutcome{};
      }
      new_line = buffer_.find('\n', before) != std::string::npos;
    }
    const std::string_view raw(buffer_.data(), head_end);
    if (auto ok = http::check_raw_head(raw, hl); !ok) {
      co_return reject(ok.error().status, ok.error().reason);
    }

    // 2. Beast parses the head; then the field checks.
    // (On the heap: a streamed body's reader takes it over.)
    auto parser_owned = std::make_unique<RequestParser>(limits_.max_headers);
    RequestParser& parser = *parser_owned;
    parser.header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes + kBeastHeadSlack));
    const size_t stream_after = limits_.stream_bodies_after;
    if (stream_after > 0) {
      parser.body_limit(boost::none);  // a long body streams
    } else {
      parser.body_limit(limits_.max_body_bytes);
    }
    parser.eager(false);
    error_code ec;
    const size_t used = parser.put(asio::buffer(buffer_.data(), head_end), ec);
    if (ec || !parser.is_header_done()) {
      http::Version v;
      const http::RequestHead manual = split_head(raw, v);
      if (auto framing = http::check_request_head(manual, v, hl); !framing) {
        co_return reject(framing.error().status, framing.error().reason);
      }
      if (ec == bhttp::error::body_limit) co_return reject(413, "request_body_too_large");
      if (ec == bhttp::error::header_limit) co_return reject(431, "headers_too_large");
      co_return reject(400, "http1.codec_error: " + (ec ? ec.message() : "incomplete head"));
    }
    buffer_.erase(0, used);

    const http::Version version =
        parser.version == 10 ? http::Version::kHttp10 : http::Version::kHttp11;
    http::RequestHead head;
    head.method = std::move(parser.method);
    head.target = std::move(parser.target);
    head.headers = std::move(parser.headers);
    auto framing = http::check_request_head(head, version, hl);
    if (!framing) co_return reject(framing.error().status, framing.error().reason);

    ReadOutcome out;
    out.keep_alive = parser.keep_alive();
    out.upgrade = version == http::Version::kHttp11 &&
                  http::find_header(head.headers, "upgrade").has_value() &&
                  header_has_token(head.headers, "connection", "upgrade");
    const bool has_body =
        framing->kind == http::BodyFraming::Kind::kChunked ||
        (framing->kind == http::BodyFraming::Kind::kContentLength && framing->content_length > 0);
    if (out.upgrade && has_body) co_return reject(400, "upgrade_with_body");
    if (stream_after == 0 && framing->kind == http::BodyFraming::Kind::kContentLength &&
        framing->content_length > limits_.max_body_bytes) {
      co_return reject(413, "request_body_too_large");
    }

    // 3. Expect: 100-continue is answered here and not passed on.
    bool expect_continue = false;
    for (auto it = head.headers.begin(); it != head.headers.end();) {
      if (iequals(it->name, "expect") && iequals(trim_ows(it->value), "100-continue")) {
        expect_continue = true;
        it = head.headers.erase(it);
      } else {
        ++it;
      }
    }
    if (expect_continue && has_body && version == http::Version::kHttp11 && !parser.is_done()) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      if (co_await stream_.write_all(asio::buffer(kContinue))) co_return ReadOutcome{};
    }

    // 4. The body, whole; or, once it passes stream_bodies_after, what is here, the rest read
    // as the handler pulls it.
    parser.eager(true);
    for (;;) {
      ec = feed(parser, buffer_);
      if (!ec) break;
      if (stream_after > 0 && parser.body.size() > stream_after && parser.is_header_done()) {
        out.streamed = std::make_shared<StreamedRequest>(StreamedRequest{
            .stream = stream_,
            .buffer = std::exchange(buffer_, std::string()),
            .parser = nullptr,
            .limits = limits_,
            .watch = watch_,
        });
        break;
      }
      if (ec == bhttp::error::body_limit) co_return reject(413, "request_body_too_large");
      if (ec == bhttp::error::header_limit) co_return reject(431, "trailers_too_large");
      if (ec != bhttp::error::need_more) {
        co_return reject(400, "http1.invalid_body: " + ec.message());
      }
      // Bytes wait unconsumed only while a chunk line or the trailers are incomplete.
      if (buffer_.size() > limits_.max_header_bytes) {
        co_return reject(431, "chunk_header_or_trailers_too_large");
      }
      const std::optional<error_code> rec =
          co_await read_more_within(stream_, buffer_, limit_of(limits_.stream_idle_timeout));
      if (!rec) co_return reject(408, "stream_idle_timeout");
      if (*rec) {
        ZT_LOG_DEBUG("http1: downstream ended inside a request body: {}", rec->message());
        co_return ReadOutcome{};
      }
    }

    // 5. The message for the handler: Host becomes the authority.
    Request req;
    req.version = version == http::Version::kHttp10 ? HttpVersion::kHttp10 : HttpVersion::kHttp11;
    if (auto host = http::find_header(head.headers, "host")) head.authority = std::string(*host);
    http::remove_header(head.headers, "host");
    req.head = std::move(head);
    req.body = std::exchange(parser.body, std::string());
    if (out.streamed) {
      out.streamed->parser = std::move(parser_owned);
      req.source = std::make_shared<StreamedRequestBody>(out.streamed);
    } else {
      req.trailers = std::move(parser.trailers);
    }
    out.request = std::move(req);
    co_return out;
  }

  static bool bodyless_status(int status) {
    return (status >= 100 && status < 200) || status == 204 || status == 304;
  }

  // An invalid status becomes a 500. Returns the Content-Length the response declared (a
  // valid one), which is taken out of its fields.
  static std::optional<uint64_t> prepare(Response& res) {
    if (res.status < 100 || res.status > 999) {
      ZT_LOG_WARN("http1: handler answered invalid status {}", res.status);
      res = local_response(500, "invalid response status");
    }
    std::optional<uint64_t> declared_length;
    if (auto cl = http::find_header(res.headers, "content-length")) {
      const std::string_view v = trim_ows(*cl);
      // (At most 19 digits: always within uint64_t.)
      if (!v.empty() && v.size() <= 19 && v.find_first_not_of("0123456789") == v.npos) {
        declared_length = std::stoull(std::string(v));
      }
    }
    http::remove_header(res.headers, "content-length");
    return declared_length;
  }

  // How a response's body is framed on the wire: chunked, a Content-Length, or neither (no
  // body, or the close ends it).
  struct Framing {
    bool chunked = false;
    std::optional<uint64_t> length;
  };

  // The status line, the fields, the framing field, the connection field and the blank line.
  static void append_head(std::string& out, const Response& res, Framing framing,
                          HttpVersion version, bool keep_alive) {
    out.append("HTTP/1.1 ");
    append_decimal(out, static_cast<uint64_t>(std::max(res.status, 0)));
    out.append(" ").append(reason_phrase(res.status)).append("\r\n");
    append_fields(out, res.headers);
    if (framing.chunked) {
      out.append("transfer-encoding: chunked\r\n");
    } else if (framing.length) {
      out.append("content-length: ");
      append_decimal(out, *framing.length);
      out.append("\r\n");
    }
    if (!keep_alive) {
      out.append("connection: close\r\n");
    } else if (version == HttpVersion::kHttp10) {
      out.append("connection: keep-alive\r\n");
    }
    out.append("\r\n");
  }

  // One chunk of a chunked body (nothing for empty data: a zero-size chunk would end it).
  static void append_chunk(std::string& out, std::string_view data) {
    if (data.empty()) return;
    append_hex(out, data.size());
    out.append("\r\n");
    out.append(data);
    out.append("\r\n");
  }

  // The last chunk and the trailers.
  static void append_last_chunk(std::string& out, const http::HeaderList& trailers) {
    out.append("0\r\n");
    append_fields(out, trailers);
    out.append("\r\n");
  }

  static std::string serialize_response(Response& res, bool head_request, HttpVersion version,
                                        bool keep_alive) {
    const std::optional<uint64_t> declared_length = prepare(res);
    const bool no_body = bodyless_status(res.status);
    const bool chunked =
        !no_body && !head_request && !res.trailers.empty() && version == HttpVersion::kHttp11;
    Framing framing{.chunked = chunked};
    if (!chunked && !no_body) {
      // HEAD: the length a GET would have had, the handler's when it said one.
      framing.length = head_request && declared_length ? *declared_length : res.body.size();
    } else if (no_body && res.status == 304) {
      framing.length = declared_length;
    }

    // One allocation: the status line, the fields, the framing lines and the body.
    std::string out;
    out.reserve(128 + fields_bytes(res.headers) + fields_bytes(res.trailers) + res.body.size());
    append_head(out, res, framing, version, keep_alive);
    if (no_body || head_request) return out;
    if (chunked) {
      append_chunk(out, res.body);
      append_last_chunk(out, res.trailers);
    } else {
      out.append(res.body);
    }
    return out;
  }

  // Writes `bytes`, each 64 KiB piece within the stream idle timeout; false (the stream aborted
  // when it timed out) when they could not be written.
  awaitable<bool> write_within_idle(std::string_view bytes) {
    const error_code wec = co_await write_all_within(stream_, bytes, limits_.stream_idle_timeout);
    if (wec == asio::error::timed_out) {
      ZT_LOG_DEBUG("http1: downstream took no response bytes for {} ms, closing",
                   limits_.stream_idle_timeout.count());
      stream_.abort();
    }
    co_return !wec;
  }

  // A response whose body is still coming (Response::source, after Response::body): the head
  // and what is there at once, then each piece as the source yields it. Framed by the
  // Content-Length the response declared, else chunked (trailers passed on), or for an
  // HTTP/1.0 client by closing. HTTP/1.1 has no other way to tell a broken body than to cut
  // the connection: a source that fails, or a body that does not match its Content-Length,
  // aborts it. True when the connection can serve the next request.
  awaitable<bool> write_streamed(Response& res, HttpVersion version, bool keep_alive) {
    std::shared_ptr<BodySource> source = std::move(res.source);
    res.source = nullptr;
    const std::optional<uint64_t> length = prepare(res);
    const bool chunked = !length && version == HttpVersion::kHttp11;
    if (!length && !chunked) keep_alive = false;  // the end of the body is the close
    std::string out;
    append_head(out, res, Framing{.chunked = chunked, .length = length}, version, keep_alive);
    uint64_t sent = 0;
    // Appends body bytes; false when they pass the declared length.
    auto add = [&](std::string_view data) {
      sent += data.size();
      if (length && sent > *length) return false;
      if (chunked) {
        append_chunk(out, data);
      } else {
        out.append(data);
      }
      return true;
    };
    auto broken = [&](std::string_view why) {
      ZT_LOG_DEBUG("http1: streamed response body broken ({}), connection aborted", why);
      stream_.abort();
      return false;
    };
    if (!add(res.body)) co_return broken("longer than its content-length");
    // While the body comes the downstream is watched as while a handler runs: its end stops
    // the body (DC), and so does a body with no piece for the stream idle timeout (SI), as
    // Envoy's stream idle timeout (the upstream stays held by the body until then).
    struct Unwatch {
      Watch* watch;
      ~Unwatch() {
        if (watch != nullptr) watch->handling = false;
      }
    } unwatch{watch_.get()};
    if (watch_) {
      watch_->handling = true;
      if (watch_->ended) watch_->cancel_handler();
    }
    const auto ex = co_await asio::this_coro::executor;
    try {
      for (;;) {
        if (!out.empty()) {
          if (!co_await write_within_idle(out)) co_return broken("the downstream took no more");
          out.clear();
        }
        BodySource::Piece piece;
        {
          // (`waiting` turns false once the piece is in: an expiry already queued then is
          // stale and cancels nothing.)
          std::optional<asio::steady_timer> idle;
          const auto waiting = std::make_shared<bool>(true);
          if (watch_ && limits_.stream_idle_timeout.count() > 0) {
            idle.emplace(ex, limits_.stream_idle_timeout);
            idle->async_wait([watch = watch_, waiting](error_code ec) {
              if (!ec && *waiting && watch->handling) {
                watch->cancel_handler("SI", "the stream idle timeout cut the response");
              }
            });
          }
          piece = co_await source->next();
          *waiting = false;
        }
        if (watch_ && watch_->gone->happened()) co_return broken(watch_->gone->why);
        if (!piece.error.empty()) co_return broken(piece.error);
        if (!add(piece.data)) co_return broken("longer than its content-length");
        if (!piece.end) continue;
        source.reset();
        if (length && sent != *length) co_return broken("shorter than its content-length");
        if (chunked) append_last_chunk(out, piece.trailers);
        if (!out.empty() && !co_await write_within_idle(out)) {
          co_return broken("the downstream took no more");
        }
        break;
      }
    } catch (const std::exception& e) {
      co_return broken(e.what());  // (cancelled: the downstream went away)
    }
    if (watch_) {
      watch_->handling = false;
      // Gone during the last write: this coroutine is cancelled, so it ends here.
      if (watch_->gone->happened()) co_return broken(watch_->gone->why);
    }
    if (!keep_alive) {
      co_await close();
      co_return false;
    }
    co_return true;
  }

  Duplex stream_;
  std::string buffer_;
  Limits limits_;
  RequestHandler handler_;
  std::shared_ptr<Watch> watch_;  // null: the downstream is not watched (a TCP socket)
  Clock::time_point idle_since_;  // the session began or the last response was written
};

}  // namespace

namespace {

awaitable<void> serve(Duplex downstream, std::string already_read, Limits limits,
                      RequestHandler handler) {
  auto watch = std::make_shared<Watch>();
  if (!downstream.on_peer_end([watch] { watch->peer_ended(); })) {
    Session session(std::move(downstream), std::move(already_read), limits, std::move(handler),
                    nullptr);
    co_await session.run();
    co_return;
  }
  Session session(downstream, std::move(already_read), limits, std::move(handler), watch);
  // The session runs under the watch's cancellation signal, and the caller's cancellation (a
  // drain's deadline) is passed on to it.
  asio::cancellation_slot outer = (co_await asio::this_coro::cancellation_state).slot();
  struct Unwatch {  // also when the co_spawn below throws (the caller was cancelled already)
    asio::cancellation_slot& outer;
    Duplex& downstream;
    ~Unwatch() {
      if (outer.is_connected()) outer.clear();
      downstream.on_peer_end({});
    }
  } unwatch{outer, downstream};
  if (outer.is_connected()) {
    outer.assign([watch](asio::cancellation_type type) { watch->signal.emit(type); });
  }
  auto executor = co_await asio::this_coro::executor;
  auto [failure] = co_await asio::co_spawn(
      executor, session.run(),
      asio::bind_cancellation_slot(watch->signal.slot(), asio::as_tuple(asio::use_awaitable)));
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

// Not a coroutine itself: `limits` is copied at the call, so a temporary is fine.
awaitable<void> serve_http1(Duplex downstream, std::string already_read, const Limits& limits,
                            RequestHandler handler) {
  return serve(std::move(downstream), std::move(already_read), limits, std::move(handler));
}

}  // namespace zt::waypoint::http1
