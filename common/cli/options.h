// Command lines driven by one table per binary: each row is a flag, the environment variable
// behind it (if any), its value name, default and help, and how it is applied. Parsing,
// precedence (flag > variable > default), error messages and --help all come from the table,
// so they cannot drift apart. Used by ztunnel and the waypoint.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace zt::cli {

struct OptionInfo {
  std::string_view flag;        // without the leading "--"
  const char* env;              // nullptr when there is no variable
  std::string_view value_name;  // shown in --help; empty for a boolean flag
  std::string_view default_text;
  std::string_view help;
};

// A row of a binary's table: `apply` checks a value and stores it in the binary's config.
template <class Config>
struct Option : OptionInfo {
  Status (*apply)(Config&, std::string_view);
};

using Getenv = std::function<std::optional<std::string>(const char*)>;

// "--flag (VARIABLE)" or "--flag": how errors name an option.
std::string option_name(const OptionInfo& o);

// True when --help or -h is among the arguments.
bool wants_help(int argc, char** argv);

// "true"/"false" in any case.
Result<bool> parse_bool(std::string_view text);

// The flags given: `--flag value` or `--flag=value`; a boolean flag alone means "true" (or takes
// a following true/false). The last occurrence wins. Errors: an argument that is not a flag, an
// unknown flag, a missing value.
Result<std::map<std::string, std::string>> read_flags(int argc, char** argv,
                                                      const std::vector<const OptionInfo*>& table);

// The value of `o`: its flag, else its variable (an empty variable counts as unset).
std::optional<std::string> value_of(const OptionInfo& o,
                                    const std::map<std::string, std::string>& flags,
                                    const Getenv& getenv);

// `text` as lines of at most `width` columns (words are never split), each after `indent`.
std::string wrap_words(std::string_view text, std::string_view indent, size_t width);

// `head`, then one entry per option (flag, value name, wrapped help with variable and default),
// then --help.
std::string help_text(std::string_view head, const std::vector<const OptionInfo*>& table);

template <class Config>
std::vector<const OptionInfo*> infos(const std::vector<Option<Config>>& table) {
  std::vector<const OptionInfo*> out;
  out.reserve(table.size());
  for (const auto& o : table) out.push_back(&o);
  return out;
}

// Applies every option that has a value (flag or variable) to `out`, in table order. Errors
// name the option: "--worker-threads (ZTUNNEL_WORKER_THREADS): "x" is not a number".
template <class Config>
Status apply_options(int argc, char** argv, const Getenv& getenv,
                     const std::vector<Option<Config>>& table, Config& out) {
  auto flags = read_flags(argc, argv, infos(table));
  if (!flags) return tl::unexpected(flags.error());
  for (const auto& o : table) {
    auto value = value_of(o, *flags, getenv);
    if (!value) continue;
    if (auto applied = o.apply(out, *value); !applied) {
      return tl::unexpected(wrap(applied.error(), option_name(o)));
    }
  }
  return {};
}

}  // namespace zt::cli
