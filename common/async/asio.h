// Short names for the Asio pieces the project uses everywhere. Data-plane code uses the
// `as_tuple` token (errors as values), never exceptions.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

namespace zt {

namespace asio = boost::asio;
using asio::awaitable;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// `co_await op(..., kTuple)` yields std::tuple<error_code, ...> instead of throwing.
inline constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

}  // namespace zt
