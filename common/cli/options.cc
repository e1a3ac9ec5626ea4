#include "common/cli/options.h"

#include <fmt/format.h>

#include "common/net/address.h"

namespace zt::cli {

std::string option_name(const OptionInfo& o) {
  if (o.env == nullptr) return fmt::format("--{}", o.flag);
  return fmt::format("--{} ({})", o.flag, o.env);
}

bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

Result<bool> parse_bool(std::string_view text) {
  std::string lower(text);
  for (auto& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  if (lower == "true") return true;
  if (lower == "false") return false;
  return failf("{} is not true or false", net::quote(text));
}

Result<std::map<std::string, std::string>> read_flags(int argc, char** argv,
                                                      const std::vector<const OptionInfo*>& table) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.substr(0, 2) != "--" || arg.size() == 2) {
      return failf("unexpected argument {} (options start with --; see --help)", net::quote(arg));
    }
    auto body = arg.substr(2);
    auto eq = body.find('=');
    auto name = body.substr(0, eq);
    const OptionInfo* option = nullptr;
    for (const auto* o : table) {
      if (o->flag == name) option = o;
    }
    if (option == nullptr) return failf("unknown flag --{} (see --help)", name);
    std::string key(option->flag);
    if (eq != std::string_view::npos) {
      flags[key] = std::string(body.substr(eq + 1));
    } else if (option->value_name.empty()) {
      bool explicit_value = i + 1 < argc && parse_bool(argv[i + 1]).has_value();
      flags[key] = explicit_value ? std::string(argv[++i]) : "true";
    } else if (i + 1 < argc) {
      flags[key] = argv[++i];
    } else {
      return failf("{} needs a value ({})", option_name(*option), option->value_name);
    }
  }
  return flags;
}

std::optional<std::string> value_of(const OptionInfo& o,
                                    const std::map<std::string, std::string>& flags,
                                    const Getenv& getenv) {
  if (auto it = flags.find(std::string(o.flag)); it != flags.end()) return it->second;
  if (o.env == nullptr) return std::nullopt;
  auto value = getenv(o.env);
  if (value && value->empty()) value.reset();
  return value;
}

std::string wrap_words(std::string_view text, std::string_view indent, size_t width) {
  std::string out;
  std::string line(indent);
  size_t start = 0;
  while (start < text.size()) {
    auto space = text.find(' ', start);
    auto word = text.substr(start, space == std::string_view::npos ? space : space - start);
    start = space == std::string_view::npos ? text.size() : space + 1;
    if (word.empty()) continue;
    if (line.size() > indent.size() && line.size() + 1 + word.size() > width) {
      out += line + "\n";
      line = std::string(indent);
    }
    if (line.size() > indent.size()) line += ' ';
    line += word;
  }
  if (line.size() > indent.size()) out += line + "\n";
  return out;
}

std::string help_text(std::string_view head, const std::vector<const OptionInfo*>& table) {
  std::string out(head);
  for (const auto* o : table) {
    out += o->value_name.empty() ? fmt::format("  --{}\n", o->flag)
                                 : fmt::format("  --{} {}\n", o->flag, o->value_name);
    std::string env = o->env ? fmt::format("env {}, ", o->env) : std::string();
    out +=
        wrap_words(fmt::format("{} ({}default {})", o->help, env, o->default_text), "      ", 80);
  }
  out += "  --help, -h\n      Print this text.\n";
  return out;
}

}  // namespace zt::cli
