#include "common/yaml/load.h"

#include <sstream>
#include <string>

#include <yaml-cpp/eventhandler.h>

namespace zt::yaml {
namespace {

// Walks the stream's events and stops where a document starts at the very position the
// previous one started at: the parser made no progress and would go on forever.
class ProgressCheck final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (started_ && mark.pos == last_start_) {
      throw YAML::ParserException(mark, "no YAML node can start here");
    }
    started_ = true;
    last_start_ = mark.pos;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  bool started_ = false;
  int last_start_ = 0;
};

}  // namespace

std::vector<YAML::Node> load_all(std::string_view text) {
  std::istringstream in{std::string(text)};
  {
    YAML::Parser parser(in);
    ProgressCheck check;
    while (parser.HandleNextDocument(check)) {
    }
  }
  in.clear();
  in.seekg(0);
  return YAML::LoadAll(in);
}

std::string describe(const std::exception& e, std::string_view context) {
  if (const auto* y = dynamic_cast<const YAML::Exception*>(&e)) {
    std::ostringstream out;
    out << "invalid YAML at line " << y->mark.line + 1 << ", column " << y->mark.column + 1 << ": "
        << y->msg;
    return out.str();
  }
  std::string out(context);
  out += ": ";
  out += e.what();
  return out;
}

}  // namespace zt::yaml
