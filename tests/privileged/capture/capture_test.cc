// HBONE on the wire. An AF_PACKET socket captures lo while a client talks through ztunnel A's
// SOCKS5 listener and ztunnel B to an echo server behind B, then the test reads the capture
// itself (Ethernet, IPv4, TCP, TLS record and hello parsing are all here, no libpcap):
// - on <server ip>:15008 there is a ClientHello and a ServerHello that selects TLS 1.3 (0x0304,
//   supported_versions) with TLS_AES_128_GCM_SHA256 or TLS_AES_256_GCM_SHA384, and after the
//   hellos only encrypted records (application data, plus the compatibility change_cipher_spec),
//   which carry at least the bytes the client sent and received;
// - the client's plaintext marker never appears in any packet to or from port 15008, while the
//   same capture sees it on B's plain hop to the echo server (so the capture does work).
//
// On lo, AF_PACKET frames carry a 14-byte Ethernet header of zero addresses, and every packet
// passes the tap twice (transmit and receive); PACKET_IGNORE_OUTGOING keeps only the receive copy.
// The receive copy is queued before TCP hands the bytes to the receiving socket, so once the
// client has read its echo every data packet of the exchange is in the capture.
//
// Needs CAP_NET_RAW (skipped without it, failed without it when REQUIRE_PRIVILEGED=1).
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <net/if.h>
#include <poll.h>
#include <unistd.h>

#include "common/async/timeout.h"
#include "tests/support/coro.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint16_t kHbonePort = 15008;
constexpr uint16_t kEchoPort = 7000;
constexpr uint8_t kTlsChangeCipherSpec = 20;
constexpr uint8_t kTlsAlert = 21;
constexpr uint8_t kTlsHandshake = 22;
constexpr uint8_t kTlsApplicationData = 23;
constexpr uint8_t kClientHello = 1;
constexpr uint8_t kServerHello = 2;
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint16_t kExtSupportedVersions = 43;
constexpr uint16_t kTls13 = 0x0304;

std::error_code errno_code() { return std::error_code(errno, std::system_category()); }

// ---------------------------------------------------------------------------------------------
// Capture

// Captures IPv4 packets on lo to or from one /24 on a thread of its own until stop().
class LoopbackCapture {
 public:
  static Result<std::unique_ptr<LoopbackCapture>> start(const asio::ip::address_v4& net24) {
    std::unique_ptr<LoopbackCapture> c(new LoopbackCapture());
    // Protocol 0: the socket receives nothing until bind(), so no packet gets in before the
    // filter is attached.
    c->fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (c->fd_ < 0) return fail(errno_code(), "socket(AF_PACKET, SOCK_RAW)");

    // Classic BPF: keep IPv4 packets whose source or destination is in net24, whole.
    const uint32_t net = net24.to_uint() & 0xffffff00u;
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),               // ethertype
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 7),  // not IPv4: drop
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 14 + 12),          // source address
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xffffff00u),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, net, 3, 0),  // in net24: keep
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 14 + 16),     // destination address
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xffffff00u),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, net, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),  // keep
        BPF_STMT(BPF_RET | BPF_K, 0),            // drop
    };
    sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
    if (::setsockopt(c->fd_, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
      return fail(errno_code(), "SO_ATTACH_FILTER");
    }
    // Room for the whole exchange even if the reader thread falls behind (drops are checked).
    int rcvbuf = 32 << 20;
    if (::setsockopt(c->fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0) {
      ::setsockopt(c->fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    // Best effort (Linux 4.20+); the reader also skips PACKET_OUTGOING frames.
    int one = 1;
    ::setsockopt(c->fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));

    unsigned lo = ::if_nametoindex("lo");
    if (lo == 0) return fail(errno_code(), "if_nametoindex(lo)");
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(lo);
    if (::bind(c->fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
      return fail(errno_code(), "bind(AF_PACKET, lo)");
    }
    c->wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_ < 0) return fail(errno_code(), "eventfd");
    c->thread_ = std::thread([raw = c.get()] { raw->read_loop(); });
    return c;
  }

  ~LoopbackCapture() {
    stop();
    if (fd_ >= 0) ::close(fd_);
    if (wake_ >= 0) ::close(wake_);
  }
  LoopbackCapture(const LoopbackCapture&) = delete;
  LoopbackCapture& operator=(const LoopbackCapture&) = delete;

  // Stops (after reading every packet already queued) and returns the frames in arrival order.
  std::vector<std::string> stop() {
    if (thread_.joinable()) {
      uint64_t one = 1;
      ssize_t w = ::write(wake_, &one, sizeof(one));
      (void)w;
      thread_.join();
      tpacket_stats stats{};
      socklen_t len = sizeof(stats);
      if (::getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &stats, &len) == 0) {
        drops_ = stats.tp_drops;
      }
    }
    std::lock_guard lock(mu_);
    return frames_;
  }

  // Valid after stop(): packets the kernel dropped for lack of buffer, frames larger than the
  // read buffer, and any error of the reader.
  uint32_t drops() const { return drops_; }
  size_t truncated() const { return truncated_; }
  const std::string& error() const { return error_; }

 private:
  LoopbackCapture() = default;

  void read_loop() {
    std::vector<char> buf(256 * 1024);
    for (;;) {
      pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        error_ = "poll: " + errno_code().message();
        return;
      }
      const bool stopping = (fds[1].revents & POLLIN) != 0;
      for (;;) {
        sockaddr_ll from{};
        socklen_t from_len = sizeof(from);
        ssize_t n = ::recvfrom(fd_, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC,
                               reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          error_ = "recvfrom: " + errno_code().message();
          return;
        }
        if (static_cast<size_t>(n) > buf.size()) {
          ++truncated_;
          continue;
        }
        if (from.sll_pkttype == PACKET_OUTGOING) continue;
        std::lock_guard lock(mu_);
        frames_.emplace_back(buf.data(), static_cast<size_t>(n));
      }
      if (stopping) return;
    }
  }

  int fd_ = -1;
  int wake_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> frames_;
  uint32_t drops_ = 0;
  size_t truncated_ = 0;
  std::string error_;
};

