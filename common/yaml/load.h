// Every document of a YAML stream, without yaml-cpp 0.7's endless loop.
//
// yaml-cpp 0.7 (Debian 12) reads a document that begins with a token no node can begin with
// ("," for one) as an empty document without consuming that token, so YAML::LoadAll appends
// empty documents until the process runs out of memory (yaml-cpp issue #1040; fixed upstream
// after 0.8). A one-line config file could take down a daemon that reloads it.
#pragma once

#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace zt::yaml {

// The documents of `text`, as YAML::LoadAll returns them. Throws YAML::ParserException (with
// the token's line and column) where yaml-cpp would loop, and whatever YAML::LoadAll throws on
// other bad input.
std::vector<YAML::Node> load_all(std::string_view text);

// An exception out of loading or reading YAML as an error message: "invalid YAML at line L,
// column C: <message>" (1-based) for yaml-cpp's own, "<context>: <what()>" for any other.
std::string describe(const std::exception& e, std::string_view context);

}  // namespace zt::yaml
