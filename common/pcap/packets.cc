#include "common/pcap/packets.h"

#include <linux/if_ether.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>

namespace zt::pcap {
namespace {

uint32_t byte_at(std::string_view b, size_t i) { return static_cast<uint8_t>(b[i]); }

}  // namespace

uint8_t Reader::u8() {
  auto b = take(1);
  return b.empty() ? 0 : static_cast<uint8_t>(b[0]);
}

uint16_t Reader::u16() {
  auto b = take(2);
  return b.size() == 2 ? static_cast<uint16_t>(byte_at(b, 0) << 8 | byte_at(b, 1)) : 0;
}

uint32_t Reader::u24() {
  auto b = take(3);
  return b.size() == 3 ? (byte_at(b, 0) << 16 | byte_at(b, 1) << 8 | byte_at(b, 2)) : 0;
}

uint32_t Reader::u32() {
  uint32_t hi = u16();
  return hi << 16 | u16();
}

std::string_view Reader::take(size_t n) {
  if (!ok_ || s_.size() - pos_ < n) {
    ok_ = false;
    return {};
  }
  auto r = s_.substr(pos_, n);
  pos_ += n;
  return r;
}

std::optional<TcpSegment> parse_tcp(std::string_view frame) {
  Reader eth(frame);
  eth.take(12);
  const uint16_t ethertype = eth.u16();
  if (!eth.ok()) return std::nullopt;
  std::string_view ip = frame.substr(14);
  Reader r(ip);
  TcpSegment seg;
  std::string_view tcp;
  if (ethertype == ETH_P_IP) {
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
    asio::ip::address_v4 src(r.u32());
    asio::ip::address_v4 dst(r.u32());
    if (!r.ok() || proto != IPPROTO_TCP || (frag & 0x3fff) != 0) return std::nullopt;
    if (total == 0) total = ip.size();  // a GSO packet over 64 KiB ("BIG TCP") carries 0
    if (ihl < 20 || total < ihl + 20 || total > ip.size()) return std::nullopt;
    tcp = ip.substr(ihl, total - ihl);
    seg.src.address(src);
    seg.dst.address(dst);
  } else if (ethertype == ETH_P_IPV6) {
    uint32_t vtf = r.u32();
    size_t payload_len = r.u16();
    uint8_t next = r.u8();
    r.u8();  // hop limit
    auto src = r.take(16);
    auto dst = r.take(16);
    if (!r.ok() || vtf >> 28 != 6 || next != IPPROTO_TCP) return std::nullopt;
    if (payload_len == 0) payload_len = r.left();  // jumbogram / BIG TCP
    if (payload_len > r.left()) return std::nullopt;
    tcp = ip.substr(40, payload_len);
    asio::ip::address_v6::bytes_type s{}, d{};
    std::copy(src.begin(), src.end(), s.begin());
    std::copy(dst.begin(), dst.end(), d.begin());
    seg.src.address(asio::ip::address_v6(s));
    seg.dst.address(asio::ip::address_v6(d));
  } else {
    return std::nullopt;
  }
  Reader t(tcp);
  seg.src.port(t.u16());
  seg.dst.port(t.u16());
  seg.seq = t.u32();
  t.take(4);  // ack
  size_t doff = (t.u8() >> 4) * 4u;
  seg.flags = t.u8();
  if (!t.ok() || doff < 20 || doff > tcp.size()) return std::nullopt;
  seg.payload = tcp.substr(doff);
  return seg;
}

std::string HalfStream::assemble(bool& gap) const {
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

}  // namespace zt::pcap
