#include "common/stats/registry.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "common/base/utf8.h"

namespace zt::stats {
namespace {

constexpr std::string_view kTotalSuffix = "_total";

bool name_char(char c, bool first, bool colon_ok) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon_ok && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

// Appends `v` with `escape` applied to ASCII and invalid UTF-8 replaced by U+FFFD, so a label
// value taken from traffic can never break the exposition.
template <class Escape>
void append_utf8_escaped(std::string& out, std::string_view v, Escape escape) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < v.size()) {
    const size_t len = utf8_sequence_length(v, i);
    if (len == 1) {
      escape(out, v[i]);
    } else if (len > 1) {
      out.append(v.substr(i, len));
    } else {
      out.append(kReplacement);
    }
    i += len == 0 ? 1 : len;
  }
}

// Sorted by name; rejects bad or duplicate names (programmer errors).
Labels canonical(const Labels& labels, MetricType type) {
  Labels sorted = labels;
  std::sort(sorted.begin(), sorted.end(),
            [](const Label& a, const Label& b) { return a.first < b.first; });
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& name = sorted[i].first;
    if (!is_valid_label_name(name)) {
      throw std::invalid_argument(fmt::format("invalid label name '{}'", name));
    }
    if (type == MetricType::kHistogram && name == "le") {
      throw std::invalid_argument("label name 'le' is reserved for histogram buckets");
    }
    if (i > 0 && sorted[i - 1].first == name) {
      throw std::invalid_argument(fmt::format("duplicate label name '{}'", name));
    }
  }
  return sorted;
}

// `{a="x",b="y"}` (plus an optional extra label, used for `le`), or nothing for no labels.
void append_labels(std::string& out, const Labels& labels, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return;
  out.push_back('{');
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out.push_back(',');
    first = false;
    out.append(name);
    out.append("=\"");
    out.append(escape_label_value(value));
    out.push_back('"');
  }
  if (!extra_name.empty()) {
    if (!first) out.push_back(',');
    out.append(extra_name);
    out.append("=\"");
    out.append(extra_value);
    out.push_back('"');
  }
  out.push_back('}');
}

void append_sample(std::string& out, std::string_view name, const Labels& labels,
                   std::string_view value) {
  out.append(name);
  append_labels(out, labels);
  out.push_back(' ');
  out.append(value);
  out.push_back('\n');
}

std::string_view type_name(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void check_metric_name(std::string_view name) {
  if (!is_valid_metric_name(name)) {
    throw std::invalid_argument(fmt::format("invalid metric name '{}'", name));
  }
}

std::string counter_name(std::string_view name) {
  check_metric_name(name);
  if (name.ends_with(kTotalSuffix) && name.size() > kTotalSuffix.size()) return std::string(name);
  return fmt::format("{}{}", name, kTotalSuffix);
}

std::string plain_name(std::string_view name) {
  check_metric_name(name);
  return std::string(name);
}

}  // namespace

// ---- text-format helpers ----

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  append_utf8_escaped(out, v, [](std::string& o, char c) {
    switch (c) {
      case '\\':
        o.append("\\\\");
        break;
      case '"':
        o.append("\\\"");
        break;
      case '\n':
        o.append("\\n");
        break;
      default:
        o.push_back(c);
    }
  });
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  append_utf8_escaped(out, v, [](std::string& o, char c) {
    switch (c) {
      case '\\':
        o.append("\\\\");
        break;
      case '\n':
        o.append("\\n");
        break;
      default:
        o.push_back(c);
    }
  });
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Exact integers (byte counts, fd counts) print without exponent or fraction.
  constexpr double kExactIntLimit = 9007199254740992.0;  // 2^53
  if (v == std::trunc(v) && std::fabs(v) < kExactIntLimit) {
    return fmt::format("{}", static_cast<int64_t>(v));
  }
  return fmt::format("{}", v);  // shortest round-trip representation
}

bool is_valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!name_char(name[i], i == 0, true)) return false;
  }
  return true;
}

bool is_valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!name_char(name[i], i == 0, false)) return false;
  }
  return true;
}

std::vector<double> duration_ms_buckets() {
  return {0.5,  1,    5,     10,    25,    50,     100,    250,     500,    1000,
          2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};
}

