#include "ztunnel/state/watcher.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "ztunnel/state/local_config.h"

namespace zt::state {
namespace {

namespace fs = std::filesystem;

std::string config_with(int workloads) {
  std::string yaml = "workloads:\n";
  for (int i = 0; i < workloads; ++i) {
    yaml += fmt::format("- {{uid: u{0}, name: n{0}, namespace: ns, workloadIps: [10.0.0.{1}]}}\n",
                        i, i + 1);
  }
  return yaml;
}

class Watcher : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "zt-watcher-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    path_ = dir_ / "config.yaml";
    write_in_place(config_with(1));

    // Capture the log lines the watcher writes.
    previous_logger_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("watcher-test", sink));

    auto initial = load_local_config_file(path_);
    ASSERT_TRUE(initial) << initial.error().message;
    store_.publish(*initial);
    auto watcher = LocalConfigWatcher::start(io_.get_executor(), path_, store_,
                                             [this](const Status& s) { results_.push_back(s); });
    ASSERT_TRUE(watcher) << watcher.error().message;
    watcher_ = std::move(*watcher);
  }

  void TearDown() override {
    watcher_.reset();
    spdlog::set_default_logger(previous_logger_);
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void write_in_place(const std::string& content) {
    std::ofstream out(path_, std::ios::trunc);
    out << content;
  }

  // What most editors and ConfigMap updates do: a new file renamed over the old one.
  void write_by_rename(const std::string& content) {
    auto tmp = dir_ / ".config.yaml.tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << content;
    }
    fs::rename(tmp, path_);
  }

  // Runs the watcher until its next reload attempt; a 10 s guard turns a missed event into a
  // failure instead of a hang.
  Status wait_for_reload() {
    size_t before = results_.size();
    bool timed_out = false;
    asio::steady_timer guard(io_, std::chrono::seconds(10));
    guard.async_wait([&](const error_code& ec) {
      if (!ec) timed_out = true;
    });
    while (results_.size() == before && !timed_out) io_.run_one();
    guard.cancel();
    io_.restart();
    io_.poll();  // let the cancelled guard's handler run
    io_.restart();
    if (timed_out) return fail("no reload within 10 s");
    return results_.back();
  }

  fs::path dir_;
  fs::path path_;
  asio::io_context io_;
  StateStore store_;
  std::unique_ptr<LocalConfigWatcher> watcher_;
  std::vector<Status> results_;
  std::ostringstream log_;
  std::shared_ptr<spdlog::logger> previous_logger_;
};

TEST_F(Watcher, GoodChangeWrittenInPlaceIsPublished) {
  write_in_place(config_with(2));
  auto result = wait_for_reload();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(store_.current()->workloads().size(), 2u);
}

TEST_F(Watcher, GoodChangeRenamedOverTheFileIsPublished) {
  write_by_rename(config_with(3));
  auto result = wait_for_reload();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(store_.current()->workloads().size(), 3u);
}

TEST_F(Watcher, BadChangeKeepsThePreviousState) {
  auto before = store_.current();
  write_in_place("workloads:\n- {uid: u0, name: n0, namespace: ns, workloadIps: [not-an-ip]}\n");
  auto result = wait_for_reload();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("workloads[0].workloadIps[0]"), std::string::npos)
      << result.error().message;
  EXPECT_EQ(store_.current(), before);
  spdlog::default_logger()->flush();
  EXPECT_NE(log_.str().find("keeping previous config: "), std::string::npos) << log_.str();

  // And the next good change is taken again.
  write_by_rename(config_with(4));
  auto fixed = wait_for_reload();
  ASSERT_TRUE(fixed) << fixed.error().message;
  EXPECT_EQ(store_.current()->workloads().size(), 4u);
}

}  // namespace
}  // namespace zt::state
