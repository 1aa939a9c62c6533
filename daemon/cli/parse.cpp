#include "cli/parse.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <utility>

#include "cli/table.hpp"
#include "core/run.hpp"

namespace sweepd::cli {

namespace {

using json = nlohmann::json;

/// A finite number in the usual notations ("3", "-0.5", "+1e-3"); nullopt for anything else,
/// including inf, nan, hex and trailing junk.
std::optional<double> to_double(std::string_view text) {
  if (text.starts_with('+')) {  // from_chars refuses a leading '+', people write one
    text.remove_prefix(1);
    if (text.starts_with('-')) return std::nullopt;
  }
  double v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || !std::isfinite(v)) return std::nullopt;
  return v;
}

/// Seconds in one unit of a duration's suffix (s, m, h, d), or 0 when `c` is not a unit.
double unit_seconds(char c) {
  switch (c) {
    case 's':
      return 1;
    case 'm':
      return 60;
    case 'h':
      return 3600;
    case 'd':
      return 86400;
    default:
      return 0;
  }
}

std::string state_names() {
  std::string states;
  for (core::run_state s : core::all_run_states) {
    states += states.empty() ? "" : ", ";
    states += core::to_string(s);
  }
  return states;
}

// One builder per daemon command: its request from its arguments.

/// The parameters `P` of an op on the run named by the first operand.
template <typename P>
P for_run(option_reader& r) {
  P q;
  q.run = r.run_operand();
  return q;
}

core::request status_from(option_reader&) { return core::status_request{}; }

core::request hello_from(option_reader&) { return core::hello_request{}; }

core::request list_from(option_reader& r) {
  core::list_request q;
  q.sweep = r.text("--sweep");
  q.state = r.state("--state");
  q.limit = r.count("--limit", 1, core::max_list_limit).value_or(core::default_list_limit);
  q.after = r.cursor("--after", core::page_order::registered);
  return q;
}

core::request observations_from(option_reader& r) {
  core::observations_request q;
  q.sweep = r.text("--sweep");
  q.limit = r.count("--limit", 1, core::max_list_limit);
  q.after = r.cursor("--after", core::page_order::finished);
  return q;
}

core::request show_from(option_reader& r) { return core::show_request{r.run_operand()}; }

core::request start_from(option_reader& r) { return core::start_request{r.run_operand()}; }

core::request resync_from(option_reader& r) { return core::resync_request{r.run_operand()}; }

core::request register_from(option_reader& r) {
  auto q = for_run<core::register_params>(r);
  q.sweep = r.text("--sweep");
  q.entity = r.text("--entity");
  q.project = r.text("--project");
  q.suggestion = r.json_object("--suggestion", core::max_suggestion_bytes);
  q.watch_peer = r.flag("--watch-peer");
  q.heartbeat_timeout_s = r.duration("--heartbeat-timeout", true);
  q.max_runtime_s = r.duration("--max-runtime", false);
  return q;
}

core::request heartbeat_from(option_reader& r) {
  auto q = for_run<core::heartbeat_params>(r);
  q.progress = r.number("--progress");
  q.timeout_s = r.duration("--timeout", true);
  return q;
}

core::request complete_from(option_reader& r) {
  auto q = for_run<core::complete_params>(r);
  q.objective = r.number("--objective");
  q.cost = r.number("--cost", 0.0);
  return q;
}

core::request reconcile_from(option_reader& r) {
  core::reconcile_request q;
  const auto sweep = r.text("--sweep");
  q.entity = r.text("--entity");
  q.project = r.text("--project");
  q.stale_after_s = r.duration("--stale-after", false);
  q.apply = r.flag("--apply");
  if (!sweep) r.fail("missing --sweep S, the sweep to reconcile");
  q.sweep = sweep.value_or("");
  return q;
}

using request_builder = core::request (*)(option_reader&);

struct builder_entry {
  std::string_view command;
  request_builder build;
};

constexpr builder_entry builders[] = {
    {"status", status_from},
    {"hello", hello_from},
    {"ping", hello_from},
    {"list", list_from},
    {"observations", observations_from},
    {"show", show_from},
    {"start", start_from},
    {"resync", resync_from},
    {"register", register_from},
    {"heartbeat", heartbeat_from},
    {"complete", complete_from},
    {"reconcile", reconcile_from},
};

/// fail takes its message as --error TEXT or as an operand, one of them.
parsed_request fail_from(const arguments& args) {
  option_reader r(args);
  auto q = for_run<core::fail_params>(r);
  const auto option = r.text("--error");
  const bool positional = args.operands.size() > 1;
  if (option && positional) {
    r.fail("give the error either as --error TEXT or as MESSAGE, not both");
  } else if (!option && !positional) {
    r.fail("missing the error: give --error TEXT or MESSAGE");
  } else {
    q.error = option ? *option : args.operands[1];
  }
  if (!r.ok()) return {std::nullopt, r.problem()};
  return {std::move(q), {}};
}

}  // namespace

void option_reader::fail(std::string problem) {
  if (problem_.empty()) problem_ = std::move(problem);
}

