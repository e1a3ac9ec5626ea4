// HBONE on the wire. An AF_PACKET socket captures lo while a client talks through ztunnel A's
// SOCKS5 listener and ztunnel B to an echo server behind B, then the test reads the capture
// itself with common/pcap (Ethernet, IP, TCP, TLS record and hello parsing; no libpcap):
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
#include "common/pcap/capture.h"

#include <random>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "common/async/timeout.h"
#include "common/pcap/packets.h"
#include "common/pcap/tls.h"
#include "tests/support/coro.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"
#include "tests/support/servers.h"
#include "tests/support/test_pki.h"

namespace zt::testing {
namespace {

using namespace std::chrono_literals;

using pcap::Capture;
using pcap::CaptureOptions;

constexpr uint16_t kHbonePort = 15008;
constexpr uint16_t kEchoPort = 7000;

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
  auto capture =
      Capture::start(CaptureOptions{.ipv4_net24 = asio::ip::make_address_v4("127.0.31.0")});
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

  const tcp::endpoint hbone_server(server_ip, kHbonePort);
  const tcp::endpoint app_server(server_ip, kEchoPort);
  size_t hbone_packets = 0, leaking_packets = 0, marker_to_app = 0, marker_from_app = 0;
  for (const auto& frame : frames) {
    auto seg = pcap::parse_tcp(frame);
    if (!seg) continue;
    if (seg->dst == hbone_server || seg->src == hbone_server) {
      ++hbone_packets;
      // Anywhere in the frame, headers included.
      if (frame.find(marker) != std::string::npos) ++leaking_packets;
    }
    if (seg->payload.find(marker) != std::string_view::npos) {
      if (seg->dst == app_server) ++marker_to_app;
      if (seg->src == app_server) ++marker_from_app;
    }
  }

  // The capture works: the plaintext hop from B to the app carries the marker both ways.
  EXPECT_GT(marker_to_app, 0u) << "capture did not see the marker on the way to the echo server ("
                               << frames.size() << " frames)";
  EXPECT_GT(marker_from_app, 0u) << "capture did not see the marker on the way back";
  // ... and port 15008 never does.
  EXPECT_GT(hbone_packets, 0u) << "no packet to or from " << server_ip << ":" << kHbonePort;
  EXPECT_EQ(leaking_packets, 0u) << "the plaintext marker crossed port 15008";

  auto flows = pcap::tcp_flows(frames, [&](const tcp::endpoint& ep) { return ep == hbone_server; });
  ASSERT_FALSE(flows.empty());
  size_t flows_with_data = 0;
  for (const auto& [client_end, flow] : flows) {
    SCOPED_TRACE("HBONE connection from " + client_end.address().to_string() + ":" +
                 std::to_string(client_end.port()));
    // Only the hellos in the clear, TLS 1.3 with AES-GCM, ALPN h2 and no SNI (DESIGN §4),
    // then only encrypted records; the marker never in the reassembled bytes.
    auto rep = pcap::inspect_tls(flow);
    for (const auto& problem : rep.problems) ADD_FAILURE() << problem;
    bool gap = false;
    EXPECT_EQ(flow.to_server.assemble(gap).find(marker), std::string::npos);
    EXPECT_EQ(flow.to_client.assemble(gap).find(marker), std::string::npos);
    if (rep.app_data_to_server >= request.size() && rep.app_data_to_client >= request.size()) {
      ++flows_with_data;
    }
  }
  // The request and its echo went through as application data records.
  EXPECT_EQ(flows_with_data, 1u) << "expected one HBONE connection carrying the " << request.size()
                                 << " bytes each way as application data";
}

}  // namespace
}  // namespace zt::testing
