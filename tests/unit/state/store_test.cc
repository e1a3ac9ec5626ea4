#include "ztunnel/state/store.h"

#include <thread>

#include <gtest/gtest.h>

#include "ztunnel/state/local_config.h"

namespace zt::state {
namespace {

std::shared_ptr<const State> state_with(int workloads) {
  std::string yaml = "workloads:\n";
  for (int i = 0; i < workloads; ++i) {
    yaml += fmt::format("- {{uid: u{0}, name: n{0}, namespace: ns, workloadIps: [10.0.0.{1}]}}\n",
                        i, i + 1);
  }
  auto s = parse_local_config(yaml);
  EXPECT_TRUE(s) << s.error().message;
  return *s;
}

TEST(StateStore, StartsEmptyAndPublishesSnapshots) {
  StateStore store;
  EXPECT_TRUE(store.current()->workloads().empty());
  EXPECT_EQ(store.version(), 0u);

  auto one = state_with(1);
  std::vector<size_t> seen;
  store.on_publish([&](const std::shared_ptr<const State>& s) { seen.push_back(s->workloads().size()); });
  store.publish(one);
  EXPECT_EQ(store.current(), one);
  EXPECT_EQ(store.version(), 1u);

  auto held = store.current();  // a reader keeps its snapshot across a swap
  store.publish(state_with(2));
  EXPECT_EQ(held->workloads().size(), 1u);
  EXPECT_EQ(store.current()->workloads().size(), 2u);
  EXPECT_EQ(seen, (std::vector<size_t>{1, 2}));
}

TEST(StateStore, ReadersSeeWholeSnapshotsWhileAWriterPublishes) {
  StateStore store(state_with(1));
  std::atomic<bool> stop{false};
  std::atomic<size_t> reads{0};
  std::thread reader([&] {
    while (!stop.load()) {
      auto s = store.current();
      auto n = s->workloads().size();
      // Each snapshot is internally consistent: its indexes match its workload list.
      for (size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(s->find_workload_by_uid(fmt::format("u{}", i)));
      }
      reads.fetch_add(1);
    }
  });
  for (int i = 0; i < 200; ++i) store.publish(state_with(1 + i % 5));
  stop = true;
  reader.join();
  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(store.version(), 200u);
}

}  // namespace
}  // namespace zt::state