// ---------------------------------------------------------------------------------------------
// Ethernet / IPv4 / TCP

// Bounds-checked big-endian reads over a byte string; `ok` turns false on the first overrun.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  uint8_t u8() { return static_cast<uint8_t>(take(1).empty() ? 0 : s_[pos_ - 1]); }
  uint16_t u16() {
    auto b = take(2);
    return b.size() == 2 ? static_cast<uint16_t>(byte(b, 0) << 8 | byte(b, 1)) : 0;
  }
  uint32_t u24() {
    auto b = take(3);
    return b.size() == 3 ? (byte(b, 0) << 16 | byte(b, 1) << 8 | byte(b, 2)) : 0;
  }
  std::string_view take(size_t n) {
    if (!ok_ || s_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    auto r = s_.substr(pos_, n);
    pos_ += n;
    return r;
  }
  bool ok() const { return ok_; }
  bool done() const { return pos_ == s_.size(); }
  size_t left() const { return s_.size() - pos_; }

 private:
  static uint32_t byte(std::string_view b, size_t i) { return static_cast<uint8_t>(b[i]); }
  std::string_view s_;
  size_t pos_ = 0;
  bool ok_ = true;
};

constexpr uint8_t kTcpSyn = 0x02;

struct TcpSegment {
  uint32_t src = 0, dst = 0;  // host byte order
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0;
  uint8_t flags = 0;
  std::string_view payload;  // points into the frame
};

// Parses an Ethernet + IPv4 + TCP frame; nullopt for anything else (or a fragment, which lo
// never produces).
std::optional<TcpSegment> parse_tcp(std::string_view frame) {
  Reader eth(frame);
  eth.take(12);
  if (eth.u16() != ETH_P_IP || !eth.ok()) return std::nullopt;
  std::string_view ip = frame.substr(14);
  Reader r(ip);
  uint8_t vihl = r.u8();
  if (!r.ok() || vihl >> 4 != 4) return std::nullopt;
  size_t ihl = (vihl & 0x0f) * 4u;
  r.u8();  // DSCP/ECN
  size_t total = r.u16();
  r.u16();  // identification
  uint16_t frag = r.u16();
  r.u8();  // TTL
  uint8_t proto = r.u8();
  r.u16();  // checksum
  TcpSegment seg;
  seg.src = static_cast<uint32_t>(r.u16()) << 16;
  seg.src |= r.u16();
  seg.dst = static_cast<uint32_t>(r.u16()) << 16;
  seg.dst |= r.u16();
  if (!r.ok() || proto != IPPROTO_TCP || (frag & 0x3fff) != 0) return std::nullopt;
  if (total == 0) total = ip.size();  // a GSO packet over 64 KiB ("BIG TCP") carries length 0
  if (ihl < 20 || total < ihl + 20 || total > ip.size()) return std::nullopt;
  std::string_view tcp = ip.substr(ihl, total - ihl);
  Reader t(tcp);
  seg.sport = t.u16();
  seg.dport = t.u16();
  seg.seq = static_cast<uint32_t>(t.u16()) << 16;
  seg.seq |= t.u16();
  t.take(4);  // ack
  size_t doff = (t.u8() >> 4) * 4u;
  seg.flags = t.u8();
  if (!t.ok() || doff < 20 || doff > tcp.size()) return std::nullopt;
  seg.payload = tcp.substr(doff);
  return seg;
}

