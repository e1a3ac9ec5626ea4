// Private to waypoint/http2: what the downstream server and the upstream client share. One
// nghttp2 session driven over a Duplex by two coroutines (a reader feeding nghttp2, a writer
// draining it), and outgoing message bodies handed to nghttp2 without copies.
//
// Invariants:
// - Everything runs on one executor; nghttp2 is only entered from it; nothing locks.
// - At most kOutHighWater bytes of serialized frames wait for the peer: nghttp2 is told to
//   wait (WOULDBLOCK) beyond that, so a peer that does not read does not grow our memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nghttp2/nghttp2.h>

#include "common/async/asio.h"
#include "common/async/timeout.h"
#include "common/base/result.h"
#include "waypoint/http/headers.h"
#include "waypoint/message/duplex.h"
#include "waypoint/message/message.h"

namespace zt::waypoint::http2 {

// A message body (and its trailers) being sent on one stream; nghttp2's data source.
struct OutBody {
  int32_t stream_id = -1;
  std::string data;
  size_t offset = 0;
  http::HeaderList trailers;  // sent as a final HEADERS frame when not empty
  // A streamed body: more data is coming, so an empty buffer defers the stream (the role
  // appends, then nghttp2_session_resume_data) instead of ending it.
  bool more = false;
  async::Event* sent = nullptr;  // notified whenever a DATA frame of it was written
};

// What a streamed outgoing body's pump (Session::pump_body) and its stream share; the pump holds
// it past the stream's end, so it never waits on an event that is gone.
struct BodyPump {
  explicit BodyPump(const asio::any_io_executor& ex) : sent(ex), closed(ex) {}
  async::Event sent;    // a DATA frame of the body was written
  async::Event closed;  // the stream or the connection ended
  // Wakes the pump wherever it waits.
  void end() {
    sent.notify();
    closed.notify();
  }
};

// A body arriving on one stream: buffered whole by the role, or read as it comes through
// Session::inbox_source (a streamed body, whose stream window is given back only as its reader
// takes the bytes).
struct Inbox {
  explicit Inbox(const asio::any_io_executor& ex) : changed(ex) {}
  std::string data;           // arrived and not yet taken
  http::HeaderList trailers;  // complete once `done`
  bool done = false;          // the body ended (or failed: `error`)
  std::string error;
  size_t unconsumed = 0;  // streamed: bytes arrived whose stream window is still held
  async::Event changed;   // data, trailers or the end arrived
};

// Name/value pairs for nghttp2, pointing into strings the builder owns.
class HeaderBlock {
 public:
  void add(std::string name, std::string value);
  // Regular fields: names lower-cased; pseudo-headers and empty names dropped.
  void add_regular(const http::HeaderList& headers);
  const nghttp2_nv* data();
  size_t size() const { return fields_.size(); }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
  std::vector<nghttp2_nv> nva_;
};

class Session {
 public:
  static constexpr size_t kReadBufferSize = 32 * 1024;
  static constexpr size_t kOutHighWater = 256 * 1024;

  Session(asio::any_io_executor ex, Duplex io);
  virtual ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  nghttp2_session* ng() const { return ng_; }
  const asio::any_io_executor& executor() const { return ex_; }
  bool ended() const { return ended_; }
  // Asks the writer to run nghttp2 again (after a submit or a consumed window).
  void wake() { writer_.notify(); }

  // How a role's nghttp2 session is made.
  struct Setup {
    bool server = false;
    bool http_messaging = true;  // nghttp2's own HTTP checks (off: the server checks itself)
    size_t max_send_header_block = 64 * 1024;
    std::vector<nghttp2_settings_entry> settings;
    int32_t connection_window = 65535;
    // WINDOW_UPDATE only for what the role says it consumed (nghttp2_session_consume), so a
    // body nobody reads yet stops its sender instead of growing our memory.
    bool manual_window = false;
    // Registers the role's callbacks on top of the common ones (output, DATA from OutBody).
    void (*add_callbacks)(nghttp2_session_callbacks*) = nullptr;
  };
  // Creates the session (user data: this Session) and queues SETTINGS and the window.
  Status start_session(const Setup& setup);
  // A data provider sending `body` (then its trailers); nullopt-like `has` false when the
  // message has neither body nor trailers (END_STREAM on the HEADERS frame).
  static nghttp2_data_provider provider(OutBody& body);
  static bool needs_provider(const OutBody& body) {
    return !body.data.empty() || !body.trailers.empty() || body.more;
  }

