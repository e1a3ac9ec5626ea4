// Fuzzes ztunnel's side of the workload API: protobuf bodies as istiod sends them over Delta xDS
// (istio.workload.Address, istio.security.Authorization) -> translate -> XdsResourceCache ->
// State snapshots -> routing and authorization through them.
//
// The input is a list of operations, each one byte of flags then a body:
//   flags & 3   0 add an Address, 1 add an Authorization, 2 remove an Address, 3 remove an
//               Authorization
//   flags & 4   add: the resource is named after what its body decodes to (workload uid,
//               "namespace/hostname", "namespace/name"), so it can be accepted; else the name is
//               the first byte's worth of the body. remove: the name of the (body[0] % n)-th
//               resource accepted so far; else the body is the name.
//   flags & 8   the operation starts a new DeltaUpdate (the previous one is applied first)
//   flags & 16  add: the body's Any names the other type
//   flags & 32  the update carries an unsupported type URL
//   then a little-endian u16 length and that many bytes of body.
// tests/fuzz/xds_seeds.py writes the seeds in this form.
//
// Checked, besides the sanitizers:
// - every snapshot holds exactly what the cache accepted: the cache promises never to hold a set
//   State::build refuses, and a refused build would leave the previous snapshot in place;
// - every refusal names a resource of the update it came from;
// - removing every accepted name leaves an empty state.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "common/base/log.h"
#include "common/xds/delta_types.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "tests/fuzz/route_through.h"
#include "ztunnel/xds/resource_cache.h"

namespace {

using namespace zt;

constexpr std::string_view kAnyPrefix = "type.googleapis.com/";

[[noreturn]] void fail(std::string_view what) {
  fprintf(stderr, "fuzz_xds: %.*s\n", static_cast<int>(what.size()), what.data());
  abort();
}

// The name a resource would have to carry to be accepted, from its decoded body.
std::string natural_name(bool address, const std::string& body) {
  if (address) {
    istio::workload::Address a;
    if (!a.ParseFromString(body)) return {};
    if (a.has_workload()) return a.workload().uid();
    if (a.has_service()) return a.service().namespace_() + "/" + a.service().hostname();
    return {};
  }
  istio::security::Authorization p;
  if (!p.ParseFromString(body)) return {};
  return p.namespace_() + "/" + p.name();
}

class Driver {
 public:
  void add(bool address, bool named, bool other_type, std::string body) {
    xds::Resource r;
    r.name = named ? natural_name(address, body)
                   : body.substr(0, body.empty() ? 0 : static_cast<uint8_t>(body[0]) % 16);
    r.version = "v";
    bool as_address = address != other_type;
    r.body.set_type_url(std::string(kAnyPrefix) +
                        (as_address ? "istio.workload.Address" : "istio.security.Authorization"));
    r.body.set_value(std::move(body));
    update_for(address).added.push_back(std::move(r));
  }

  void remove(bool address, bool pick, const std::string& body) {
    const auto& known = address ? addresses_ : policies_;
    std::string name;
    if (pick) {
      if (known.empty() || body.empty()) return;
      auto it = known.begin();
      std::advance(it, static_cast<uint8_t>(body[0]) % known.size());
      name = *it;
    } else {
      name = body;
    }
    update_for(address).removed.push_back(std::move(name));
  }

  void unsupported_type() { pending_.type_url = std::string(kAnyPrefix) + "istio.workload.Nope"; }

