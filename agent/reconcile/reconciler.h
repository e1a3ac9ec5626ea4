// The agent's control loop: makes the captured pods (pinned eBPF links) and the pods announced
// to ztunnel over ZDS follow the desired set computed from the objects (agent/enroll).
//
// Ordering invariants:
//   - Enroll: the pod's netns is prepared (delivery routing), the capture is attached, THEN the
//     pod is sent to ztunnel, so ztunnel never serves a pod whose traffic is not steered to it
//     with the routing its delivery needs.
//   - Release: the capture is detached FIRST (new connections go direct), THEN the pod is removed
//     from ztunnel, which lets its open connections finish.
//   - Restart: pods pinned by an earlier agent (CaptureProgram::enrolled()) stay captured; the
//     first reconcile re-enrolls the desired ones in place (idempotent, no uncaptured moment)
//     and releases the others. A desired pinned pod that cannot be located yet is announced to
//     ZDS without a netns (KeepWorkload during a replay), so ztunnel keeps serving it.
//
// Threading: not thread-safe; the app calls it from its one io_context thread. CaptureProgram
// and zds::Server calls are synchronous and short.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/enroll/enroll.h"
#include "agent/source/source.h"
#include "bpf/loader/capture.h"
#include "common/async/asio.h"
#include "common/netns/netns.h"
#include "common/zds/zds.h"

namespace zt::agent {

struct ReconcilerOptions {
  std::string node_name;
  std::filesystem::path cgroup_root;
  // Addresses whose connections reach enrolled apps uncaptured (kubelet probes).
  std::vector<asio::ip::address> probe_sources;
  // Prepares a pod's network namespace before its capture is attached. The app passes
  // netns::configure_delivery_routing; tests that use their own namespace may pass a no-op.
  std::function<Status(const netns::Netns&)> prepare_netns;
};

struct ReconcilerStats {
  size_t enrolled = 0;  // pods captured and announced
  size_t waiting = 0;   // desired pods not enrolled yet (not started, or an error to retry)
  uint64_t enrolls = 0;
  uint64_t releases = 0;
  uint64_t errors = 0;
};

class Reconciler {
 public:
  // `capture` must outlive the reconciler. Reads the pods pinned by an earlier agent.
  Reconciler(bpf::CaptureProgram& capture, ReconcilerOptions options);

  // Starts announcing to `server` (nullptr: stop): every enrolled pod is upserted now, then
  // every change as it happens. The app attaches after the first reconcile, so a ztunnel that
  // connects at once receives the complete set before SnapshotSent.
  void attach_zds(zds::Server* server);

  // Brings capture and ZDS in line with `objects`.
  void reconcile(ObjectsPtr objects);
  // Reconciles the last objects again: pods waiting for their cgroup, failed attempts.
  void retry();
  // True while retry() has work to do.
  bool needs_retry() const;
  // Checks that each enrolled pod still runs in the netns it was enrolled with (a restarted pod
  // sandbox gets a new one); a pod that moved is marked for re-enrollment by retry(). Cheap:
  // reads the known cgroup's cgroup.procs and stats one /proc entry per pod.
  void verify();

  // Releases every pod (capture first, then ZDS), e.g. for --release-all-on-exit.
  void release_all(std::string_view reason);

  ReconcilerStats stats() const;
  // Uids of the enrolled pods.
  std::vector<std::string> enrolled() const;

 private:
  struct Enrolled {
    DesiredPod pod;
    netns::Netns ns;
    std::filesystem::path cgroup;
    std::vector<asio::ip::address> ips;  // what the capture was given
    bool stale = false;                  // the pod changed and re-enrolling failed: retried
  };
  struct Waiting {
    bool logged_missing = false;
    bool kept = false;  // announced to ZDS without a netns (pinned by an earlier agent)
    std::string last_error;
  };

  void release(const std::string& uid, const std::string& name, const std::string& reason);
  void try_enroll(const DesiredPod& pod, const std::filesystem::path* cgroup);
  Result<Enrolled> enroll_at(const DesiredPod& pod, const std::filesystem::path& cgroup,
                             bool* not_started);
  void announce(const std::string& uid, const DesiredPod& pod, const netns::Netns& ns);
  std::string name_of(const std::string& uid) const;

  bpf::CaptureProgram& capture_;
  ReconcilerOptions options_;
  zds::Server* zds_ = nullptr;
  ObjectsPtr objects_;
  std::map<std::string, DesiredPod> desired_;
  std::map<std::string, Enrolled> enrolled_;
  std::map<std::string, Waiting> waiting_;
  std::set<std::string> pinned_;  // pinned by an earlier agent, not yet re-enrolled or released
  std::set<std::string> release_failed_;
  ReconcilerStats counters_;
};

}  // namespace zt::agent
