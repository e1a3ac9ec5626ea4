// Stats: a registry of metric families (counters, gauges, fixed-bucket histograms and
// scrape-time callbacks) rendered in the Prometheus text exposition format 0.0.4.
//
// Invariants:
//  - A series handle (`Counter&`, `Gauge&`, `Histogram&`) returned by `Family::with()` stays valid
//    for the life of the Registry: series are never removed, so callers look a label set up once
//    (that takes a lock) and cache the handle. Updating a handle is a relaxed atomic, no lock.
//  - Metric and label *names* come from code: an invalid or conflicting name is a programmer
//    error and throws std::invalid_argument at registration. Label *values* come from traffic:
//    any bytes are accepted and escaped (invalid UTF-8 becomes U+FFFD) when rendered.
//  - Rendering is deterministic: families sorted by name, series sorted by their label set,
//    labels sorted by name.
//
// May use: common/base only.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zt::stats {

using Label = std::pair<std::string, std::string>;
using Labels = std::vector<Label>;

enum class MetricType { kCounter, kGauge, kHistogram };

// A monotonically increasing count. Exposed as `<family name>_total`.
class Counter {
 public:
  void inc(uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down (open sockets, pending proxies).
class Gauge {
 public:
  void set(int64_t v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void inc(int64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  void dec(int64_t n = 1) noexcept { value_.fetch_sub(n, std::memory_order_relaxed); }
  int64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Fixed upper bounds (strictly increasing, finite; +Inf is implicit). observe() is lock-free:
// one relaxed add on the bucket and a CAS loop on the sum. A scrape that races with observe()
// may see the sum and the buckets one observation apart; the buckets and _count always agree.
class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);

  void observe(double v) noexcept;

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double>& bounds_;  // owned by the family, which outlives the series
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0};
};

// Common part of every family: name, help, type, and rendering.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  // The exposed name (counters include the `_total` suffix).
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }

  // Appends `# HELP`, `# TYPE` and the samples; nothing when the family has no series yet.
  virtual void render(std::string& out) const = 0;

 protected:
  void render_header(std::string& out) const;

 private:
  std::string name_;
  std::string help_;
  MetricType type_;
};

// Series of one metric type keyed by label set. with() looks up or creates; it locks, so cache
// the returned reference.
template <class M>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type), bounds_(std::move(bounds)) {}

  M& with(const Labels& labels);
  void render(std::string& out) const override;

  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<M>> series_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Series whose value is computed at scrape time (process_open_fds, pool sizes). Callbacks run
// on the scraping thread without any registry lock held, but must be thread-safe and must not
// block. A callback that captures an object must be removed before that object dies.
class CallbackFamily final : public FamilyBase {
 public:
  using Callback = std::function<double()>;
  CallbackFamily(std::string name, std::string help, MetricType type)
      : FamilyBase(std::move(name), std::move(help), type) {}

  // Adds the series or replaces its callback.
  void set(const Labels& labels, Callback callback);
  void remove(const Labels& labels);
  void render(std::string& out) const override;

 private:
  mutable std::mutex mu_;
  std::map<Labels, std::shared_ptr<const Callback>> series_;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registering a name again with the same kind returns the existing family; with another
  // kind (or other histogram bounds) it throws std::invalid_argument. Counter names may be
  // given with or without `_total`; they are exposed with it.
  CounterFamily& counter_family(std::string_view name, std::string_view help);
  GaugeFamily& gauge_family(std::string_view name, std::string_view help);
  HistogramFamily& histogram_family(std::string_view name, std::string_view help,
                                    std::vector<double> bounds);
  CallbackFamily& callback_gauge_family(std::string_view name, std::string_view help);
  CallbackFamily& callback_counter_family(std::string_view name, std::string_view help);

  // Shorthand for an unlabelled callback gauge.
  void callback_gauge(std::string_view name, std::string_view help, CallbackFamily::Callback fn);

  // The whole registry in the Prometheus text format 0.0.4
  // (content type `text/plain; version=0.0.4`).
  std::string render_prometheus() const;

 private:
  template <class F, class... Args>
  F& get_or_add(std::string name, std::string_view help, MetricType type, Args&&... args);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>, std::less<>> families_;
};

// Default histogram bounds for durations in milliseconds (Istio's request duration buckets).
std::vector<double> duration_ms_buckets();

// Text-format helpers, exposed for tests and for other exposition code.
// `\` -> `\\`, `"` -> `\"`, newline -> `\n`; invalid UTF-8 -> U+FFFD.
std::string escape_label_value(std::string_view v);
// `\` -> `\\`, newline -> `\n`; invalid UTF-8 -> U+FFFD.
std::string escape_help(std::string_view v);
// Prometheus float syntax: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
std::string format_value(double v);
bool is_valid_metric_name(std::string_view name);
bool is_valid_label_name(std::string_view name);

}  // namespace zt::stats
