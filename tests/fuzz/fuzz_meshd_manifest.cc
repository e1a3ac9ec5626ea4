// Fuzzes meshd's manifest reader: the multi-document YAML an operator drops in the manifest
// directory (Namespaces, Pods, Services, ServiceAccounts, AuthorizationPolicies,
// PeerAuthentications, Gateways, HTTPRoutes, GRPCRoutes, DestinationRules, `kind: List`). Besides
// crashes, sanitizer reports and hangs it traps when the reader breaks its contract:
// - every object comes with the index of the document it came from, in order;
// - unreadable text yields one error and no object; every error names the file;
// - reading the same text twice gives the same objects;
// - every object has a kind and a name, and a UID shaped like a Kubernetes UID when it has none.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "meshd/manifest/parse.h"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace zt::meshd::manifest;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string file = "fuzz.yaml";
  const ParsedManifest parsed = parse_manifest(text, file);

  require(parsed.objects.size() == parsed.documents.size());
  for (size_t i = 1; i < parsed.documents.size(); ++i) {
    require(parsed.documents[i - 1] <= parsed.documents[i]);
  }
  if (parsed.unreadable) require(parsed.objects.empty() && parsed.errors.size() == 1);
  for (const auto& e : parsed.errors) {
    require(e.file == file && e.message.starts_with(file + ": "));
  }
  for (const auto& object : parsed.objects) {
    const ObjectKey key = key_of(object);
    require(!key.kind.empty() && !key.name.empty());
    std::visit(
        [&](const auto& o) {
          const std::string uid = kube_uid(key.kind, o.meta);
          require(!o.meta.uid.empty() || uid.size() == 36);
        },
        object);
  }

  const ParsedManifest again = parse_manifest(text, file);
  require(again.objects == parsed.objects && again.documents == parsed.documents);
  require(again.errors.size() == parsed.errors.size());
  return 0;
}
