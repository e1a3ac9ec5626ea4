#include "sim/manifest_edit.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include <unistd.h>
#include <yaml-cpp/yaml.h>

namespace zt::sim {
namespace fs = std::filesystem;

namespace {

// Splits a multi-document YAML text at "---" lines; each piece keeps its own text.
std::vector<std::string> split_documents(const std::string& text) {
  std::vector<std::string> docs;
  std::string current;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    bool separator = line == "---" || line.rfind("--- ", 0) == 0 || line == "---\r";
    if (separator) {
      docs.push_back(std::move(current));
      current.clear();
    }
    current += line;
    current += '\n';
  }
  docs.push_back(std::move(current));
  return docs;
}

Result<std::string> read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return failf("cannot read {}", p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Status write_atomically(const fs::path& p, const std::string& text) {
  auto tmp = p.parent_path() / fmt::format(".{}.meshsim-{}", p.filename().string(), ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) return failf("cannot write {}", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return failf("cannot replace {}: {}", p.string(), ec.message());
  }
  return {};
}

}  // namespace

Result<std::pair<std::string, std::optional<std::string>>> parse_label_edit(
    const std::string& arg) {
  if (auto eq = arg.find('='); eq != std::string::npos) {
    if (eq == 0) return failf("\"{}\": empty label key", arg);
    return std::pair<std::string, std::optional<std::string>>{arg.substr(0, eq),
                                                              arg.substr(eq + 1)};
  }
  if (arg.size() > 1 && arg.back() == '-') {
    return std::pair<std::string, std::optional<std::string>>{arg.substr(0, arg.size() - 1),
                                                              std::nullopt};
  }
  return failf("\"{}\" is neither KEY=VALUE nor KEY-", arg);
}

Result<fs::path> set_namespace_label(const fs::path& dir, const std::string& ns,
                                     const std::string& key,
                                     const std::optional<std::string>& value) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    auto ext = it->path().extension().string();
    auto name = it->path().filename().string();
    if (it->is_regular_file() && (ext == ".yaml" || ext == ".yml") && name[0] != '.') {
      files.push_back(it->path());
    }
  }
  if (ec) return failf("cannot list manifests in {}: {}", dir.string(), ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    auto text = read_text(file);
    if (!text) return tl::unexpected(text.error());
    auto docs = split_documents(*text);
    for (auto& doc : docs) {
      YAML::Node node;
      try {
        node = YAML::Load(doc);
      } catch (const YAML::Exception&) {
        continue;  // not ours to judge; meshd reports broken files
      }
      if (!node.IsMap() || !node["kind"] || !node["kind"].IsScalar() ||
          node["kind"].Scalar() != "Namespace") {
        continue;
      }
      auto meta = node["metadata"];
      if (!meta || !meta.IsMap() || !meta["name"] || meta["name"].Scalar() != ns) continue;
      auto labels = meta["labels"];
      bool has = labels && labels.IsMap() && labels[key];
      if (value) {
        if (has && labels[key].Scalar() == *value) return file;
        meta["labels"][key] = *value;
      } else {
        if (!has) return file;
        meta["labels"].remove(key);
        if (meta["labels"].size() == 0) meta.remove("labels");
      }
      YAML::Emitter out;
      out << node;
      bool separated = doc.rfind("---", 0) == 0;
      doc = std::string(separated ? "---\n" : "") + out.c_str() + "\n";
      std::string joined;
      for (const auto& d : docs) joined += d;
      if (auto ok = write_atomically(file, joined); !ok) return tl::unexpected(ok.error());
      return file;
    }
  }
  return failf("no Namespace \"{}\" in the manifests below {}", ns, dir.string());
}

}  // namespace zt::sim
