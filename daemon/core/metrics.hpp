#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sweepd::core {

/// A value that only goes up (Prometheus counter).
class counter {
 public:
  void inc(double by = 1) { value_ += by; }
  /// Takes a total counted elsewhere (the kernel's CPU time); never goes down.
  void advance_to(double total) {
    if (total > value_) value_ = total;
  }
  double value() const { return value_; }

 private:
  double value_ = 0;
};

/// A value that is set (Prometheus gauge).
class gauge {
 public:
  void set(double v) { value_ = v; }
  double value() const { return value_; }

 private:
  double value_ = 0;
};

/// Observations counted into fixed buckets, with their sum (Prometheus histogram).
class histogram {
 public:
  /// `bounds`: the buckets' upper bounds, strictly increasing and finite (+Inf is implied).
  explicit histogram(const std::vector<double>* bounds);
  void observe(double v);

  /// Observations per bucket (not cumulative); one more than there are bounds (+Inf last).
  const std::vector<std::uint64_t>& buckets() const { return buckets_; }
  const std::vector<double>& bounds() const { return *bounds_; }
  std::uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  const std::vector<double>* bounds_;
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

/// The kinds of metric the text exposition format knows (and we use).
enum class metric_type { counter, gauge, histogram };

/// Metrics with label sets, rendered in the Prometheus text exposition format (version 0.0.4).
/// Families are declared once at start; each series (one set of label values) is created when it
/// is first asked for and keeps its address, so a caller may hold on to it. Label values must come
/// from bounded sets (ops, states, reasons, results): every series lives as long as the registry.
/// Declaring an ill-named family or asking for the wrong number of labels is a programming error
/// and throws std::logic_error. Pure: no clock, no I/O.
class metric_registry {
 public:
  template <class M>
  class family;

  metric_registry();
  ~metric_registry();
  metric_registry(const metric_registry&) = delete;
  metric_registry& operator=(const metric_registry&) = delete;

  family<counter>& counters(std::string name, std::string help,
                            std::vector<std::string> label_names = {});
  family<gauge>& gauges(std::string name, std::string help,
                        std::vector<std::string> label_names = {});
  family<histogram>& histograms(std::string name, std::string help, std::vector<double> bounds,
                                std::vector<std::string> label_names = {});

  /// Every family in the order declared, each series in label order: HELP, TYPE and samples.
  /// A family without a series is left out.
  std::string render() const;

 private:
  struct family_base;
  std::vector<std::unique_ptr<family_base>> families_;
};

/// One metric name and its series.
struct metric_registry::family_base {
  family_base(std::string name_, std::string help_, metric_type type_,
              std::vector<std::string> label_names_);
  virtual ~family_base() = default;
  /// Appends the samples of every series.
  virtual void render_samples(std::string& out) const = 0;
  /// Checks that `values` has one value per label name.
  void check_arity(std::size_t values) const;

  std::string name;
  std::string help;
  metric_type type;
  std::vector<std::string> label_names;
};

template <class M>
class metric_registry::family : public metric_registry::family_base {
 public:
  family(std::string name_, std::string help_, metric_type type_,
         std::vector<std::string> label_names_, std::vector<double> bounds = {})
      : family_base(std::move(name_), std::move(help_), type_, std::move(label_names_)),
        bounds_(std::move(bounds)) {}

  /// The series with these label values (in the order of the label names), created at 0.
  M& with(std::initializer_list<std::string_view> values) {
    return with(std::vector<std::string>(values.begin(), values.end()));
  }
  M& with(std::vector<std::string> values) {
    check_arity(values.size());
    auto it = series_.find(values);
    if (it == series_.end()) it = series_.emplace(std::move(values), make()).first;
    return it->second;
  }
  /// The series without labels.
  M& get() { return with(std::vector<std::string>{}); }
  const std::map<std::vector<std::string>, M>& series() const { return series_; }

  void render_samples(std::string& out) const override;

 private:
  M make() const {
    if constexpr (std::is_same_v<M, histogram>) {
      return histogram(&bounds_);
    } else {
      return M{};
    }
  }

  std::vector<double> bounds_;  // histograms only
  std::map<std::vector<std::string>, M> series_;
};

template <>
void metric_registry::family<counter>::render_samples(std::string& out) const;
template <>
void metric_registry::family<gauge>::render_samples(std::string& out) const;
template <>
void metric_registry::family<histogram>::render_samples(std::string& out) const;

/// A number as the exposition format writes it: shortest round-trip form, integers without a
/// fraction, and +Inf, -Inf, NaN.
std::string format_metric_value(double v);
/// A label value with \ " and newline escaped.
std::string escape_label_value(std::string_view v);
/// HELP text with \ and newline escaped.
std::string escape_help(std::string_view v);
/// Whether `name` is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
bool is_valid_metric_name(std::string_view name);
/// Whether `name` is a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__").
bool is_valid_label_name(std::string_view name);

/// The media type of render()'s output.
inline constexpr std::string_view metrics_content_type = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace sweepd::core