std::string option_reader::run_operand() {
  const std::string& run = args_.operands.front();
  if (!core::is_valid_run_id(run)) {
    fail(fmt::format("RUN '{}' is not a valid run id (1-{} characters of [A-Za-z0-9._-])",
                     printable(run, 40), core::max_run_id_chars));
  }
  return run;
}

std::optional<std::string> option_reader::text(std::string_view option) const {
  if (const std::string* v = args_.value(option)) return *v;
  return std::nullopt;
}

std::optional<core::run_state> option_reader::state(std::string_view option) {
  const std::string* v = args_.value(option);
  if (v == nullptr) return std::nullopt;
  const auto parsed = core::parse_run_state(*v);
  if (!parsed) {
    fail(fmt::format("option '{}': '{}' is not a state ({})", option, printable(*v, 40),
                     state_names()));
  }
  return parsed;
}

std::optional<std::size_t> option_reader::count(std::string_view option, std::size_t lo,
                                                std::size_t hi) {
  const std::string* v = args_.value(option);
  if (v == nullptr) return std::nullopt;
  std::size_t n = 0;
  const char* end = v->data() + v->size();
  const auto [ptr, ec] = std::from_chars(v->data(), end, n);
  if (ec != std::errc() || ptr != end || n < lo || n > hi) {
    fail(fmt::format("option '{}': expected a whole number from {} to {}, got '{}'", option, lo, hi,
                     printable(*v, 40)));
    return std::nullopt;
  }
  return n;
}

std::optional<double> option_reader::number(std::string_view option, std::optional<double> min) {
  const std::string* v = args_.value(option);
  if (v == nullptr) return std::nullopt;
  const parsed_number parsed = parse_finite(option, *v);
  if (!parsed.value) {
    fail(parsed.problem);
  } else if (min && *parsed.value < *min) {
    fail(fmt::format("option '{}': must be at least {}, got {}", option, *min, printable(*v, 40)));
  } else {
    return parsed.value;
  }
  return std::nullopt;
}

std::optional<double> option_reader::duration(std::string_view option, bool positive) {
  const std::string* v = args_.value(option);
  if (v == nullptr) return std::nullopt;
  const parsed_number parsed = parse_duration(option, *v);
  if (!parsed.value) {
    fail(parsed.problem);
  } else if (positive && *parsed.value <= 0) {
    fail(fmt::format("option '{}': must be more than 0 seconds, got '{}'", option,
                     printable(*v, 40)));
  } else if (*parsed.value > core::max_timeout_s) {
    fail(fmt::format("option '{}': at most {} seconds (a year), got '{}'", option,
                     core::max_timeout_s, printable(*v, 40)));
  } else {
    return parsed.value;
  }
  return std::nullopt;
}

core::json_text option_reader::json_object(std::string_view option, std::size_t max_bytes) {
  const std::string* v = args_.value(option);
  if (v == nullptr) return {};
  const json parsed = json::parse(*v, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    fail(fmt::format("option '{}': expected a JSON object such as '{{\"lr\": 0.01}}', got '{}'",
                     option, printable(*v, 60)));
    return {};
  }
  core::json_text text(parsed);
  if (text.text().size() > max_bytes) {
    fail(fmt::format("option '{}': {} bytes of JSON, more than the {} allowed", option,
                     text.text().size(), max_bytes));
    return {};
  }
  return text;
}

std::optional<core::page_cursor> option_reader::cursor(std::string_view option,
                                                       core::page_order order) {
  const std::string* v = args_.value(option);
  if (v == nullptr) return std::nullopt;
  auto c = core::decode_cursor(order, *v);
  if (!c) {
    fail(fmt::format("option '{}': '{}' is not a cursor from this command's earlier output", option,
                     printable(*v, 60)));
  }
  return c;
}

parsed_request request_from(std::string_view command, const arguments& args) {
  if (command == "fail") return fail_from(args);
  const auto entry = std::find_if(std::begin(builders), std::end(builders),
                                  [&](const builder_entry& b) { return b.command == command; });
  if (entry == std::end(builders)) {
    return {std::nullopt, fmt::format("'{}' sends no request", printable(command, 40))};
  }
  option_reader reader(args);
  core::request req = entry->build(reader);
  if (!reader.ok()) return {std::nullopt, reader.problem()};
  return {std::move(req), {}};
}

parsed_number parse_finite(std::string_view option, std::string_view text) {
  if (auto v = to_double(text)) return {v, {}};
  return {std::nullopt, fmt::format("option '{}': expected a finite number, got '{}'", option,
                                    printable(text, 40))};
}

parsed_number parse_duration(std::string_view option, std::string_view text) {
  std::string_view number = text;
  double unit = 1;
  if (!number.empty() && unit_seconds(number.back()) > 0) {
    unit = unit_seconds(number.back());
    number.remove_suffix(1);
  }
  const auto v = to_double(number);
  if (!v || *v < 0 || !std::isfinite(*v * unit)) {
    return {std::nullopt,
            fmt::format("option '{}': expected seconds such as 90, 1.5, 15m, 2h or 1d, got '{}'",
                        option, printable(text, 40))};
  }
  return {*v * unit, {}};
}

}  // namespace sweepd::cli
