#include "tests/support/two_ztunnels.h"

namespace zt::testing {

void TwoZtunnelsTest::start_pair(const std::string& client_ip, const std::string& server_ip,
                                 const std::string& mesh_yaml, int client_workers,
                                 int server_workers) {
  client_ip_ = client_ip;
  server_ip_ = server_ip;
  ca_ = pki_.write_ca_files(dir_.path());
  config_ = dir_.path() / "mesh.yaml";
  write_file(config_, mesh_yaml);
  auto a = ZtunnelProcess::start({.name = "client",
                                  .config = config_,
                                  .ca_cert = ca_.cert_path,
                                  .ca_key = ca_.key_path,
                                  .workers = client_workers});
  ASSERT_TRUE(a) << a.error().describe();
  a_ = std::move(*a);
  auto b = ZtunnelProcess::start({.name = "server",
                                  .config = config_,
                                  .ca_cert = ca_.cert_path,
                                  .ca_key = ca_.key_path,
                                  .socks5 = false,
                                  .workers = server_workers});
  ASSERT_TRUE(b) << b.error().describe();
  b_ = std::move(*b);
}

}  // namespace zt::testing
