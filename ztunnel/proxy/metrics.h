// The proxy's metrics: Istio's istio_tcp_* families (DESIGN §8) and ztunnel's own counters.
// Families are looked up once here; a connection caches its label handles.
#pragma once

#include "common/stats/registry.h"

namespace zt::proxy {

struct ProxyMetrics {
  explicit ProxyMetrics(stats::Registry& r)
      : opened(r.counter_family("istio_tcp_connections_opened",
                                "Connections opened, by reporter and peers.")),
        closed(r.counter_family("istio_tcp_connections_closed",
                                "Connections closed, by reporter and peers.")),
        failed(r.counter_family("istio_tcp_connections_failed",
                                "Connections that failed before or while relaying.")),
        received_bytes(r.counter_family("istio_tcp_received_bytes",
                                        "Bytes received from the connection's client side.")),
        sent_bytes(r.counter_family("istio_tcp_sent_bytes",
                                    "Bytes sent to the connection's client side.")),
        hbone_connections(r.counter_family(
            "ztunnel_hbone_connections_opened",
            "HBONE (TLS + HTTP/2) connections established, by direction.")),
        hbone_streams(r.counter_family("ztunnel_hbone_streams_opened",
                                       "HBONE CONNECT streams opened, by direction.")),
        errors(r.counter_family("ztunnel_errors",
                                "Handled errors, by component and kind.")) {}

  stats::CounterFamily& opened;
  stats::CounterFamily& closed;
  stats::CounterFamily& failed;
  stats::CounterFamily& received_bytes;
  stats::CounterFamily& sent_bytes;
  stats::CounterFamily& hbone_connections;
  stats::CounterFamily& hbone_streams;
  stats::CounterFamily& errors;

  void error(std::string_view component, std::string_view kind) {
    errors.with({{"component", std::string(component)}, {"kind", std::string(kind)}}).inc();
  }
};

}  // namespace zt::proxy
