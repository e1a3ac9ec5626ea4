#include "common/stats/registry.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/stats/process_metrics.h"

namespace zt::stats {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(StatsRegistry, CounterRendersWithTotalSuffixHelpAndType) {
  Registry r;
  auto& fam = r.counter_family("istio_tcp_connections_opened", "Connections opened.");
  fam.with({{"reporter", "source"}}).inc();
  fam.with({{"reporter", "source"}}).inc(4);
  fam.with({{"reporter", "destination"}}).inc(2);
  EXPECT_EQ(r.render_prometheus(),
            "# HELP istio_tcp_connections_opened_total Connections opened.\n"
            "# TYPE istio_tcp_connections_opened_total counter\n"
            "istio_tcp_connections_opened_total{reporter=\"destination\"} 2\n"
            "istio_tcp_connections_opened_total{reporter=\"source\"} 5\n");
}

TEST(StatsRegistry, CounterNameGivenWithTotalIsNotDoubled) {
  Registry r;
  auto& a = r.counter_family("requests_total", "Requests.");
  auto& b = r.counter_family("requests", "Requests.");
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.name(), "requests_total");
}

TEST(StatsRegistry, GaugeRendersSetIncAndDec) {
  Registry r;
  auto& g = r.gauge_family("istio_tcp_sockets_open", "Open sockets.").with({});
  g.set(10);
  g.inc(3);
  g.dec(5);
  g.dec();
  EXPECT_EQ(g.value(), 7);
  EXPECT_EQ(r.render_prometheus(),
            "# HELP istio_tcp_sockets_open Open sockets.\n"
            "# TYPE istio_tcp_sockets_open gauge\n"
            "istio_tcp_sockets_open 7\n");
  g.set(-2);
  EXPECT_THAT(r.render_prometheus(), HasSubstr("istio_tcp_sockets_open -2\n"));
}

TEST(StatsRegistry, HistogramRendersCumulativeBucketsSumAndCount) {
  Registry r;
  auto& h = r.histogram_family("request_duration_milliseconds", "Duration.", {1, 2.5, 10})
                .with({{"reporter", "waypoint"}});
  h.observe(0.5);
  h.observe(1);  // upper bounds are inclusive
  h.observe(2);
  h.observe(7);
  h.observe(100);
  EXPECT_EQ(r.render_prometheus(),
            "# HELP request_duration_milliseconds Duration.\n"
            "# TYPE request_duration_milliseconds histogram\n"
            "request_duration_milliseconds_bucket{reporter=\"waypoint\",le=\"1\"} 2\n"
            "request_duration_milliseconds_bucket{reporter=\"waypoint\",le=\"2.5\"} 3\n"
            "request_duration_milliseconds_bucket{reporter=\"waypoint\",le=\"10\"} 4\n"
            "request_duration_milliseconds_bucket{reporter=\"waypoint\",le=\"+Inf\"} 5\n"
            "request_duration_milliseconds_sum{reporter=\"waypoint\"} 110.5\n"
            "request_duration_milliseconds_count{reporter=\"waypoint\"} 5\n");
}

TEST(StatsRegistry, HistogramPutsNaNInTheInfBucket) {
  Registry r;
  auto& h = r.histogram_family("h", "h", {1}).with({});
  h.observe(std::numeric_limits<double>::quiet_NaN());
  auto s = h.snapshot();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(s.count, 1u);
}

TEST(StatsRegistry, LabelValuesAreEscaped) {
  Registry r;
  r.counter_family("c", "c").with({{"v", "a\\b\"c\nd"}}).inc();
  EXPECT_THAT(r.render_prometheus(), HasSubstr("c_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"));
}