// One direction of a TCP connection, put back in sequence order from its segments.
struct HalfStream {
  std::optional<uint32_t> isn;                                  // from the SYN
  std::vector<std::pair<uint32_t, std::string_view>> segments;  // seq, payload

  // The bytes from the first after the SYN, up to the first hole. `gap` tells whether a hole
  // stopped it (a segment the capture missed).
  std::string assemble(bool& gap) const {
    gap = false;
    std::string out;
    if (!isn) {
      gap = !segments.empty();
      return out;
    }
    auto parts = segments;
    for (auto& [seq, p] : parts) seq -= *isn + 1;  // offset in the stream (wraps correctly)
    std::stable_sort(parts.begin(), parts.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [off, p] : parts) {
      if (off > out.size()) {
        gap = true;
        break;
      }
      size_t skip = out.size() - off;  // a retransmission overlaps what we have
      if (skip < p.size()) out.append(p.substr(skip));
    }
    return out;
  }
};

struct TcpFlow {
  HalfStream to_server, to_client;
};

// ---------------------------------------------------------------------------------------------
// TLS

struct TlsRecord {
  uint8_t type = 0;
  uint16_t version = 0;
  std::string_view body;
};

struct TlsRecords {
  std::vector<TlsRecord> records;
  bool malformed = false;  // a header that is not a TLS record header
  size_t trailing = 0;     // bytes of a last record the capture holds only part of
};

TlsRecords split_records(std::string_view s) {
  TlsRecords out;
  while (!s.empty()) {
    Reader r(s);
    TlsRecord rec;
    rec.type = r.u8();
    rec.version = r.u16();
    uint16_t len = r.u16();
    if (!r.ok()) {
      out.trailing = s.size();
      break;
    }
    if (rec.type < kTlsChangeCipherSpec || rec.type > kTlsApplicationData ||
        (rec.version != 0x0301 && rec.version != 0x0303) || len > (1 << 14) + 256) {
      out.malformed = true;
      break;
    }
    if (r.left() < len) {
      out.trailing = s.size();
      break;
    }
    rec.body = r.take(len);
    out.records.push_back(rec);
    s.remove_prefix(5 + len);
  }
  return out;
}

struct HandshakeMessage {
  uint8_t type = 0;
  std::string_view body;
};

// Every plaintext handshake message of one direction: the bodies of its type-22 records, which
// in TLS 1.3 hold only the hellos (everything after them is encrypted as type 23). A message
// may span records, so the bodies are joined first; `joined` keeps them alive.
std::vector<HandshakeMessage> handshake_messages(const TlsRecords& recs, std::string& joined,
                                                 bool& malformed) {
  joined.clear();
  for (const auto& r : recs.records) {
    if (r.type == kTlsHandshake) joined.append(r.body);
  }
  std::vector<HandshakeMessage> out;
  Reader rd(joined);
  malformed = false;
  while (!rd.done()) {
    HandshakeMessage m;
    m.type = rd.u8();
    uint32_t len = rd.u24();
    m.body = rd.take(len);
    if (!rd.ok()) {
      malformed = true;
      break;
    }
    out.push_back(m);
  }
  return out;
}

// RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
constexpr unsigned char kHelloRetryRandom[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C};

struct Extensions {
  std::map<uint16_t, std::string_view> by_type;
  bool ok = true;
};

Extensions parse_extensions(Reader& r) {
  Extensions e;
  uint16_t total = r.u16();
  Reader x(r.take(total));
  e.ok = r.ok();
  while (e.ok && !x.done()) {
    uint16_t type = x.u16();
    uint16_t len = x.u16();
    auto data = x.take(len);
    e.ok = x.ok();
    if (e.ok) e.by_type[type] = data;
  }
  return e;
}

