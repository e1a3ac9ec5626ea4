// A gtest fixture base for tests that run two real ztunnels on loopback from one local config:
// "client" (ztunnel A, with SOCKS5) and "server" (ztunnel B), certified by one test CA.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/mesh.h"
#include "tests/support/test_pki.h"

namespace zt::testing {

class TwoZtunnelsTest : public ::testing::Test {
 protected:
  // Writes `mesh_yaml` (which must name workloads "client" at client_ip and "server" at
  // server_ip) and starts both ztunnels; fails the test when either does not become ready.
  void start_pair(const std::string& client_ip, const std::string& server_ip,
                  const std::string& mesh_yaml, int client_workers = 2, int server_workers = 2);

  tcp::endpoint server(uint16_t port) const {
    return tcp::endpoint(asio::ip::make_address(server_ip_), port);
  }

  TempDir dir_;
  TestPki pki_;
  TestPki::CaFiles ca_;
  std::filesystem::path config_;
  std::string client_ip_, server_ip_;
  std::unique_ptr<ZtunnelProcess> a_, b_;
};

}  // namespace zt::testing
