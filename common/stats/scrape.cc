#include "common/stats/scrape.h"

#include <cstdlib>
#include <string>

namespace zt::stats {

double sum_samples(std::string_view text, std::string_view family,
                   const std::vector<std::string>& label_filters) {
  double sum = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#' || !line.starts_with(family)) continue;
    if (line.size() > family.size() && line[family.size()] != '{' && line[family.size()] != ' ') {
      continue;
    }
    bool ok = true;
    for (const auto& f : label_filters) ok = ok && line.find(f) != std::string_view::npos;
    if (!ok) continue;
    auto sp = line.rfind(' ');
    if (sp == std::string_view::npos) continue;
    sum += std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
  }
  return sum;
}

}  // namespace zt::stats