  // The next piece of a streamed outgoing body pulled only once less than this waits for the
  // peer's window (pump_body).
  static constexpr size_t kPumpAhead = 64 * 1024;
  // Feeds `source` into stream `id`'s OutBody (whose `more` is set and whose `sent` is
  // pump->sent) as the peer takes it: the next piece is pulled only once less than kPumpAhead
  // bytes wait, so a slow peer holds back the source (and whoever feeds it), unless the
  // source's deadline passes (it is pulled then, to answer its timeout) or its own sender is
  // done with it (BodySource::until_done: the rest is pulled at once). A failed source (or one
  // that throws) resets the stream with `reset_code`; a stream that ends first (pump->closed)
  // drops the source, which gives it up. Any other way out resets a stream still waiting.
  static awaitable<void> pump_body(std::weak_ptr<Session> weak, int32_t id,
                                   std::shared_ptr<BodyPump> pump,
                                   std::shared_ptr<BodySource> source, uint32_t reset_code);

  // The body a streamed incoming `inbox` of stream `id` gives its reader: its data as it
  // arrives, then its trailers or its error. What the reader takes is given back to the
  // stream's window (consumed); a reader dropped before the end calls gave_up().
  static std::shared_ptr<BodySource> inbox_source(std::shared_ptr<Session> session, int32_t id,
                                                  std::shared_ptr<Inbox> inbox);
  // Arrived DATA of a body read through inbox_source, held until its reader takes it: its
  // stream window is given back only then (consumed). The connection window is the role's to
  // give back (one stream nobody reads must not hold up the others).
  static void hold(Inbox& in, const uint8_t* data, size_t len);
  // The reader took `n` bytes of stream `id`: the peer may send that many more on it.
  virtual void consumed(int32_t id, Inbox& in, size_t n);
  // The reader of stream `id`'s inbox went away before its end.
  virtual void gave_up(int32_t id, Inbox& in) = 0;
  // The body being sent on stream `id` while the stream is open; nullptr otherwise.
  virtual OutBody* out_body(int32_t id) = 0;

 protected:
  // Runs until the peer closes (and, then, until idle_after_peer_eof()), an I/O error, a
  // protocol error or nghttp2 has nothing left to read or write (GOAWAY sent after terminate).
  // `already_read` is fed to nghttp2 first.
  awaitable<void> pump(std::string already_read);
  // True when nothing is left to answer once the peer stopped sending.
  virtual bool idle_after_peer_eof() const = 0;
  // The peer stopped sending (its end of the connection is closed): what it had not finished
  // sending never will be.
  virtual void on_peer_eof() {}

  asio::any_io_executor ex_;
  Duplex io_;
  nghttp2_session* ng_ = nullptr;
  bool ended_ = false;
  bool peer_eof_ = false;
  bool fatal_ = false;  // protocol or I/O error: flush what nghttp2 queued (GOAWAY) and end

 private:
  friend struct CommonCallbacks;
  awaitable<void> read_loop(std::string already_read);
  awaitable<void> write_loop();
  bool feed(const uint8_t* data, size_t n);

  std::string out_;
  async::Event writer_;
  async::Event parked_;  // never notified: a finished reader waits here until the writer ends
};

// "PROTOCOL_ERROR", "REFUSED_STREAM", ... for an HTTP/2 error code.
std::string_view error_code_name(uint32_t code);

}  // namespace zt::waypoint::http2