TEST(StatsRegistry, InvalidUtf8InLabelValuesIsReplaced) {
  EXPECT_EQ(escape_label_value("ok\xC3\xA9"), "ok\xC3\xA9");              // valid é kept
  EXPECT_EQ(escape_label_value("x\xFFy"), "x\xEF\xBF\xBDy");              // stray byte
  EXPECT_EQ(escape_label_value("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong NUL
  EXPECT_EQ(escape_label_value("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // truncated
}

TEST(StatsRegistry, HelpIsEscaped) {
  Registry r;
  r.gauge_family("g", "line one\nback\\slash \"quotes\" stay").with({}).set(1);
  EXPECT_THAT(r.render_prometheus(),
              HasSubstr("# HELP g line one\\nback\\\\slash \"quotes\" stay\n"));
}

TEST(StatsRegistry, SeriesAndLabelsAreSortedAndLabelOrderDoesNotMatter) {
  Registry r;
  auto& fam = r.counter_family("z", "z");
  auto& a = fam.with({{"b", "2"}, {"a", "1"}});
  auto& b = fam.with({{"a", "1"}, {"b", "2"}});
  EXPECT_EQ(&a, &b);
  fam.with({{"a", "0"}, {"b", "9"}}).inc();
  a.inc();
  r.gauge_family("a_first", "sorted by family name").with({}).set(1);
  EXPECT_EQ(r.render_prometheus(),
            "# HELP a_first sorted by family name\n"
            "# TYPE a_first gauge\n"
            "a_first 1\n"
            "# HELP z_total z\n"
            "# TYPE z_total counter\n"
            "z_total{a=\"0\",b=\"9\"} 1\n"
            "z_total{a=\"1\",b=\"2\"} 1\n");
}

TEST(StatsRegistry, FamilyWithoutSeriesIsNotRendered) {
  Registry r;
  r.counter_family("unused", "never incremented, no label set yet");
  EXPECT_EQ(r.render_prometheus(), "");
}

TEST(StatsRegistry, HandlesAreStableAcrossManySeries) {
  Registry r;
  auto& fam = r.counter_family("c", "c");
  auto& first = fam.with({{"i", "0"}});
  for (int i = 1; i < 1000; ++i) fam.with({{"i", std::to_string(i)}}).inc();
  first.inc(7);
  EXPECT_EQ(&fam.with({{"i", "0"}}), &first);
  EXPECT_EQ(first.value(), 7u);
}

TEST(StatsRegistry, InvalidNamesAndConflictsThrowAtRegistration) {
  Registry r;
  EXPECT_THROW(r.counter_family("1bad", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge_family("bad-name", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter_family("c", "c").with({{"bad-label", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.counter_family("c", "c").with({{"__reserved", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.counter_family("c", "c").with({{"a", "1"}, {"a", "2"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram_family("h", "h", {1}).with({{"le", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram_family("h2", "h", {2, 1}), std::invalid_argument);
  EXPECT_THROW(r.histogram_family("h", "h", {1, 2}), std::invalid_argument);  // other buckets
  EXPECT_THROW(r.gauge_family("c_total", "x"), std::invalid_argument);        // the counter's name
  EXPECT_THROW(r.callback_gauge_family("h", "x"), std::invalid_argument);
  r.gauge_family("g", "g");
  EXPECT_THROW(r.callback_gauge_family("g", "g"), std::invalid_argument);
  EXPECT_NO_THROW(r.counter_family("colon:ok", "recording-rule style names are valid"));
}

TEST(StatsRegistry, ConcurrentIncrementsFromSeveralThreadsSumExactly) {
  Registry r;
  auto& fam = r.counter_family("c", "c");
  auto& hist_fam = r.histogram_family("h", "h", {10});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;
  fam.with({{"kind", "shared"}});  // exists before the concurrent scrapes below
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread looks the shared series up itself (the locked path) and caches it.
      auto& shared = fam.with({{"kind", "shared"}});
      auto& own = fam.with({{"kind", "thread" + std::to_string(t)}});
      auto& h = hist_fam.with({});
      for (int i = 0; i < kPerThread; ++i) {
        shared.inc();
        own.inc(2);
        h.observe(i % 2 == 0 ? 1 : 20);
      }
    });
  }
  // Scrape while the writers run: must not crash or deadlock.
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT(r.render_prometheus(), HasSubstr("# TYPE c_total counter"));
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(fam.with({{"kind", "shared"}}).value(), uint64_t{kThreads} * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(fam.with({{"kind", "thread" + std::to_string(t)}}).value(), 2u * kPerThread);
  }
  auto snap = hist_fam.with({}).snapshot();
  EXPECT_EQ(snap.count, uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(snap.cumulative[0], uint64_t{kThreads} * kPerThread / 2);
  EXPECT_DOUBLE_EQ(snap.sum, kThreads * (kPerThread / 2) * 21.0);
}

TEST(StatsRegistry, CallbackGaugeIsComputedAtScrapeTime) {
  Registry r;
  double value = 1.5;
  r.callback_gauge("pool_size", "Computed when scraped.", [&value] { return value; });
  EXPECT_THAT(r.render_prometheus(), HasSubstr("pool_size 1.5\n"));
  value = 42;
  EXPECT_THAT(r.render_prometheus(), HasSubstr("pool_size 42\n"));
  EXPECT_THAT(r.render_prometheus(), HasSubstr("# TYPE pool_size gauge\n"));
}

TEST(StatsRegistry, LabelledCallbacksCanBeReplacedAndRemoved) {
  Registry r;
  auto& fam = r.callback_counter_family("bytes", "Bytes.");
  fam.set({{"dir", "in"}}, [] { return 1.0; });
  fam.set({{"dir", "out"}}, [] { return 2.0; });
  fam.set({{"dir", "in"}}, [] { return 3.0; });
  auto text = r.render_prometheus();
  EXPECT_THAT(text, HasSubstr("# TYPE bytes_total counter\n"));
  EXPECT_THAT(text, HasSubstr("bytes_total{dir=\"in\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("bytes_total{dir=\"out\"} 2\n"));
  fam.remove({{"dir", "in"}});
  EXPECT_THAT(r.render_prometheus(), Not(HasSubstr("dir=\"in\"")));
  fam.remove({{"dir", "out"}});
  EXPECT_EQ(r.render_prometheus(), "");
}

TEST(StatsRegistry, CallbackMayUseTheRegistryWhileItRenders) {
  // Callbacks run without registry locks, so one that touches the registry does not deadlock.
  Registry r;
  auto& c = r.counter_family("scrapes", "Scrapes.").with({});
  r.callback_gauge("self_referencing", "x", [&] {
    c.inc();
    r.counter_family("scrapes", "Scrapes.");
    return 1.0;
  });
  r.render_prometheus();
  EXPECT_EQ(c.value(), 1u);
}

TEST(StatsRegistry, FormatsSpecialAndFractionalValues) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(3), "3");
  EXPECT_EQ(format_value(-7), "-7");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(1e300), "1e+300");
  EXPECT_EQ(format_value(12345678901.0), "12345678901");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
}

// Value of an unlabelled sample `name` in `text`, NaN when absent.
double sample(const std::string& text, const std::string& name) {
  auto pos = text.find("\n" + name + " ");
  if (pos == std::string::npos) return std::numeric_limits<double>::quiet_NaN();
  return std::strtod(text.c_str() + pos + name.size() + 2, nullptr);
}

TEST(StatsRegistry, ProcessMetricsReadProcSelf) {
  Registry r;
  register_process_metrics(r);
  auto before = sample(r.render_prometheus(), "process_open_fds");
  std::ifstream extra("/proc/self/status");  // one more open descriptor
  auto text = r.render_prometheus();
  EXPECT_EQ(sample(text, "process_open_fds"), before + 1);
  EXPECT_GT(sample(text, "process_max_fds"), 0);
  EXPECT_GT(sample(text, "process_resident_memory_bytes"), 1024 * 1024);
  EXPECT_GE(sample(text, "process_virtual_memory_bytes"),
            sample(text, "process_resident_memory_bytes"));
  EXPECT_GE(sample(text, "process_cpu_seconds_total"), 0);
  auto start = sample(text, "process_start_time_seconds");
  auto now = static_cast<double>(std::time(nullptr));
  EXPECT_GT(start, now - 3600);
  EXPECT_LE(start, now + 1);
}

// A registry exercising every kind of family, label escaping and special values.
std::string sample_exposition() {
  Registry r;
  register_process_metrics(r);
  auto& opened = r.counter_family("istio_tcp_connections_opened", "Connections opened.");
  opened
      .with({{"reporter", "source"},
             {"source_workload", "sleep"},
             {"destination_service", "echo.default.svc.cluster.local"},
             {"connection_security_policy", "mutual_tls"},
             {"response_flags", "-"}})
      .inc(3);
  opened.with({{"reporter", "destination"}, {"source_workload", "we\"ird\\name\nx\xFF"}}).inc();
  r.gauge_family("istio_tcp_sockets_open", "Open sockets.").with({{"reporter", "source"}}).set(2);
  // promtool's linter insists on base units, so it flags Istio's (mandated)
  // istio_request_duration_milliseconds name; the exposition syntax is the same for either.
  auto& h = r.histogram_family("istio_dns_upstream_request_duration_seconds", "DNS duration.",
                               {0.001, 0.005, 0.25, 1});
  h.with({{"request_query_type", "A"}}).observe(0.0032);
  r.callback_gauge("weird_value", "A NaN gauge.",
                   [] { return std::numeric_limits<double>::quiet_NaN(); });
  return r.render_prometheus();
}

TEST(StatsRegistry, RenderedOutputPassesPromtoolWhenInstalled) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package 'prometheus')";
  }
  std::string path = (std::filesystem::temp_directory_path() / "zt_promtool_XXXXXX").string();
  int fd = mkstemp(path.data());
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << sample_exposition();
  }
  auto cmd = "promtool check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, p)) output.append(buf, n);
  int status = pclose(p);
  std::filesystem::remove(path);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "") << "promtool lint findings";
}

}  // namespace
}  // namespace zt::stats
