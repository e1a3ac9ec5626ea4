// Kubernetes manifests -> validated objects. The converter takes a YAML::Node so that any source
// can use it: YAML files here, the Kubernetes API's JSON later (JSON is valid YAML, so
// YAML::Load(json) gives the same node).
//
// Error messages name the object and the field: "Pod default/web: spec.nodeName: must be a
// string"; an object without a usable name is named by its document index ("document 3").
// parse_manifest() prefixes the file: "pods.yaml: Pod default/web: ...".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/base/result.h"
#include "meshd/manifest/objects.h"

namespace zt::meshd::manifest {

// One validation failure. `object` is set when the document had a usable kind/namespace/name
// (so a source can keep that object's last good version).
struct ManifestError {
  std::string file;     // as given to parse_manifest ("" when converting a bare node)
  size_t document = 0;  // 0-based index of the document in the file
  std::optional<ObjectKey> object;
  std::string message;  // full text, "<file>: <object>: <field>: <problem>"
  // What stands in for the object while it has no good version (a source keeps the last good
  // one first): for an AuthorizationPolicy, a policy that fails closed. Else none.
  std::optional<Object> fallback;
  // True when the document was read far enough to know that nothing need stand in for it (an
  // AUDIT or dry-run policy): a stand-in of an earlier version then goes. When false and there
  // is no fallback, a source keeps whatever stands in now (a half-typed edit must not fail open).
  bool nothing_to_stand_in = false;
};

// Converts one document. Returns nullopt for kinds meshd does not use (logged at debug) and for
// empty documents; an error for a known kind that fails validation. `document` names the object
// in errors when it has no name.
struct ConvertError {
  std::optional<ObjectKey> object;
  std::string message;               // "<object>: <field>: <problem>"
  std::optional<Object> fallback;    // as ManifestError::fallback
  bool nothing_to_stand_in = false;  // as ManifestError::nothing_to_stand_in
};
tl::expected<std::optional<Object>, ConvertError> convert(const YAML::Node& document,
                                                          size_t document_index = 0);

struct ParsedManifest {
  std::vector<Object> objects;
  std::vector<size_t> documents;  // documents[i]: 0-based document index of objects[i]
  std::vector<ManifestError> errors;
  // True when the text was not YAML at all (nothing in it could be read; `errors` says where).
  bool unreadable = false;
};

// Parses a multi-document YAML text (also `kind: List` with `items`). `file` is used in messages.
ParsedManifest parse_manifest(std::string_view text, const std::string& file);

}  // namespace zt::meshd::manifest
