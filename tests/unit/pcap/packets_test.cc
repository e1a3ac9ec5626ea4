// Frame parsing and reassembly on hand-built frames: IPv4 and IPv6, segments out of order,
// a missing segment, and frames cut short (which must be skipped, never read past).
#include "common/pcap/packets.h"

#include <gtest/gtest.h>

#include "common/pcap/tls.h"

namespace zt::pcap {
namespace {

void put16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v >> 8));
  s.push_back(static_cast<char>(v & 0xff));
}
void put32(std::string& s, uint32_t v) {
  put16(s, static_cast<uint16_t>(v >> 16));
  put16(s, static_cast<uint16_t>(v & 0xffff));
}

std::string tcp_header(uint16_t sport, uint16_t dport, uint32_t seq, uint8_t flags) {
  std::string t;
  put16(t, sport);
  put16(t, dport);
  put32(t, seq);
  put32(t, 0);                             // ack
  t.push_back(static_cast<char>(5 << 4));  // data offset 20
  t.push_back(static_cast<char>(flags));
  put16(t, 65535);  // window
  put32(t, 0);      // checksum, urgent
  return t;
}

std::string frame_v4(const char* src, const char* dst, uint16_t sport, uint16_t dport, uint32_t seq,
                     uint8_t flags, std::string_view payload) {
  std::string f(12, '\0');
  put16(f, 0x0800);
  std::string tcp = tcp_header(sport, dport, seq, flags) + std::string(payload);
  f.push_back(0x45);
  f.push_back(0);
  put16(f, static_cast<uint16_t>(20 + tcp.size()));
  put32(f, 0);  // id, fragment
  f.push_back(64);
  f.push_back(6);
  put16(f, 0);
  put32(f, asio::ip::make_address_v4(src).to_uint());
  put32(f, asio::ip::make_address_v4(dst).to_uint());
  return f + tcp;
}

std::string frame_v6(const char* src, const char* dst, uint16_t sport, uint16_t dport, uint32_t seq,
                     uint8_t flags, std::string_view payload) {
  std::string f(12, '\0');
  put16(f, 0x86dd);
  std::string tcp = tcp_header(sport, dport, seq, flags) + std::string(payload);
  put32(f, 6u << 28);
  put16(f, static_cast<uint16_t>(tcp.size()));
  f.push_back(6);  // next header TCP
  f.push_back(64);
  for (auto b : asio::ip::make_address_v6(src).to_bytes()) f.push_back(static_cast<char>(b));
  for (auto b : asio::ip::make_address_v6(dst).to_bytes()) f.push_back(static_cast<char>(b));
  return f + tcp;
}

TEST(Packets, ParsesIpv4AndIpv6TcpSegments) {
  const std::string frame4 = frame_v4("10.0.1.2", "10.0.2.3", 40000, 15008, 7, kTcpSyn, "");
  auto v4 = parse_tcp(frame4);
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->src, tcp::endpoint(asio::ip::make_address("10.0.1.2"), 40000));
  EXPECT_EQ(v4->dst, tcp::endpoint(asio::ip::make_address("10.0.2.3"), 15008));
  EXPECT_EQ(v4->seq, 7u);
  EXPECT_EQ(v4->flags, kTcpSyn);

  // The segment's payload points into the frame, which must outlive it.
  const std::string frame6 = frame_v6("fd00::1", "fd00::2", 1234, 80, 99, 0, "hello");
  auto v6 = parse_tcp(frame6);
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->src, tcp::endpoint(asio::ip::make_address("fd00::1"), 1234));
  EXPECT_EQ(v6->dst.port(), 80);
  EXPECT_EQ(v6->payload, "hello");
}

TEST(Packets, FramesCutShortOrNotTcpAreSkipped) {
  auto f = frame_v4("10.0.1.2", "10.0.2.3", 1, 2, 0, 0, "data");
  for (size_t n = 0; n < f.size() - 4; ++n) {
    EXPECT_FALSE(parse_tcp(std::string_view(f).substr(0, n))) << n;
  }
  std::string arp(12, '\0');
  put16(arp, 0x0806);
  arp += std::string(28, '\0');
  EXPECT_FALSE(parse_tcp(arp));
}

TEST(Packets, FlowsReassembleOutOfOrderSegmentsAndReportHoles) {
  std::vector<std::string> frames = {
      frame_v4("10.0.1.2", "10.0.2.3", 40000, 15008, 100, kTcpSyn, ""),
      frame_v4("10.0.1.2", "10.0.2.3", 40000, 15008, 106, 0, "world"),
      frame_v4("10.0.1.2", "10.0.2.3", 40000, 15008, 101, 0, "hello"),
      frame_v4("10.0.2.3", "10.0.1.2", 15008, 40000, 500, kTcpSyn, ""),
      frame_v4("10.0.2.3", "10.0.1.2", 15008, 40000, 506, 0, "late"),  // 501..505 missing
      frame_v4("10.0.9.9", "10.0.2.3", 1, 80, 1, 0, "other"),
  };
  const tcp::endpoint server(asio::ip::make_address("10.0.2.3"), 15008);
  auto flows = tcp_flows(frames, [&](const tcp::endpoint& ep) { return ep == server; });
  ASSERT_EQ(flows.size(), 1u);
  const auto& flow = flows.begin()->second;
  EXPECT_EQ(flow.client, tcp::endpoint(asio::ip::make_address("10.0.1.2"), 40000));
  bool gap = true;
  EXPECT_EQ(flow.to_server.assemble(gap), "helloworld");
  EXPECT_FALSE(gap);
  EXPECT_EQ(flow.to_client.assemble(gap), "");
  EXPECT_TRUE(gap);
}

TEST(Tls, PlaintextIsReportedAsNotTls) {
  TcpFlow flow;
  std::string up = "GET / HTTP/1.1\r\n\r\n", down = "HTTP/1.1 200 OK\r\n\r\n";
  flow.to_server.isn = 0;
  flow.to_server.segments.emplace_back(1, up);
  flow.to_client.isn = 0;
  flow.to_client.segments.emplace_back(1, down);
  auto rep = inspect_tls(flow);
  EXPECT_FALSE(rep.ok());
  ASSERT_FALSE(rep.problems.empty());
  EXPECT_EQ(rep.problems.front(), "client-to-server bytes are not TLS records");
}

}  // namespace
}  // namespace zt::pcap
