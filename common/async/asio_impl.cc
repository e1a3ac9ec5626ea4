// The compiled part of Asio, Asio SSL and Beast (BOOST_*_SEPARATE_COMPILATION), built once here
// instead of in every translation unit that includes them.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