  // Applies the pending update and checks the snapshot.
  void flush() {
    if (pending_.type_url.empty()) return;
    const bool address = pending_.type_url == xds::kAddressType;
    const bool policy = pending_.type_url == xds::kAuthorizationType;
    auto rejected = cache_.apply(pending_);

    std::multiset<std::string> refused;
    for (const auto& r : rejected) {
      bool named = false;
      for (const auto& a : pending_.added) named |= a.name == r.name;
      if (!named) fail("a refusal names no resource of its update");
      if (r.reason.empty()) fail("a refusal without a reason");
      refused.insert(r.name);
    }
    if (!address && !policy && rejected.size() != pending_.added.size()) {
      fail("an update of an unsupported type was partly applied");
    }
    // Track what the cache holds: removals first, then each added resource not refused. A name
    // refused once in an update may also have been accepted there (sent twice), so only a name
    // whose every copy was refused is left out.
    auto& known = address ? addresses_ : policies_;
    if (address || policy) {
      for (const auto& name : pending_.removed) known.erase(name);
      std::multiset<std::string> sent;
      for (const auto& a : pending_.added) sent.insert(a.name);
      for (const auto& a : pending_.added) {
        if (sent.count(a.name) > refused.count(a.name)) known.insert(a.name);
      }
    }
    pending_ = {};
    check();
  }

  void remove_everything() {
    flush();
    for (bool address : {true, false}) {
      const auto& known = address ? addresses_ : policies_;
      pending_.type_url = address ? xds::kAddressType : xds::kAuthorizationType;
      pending_.removed.assign(known.begin(), known.end());
      flush();
    }
    auto s = cache_.snapshot();
    if (!s->workloads().empty() || !s->services().empty() || !s->policies().empty()) {
      fail("removing every accepted name left something in the state");
    }
  }

 private:
  xds::DeltaUpdate& update_for(bool address) {
    std::string_view type = address ? xds::kAddressType : xds::kAuthorizationType;
    if (!pending_.type_url.empty() && pending_.type_url != type) flush();
    if (pending_.type_url.empty()) pending_.type_url = std::string(type);
    return pending_;
  }

  void check() {
    auto s = cache_.snapshot();
    if (s->workloads().size() != cache_.workload_count() ||
        s->services().size() != cache_.service_count() ||
        s->policies().size() != cache_.policy_count()) {
      fail("the snapshot does not hold what the cache accepted (State::build refused it)");
    }
    if (cache_.workload_count() + cache_.service_count() != addresses_.size() ||
        cache_.policy_count() != policies_.size()) {
      fail("the cache holds other names than it accepted");
    }
    std::set<std::string> held;
    for (const auto& w : s->workloads()) held.insert(w->uid);
    for (const auto& svc : s->services()) held.insert(svc->key());
    if (held != addresses_)
      fail("the snapshot's workloads and services are not the names accepted");
    for (const auto& name : policies_) {
      if (!s->find_policy(name)) fail("an accepted Authorization is not in the snapshot");
    }
    for (const auto& w : s->workloads()) {
      if (w->network_mode == state::NetworkMode::kHostNetwork) continue;
      for (const auto& ip : w->workload_ips) {
        if (s->find_workload(w->network, ip) != w) fail("a workload is not found by its own IP");
      }
    }
    fuzz::route_through(*s, rng_);
  }

  xds::XdsResourceCache cache_;
  xds::DeltaUpdate pending_;
  std::set<std::string> addresses_;  // accepted Address names (workload uids, service keys)
  std::set<std::string> policies_;   // accepted Authorization names
  std::mt19937_64 rng_{1};
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)zt::log::set_level("off");  // refusals are expected; keep the run quiet
  // protobuf logs every string field that is not UTF-8; the parse fails, which is the point.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Driver driver;
  size_t at = 0;
  while (at + 3 <= size) {
    uint8_t flags = data[at];
    size_t len = data[at + 1] | (static_cast<size_t>(data[at + 2]) << 8);
    at += 3;
    len = std::min(len, size - at);
    std::string body(reinterpret_cast<const char*>(data + at), len);
    at += len;

    if (flags & 8) driver.flush();
    const bool address = (flags & 1) == 0;
    if ((flags & 2) == 0) {
      driver.add(address, flags & 4, flags & 16, std::move(body));
    } else {
      driver.remove(address, flags & 4, body);
    }
    if (flags & 32) driver.unsupported_type();
  }
  driver.remove_everything();
  return 0;
}