// ---- Histogram ----

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) noexcept {
  // First bucket whose upper bound is >= v ("le"); NaN compares false everywhere, so it is put
  // in +Inf explicitly.
  size_t i = bounds_.size();
  if (!std::isnan(v)) {
    i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  }
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.reserve(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

// ---- families ----

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type)
    : name_(std::move(name)), help_(std::move(help)), type_(type) {}

void FamilyBase::render_header(std::string& out) const {
  out.append("# HELP ");
  out.append(name_);
  out.push_back(' ');
  out.append(escape_help(help_));
  out.append("\n# TYPE ");
  out.append(name_);
  out.push_back(' ');
  out.append(type_name(type_));
  out.push_back('\n');
}

template <class M>
M& Family<M>::with(const Labels& labels) {
  auto key = canonical(labels, type());
  std::lock_guard lock(mu_);
  auto it = series_.find(key);
  if (it == series_.end()) {
    std::unique_ptr<M> m;
    if constexpr (std::is_same_v<M, Histogram>) {
      m = std::make_unique<Histogram>(bounds_);
    } else {
      m = std::make_unique<M>();
    }
    it = series_.emplace(std::move(key), std::move(m)).first;
  }
  return *it->second;
}

template <class M>
void Family<M>::render(std::string& out) const {
  std::lock_guard lock(mu_);
  if (series_.empty()) return;
  render_header(out);
  for (const auto& [labels, m] : series_) {
    if constexpr (std::is_same_v<M, Histogram>) {
      auto snap = m->snapshot();
      auto bucket = fmt::format("{}_bucket", name());
      for (size_t i = 0; i <= bounds_.size(); ++i) {
        out.append(bucket);
        append_labels(out, labels, "le",
                      i < bounds_.size() ? format_value(bounds_[i]) : std::string("+Inf"));
        out.push_back(' ');
        out.append(fmt::format("{}", snap.cumulative[i]));
        out.push_back('\n');
      }
      append_sample(out, fmt::format("{}_sum", name()), labels, format_value(snap.sum));
      append_sample(out, fmt::format("{}_count", name()), labels, fmt::format("{}", snap.count));
    } else {
      append_sample(out, name(), labels, fmt::format("{}", m->value()));
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

void CallbackFamily::set(const Labels& labels, Callback callback) {
  auto key = canonical(labels, type());
  auto fn = std::make_shared<const Callback>(std::move(callback));
  std::lock_guard lock(mu_);
  series_[std::move(key)] = std::move(fn);
}

void CallbackFamily::remove(const Labels& labels) {
  auto key = canonical(labels, type());
  std::lock_guard lock(mu_);
  series_.erase(key);
}

void CallbackFamily::render(std::string& out) const {
  // Copy the callbacks out so user code never runs under our lock.
  std::vector<std::pair<Labels, std::shared_ptr<const Callback>>> copy;
  {
    std::lock_guard lock(mu_);
    copy.assign(series_.begin(), series_.end());
  }
  if (copy.empty()) return;
  render_header(out);
  for (const auto& [labels, fn] : copy) {
    double v = *fn ? (*fn)() : std::numeric_limits<double>::quiet_NaN();
    append_sample(out, name(), labels, format_value(v));
  }
}

// ---- Registry ----

template <class F, class... Args>
F& Registry::get_or_add(std::string name, std::string_view help, MetricType type, Args&&... args) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    auto* existing = dynamic_cast<F*>(it->second.get());
    if (existing == nullptr || existing->type() != type) {
      bool callback = dynamic_cast<CallbackFamily*>(it->second.get()) != nullptr;
      throw std::invalid_argument(fmt::format("metric '{}' is already registered as a {}{}", name,
                                              callback ? "callback " : "",
                                              type_name(it->second->type())));
    }
    if constexpr (std::is_same_v<F, HistogramFamily>) {
      if (((existing->bounds() != args) || ...)) {
        throw std::invalid_argument(
            fmt::format("histogram '{}' is already registered with other buckets", name));
      }
    }
    return *existing;
  }
  auto family = std::make_unique<F>(name, std::string(help), type, std::forward<Args>(args)...);
  auto& ref = *family;
  families_.emplace(std::move(name), std::move(family));
  return ref;
}

CounterFamily& Registry::counter_family(std::string_view name, std::string_view help) {
  return get_or_add<CounterFamily>(counter_name(name), help, MetricType::kCounter);
}

GaugeFamily& Registry::gauge_family(std::string_view name, std::string_view help) {
  return get_or_add<GaugeFamily>(plain_name(name), help, MetricType::kGauge);
}

HistogramFamily& Registry::histogram_family(std::string_view name, std::string_view help,
                                            std::vector<double> bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      throw std::invalid_argument(fmt::format(
          "histogram '{}': bucket bounds must be finite and strictly increasing", name));
    }
  }
  return get_or_add<HistogramFamily>(plain_name(name), help, MetricType::kHistogram,
                                     std::move(bounds));
}

CallbackFamily& Registry::callback_gauge_family(std::string_view name, std::string_view help) {
  return get_or_add<CallbackFamily>(plain_name(name), help, MetricType::kGauge);
}

CallbackFamily& Registry::callback_counter_family(std::string_view name, std::string_view help) {
  return get_or_add<CallbackFamily>(counter_name(name), help, MetricType::kCounter);
}

void Registry::callback_gauge(std::string_view name, std::string_view help,
                              CallbackFamily::Callback fn) {
  callback_gauge_family(name, help).set({}, std::move(fn));
}

std::string Registry::render_prometheus() const {
  // Families are never removed, so the pointers stay valid after the lock is released; each
  // family locks itself while rendering, and callbacks run without any lock.
  std::vector<const FamilyBase*> families;
  {
    std::lock_guard lock(mu_);
    families.reserve(families_.size());
    for (const auto& [name, f] : families_) families.push_back(f.get());
  }
  std::string out;
  out.reserve(families.size() * 128);
  for (const auto* f : families) f->render(out);
  return out;
}

}  // namespace zt::stats
