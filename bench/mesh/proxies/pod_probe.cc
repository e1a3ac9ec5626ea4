#include "bench/mesh/proxies/pod_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <system_error>

#include <fmt/format.h>
#include <poll.h>

namespace zt::bench::mesh {
namespace {

using Clock = std::chrono::steady_clock;

Result<UniqueFd> connect_in(const netns::Netns& ns, const std::string& ip, uint16_t port,
                            std::chrono::milliseconds timeout) {
  auto sock = ns.socket(AF_INET, SOCK_STREAM);
  if (!sock) return tl::unexpected(sock.error());
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) return failf("bad IPv4 address {}", ip);
  if (::connect(sock->get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 &&
      errno != EINPROGRESS) {
    return fail(std::error_code(errno, std::system_category()),
                fmt::format("connect to {}:{}", ip, port));
  }
  pollfd p{sock->get(), POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    return failf("connect to {}:{} timed out", ip, port);
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(sock->get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    return fail(std::error_code(err, std::system_category()),
                fmt::format("connect to {}:{}", ip, port));
  }
  return sock;
}

}  // namespace

bool pod_tcp_connects(const netns::Netns& ns, const std::string& ip, uint16_t port,
                      std::chrono::milliseconds timeout) {
  return connect_in(ns, ip, port, timeout).has_value();
}

Result<int> pod_http_status(const netns::Netns& ns, const std::string& ip, uint16_t port,
                            const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto sock = connect_in(ns, ip, port, timeout);
  if (!sock) return tl::unexpected(sock.error());
  auto req = fmt::format("GET {} HTTP/1.0\r\nHost: {}:{}\r\n\r\n", path, ip, port);
  if (::send(sock->get(), req.data(), req.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(req.size())) {
    return fail(std::error_code(errno, std::system_category()), "send");
  }
  std::string answer;
  char buf[512];
  while (answer.find("\r\n") == std::string::npos && Clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{sock->get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 1))) != 1) continue;
    ssize_t n = ::recv(sock->get(), buf, sizeof(buf), 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  if (answer.empty()) return failf("no answer from {}:{}{}", ip, port, path);
  // "HTTP/1.x NNN ..."
  if (answer.rfind("HTTP/1.", 0) != 0 || answer.size() < 12) {
    return failf("{}:{}{} did not answer HTTP: {}", ip, port, path,
                 answer.substr(0, std::min<size_t>(answer.size(), 40)));
  }
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (answer[i] < '0' || answer[i] > '9') return failf("bad status line from {}:{}", ip, port);
    code = code * 10 + (answer[i] - '0');
  }
  return code;
}

std::string process_log_tail(const std::filesystem::path& log, int lines) {
  std::ifstream in(log, std::ios::binary);
  if (!in) return "";
  std::ostringstream s;
  s << in.rdbuf();
  auto text = s.str();
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (int n = 0; n < lines && pos > 0; ++n) {
    auto nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
  }
  return fmt::format("\n--- last lines of {} ---\n{}", log.string(),
                     text.substr(pos == 0 ? 0 : pos + 1));
}

std::string pod_process_base(const std::string& pod) {
  std::string out = pod;
  std::replace(out.begin(), out.end(), '/', '.');
  return out;
}

}  // namespace zt::bench::mesh
