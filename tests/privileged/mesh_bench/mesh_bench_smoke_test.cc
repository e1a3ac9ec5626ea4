// mesh_bench --smoke end to end (issue 7, acceptance 2): the benchmark runs in the simulated
// cluster and produces a well-formed result: results.json with every scenario measured (a
// scenario that could not start fails the test, with its error), report.md with the targets table
// and a line per scenario, and the gnuplot SVGs. No timing is asserted.
//
// The run uses its own simulator prefix ("zmbt<pid>") and removes what it leaves (also on
// failure). Needs root: CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and cgroup v2.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "bench/mesh/plan/topology.h"
#include "sim/cluster.h"
#include "sim/host.h"
#include "tests/support/daemon.h"
#include "tests/support/mesh.h"
#include "tests/support/privileges.h"

namespace zt::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string read_all(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool gnuplot_installed() {
  sim::SpawnSpec spec;
  spec.argv = {"sh", "-c", "command -v gnuplot"};
  spec.new_session = false;
  auto r = sim::run_captured(spec, std::chrono::seconds(10));
  return r && r->exit_code == 0;
}

std::string tail(const std::string& text, size_t n = 4000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

class MeshBenchSmoke : public ::testing::Test {
 protected:
  void TearDown() override {
    (void)sim::remove_leftovers(prefix_, sim::default_state_dir(prefix_));
  }
  const std::string prefix_ = fmt::format("zmbt{}", ::getpid() % 100000);
  TempDir out_;
};

TEST_F(MeshBenchSmoke, RunsEveryScenarioAndWritesAWellFormedReport) {
  ZT_REQUIRE_PRIVILEGE(has_capability(Capability::kSysAdmin) &&
                           has_capability(Capability::kNetAdmin) &&
                           has_capability(Capability::kBpf) &&
                           has_capability(Capability::kNetRaw) && sim::cgroup2_root(),
                       "needs CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and cgroup v2 "
                       "for the simulated cluster mesh_bench builds");
  const fs::path out = out_.path() / "results";
  sim::SpawnSpec spec;
  spec.argv = {bin_path("mesh_bench"), "--smoke", "--prefix", prefix_, "--out", out.string()};
  spec.new_session = false;
  auto run = sim::run_captured(spec, std::chrono::seconds(280));
  ASSERT_TRUE(run) << run.error().describe();
  ASSERT_FALSE(run->timed_out) << "mesh_bench --smoke did not finish in 280 s:\n" << tail(run->err);
  ASSERT_EQ(run->exit_code, 0) << "stdout:\n" << run->out << "\nstderr:\n" << tail(run->err);
  EXPECT_NE(run->out.find("Targets"), std::string::npos) << run->out;
  EXPECT_NE(run->out.find("report: "), std::string::npos) << run->out;

  // results.json: every scenario, started, with completed requests.
  Json results;
  ASSERT_NO_THROW(results = Json::parse(read_all(out / "results.json")));
  ASSERT_TRUE(results.contains("scenarios"));
  for (const auto& plan : bench::mesh::scenario_plans()) {
    SCOPED_TRACE(plan.name);
    const Json* found = nullptr;
    for (const auto& s : results["scenarios"]) {
      if (s.value("name", "") == plan.name) found = &s;
    }
    ASSERT_NE(found, nullptr) << "results.json has no scenario " << plan.name;
    const Json& s = *found;
    ASSERT_EQ(s.value("status", ""), "ok")
        << plan.name << " could not start: " << s.value("error", "");
    double completed = 0;
    for (const auto& r : s["runs"]) {
      EXPECT_TRUE(r.value("ok", false)) << plan.name << ": " << r.value("error", "");
      completed += r.value("completed", 0.0);
      EXPECT_TRUE(r.contains("loadgen")) << "the raw loadgen report is kept";
    }
    EXPECT_GT(completed, 0) << plan.name;
    ASSERT_FALSE(s["points"].empty());
    EXPECT_TRUE(s["points"][0].contains("latency_us"));
    // How much of the machine's time the hypervisor took in the window (0 on bare metal).
    EXPECT_GE(s["points"][0].value("steal_fraction_max", -1.0), 0) << plan.name;
    if (plan.mode != bench::mesh::Mode::kNoMesh) {
      EXPECT_TRUE(s["points"][0].contains("added_us")) << plan.name;
      EXPECT_FALSE(s["proxies"].empty()) << plan.name;
      const Json& cpu = s["points"][0]["cpu_per_1000"];
      EXPECT_TRUE(cpu.contains("total")) << plan.name;
      // Every proxy's CPU is also split into user and kernel time, with its context switches.
      for (const auto& p : s["proxies"]) {
        const std::string name = p.value("process", "");
        for (const char* k : {"proxies_user", "proxies_kernel", "switches_per_request"}) {
          EXPECT_TRUE(cpu.contains(k) && cpu[k].contains(name))
              << plan.name << " " << k << " " << name;
        }
        if (cpu.contains("switches_per_request") && cpu["switches_per_request"].contains(name)) {
          EXPECT_GT(cpu["switches_per_request"][name].get<double>(), 0) << name;
        }
      }
    } else {
      EXPECT_TRUE(s["points"][0]["cpu_per_1000"].contains("cluster_kernel"));
    }
    EXPECT_TRUE(s["throughput"].contains("gbit_per_s")) << s["throughput"].dump();
    // What the stream cost the machine, per GB.
    EXPECT_GT(s["throughput"].value("cost", Json::object()).value("machine_vcpu_s_per_gb", 0.0), 0)
        << plan.name;
    EXPECT_TRUE(s["conn_rate"].contains("achieved_rps")) << s["conn_rate"].dump();
  }
  for (const char* k : {"machine", "versions", "build", "command_line", "targets"}) {
    EXPECT_TRUE(results.contains(k)) << k;
  }
  EXPECT_EQ(results["targets"].size(), 10u);
  // The machine's cost per wake-up, before and after the load runs, both placements.
  const Json& wakeups = results["machine"]["wakeup_cost"];
  ASSERT_EQ(wakeups.size(), 2u) << wakeups.dump();
  for (const auto& w : wakeups) {
    EXPECT_FALSE(w.contains("error")) << w.dump();
    for (const char* placement : {"scheduler", "one_cpu"}) {
      ASSERT_EQ(w.value(placement, Json::array()).size(), 1u) << w.dump();
      EXPECT_GT(w[placement][0].value("cpu_us_per_wakeup", 0.0), 0) << w.dump();
    }
    // Then how late a thread sleeping 1 ms at a time is woken.
    EXPECT_GT(w.value("timer", Json::object()).value("wakeups", 0), 0) << w.dump();
  }
  EXPECT_TRUE(results["machine"]["wakeup_cost_summary"].contains("scheduler"));
  EXPECT_GT(results["machine"].value("steal_s", Json::object()).value("total", 0.0), 0)
      << results["machine"].dump();
  for (const char* curve : {"ambient", "sidecar"}) {
    EXPECT_TRUE(results["memory_vs_pods"][curve]["error"].is_null())
        << curve << ": " << results["memory_vs_pods"][curve]["error"].dump();
    EXPECT_EQ(results["memory_vs_pods"][curve]["points"].size(), 2u) << curve;
  }

  // report.md: the targets table and a line per scenario.
  const std::string report = read_all(out / "report.md");
  ASSERT_FALSE(report.empty());
  EXPECT_NE(report.find("## Targets"), std::string::npos);
  EXPECT_NE(report.find("| late > 1 ms | steal | errors |"), std::string::npos);
  EXPECT_NE(report.find("| Steal over the whole run"), std::string::npos);
  EXPECT_NE(report.find("| busy | steal | machine vCPU-s/GB | proxies vCPU-s/GB |"),
            std::string::npos);
  EXPECT_NE(report.find("## Where the proxies' CPU goes"), std::string::npos);
  EXPECT_NE(report.find("## What a wake-up costs on this machine"), std::string::npos);
  EXPECT_NE(report.find("**How late a sleeping thread is woken.**"), std::string::npos);
  EXPECT_NE(report.find("| target | achieved | goal | met |"), std::string::npos);
  for (const auto& t : results["targets"]) {
    EXPECT_NE(report.find("| " + t["name"].get<std::string>() + " |"), std::string::npos)
        << t["name"];
  }
  for (const auto& plan : bench::mesh::scenario_plans()) {
    EXPECT_NE(report.find(fmt::format("| {} | {} |", plan.name, plan.description)),
              std::string::npos)
        << "no scenario line for " << plan.name;
  }
  EXPECT_NE(report.find("mesh_bench --smoke"), std::string::npos) << "the exact command";
  EXPECT_EQ(report.find("**FAILED**"), std::string::npos);

  // Plots: the SVGs when gnuplot is installed (required where privileged tests are required).
  if (!gnuplot_installed()) {
    if (privileged_required()) {
      FAIL() << "gnuplot is not installed (scripts/setup.sh installs gnuplot-nox)";
    }
    GTEST_SKIP() << "gnuplot is not installed: the plots were not rendered";
  }
  std::vector<std::string> svgs = {"memory-vs-pods.svg", "cpu-per-1000-c2.svg"};
  for (const auto& plan : bench::mesh::scenario_plans()) {
    svgs.push_back(fmt::format("latency-{}-c2.svg", plan.name));
  }
  for (const auto& f : svgs) {
    const fs::path p = out / "plots" / f;
    EXPECT_TRUE(fs::exists(p)) << p;
    EXPECT_NE(read_all(p).find("<svg"), std::string::npos) << p;
    EXPECT_NE(report.find("plots/" + f), std::string::npos) << f;
  }
}

}  // namespace
}  // namespace zt::testing
