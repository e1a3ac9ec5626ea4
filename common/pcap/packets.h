// Ethernet / IPv4 / IPv6 / TCP parsing of captured frames and TCP stream reassembly, all
// bounds-checked: a malformed frame is skipped, never trusted.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "common/async/asio.h"

namespace zt::pcap {

// Bounds-checked big-endian reads over a byte string; ok() turns false on the first overrun
// and every later read returns zero / empty.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  uint8_t u8();
  uint16_t u16();
  uint32_t u24();
  uint32_t u32();
  std::string_view take(size_t n);
  bool ok() const { return ok_; }
  bool done() const { return pos_ == s_.size(); }
  size_t left() const { return s_.size() - pos_; }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  bool ok_ = true;
};

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;

struct TcpSegment {
  tcp::endpoint src, dst;
  uint32_t seq = 0;
  uint8_t flags = 0;
  std::string_view payload;  // points into the frame
};

// An Ethernet frame carrying IPv4 or IPv6 (no extension headers) and TCP; nullopt otherwise
// (ARP, UDP, fragments, anything cut short).
std::optional<TcpSegment> parse_tcp(std::string_view frame);

// One direction of a TCP connection, put back in sequence order from its segments.
struct HalfStream {
  std::optional<uint32_t> isn;                                  // from the SYN
  std::vector<std::pair<uint32_t, std::string_view>> segments;  // seq, payload

  // The bytes from the first after the SYN up to the first hole; `gap` says whether a hole
  // (a segment the capture missed) stopped it.
  std::string assemble(bool& gap) const;
};

struct TcpFlow {
  tcp::endpoint client, server;  // the SYN's sender is the client
  HalfStream to_server, to_client;
  size_t packets = 0;
};

// Groups the TCP segments of `frames` into connections whose server end matches `is_server`
// (e.g. port 15008 of a pod IP), keyed by the client's endpoint. The flows point into
// `frames`, which must outlive them.
template <class IsServer>
std::map<tcp::endpoint, TcpFlow> tcp_flows(const std::vector<std::string>& frames,
                                           IsServer is_server) {
  std::map<tcp::endpoint, TcpFlow> flows;
  for (const auto& frame : frames) {
    auto seg = parse_tcp(frame);
    if (!seg) continue;
    const bool to_server = is_server(seg->dst);
    const bool from_server = !to_server && is_server(seg->src);
    if (!to_server && !from_server) continue;
    auto& flow = flows[to_server ? seg->src : seg->dst];
    flow.client = to_server ? seg->src : seg->dst;
    flow.server = to_server ? seg->dst : seg->src;
    ++flow.packets;
    auto& half = to_server ? flow.to_server : flow.to_client;
    if ((seg->flags & kTcpSyn) != 0) half.isn = seg->seq;
    if (!seg->payload.empty()) half.segments.emplace_back(seg->seq, seg->payload);
  }
  return flows;
}

}  // namespace zt::pcap
