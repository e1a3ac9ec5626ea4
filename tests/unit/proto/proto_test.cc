// The generated descriptors must carry Istio's / Envoy's field numbers and enum values: those are
// the wire contract with istiod, istio-cni and Istio's ztunnel (see proto/README.md).
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/service/auth/v3/external_auth.pb.h"
#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "google/rpc/status.pb.h"
#include "istio/security/authorization.pb.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "istio/v1/auth/ca.pb.h"
#include "istio/workload/workload.pb.h"
#include "istio/workload/zds/zds.pb.h"

namespace {

namespace pb = google::protobuf;

const pb::DescriptorPool& pool() { return *pb::DescriptorPool::generated_pool(); }

struct FieldCase {
  std::string message;  // full name
  std::string field;
  int number;
  pb::FieldDescriptor::Type type;
  bool repeated;
};

using T = pb::FieldDescriptor;

const std::vector<FieldCase>& field_cases() {
  static const std::vector<FieldCase> cases = {
      // istio.workload.Address
      {"istio.workload.Address", "workload", 1, T::TYPE_MESSAGE, false},
      {"istio.workload.Address", "service", 2, T::TYPE_MESSAGE, false},
      // istio.workload.Workload
      {"istio.workload.Workload", "uid", 20, T::TYPE_STRING, false},
      {"istio.workload.Workload", "name", 1, T::TYPE_STRING, false},
      {"istio.workload.Workload", "namespace", 2, T::TYPE_STRING, false},
      {"istio.workload.Workload", "addresses", 3, T::TYPE_BYTES, true},
      {"istio.workload.Workload", "hostname", 21, T::TYPE_STRING, false},
      {"istio.workload.Workload", "network", 4, T::TYPE_STRING, false},
      {"istio.workload.Workload", "tunnel_protocol", 5, T::TYPE_ENUM, false},
      {"istio.workload.Workload", "trust_domain", 6, T::TYPE_STRING, false},
      {"istio.workload.Workload", "service_account", 7, T::TYPE_STRING, false},
      {"istio.workload.Workload", "waypoint", 8, T::TYPE_MESSAGE, false},
      {"istio.workload.Workload", "network_gateway", 19, T::TYPE_MESSAGE, false},
      {"istio.workload.Workload", "node", 9, T::TYPE_STRING, false},
      {"istio.workload.Workload", "canonical_name", 10, T::TYPE_STRING, false},
      {"istio.workload.Workload", "canonical_revision", 11, T::TYPE_STRING, false},
      {"istio.workload.Workload", "workload_type", 12, T::TYPE_ENUM, false},
      {"istio.workload.Workload", "workload_name", 13, T::TYPE_STRING, false},
      {"istio.workload.Workload", "native_tunnel", 14, T::TYPE_BOOL, false},
      {"istio.workload.Workload", "application_tunnel", 23, T::TYPE_MESSAGE, false},
      {"istio.workload.Workload", "services", 22, T::TYPE_MESSAGE, true},
      {"istio.workload.Workload", "authorization_policies", 16, T::TYPE_STRING, true},
      {"istio.workload.Workload", "status", 17, T::TYPE_ENUM, false},
      {"istio.workload.Workload", "cluster_id", 18, T::TYPE_STRING, false},
      {"istio.workload.Workload", "locality", 24, T::TYPE_MESSAGE, false},
      {"istio.workload.Workload", "network_mode", 25, T::TYPE_ENUM, false},
      {"istio.workload.Workload", "extensions", 26, T::TYPE_MESSAGE, true},
      {"istio.workload.Workload", "capacity", 27, T::TYPE_MESSAGE, false},
      {"istio.workload.Locality", "region", 1, T::TYPE_STRING, false},
      {"istio.workload.Locality", "zone", 2, T::TYPE_STRING, false},
      {"istio.workload.Locality", "subzone", 3, T::TYPE_STRING, false},
      {"istio.workload.ApplicationTunnel", "protocol", 1, T::TYPE_ENUM, false},
      {"istio.workload.ApplicationTunnel", "port", 2, T::TYPE_UINT32, false},
      {"istio.workload.Extension", "name", 1, T::TYPE_STRING, false},
      {"istio.workload.Extension", "config", 2, T::TYPE_MESSAGE, false},
      // istio.workload.Service
      {"istio.workload.Service", "name", 1, T::TYPE_STRING, false},
      {"istio.workload.Service", "namespace", 2, T::TYPE_STRING, false},
      {"istio.workload.Service", "hostname", 3, T::TYPE_STRING, false},
      {"istio.workload.Service", "addresses", 4, T::TYPE_MESSAGE, true},
      {"istio.workload.Service", "ports", 5, T::TYPE_MESSAGE, true},
      {"istio.workload.Service", "subject_alt_names", 6, T::TYPE_STRING, true},
      {"istio.workload.Service", "waypoint", 7, T::TYPE_MESSAGE, false},
      {"istio.workload.Service", "load_balancing", 8, T::TYPE_MESSAGE, false},
      {"istio.workload.Service", "ip_families", 9, T::TYPE_ENUM, false},
      {"istio.workload.Service", "extensions", 10, T::TYPE_MESSAGE, true},
      {"istio.workload.Service", "canonical", 11, T::TYPE_BOOL, false},
      {"istio.workload.Service", "ingress_use_waypoint", 12, T::TYPE_BOOL, false},
      {"istio.workload.Service", "weighted_waypoints", 13, T::TYPE_MESSAGE, true},
      {"istio.workload.Service", "visibility", 14, T::TYPE_ENUM, false},
      {"istio.workload.WeightedWaypoint", "destination", 1, T::TYPE_MESSAGE, false},
      {"istio.workload.WeightedWaypoint", "weight", 2, T::TYPE_UINT32, false},
      {"istio.workload.PortList", "ports", 1, T::TYPE_MESSAGE, true},
      {"istio.workload.Port", "service_port", 1, T::TYPE_UINT32, false},
      {"istio.workload.Port", "target_port", 2, T::TYPE_UINT32, false},
      {"istio.workload.Port", "app_protocol", 3, T::TYPE_ENUM, false},
      {"istio.workload.NetworkAddress", "network", 1, T::TYPE_STRING, false},
      {"istio.workload.NetworkAddress", "address", 2, T::TYPE_BYTES, false},
      {"istio.workload.NetworkAddress", "length", 3, T::TYPE_UINT32, false},
      {"istio.workload.NamespacedHostname", "namespace", 1, T::TYPE_STRING, false},
      {"istio.workload.NamespacedHostname", "hostname", 2, T::TYPE_STRING, false},
      {"istio.workload.GatewayAddress", "hostname", 1, T::TYPE_MESSAGE, false},
      {"istio.workload.GatewayAddress", "address", 2, T::TYPE_MESSAGE, false},
      {"istio.workload.GatewayAddress", "hbone_mtls_port", 3, T::TYPE_UINT32, false},
      {"istio.workload.LoadBalancing", "routing_preference", 1, T::TYPE_ENUM, true},
      {"istio.workload.LoadBalancing", "mode", 2, T::TYPE_ENUM, false},
      {"istio.workload.LoadBalancing", "health_policy", 3, T::TYPE_ENUM, false},
      // istio.security
      {"istio.security.Authorization", "name", 1, T::TYPE_STRING, false},
      {"istio.security.Authorization", "namespace", 2, T::TYPE_STRING, false},
      {"istio.security.Authorization", "scope", 3, T::TYPE_ENUM, false},
      {"istio.security.Authorization", "action", 4, T::TYPE_ENUM, false},
      {"istio.security.Authorization", "rules", 5, T::TYPE_MESSAGE, true},
      {"istio.security.Authorization", "dry_run", 6, T::TYPE_BOOL, false},
      {"istio.security.Authorization", "extensions", 7, T::TYPE_MESSAGE, true},
      {"istio.security.Rule", "clauses", 1, T::TYPE_MESSAGE, true},
      {"istio.security.Clause", "matches", 2, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "namespaces", 1, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "not_namespaces", 2, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "principals", 3, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "not_principals", 4, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "source_ips", 5, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "not_source_ips", 6, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "destination_ips", 7, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "not_destination_ips", 8, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "destination_ports", 9, T::TYPE_UINT32, true},
      {"istio.security.Match", "not_destination_ports", 10, T::TYPE_UINT32, true},
      {"istio.security.Match", "service_accounts", 11, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "not_service_accounts", 12, T::TYPE_MESSAGE, true},
      {"istio.security.Match", "extensions", 13, T::TYPE_MESSAGE, true},
      {"istio.security.Address", "address", 1, T::TYPE_BYTES, false},
      {"istio.security.Address", "length", 2, T::TYPE_UINT32, false},
      {"istio.security.ServiceAccountMatch", "namespace", 1, T::TYPE_STRING, false},
      {"istio.security.ServiceAccountMatch", "serviceAccount", 2, T::TYPE_STRING, false},
      {"istio.security.StringMatch", "exact", 1, T::TYPE_STRING, false},
      {"istio.security.StringMatch", "prefix", 2, T::TYPE_STRING, false},
      {"istio.security.StringMatch", "suffix", 3, T::TYPE_STRING, false},
      {"istio.security.StringMatch", "presence", 4, T::TYPE_MESSAGE, false},
      // istio.v1.auth
      {"istio.v1.auth.IstioCertificateRequest", "csr", 1, T::TYPE_STRING, false},
      {"istio.v1.auth.IstioCertificateRequest", "validity_duration", 3, T::TYPE_INT64, false},
      {"istio.v1.auth.IstioCertificateRequest", "metadata", 4, T::TYPE_MESSAGE, false},
      {"istio.v1.auth.IstioCertificateResponse", "cert_chain", 1, T::TYPE_STRING, true},
      // istio.workload.zds
      {"istio.workload.zds.ZdsHello", "version", 1, T::TYPE_ENUM, false},
      {"istio.workload.zds.WorkloadInfo", "name", 1, T::TYPE_STRING, false},
      {"istio.workload.zds.WorkloadInfo", "namespace", 2, T::TYPE_STRING, false},
      {"istio.workload.zds.WorkloadInfo", "service_account", 3, T::TYPE_STRING, false},
      {"istio.workload.zds.AddWorkload", "uid", 1, T::TYPE_STRING, false},
      {"istio.workload.zds.AddWorkload", "workload_info", 2, T::TYPE_MESSAGE, false},
      {"istio.workload.zds.KeepWorkload", "uid", 1, T::TYPE_STRING, false},
      {"istio.workload.zds.DelWorkload", "uid", 2, T::TYPE_STRING, false},
      {"istio.workload.zds.WorkloadRequest", "add", 1, T::TYPE_MESSAGE, false},
      {"istio.workload.zds.WorkloadRequest", "del", 2, T::TYPE_MESSAGE, false},
      {"istio.workload.zds.WorkloadRequest", "snapshot_sent", 3, T::TYPE_MESSAGE, false},
      {"istio.workload.zds.WorkloadRequest", "keep", 5, T::TYPE_MESSAGE, false},
      {"istio.workload.zds.Ack", "error", 1, T::TYPE_STRING, false},
      {"istio.workload.zds.WorkloadResponse", "ack", 1, T::TYPE_MESSAGE, false},
      // envoy / google
      {"envoy.config.core.v3.Node", "id", 1, T::TYPE_STRING, false},
      {"envoy.config.core.v3.Node", "cluster", 2, T::TYPE_STRING, false},
      {"envoy.config.core.v3.Node", "metadata", 3, T::TYPE_MESSAGE, false},
      {"envoy.config.core.v3.Node", "locality", 4, T::TYPE_MESSAGE, false},
      {"envoy.config.core.v3.Node", "user_agent_name", 6, T::TYPE_STRING, false},
      {"envoy.config.core.v3.Node", "user_agent_version", 7, T::TYPE_STRING, false},
      {"envoy.config.core.v3.Node", "client_features", 10, T::TYPE_STRING, true},
      {"envoy.service.discovery.v3.DeltaDiscoveryRequest", "node", 1, T::TYPE_MESSAGE, false},
      {"envoy.service.discovery.v3.DeltaDiscoveryRequest", "type_url", 2, T::TYPE_STRING, false},
      {"envoy.service.discovery.v3.DeltaDiscoveryRequest", "resource_names_subscribe", 3,
       T::TYPE_STRING, true},
      {"envoy.service.discovery.v3.DeltaDiscoveryRequest", "resource_names_unsubscribe", 4,
       T::TYPE_STRING, true},
      {"envoy.service.discovery.v3.DeltaDiscoveryRequest", "initial_resource_versions", 5,
       T::TYPE_MESSAGE, true},
      {"envoy.service.discovery.v3.DeltaDiscoveryRequest", "response_nonce", 6, T::TYPE_STRING,
       false},
      {"envoy.service.discovery.v3.DeltaDiscoveryRequest", "error_detail", 7, T::TYPE_MESSAGE,
       false},
      {"envoy.service.discovery.v3.DeltaDiscoveryResponse", "system_version_info", 1,
       T::TYPE_STRING, false},
      {"envoy.service.discovery.v3.DeltaDiscoveryResponse", "resources", 2, T::TYPE_MESSAGE, true},
      {"envoy.service.discovery.v3.DeltaDiscoveryResponse", "type_url", 4, T::TYPE_STRING, false},
      {"envoy.service.discovery.v3.DeltaDiscoveryResponse", "nonce", 5, T::TYPE_STRING, false},
      {"envoy.service.discovery.v3.DeltaDiscoveryResponse", "removed_resources", 6, T::TYPE_STRING,
       true},
      {"envoy.service.discovery.v3.Resource", "version", 1, T::TYPE_STRING, false},
      {"envoy.service.discovery.v3.Resource", "resource", 2, T::TYPE_MESSAGE, false},
      {"envoy.service.discovery.v3.Resource", "name", 3, T::TYPE_STRING, false},
      {"envoy.service.discovery.v3.Resource", "aliases", 4, T::TYPE_STRING, true},
      {"envoy.service.discovery.v3.Resource", "ttl", 6, T::TYPE_MESSAGE, false},
      {"envoy.service.discovery.v3.Resource", "cache_control", 7, T::TYPE_MESSAGE, false},
      {"google.rpc.Status", "code", 1, T::TYPE_INT32, false},
      {"google.rpc.Status", "message", 2, T::TYPE_STRING, false},
      {"google.rpc.Status", "details", 3, T::TYPE_MESSAGE, true},
      // envoy.service.auth.v3 (ext_authz) and what it uses
      {"envoy.service.auth.v3.CheckRequest", "attributes", 1, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.AttributeContext", "source", 1, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.AttributeContext", "destination", 2, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.AttributeContext", "request", 4, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.AttributeContext", "context_extensions", 10, T::TYPE_MESSAGE, true},
      {"envoy.service.auth.v3.AttributeContext", "tls_session", 12, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.AttributeContext.Peer", "address", 1, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.AttributeContext.Peer", "service", 2, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.Peer", "labels", 3, T::TYPE_MESSAGE, true},
      {"envoy.service.auth.v3.AttributeContext.Peer", "principal", 4, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.Peer", "certificate", 5, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.Request", "time", 1, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.AttributeContext.Request", "http", 2, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "id", 1, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "method", 2, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "headers", 3, T::TYPE_MESSAGE, true},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "path", 4, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "host", 5, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "scheme", 6, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "query", 7, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "fragment", 8, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "size", 9, T::TYPE_INT64, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "protocol", 10, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "body", 11, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "raw_body", 12, T::TYPE_BYTES, false},
      {"envoy.service.auth.v3.AttributeContext.HttpRequest", "header_map", 13, T::TYPE_MESSAGE,
       false},
      {"envoy.service.auth.v3.AttributeContext.TLSSession", "sni", 1, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.CheckResponse", "status", 1, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.CheckResponse", "denied_response", 2, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.CheckResponse", "ok_response", 3, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.CheckResponse", "error_response", 5, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.DeniedHttpResponse", "status", 1, T::TYPE_MESSAGE, false},
      {"envoy.service.auth.v3.DeniedHttpResponse", "headers", 2, T::TYPE_MESSAGE, true},
      {"envoy.service.auth.v3.DeniedHttpResponse", "body", 3, T::TYPE_STRING, false},
      {"envoy.service.auth.v3.OkHttpResponse", "headers", 2, T::TYPE_MESSAGE, true},
      {"envoy.service.auth.v3.OkHttpResponse", "headers_to_remove", 5, T::TYPE_STRING, true},
      {"envoy.service.auth.v3.OkHttpResponse", "response_headers_to_add", 6, T::TYPE_MESSAGE, true},
      {"envoy.type.v3.HttpStatus", "code", 1, T::TYPE_ENUM, false},
      {"envoy.config.core.v3.HeaderValue", "key", 1, T::TYPE_STRING, false},
      {"envoy.config.core.v3.HeaderValue", "value", 2, T::TYPE_STRING, false},
      {"envoy.config.core.v3.HeaderValue", "raw_value", 3, T::TYPE_BYTES, false},
      {"envoy.config.core.v3.HeaderValueOption", "header", 1, T::TYPE_MESSAGE, false},
      {"envoy.config.core.v3.HeaderValueOption", "append", 2, T::TYPE_MESSAGE, false},
      {"envoy.config.core.v3.HeaderValueOption", "append_action", 3, T::TYPE_ENUM, false},
      {"envoy.config.core.v3.HeaderValueOption", "keep_empty_value", 4, T::TYPE_BOOL, false},
      {"envoy.config.core.v3.HeaderMap", "headers", 1, T::TYPE_MESSAGE, true},
      {"envoy.config.core.v3.Address", "socket_address", 1, T::TYPE_MESSAGE, false},
      {"envoy.config.core.v3.SocketAddress", "protocol", 1, T::TYPE_ENUM, false},
      {"envoy.config.core.v3.SocketAddress", "address", 2, T::TYPE_STRING, false},
      {"envoy.config.core.v3.SocketAddress", "port_value", 3, T::TYPE_UINT32, false},
      {"envoy.config.core.v3.SocketAddress", "named_port", 4, T::TYPE_STRING, false},
  };
  return cases;
}

TEST(ProtoDescriptors, FieldNumbersAndTypesMatchIstio) {
  for (const auto& c : field_cases()) {
    SCOPED_TRACE(c.message + "." + c.field);
    const pb::Descriptor* d = pool().FindMessageTypeByName(c.message);
    ASSERT_NE(d, nullptr);
    const pb::FieldDescriptor* f = d->FindFieldByName(c.field);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->number(), c.number);
    EXPECT_EQ(f->type(), c.type);
    EXPECT_EQ(f->is_repeated(), c.repeated);
  }
}

TEST(ProtoDescriptors, OneofsMatchIstio) {
  struct OneofCase {
    std::string message, oneof;
    std::vector<std::string> fields;
  };
  const std::vector<OneofCase> cases = {
      {"istio.workload.Address", "type", {"workload", "service"}},
      {"istio.workload.GatewayAddress", "destination", {"hostname", "address"}},
      {"istio.security.StringMatch", "match_type", {"exact", "prefix", "suffix", "presence"}},
      {"istio.workload.zds.WorkloadRequest", "payload", {"add", "keep", "del", "snapshot_sent"}},
      {"istio.workload.zds.WorkloadResponse", "payload", {"ack"}},
      {"envoy.service.auth.v3.CheckResponse",
       "http_response",
       {"denied_response", "ok_response", "error_response"}},
      {"envoy.config.core.v3.SocketAddress", "port_specifier", {"port_value", "named_port"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.message + "." + c.oneof);
    const pb::Descriptor* d = pool().FindMessageTypeByName(c.message);
    ASSERT_NE(d, nullptr);
    const pb::OneofDescriptor* o = d->FindOneofByName(c.oneof);
    ASSERT_NE(o, nullptr);
    EXPECT_EQ(o->field_count(), static_cast<int>(c.fields.size()));
    for (const auto& name : c.fields) {
      const pb::FieldDescriptor* f = d->FindFieldByName(name);
      ASSERT_NE(f, nullptr) << name;
      EXPECT_EQ(f->containing_oneof(), o) << name;
    }
  }
  // Workload.services is a map<string, PortList>.
  const auto* services = istio::workload::Workload::descriptor()->FindFieldByName("services");
  ASSERT_TRUE(services->is_map());
  EXPECT_EQ(services->message_type()->map_value()->message_type()->full_name(),
            "istio.workload.PortList");
  // NetworkAddress.length is proto3 `optional` (presence tracked).
  const auto* length = istio::workload::NetworkAddress::descriptor()->FindFieldByName("length");
  EXPECT_TRUE(length->has_optional_keyword());
}

TEST(ProtoDescriptors, ReservedNumbersMatchIstio) {
  EXPECT_TRUE(istio::workload::Workload::descriptor()->IsReservedNumber(15));
  EXPECT_TRUE(istio::workload::GatewayAddress::descriptor()->IsReservedNumber(4));
  EXPECT_TRUE(istio::workload::zds::WorkloadInfo::descriptor()->IsReservedNumber(4));
  EXPECT_TRUE(envoy::config::core::v3::Node::descriptor()->IsReservedNumber(5));
  // The ext_authz fields left out keep their numbers unused.
  for (int n : {3, 11, 13}) {
    EXPECT_TRUE(envoy::service::auth::v3::AttributeContext::descriptor()->IsReservedNumber(n));
  }
  for (int n : {1, 3, 7, 8}) {
    EXPECT_TRUE(envoy::service::auth::v3::OkHttpResponse::descriptor()->IsReservedNumber(n));
  }
  EXPECT_TRUE(envoy::service::auth::v3::CheckResponse::descriptor()->IsReservedNumber(4));
}

struct EnumCase {
  std::string enum_name;  // full name
  std::vector<std::pair<std::string, int>> values;
};

TEST(ProtoDescriptors, EnumValuesMatchIstio) {
  const std::vector<EnumCase> cases = {
      {"istio.workload.TunnelProtocol", {{"NONE", 0}, {"HBONE", 1}, {"LEGACY_ISTIO_MTLS", 2}}},
      {"istio.workload.WorkloadType", {{"DEPLOYMENT", 0}, {"CRONJOB", 1}, {"POD", 2}, {"JOB", 3}}},
      {"istio.workload.WorkloadStatus", {{"HEALTHY", 0}, {"UNHEALTHY", 1}}},
      {"istio.workload.NetworkMode", {{"STANDARD", 0}, {"HOST_NETWORK", 1}}},
      {"istio.workload.IPFamilies",
       {{"AUTOMATIC", 0}, {"IPV4_ONLY", 1}, {"IPV6_ONLY", 2}, {"DUAL", 3}}},
      {"istio.workload.AppProtocol",
       {{"UNKNOWN", 0}, {"HTTP11", 1}, {"HTTP2", 2}, {"GRPC", 3}, {"TCP", 4}, {"TLS", 5}}},
      {"istio.workload.ApplicationTunnel.Protocol", {{"NONE", 0}, {"PROXY", 1}}},
      {"istio.workload.Service.Visibility", {{"PUBLIC", 0}, {"NAMESPACE", 1}}},
      {"istio.workload.LoadBalancing.Scope",
       {{"UNSPECIFIED_SCOPE", 0},
        {"REGION", 1},
        {"ZONE", 2},
        {"SUBZONE", 3},
        {"NODE", 4},
        {"CLUSTER", 5},
        {"NETWORK", 6}}},
      {"istio.workload.LoadBalancing.Mode",
       {{"UNSPECIFIED_MODE", 0}, {"STRICT", 1}, {"FAILOVER", 2}, {"PASSTHROUGH", 3}}},
      {"istio.workload.LoadBalancing.HealthPolicy", {{"ONLY_HEALTHY", 0}, {"ALLOW_ALL", 1}}},
      {"istio.security.Scope", {{"GLOBAL", 0}, {"NAMESPACE", 1}, {"WORKLOAD_SELECTOR", 2}}},
      {"istio.security.Action", {{"ALLOW", 0}, {"DENY", 1}}},
      {"istio.workload.zds.Version", {{"NOT_USED", 0}, {"V1", 1}}},
      {"envoy.config.core.v3.HeaderValueOption.HeaderAppendAction",
       {{"APPEND_IF_EXISTS_OR_ADD", 0},
        {"ADD_IF_ABSENT", 1},
        {"OVERWRITE_IF_EXISTS_OR_ADD", 2},
        {"OVERWRITE_IF_EXISTS", 3}}},
      {"envoy.config.core.v3.SocketAddress.Protocol", {{"TCP", 0}, {"UDP", 1}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.enum_name);
    const pb::EnumDescriptor* e = pool().FindEnumTypeByName(c.enum_name);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->value_count(), static_cast<int>(c.values.size()));
    for (const auto& [name, number] : c.values) {
      const pb::EnumValueDescriptor* v = e->FindValueByName(name);
      ASSERT_NE(v, nullptr) << name;
      EXPECT_EQ(v->number(), number) << name;
    }
  }
}

TEST(ProtoDescriptors, ServiceMethodsMatch) {
  const pb::ServiceDescriptor* ca =
      pool().FindServiceByName("istio.v1.auth.IstioCertificateService");
  ASSERT_NE(ca, nullptr);
  const pb::MethodDescriptor* create = ca->FindMethodByName("CreateCertificate");
  ASSERT_NE(create, nullptr);
  EXPECT_EQ(create->input_type()->full_name(), "istio.v1.auth.IstioCertificateRequest");
  EXPECT_EQ(create->output_type()->full_name(), "istio.v1.auth.IstioCertificateResponse");
  EXPECT_FALSE(create->client_streaming());
  EXPECT_FALSE(create->server_streaming());

  const pb::ServiceDescriptor* ads =
      pool().FindServiceByName("envoy.service.discovery.v3.AggregatedDiscoveryService");
  ASSERT_NE(ads, nullptr);
  const pb::MethodDescriptor* delta = ads->FindMethodByName("DeltaAggregatedResources");
  ASSERT_NE(delta, nullptr);
  EXPECT_EQ(delta->input_type()->full_name(), "envoy.service.discovery.v3.DeltaDiscoveryRequest");
  EXPECT_EQ(delta->output_type()->full_name(), "envoy.service.discovery.v3.DeltaDiscoveryResponse");
  EXPECT_TRUE(delta->client_streaming());
  EXPECT_TRUE(delta->server_streaming());

  // The generated gRPC stubs name the same services.
  EXPECT_EQ(std::string(istio::v1::auth::IstioCertificateService::service_full_name()),
            ca->full_name());
  EXPECT_EQ(
      std::string(envoy::service::discovery::v3::AggregatedDiscoveryService::service_full_name()),
      ads->full_name());

  const pb::ServiceDescriptor* authz =
      pool().FindServiceByName("envoy.service.auth.v3.Authorization");
  ASSERT_NE(authz, nullptr);
  const pb::MethodDescriptor* check = authz->FindMethodByName("Check");
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->input_type()->full_name(), "envoy.service.auth.v3.CheckRequest");
  EXPECT_EQ(check->output_type()->full_name(), "envoy.service.auth.v3.CheckResponse");
  EXPECT_FALSE(check->client_streaming() || check->server_streaming());
  EXPECT_EQ("/" + authz->full_name() + "/" + check->name(),
            "/envoy.service.auth.v3.Authorization/Check");

  // The gRPC paths the stubs use.
  EXPECT_EQ("/" + ca->full_name() + "/" + create->name(),
            "/istio.v1.auth.IstioCertificateService/CreateCertificate");
  EXPECT_EQ("/" + ads->full_name() + "/" + delta->name(),
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources");
}

TEST(ProtoTypeUrls, BuiltFromDescriptorFullNames) {
  const std::string prefix = "type.googleapis.com/";
  EXPECT_EQ(prefix + istio::workload::Address::descriptor()->full_name(),
            "type.googleapis.com/istio.workload.Address");
  EXPECT_EQ(prefix + istio::security::Authorization::descriptor()->full_name(),
            "type.googleapis.com/istio.security.Authorization");
}

TEST(ProtoRoundTrip, WorkloadInsideAddressViaDeltaResource) {
  istio::workload::Address addr;
  istio::workload::Workload* w = addr.mutable_workload();
  w->set_uid("cluster1//v1/Pod/default/productpage-1");
  w->set_name("productpage-1");
  w->set_namespace_("default");
  w->add_addresses(std::string("\x0a\x00\x00\x07", 4));
  w->set_tunnel_protocol(istio::workload::HBONE);
  w->set_trust_domain("cluster.local");
  w->set_service_account("bookinfo-productpage");
  w->set_node("node-a");
  w->set_workload_type(istio::workload::POD);
  w->set_status(istio::workload::HEALTHY);
  w->set_network_mode(istio::workload::HOST_NETWORK);
  w->add_authorization_policies("default/allow-reviews");
  w->mutable_capacity()->set_value(1);
  w->mutable_locality()->set_zone("z1");
  auto* wp = w->mutable_waypoint();
  wp->mutable_hostname()->set_namespace_("default");
  wp->mutable_hostname()->set_hostname("waypoint.default.svc.cluster.local");
  wp->set_hbone_mtls_port(15008);
  auto& ports = (*w->mutable_services())["default/productpage.default.svc.cluster.local"];
  auto* p = ports.add_ports();
  p->set_service_port(9080);
  p->set_target_port(9080);

  // Wrapped in a Delta xDS resource the way istiod sends it.
  envoy::service::discovery::v3::DeltaDiscoveryResponse resp;
  resp.set_type_url("type.googleapis.com/istio.workload.Address");
  resp.set_nonce("n1");
  auto* r = resp.add_resources();
  r->set_name(w->uid());
  r->set_version("v1");
  ASSERT_TRUE(r->mutable_resource()->PackFrom(addr));
  EXPECT_EQ(r->resource().type_url(), resp.type_url());

  std::string wire;
  ASSERT_TRUE(resp.SerializeToString(&wire));
  envoy::service::discovery::v3::DeltaDiscoveryResponse parsed_resp;
  ASSERT_TRUE(parsed_resp.ParseFromString(wire));
  ASSERT_EQ(parsed_resp.resources_size(), 1);
  istio::workload::Address parsed;
  ASSERT_TRUE(parsed_resp.resources(0).resource().UnpackTo(&parsed));
  ASSERT_EQ(parsed.type_case(), istio::workload::Address::kWorkload);
  EXPECT_TRUE(pb::util::MessageDifferencer::Equals(parsed, addr));
  EXPECT_EQ(parsed.workload()
                .services()
                .at("default/productpage.default.svc.cluster.local")
                .ports(0)
                .service_port(),
            9080u);

  // A bare Workload serialized is the same bytes as Address field 1's payload.
  std::string w_bytes;
  ASSERT_TRUE(w->SerializeToString(&w_bytes));
  istio::workload::Workload w2;
  ASSERT_TRUE(w2.ParseFromString(w_bytes));
  EXPECT_TRUE(pb::util::MessageDifferencer::Equals(w2, *w));
}

TEST(ProtoRoundTrip, Authorization) {
  istio::security::Authorization a;
  a.set_name("istio_converted_peer_authentication_strict");
  a.set_namespace_("default");
  a.set_scope(istio::security::NAMESPACE);
  a.set_action(istio::security::DENY);
  auto* m = a.add_rules()->add_clauses()->add_matches();
  m->add_not_principals()->mutable_presence();
  m->add_destination_ports(8080);
  auto* ip = m->add_source_ips();
  ip->set_address(std::string("\x0a\x00\x00\x00", 4));
  ip->set_length(8);
  auto* sa = m->add_service_accounts();
  sa->set_namespace_("default");
  sa->set_serviceaccount("sleep");

  std::string wire;
  ASSERT_TRUE(a.SerializeToString(&wire));
  istio::security::Authorization parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_TRUE(pb::util::MessageDifferencer::Equals(parsed, a));
  ASSERT_EQ(parsed.rules(0).clauses(0).matches(0).not_principals(0).match_type_case(),
            istio::security::StringMatch::kPresence);

  // A NACK naming it carries google.rpc.Status in error_detail.
  envoy::service::discovery::v3::DeltaDiscoveryRequest nack;
  nack.set_type_url("type.googleapis.com/" + a.GetDescriptor()->full_name());
  nack.set_response_nonce("n1");
  nack.mutable_error_detail()->set_message("default/" + a.name() + ": bad");
  nack.mutable_node()->set_id(
      "ztunnel~10.0.0.1~ztunnel-x.istio-system~istio-system.svc.cluster.local");
  (*nack.mutable_node()->mutable_metadata()->mutable_fields())["NAME"].set_string_value(
      "ztunnel-x");
  std::string nack_wire;
  ASSERT_TRUE(nack.SerializeToString(&nack_wire));
  envoy::service::discovery::v3::DeltaDiscoveryRequest nack2;
  ASSERT_TRUE(nack2.ParseFromString(nack_wire));
  EXPECT_TRUE(pb::util::MessageDifferencer::Equals(nack, nack2));
}

// Wire bytes written by hand from the field numbers, independent of our descriptors: proves the
// generated parser agrees with the numbers on the wire, not just with itself.
TEST(ProtoWire, HandEncodedBytesParse) {
  // WorkloadRequest{ keep(5) = KeepWorkload{ uid(1) = "u" } }: tag 5<<3|2 = 0x2a.
  const std::string keep("\x2a\x03\x0a\x01u", 5);
  istio::workload::zds::WorkloadRequest req;
  ASSERT_TRUE(req.ParseFromString(keep));
  ASSERT_EQ(req.payload_case(), istio::workload::zds::WorkloadRequest::kKeep);
  EXPECT_EQ(req.keep().uid(), "u");

  // DelWorkload uid is field 2: WorkloadRequest{ del(2) = { uid(2) = "d" } }.
  const std::string del(
      "\x12\x03\x12\x01"
      "d",
      5);
  ASSERT_TRUE(req.ParseFromString(del));
  ASSERT_EQ(req.payload_case(), istio::workload::zds::WorkloadRequest::kDel);
  EXPECT_EQ(req.del().uid(), "d");

  // Workload{ uid(20) = "x" }: tag 20<<3|2 = 162 = varint 0xa2 0x01.
  const std::string uid("\xa2\x01\x01x", 4);
  istio::workload::Workload w;
  ASSERT_TRUE(w.ParseFromString(uid));
  EXPECT_EQ(w.uid(), "x");

  // IstioCertificateRequest{ validity_duration(3) = 86400 }: tag 0x18, varint 86400.
  istio::v1::auth::IstioCertificateRequest csr;
  csr.set_validity_duration(86400);
  std::string csr_wire;
  ASSERT_TRUE(csr.SerializeToString(&csr_wire));
  EXPECT_EQ(csr_wire, std::string("\x18\x80\xa3\x05", 4));
}

}  // namespace
