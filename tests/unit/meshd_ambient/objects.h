// Test helper: an ObjectSet from YAML text (fails the test on any manifest error).
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "meshd/ambient/compute.h"
#include "meshd/manifest/parse.h"

namespace zt::meshd::ambient::test {

inline manifest::ObjectSet objects_from(const std::string& yaml) {
  manifest::ObjectSet set;
  auto parsed = manifest::parse_manifest(yaml, "test.yaml");
  for (const auto& e : parsed.errors) ADD_FAILURE() << e.message;
  for (auto& o : parsed.objects) set.put(std::move(o));
  return set;
}

inline std::string ns_yaml(const std::string& name, const std::string& labels = "{}") {
  return "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + ", labels: " + labels +
         "}\n";
}

inline std::string pod_yaml(const std::string& ns, const std::string& name, const std::string& ip,
                            const std::string& labels = "{}", const std::string& extra_spec = "",
                            const std::string& node = "node-a") {
  return "---\napiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: " + ns +
         ", labels: " + labels + "}\nspec: {nodeName: " + node + extra_spec +
         "}\nstatus: {phase: Running, podIP: " + ip + "}\n";
}

inline const istio::workload::Workload& workload(const MeshSnapshot& s, const std::string& ns,
                                                 const std::string& name) {
  static const istio::workload::Workload kEmpty;
  auto it = s.addresses.find(pod_uid("Kubernetes", ns, name));
  if (it == s.addresses.end() || !it->second.has_workload()) {
    ADD_FAILURE() << "no workload " << ns << "/" << name;
    return kEmpty;
  }
  return it->second.workload();
}

inline const istio::workload::Service& service(const MeshSnapshot& s, const std::string& ns,
                                               const std::string& name) {
  static const istio::workload::Service kEmpty;
  auto it = s.addresses.find(ns + "/" + service_hostname(name, ns));
  if (it == s.addresses.end() || !it->second.has_service()) {
    ADD_FAILURE() << "no service " << ns << "/" << name;
    return kEmpty;
  }
  return it->second.service();
}

inline std::string bytes(std::initializer_list<int> octets) {
  std::string out;
  for (int o : octets) out.push_back(static_cast<char>(o));
  return out;
}

}  // namespace zt::meshd::ambient::test
