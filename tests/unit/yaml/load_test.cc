// zt::yaml::load_all: what YAML::LoadAll gives on good streams, and a ParserException with the
// token's place on the streams that make yaml-cpp 0.7's LoadAll add empty documents forever.
#include "common/yaml/load.h"

#include <gtest/gtest.h>

namespace zt::yaml {
namespace {

TEST(YamlLoadAll, ReturnsEveryDocumentAsLoadAllDoes) {
  for (const char* text : {"", "a: 1\n", "---\na: 1\n", "a: 1\n---\nb: [2, 3]\n",
                           "a: 1\n---\n---\nb: 2\n", "a: 1\n---\n", "- x\n- y\n...\n---\nz\n"}) {
    const auto ours = load_all(text);
    const auto theirs = YAML::LoadAll(text);
    ASSERT_EQ(ours.size(), theirs.size()) << text;
    for (size_t i = 0; i < ours.size(); ++i) {
      EXPECT_EQ(YAML::Dump(ours[i]), YAML::Dump(theirs[i])) << text << " document " << i;
    }
  }
  const auto docs = load_all("a: 1\n---\n---\nb: 2\n");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0]["a"].as<int>(), 1);
  EXPECT_TRUE(docs[1].IsNull());
  EXPECT_EQ(docs[2]["b"].as<int>(), 2);
}

// Each of these made YAML::LoadAll append empty documents until memory ran out.
TEST(YamlLoadAll, AStrayTokenIsAnErrorAtItsPlaceNotAnEndlessLoop) {
  struct Case {
    const char* text;
    int line;  // 0-based, as YAML::Mark counts
    int column;
  };
  const Case cases[] = {
      {",", 0, 0},
      {",notPaths: rsai", 0, 0},
      {"a: 1\n---\n,\n", 2, 0},
      {"kind: HTTPRoute\n---\n  ,x\n", 2, 2},
  };
  for (const auto& c : cases) {
    try {
      (void)load_all(c.text);
      ADD_FAILURE() << "no error for " << c.text;
    } catch (const YAML::ParserException& e) {
      EXPECT_EQ(e.mark.line, c.line) << c.text;
      EXPECT_EQ(e.mark.column, c.column) << c.text;
    }
  }
}

TEST(YamlLoadAll, OtherBadInputStillThrowsWhatYamlCppThrows) {
  for (const char* text : {"key: [unclosed\n", "{a: 1", "a: b: c\n"}) {
    EXPECT_THROW((void)YAML::LoadAll(text), YAML::ParserException) << text;
    try {
      (void)load_all(text);
      ADD_FAILURE() << "no error for " << text;
    } catch (const YAML::ParserException& e) {
      EXPECT_EQ(e.msg.find("no YAML node can start here"), std::string::npos) << text;
    }
  }
}

TEST(YamlDescribe, NamesYamlCppsPlaceOneBasedAndOtherwiseTheContext) {
  try {
    (void)load_all("a: 1\nb: [2\n");
    FAIL() << "an unclosed flow sequence must not load";
  } catch (const std::exception& e) {
    EXPECT_TRUE(describe(e, "ctx").starts_with("invalid YAML at line 3, column 1: "))
        << describe(e, "ctx");
  }
  try {
    (void)YAML::Load("a: x")["a"].as<int>();
    FAIL() << "\"x\" must not convert to int";
  } catch (const std::exception& e) {
    EXPECT_TRUE(describe(e, "ctx").starts_with("invalid YAML at line 1, column 4: "))
        << describe(e, "ctx");
  }
  EXPECT_EQ(describe(std::runtime_error("boom"), "waypoint config"), "waypoint config: boom");
}

}  // namespace
}  // namespace zt::yaml