struct ServerHello {
  bool parsed = false;
  bool hello_retry = false;
  uint16_t legacy_version = 0;
  uint16_t cipher_suite = 0;
  std::optional<uint16_t> selected_version;
};

ServerHello parse_server_hello(std::string_view body) {
  ServerHello h;
  Reader r(body);
  h.legacy_version = r.u16();
  auto random = r.take(32);
  r.take(r.u8());  // legacy_session_id_echo
  h.cipher_suite = r.u16();
  r.u8();  // legacy_compression_method
  auto ext = parse_extensions(r);
  if (!r.ok() || !ext.ok) return h;
  h.parsed = true;
  h.hello_retry = random == std::string_view(reinterpret_cast<const char*>(kHelloRetryRandom), 32);
  if (auto it = ext.by_type.find(kExtSupportedVersions);
      it != ext.by_type.end() && it->second.size() == 2) {
    Reader v(it->second);
    h.selected_version = v.u16();
  }
  return h;
}

struct ClientHello {
  bool parsed = false;
  std::vector<uint16_t> versions;  // supported_versions
  std::vector<uint16_t> cipher_suites;
  std::vector<std::string> alpn;
  bool has_sni = false;
};

ClientHello parse_client_hello(std::string_view body) {
  ClientHello h;
  Reader r(body);
  r.u16();         // legacy_version
  r.take(32);      // random
  r.take(r.u8());  // legacy_session_id
  Reader suites(r.take(r.u16()));
  r.take(r.u8());  // legacy_compression_methods
  auto ext = parse_extensions(r);
  if (!r.ok() || !ext.ok) return h;
  while (suites.ok() && !suites.done()) h.cipher_suites.push_back(suites.u16());
  h.has_sni = ext.by_type.count(kExtServerName) != 0;
  if (auto it = ext.by_type.find(kExtSupportedVersions); it != ext.by_type.end()) {
    Reader v(it->second);
    Reader list(v.take(v.u8()));
    while (list.ok() && !list.done()) h.versions.push_back(list.u16());
  }
  if (auto it = ext.by_type.find(kExtAlpn); it != ext.by_type.end()) {
    Reader a(it->second);
    Reader list(a.take(a.u16()));
    while (list.ok() && !list.done()) {
      auto name = list.take(list.u8());
      if (list.ok()) h.alpn.emplace_back(name);
    }
  }
  h.parsed = true;
  return h;
}

// ---------------------------------------------------------------------------------------------
// The test

// 32 random letters and digits: plaintext that cannot turn up by chance in ciphertext.
std::string random_marker() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
  std::string m;
  for (int i = 0; i < 32; ++i) m.push_back(kAlphabet[pick(rd)]);
  return m;
}

// The client: SOCKS5 through A, one HTTP request to the echo server, read the echo back.
awaitable<void> send_through_mesh(tcp::endpoint socks5, tcp::endpoint echo, std::string request,
                                  std::string& echoed) {
  auto sock = co_await socks5_connect(socks5, echo);
  if (!sock) {
    ADD_FAILURE() << sock.error().describe();
    co_return;
  }
  auto [wec, wn] = co_await asio::async_write(*sock, asio::buffer(request), kTuple);
  EXPECT_FALSE(wec) << wec.message();
  echoed.assign(request.size(), '\0');
  auto r = co_await async::with_timeout(
      asio::async_read(*sock, asio::buffer(echoed.data(), echoed.size()), kTuple), 20s);
  EXPECT_TRUE(r.has_value()) << "no echo within 20s";
  if (r) {
    EXPECT_FALSE(std::get<0>(*r)) << std::get<0>(*r).message();
  }
  error_code ec;
  sock->shutdown(tcp::socket::shutdown_both, ec);
  sock->close(ec);
}

TEST(PrivilegeRule, AMissingPrivilegeSkipsUnlessRequirePrivilegedMakesItFail) {
  EXPECT_EQ(privilege_verdict(true, false), PrivilegeVerdict::kRun);
  EXPECT_EQ(privilege_verdict(true, true), PrivilegeVerdict::kRun);
  EXPECT_EQ(privilege_verdict(false, false), PrivilegeVerdict::kSkip);
  EXPECT_EQ(privilege_verdict(false, true), PrivilegeVerdict::kFail);
}

