// Packet capture for the wire checks: an AF_PACKET socket on one interface, optionally inside
// another network namespace (a simulated node), read on a thread of its own until stop().
// Needs CAP_NET_RAW. Used by the privileged tests and by the simulator's report to show what
// actually crossed a link (TLS on 15008, never the plaintext).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/async/asio.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"
#include "common/netns/netns.h"

namespace zt::pcap {

struct CaptureOptions {
  std::string interface = "lo";
  // Open the socket (and look the interface up) inside this namespace; null = the caller's.
  const netns::Netns* netns = nullptr;
  // Keep only IPv4 packets from or to this /24 (a kernel filter, so busy links stay cheap);
  // nullopt keeps every frame (IPv4 and IPv6).
  std::optional<asio::ip::address_v4> ipv4_net24;
  // Frames the link transmits as well as those it receives. On lo every packet passes twice,
  // so the default keeps only the receive copy.
  bool include_outgoing = false;
};

class Capture {
 public:
  static Result<std::unique_ptr<Capture>> start(const CaptureOptions& options);
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  // Stops (after reading every packet already queued) and returns the frames in arrival
  // order, each starting with its Ethernet header.
  std::vector<std::string> stop();

  uint32_t drops() const { return drops_; }        // dropped by the kernel (buffer full)
  size_t truncated() const { return truncated_; }  // larger than the read buffer
  const std::string& error() const { return error_; }

 private:
  Capture() = default;
  void read_loop();

  UniqueFd fd_;
  UniqueFd wake_;
  bool include_outgoing_ = false;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> frames_;
  uint32_t drops_ = 0;
  size_t truncated_ = 0;
  std::string error_;
};

}  // namespace zt::pcap
