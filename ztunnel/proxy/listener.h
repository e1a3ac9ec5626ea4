// The workers' listening sockets: common/net/listener.h, under ztunnel's proxy names.
#pragma once

#include "common/net/listener.h"

namespace zt::proxy {

using net::accept_loop;
using net::bind_listener;

}  // namespace zt::proxy
