// stats::sum_samples reads back what Registry::render writes (and any Prometheus text).
#include "common/stats/scrape.h"

#include <gtest/gtest.h>

#include "common/stats/registry.h"

namespace zt::stats {
namespace {

TEST(StatsScrape, SumsOneFamilysSamplesMatchingEveryFilter) {
  Registry r;
  auto& requests = r.counter_family("requests", "Requests.");
  requests.with({{"code", "200"}, {"who", "a"}}).inc(3);
  requests.with({{"code", "200"}, {"who", "b"}}).inc(4);
  requests.with({{"code", "403"}, {"who", "a"}}).inc();
  r.counter_family("requests_extra", "Another family with a longer name.").with({}).inc(100);
  const std::string text = r.render_prometheus();
  EXPECT_EQ(sum_samples(text, "requests_total"), 8);
  EXPECT_EQ(sum_samples(text, "requests_total", {R"(code="200")"}), 7);
  EXPECT_EQ(sum_samples(text, "requests_total", {R"(code="200")", R"(who="a")"}), 3);
  EXPECT_EQ(sum_samples(text, "requests_total", {R"(code="500")"}), 0);
  EXPECT_EQ(sum_samples(text, "requests_extra_total"), 100);
  EXPECT_EQ(sum_samples(text, "requests"), 0);  // a prefix is not the family
}

TEST(StatsScrape, CommentsBlankLinesAndBadValuesCountNothing) {
  const std::string text =
      "# HELP x_total X.\n# TYPE x_total counter\n\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} oops\n"
      "x_total 5\nx_total{a=\"3\"}";
  EXPECT_EQ(sum_samples(text, "x_total"), 7);
  EXPECT_EQ(sum_samples("", "x_total"), 0);
}

}  // namespace
}  // namespace zt::stats
