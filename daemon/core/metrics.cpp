#include "core/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace sweepd::core {

namespace {

bool is_name_char(char c, bool first, bool colon_ok) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon_ok && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool is_name(std::string_view name, bool colon_ok) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!is_name_char(name[i], i == 0, colon_ok)) return false;
  }
  return true;
}

std::string_view type_name(metric_type t) {
  switch (t) {
    case metric_type::counter:
      return "counter";
    case metric_type::gauge:
      return "gauge";
    case metric_type::histogram:
      return "histogram";
  }
  return "untyped";
}

/// `{a="x",b="y"` without the closing brace (so that a histogram can add `le`), or "" when
/// there are no labels.
std::string open_label_set(const std::vector<std::string>& names,
                           const std::vector<std::string>& values) {
  if (names.empty()) return {};
  std::string out = "{";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  return out;
}

std::string label_set(const std::vector<std::string>& names,
                      const std::vector<std::string>& values) {
  std::string open = open_label_set(names, values);
  if (!open.empty()) open += '}';
  return open;
}

void write_sample(std::string& out, std::string_view name, std::string_view suffix,
                  std::string_view labels, double value) {
  out += name;
  out += suffix;
  out += labels;
  out += ' ';
  out += format_metric_value(value);
  out += '\n';
}

}  // namespace

histogram::histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(bounds->size() + 1, 0) {}

void histogram::observe(double v) {
  // A NaN is at or below no bound: it lands in +Inf only, as in the Go client.
  const auto it =
      std::isnan(v) ? bounds_->end() : std::lower_bound(bounds_->begin(), bounds_->end(), v);
  ++buckets_[static_cast<std::size_t>(it - bounds_->begin())];
  ++count_;
  sum_ += v;
}

metric_registry::family_base::family_base(std::string name_, std::string help_, metric_type type_,
                                          std::vector<std::string> label_names_)
    : name(std::move(name_)),
      help(std::move(help_)),
      type(type_),
      label_names(std::move(label_names_)) {
  if (!is_valid_metric_name(name)) throw std::logic_error("bad metric name: " + name);
  for (const std::string& l : label_names) {
    if (!is_valid_label_name(l) || (type == metric_type::histogram && l == "le")) {
      throw std::logic_error("bad label name '" + l + "' for metric " + name);
    }
  }
}

void metric_registry::family_base::check_arity(std::size_t values) const {
  if (values != label_names.size()) {
    throw std::logic_error(
        fmt::format("metric {} takes {} label values, got {}", name, label_names.size(), values));
  }
}

template <>
void metric_registry::family<counter>::render_samples(std::string& out) const {
  for (const auto& [values, c] : series_)
    write_sample(out, name, "", label_set(label_names, values), c.value());
}

template <>
void metric_registry::family<gauge>::render_samples(std::string& out) const {
  for (const auto& [values, g] : series_)
    write_sample(out, name, "", label_set(label_names, values), g.value());
}

template <>
void metric_registry::family<histogram>::render_samples(std::string& out) const {
  for (const auto& [values, h] : series_) {
    std::string open = open_label_set(label_names, values);
    const std::string bucket_prefix = open.empty() ? std::string("{") : open + ",";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.buckets().size(); ++i) {
      cumulative += h.buckets()[i];
      const std::string le =
          i < bounds_.size() ? format_metric_value(bounds_[i]) : std::string("+Inf");
      write_sample(out, name, "_bucket", fmt::format("{}le=\"{}\"}}", bucket_prefix, le),
                   static_cast<double>(cumulative));
    }
    const std::string labels = label_set(label_names, values);
    write_sample(out, name, "_sum", labels, h.sum());
    write_sample(out, name, "_count", labels, static_cast<double>(h.count()));
  }
}

metric_registry::metric_registry() = default;
metric_registry::~metric_registry() = default;

metric_registry::family<counter>& metric_registry::counters(std::string name, std::string help,
                                                            std::vector<std::string> label_names) {
  auto f = std::make_unique<family<counter>>(std::move(name), std::move(help), metric_type::counter,
                                             std::move(label_names));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

metric_registry::family<gauge>& metric_registry::gauges(std::string name, std::string help,
                                                        std::vector<std::string> label_names) {
  auto f = std::make_unique<family<gauge>>(std::move(name), std::move(help), metric_type::gauge,
                                           std::move(label_names));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

metric_registry::family<histogram>& metric_registry::histograms(
    std::string name, std::string help, std::vector<double> bounds,
    std::vector<std::string> label_names) {
  const bool increasing = std::adjacent_find(bounds.begin(), bounds.end(), [](double a, double b) {
                            return !(a < b);
                          }) == bounds.end();
  const bool finite =
      std::all_of(bounds.begin(), bounds.end(), [](double b) { return std::isfinite(b); });
  if (bounds.empty() || !increasing || !finite) {
    throw std::logic_error("histogram " + name + ": bounds must be finite and increasing");
  }
  auto f =
      std::make_unique<family<histogram>>(std::move(name), std::move(help), metric_type::histogram,
                                          std::move(label_names), std::move(bounds));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

std::string metric_registry::render() const {
  std::string out;
  for (const auto& f : families_) {
    std::string samples;
    f->render_samples(samples);
    if (samples.empty()) continue;
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f->name, escape_help(f->help), f->name,
                       type_name(f->type));
    out += samples;
  }
  return out;
}

std::string format_metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers up to 2^53 print without an exponent or fraction; fmt's {} is the shortest
  // representation that reads back as the same double.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    return fmt::format("{}", static_cast<std::int64_t>(v));
  }
  return fmt::format("{}", v);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool is_valid_metric_name(std::string_view name) { return is_name(name, true); }

bool is_valid_label_name(std::string_view name) {
  return is_name(name, false) && name.substr(0, 2) != "__";
}

}  // namespace sweepd::core
