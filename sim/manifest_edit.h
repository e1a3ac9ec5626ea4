// Edits of the manifests directory the simulator makes on the user's behalf (labelling a
// namespace). Only the document that changes is rewritten; the other documents of the file keep
// their text byte for byte. Files are replaced atomically (temp file + rename) so meshd and the
// node agents, which watch the directory, never read half a file.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "common/base/result.h"

namespace zt::sim {

// Sets metadata.labels[key] = *value (or removes the label when value is nullopt) on the
// Namespace named `ns` in any *.yaml / *.yml file below `dir`. Fails when there is no such
// Namespace. Returns the file that was changed (unchanged content is not rewritten).
Result<std::filesystem::path> set_namespace_label(const std::filesystem::path& dir,
                                                  const std::string& ns, const std::string& key,
                                                  const std::optional<std::string>& value);

// "KEY=VALUE" -> {KEY, VALUE}; "KEY-" -> {KEY, nullopt}.
Result<std::pair<std::string, std::optional<std::string>>> parse_label_edit(const std::string& arg);

}  // namespace zt::sim