TEST(HboneOnTheWire, ZtunnelToZtunnelTrafficIsTls13AndTheClientsPlaintextNeverCrossesPort15008) {
  ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kNetRaw),
                       "needs CAP_NET_RAW for an AF_PACKET capture on lo");
  const auto client_ip = asio::ip::make_address_v4("127.0.31.2");
  const auto server_ip = asio::ip::make_address_v4("127.0.31.3");
  auto capture = LoopbackCapture::start(asio::ip::make_address_v4("127.0.31.0"));
  ASSERT_TRUE(capture) << capture.error().describe();

  TempDir dir;
  TestPki pki;
  auto ca = pki.write_ca_files(dir.path());
  auto config = dir.path() / "mesh.yaml";
  write_file(config, two_workload_mesh_yaml(client_ip.to_string(), server_ip.to_string()));
  auto a = ZtunnelProcess::start({.name = "client",
                                  .config = config,
                                  .ca_cert = ca.cert_path,
                                  .ca_key = ca.key_path,
                                  .workers = 1});
  ASSERT_TRUE(a) << a.error().describe();
  auto b = ZtunnelProcess::start({.name = "server",
                                  .config = config,
                                  .ca_cert = ca.cert_path,
                                  .ca_key = ca.key_path,
                                  .socks5 = false,
                                  .workers = 1});
  ASSERT_TRUE(b) << b.error().describe();
  auto echo = EchoServer::start(tcp::endpoint(server_ip, kEchoPort));

  const std::string marker = random_marker();
  std::string body;
  for (int i = 0; i < 128; ++i) body += marker;
  const std::string request = fmt::format(
      "POST /capture HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: text/plain\r\nContent-Length: "
      "{}\r\n\r\n{}",
      server_ip.to_string(), kEchoPort, body.size(), body);
  std::string echoed;
  asio::io_context io;
  run_coroutine(io, [&]() -> awaitable<void> {
    co_await send_through_mesh((*a)->socks5, tcp::endpoint(server_ip, kEchoPort), request, echoed);
  });
  ASSERT_EQ(echoed, request) << "the request did not make it through the mesh and back";

  auto frames = (*capture)->stop();
  ASSERT_EQ((*capture)->error(), "");
  EXPECT_EQ((*capture)->drops(), 0u) << "the kernel dropped captured packets";
  EXPECT_EQ((*capture)->truncated(), 0u) << "captured frames larger than the read buffer";

  const uint32_t server = server_ip.to_uint();
  std::map<std::pair<uint32_t, uint16_t>, TcpFlow> hbone_flows;  // by the client's end
  size_t hbone_packets = 0;
  size_t leaking_packets = 0;
  size_t marker_to_app = 0, marker_from_app = 0;
  for (const auto& frame : frames) {
    auto seg = parse_tcp(frame);
    if (!seg) continue;
    const bool to_hbone = seg->dst == server && seg->dport == kHbonePort;
    const bool from_hbone = seg->src == server && seg->sport == kHbonePort;
    if (to_hbone || from_hbone) {
      ++hbone_packets;
      // Anywhere in the frame, headers included.
      if (frame.find(marker) != std::string::npos) ++leaking_packets;
      auto key = to_hbone ? std::pair{seg->src, seg->sport} : std::pair{seg->dst, seg->dport};
      auto& half = to_hbone ? hbone_flows[key].to_server : hbone_flows[key].to_client;
      if ((seg->flags & kTcpSyn) != 0) half.isn = seg->seq;
      if (!seg->payload.empty()) half.segments.emplace_back(seg->seq, seg->payload);
    }
    if (seg->payload.find(marker) != std::string_view::npos) {
      if (seg->dst == server && seg->dport == kEchoPort) ++marker_to_app;
      if (seg->src == server && seg->sport == kEchoPort) ++marker_from_app;
    }
  }

  // The capture works: the plaintext hop from B to the app carries the marker both ways.
  EXPECT_GT(marker_to_app, 0u) << "capture did not see the marker on the way to the echo server ("
                               << frames.size() << " frames)";
  EXPECT_GT(marker_from_app, 0u) << "capture did not see the marker on the way back";
  // ... and port 15008 never does.
  EXPECT_GT(hbone_packets, 0u) << "no packet to or from " << server_ip << ":" << kHbonePort;
  EXPECT_EQ(leaking_packets, 0u) << "the plaintext marker crossed port 15008";
  ASSERT_FALSE(hbone_flows.empty());

  size_t flows_with_data = 0;
  for (const auto& [client_end, flow] : hbone_flows) {
    SCOPED_TRACE(fmt::format("HBONE connection from {}:{}",
                             asio::ip::address_v4(client_end.first).to_string(),
                             client_end.second));
    bool gap_up = false, gap_down = false;
    const std::string up = flow.to_server.assemble(gap_up);
    const std::string down = flow.to_client.assemble(gap_down);
    EXPECT_FALSE(gap_up) << "client-to-server stream has a hole";
    EXPECT_FALSE(gap_down) << "server-to-client stream has a hole";
    EXPECT_EQ(up.find(marker), std::string::npos);
    EXPECT_EQ(down.find(marker), std::string::npos);

    auto up_recs = split_records(up);
    auto down_recs = split_records(down);
    EXPECT_FALSE(up_recs.malformed) << "client-to-server bytes are not TLS records";
    EXPECT_FALSE(down_recs.malformed) << "server-to-client bytes are not TLS records";
    ASSERT_FALSE(up_recs.records.empty());
    ASSERT_FALSE(down_recs.records.empty());
    EXPECT_EQ(up_recs.records.front().type, kTlsHandshake);
    EXPECT_EQ(down_recs.records.front().type, kTlsHandshake);

    std::string up_hs_bytes, down_hs_bytes;
    bool up_hs_bad = false, down_hs_bad = false;
    auto up_hs = handshake_messages(up_recs, up_hs_bytes, up_hs_bad);
    auto down_hs = handshake_messages(down_recs, down_hs_bytes, down_hs_bad);
    EXPECT_FALSE(up_hs_bad);
    EXPECT_FALSE(down_hs_bad);

    // Only hellos travel in the clear; every other handshake message is encrypted.
    ASSERT_FALSE(up_hs.empty());
    ASSERT_FALSE(down_hs.empty());
    for (const auto& m : up_hs) EXPECT_EQ(m.type, kClientHello) << "plaintext handshake message";
    for (const auto& m : down_hs) EXPECT_EQ(m.type, kServerHello) << "plaintext handshake message";

    auto ch = parse_client_hello(up_hs.back().body);
    ASSERT_TRUE(ch.parsed) << "malformed ClientHello";
    EXPECT_NE(std::find(ch.versions.begin(), ch.versions.end(), kTls13), ch.versions.end());
    EXPECT_NE(std::find(ch.alpn.begin(), ch.alpn.end(), "h2"), ch.alpn.end()) << "no ALPN h2";
    EXPECT_FALSE(ch.has_sni) << "HBONE sends no SNI (DESIGN §4)";

    // The last ServerHello is the real one (an earlier one could be a HelloRetryRequest).
    auto sh = parse_server_hello(down_hs.back().body);
    ASSERT_TRUE(sh.parsed) << "malformed ServerHello";
    EXPECT_FALSE(sh.hello_retry);
    EXPECT_EQ(sh.legacy_version, 0x0303);
    ASSERT_TRUE(sh.selected_version.has_value()) << "ServerHello without supported_versions";
    EXPECT_EQ(*sh.selected_version, kTls13)
        << fmt::format("selected 0x{:04x}", *sh.selected_version);
    EXPECT_TRUE(sh.cipher_suite == 0x1301 || sh.cipher_suite == 0x1302)
        << fmt::format("cipher suite 0x{:04x}", sh.cipher_suite);

    // After the hellos: application data, and at most one compatibility change_cipher_spec per
    // direction. No plaintext alert, no plaintext handshake.
    auto encrypted_bytes = [](const TlsRecords& recs, const char* dir) {
      size_t app = 0, ccs = 0;
      for (const auto& r : recs.records) {
        if (r.type == kTlsHandshake) continue;  // the hellos, checked above
        EXPECT_NE(r.type, kTlsAlert) << dir << ": plaintext alert";
        if (r.type == kTlsChangeCipherSpec) {
          ++ccs;
          EXPECT_EQ(r.body, std::string_view("\x01", 1)) << dir;
        } else if (r.type == kTlsApplicationData) {
          EXPECT_EQ(r.version, 0x0303) << dir;
          app += r.body.size();
        }
      }
      EXPECT_LE(ccs, 1u) << dir;
      return app;
    };
    size_t app_up = encrypted_bytes(up_recs, "client-to-server");
    size_t app_down = encrypted_bytes(down_recs, "server-to-client");
    if (app_up >= request.size() && app_down >= request.size()) ++flows_with_data;
  }
  // The request and its echo went through as application data records.
  EXPECT_EQ(flows_with_data, 1u) << "expected one HBONE connection carrying the " << request.size()
                                 << " bytes each way as application data";
}

}  // namespace
}  // namespace zt::testing
