#include "common/net/listener.h"

#include <sys/socket.h>

#include "common/net/address.h"

namespace zt::net {

Result<tcp::acceptor> bind_listener(asio::any_io_executor ex, const tcp::endpoint& at,
                                    std::string_view name) {
  tcp::acceptor a(ex);
  error_code ec;
  auto what = [&](std::string_view step) {
    return fail(ec, fmt::format("{} {} ({})", step, format_endpoint(at), name));
  };
  a.open(at.protocol(), ec);
  if (ec) return what("cannot open socket for");
  a.set_option(tcp::acceptor::reuse_address(true), ec);
  int one = 1;
  if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    ec = error_code(errno, boost::system::system_category());
    return what("cannot set SO_REUSEPORT on");
  }
  a.bind(at, ec);
  if (ec) return what("cannot bind");
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return what("cannot listen on");
  return a;
}

}  // namespace zt::net
