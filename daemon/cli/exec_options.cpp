#include "cli/exec_options.hpp"

#include <fmt/format.h>

#include "cli/parse.hpp"
#include "cli/table.hpp"
#include "core/protocol.hpp"
#include "core/time.hpp"

namespace sweepd::cli {

namespace {

constexpr double min_interval_s = 0.1;

/// A duration option in seconds: nullopt when absent or refused (then `problem` says why).
std::optional<double> duration_option(const arguments& args, std::string_view option, double min,
                                      bool min_inclusive, std::string& problem) {
  const std::string* text = args.value(option);
  if (text == nullptr || !problem.empty()) return std::nullopt;
  const parsed_number parsed = parse_duration(option, *text);
  if (!parsed.value) {
    problem = parsed.problem;
  } else if (*parsed.value < min || (!min_inclusive && *parsed.value == min)) {
    problem = fmt::format("option '{}': must be {} {} seconds, got '{}'", option,
                          min_inclusive ? "at least" : "more than", min, printable(*text, 40));
  } else if (*parsed.value > core::max_timeout_s) {
    problem = fmt::format("option '{}': at most {} seconds (a year), got '{}'", option,
                          core::max_timeout_s, printable(*text, 40));
  } else {
    return parsed.value;
  }
  return std::nullopt;
}

}  // namespace

exec_options parse_exec_options(const arguments& args) {
  exec_options o;
  option_reader reader(args);
  std::string& problem = o.problem;
  const std::string* run = args.value("--run");
  if (run == nullptr) {
    problem = "missing --run ID, the id of the run to register";
  } else if (!core::is_valid_run_id(*run)) {
    problem = fmt::format(
        "option '--run': '{}' is not a valid run id (1-{} characters of "
        "[A-Za-z0-9._-])",
        printable(*run, 40), core::max_run_id_chars);
  } else {
    o.run = *run;
  }
  core::register_params& r = o.register_request;
  r.run = o.run;
  r.watch_peer = true;
  r.sweep = reader.text("--sweep");
  r.entity = reader.text("--entity");
  r.project = reader.text("--project");
  if (problem.empty()) {
    r.suggestion = reader.json_object("--suggestion", core::max_suggestion_bytes);
    problem = reader.problem();
  }
  const auto timeout = duration_option(args, "--heartbeat-timeout", 0, false, problem);
  r.heartbeat_timeout_s = timeout;
  r.max_runtime_s = duration_option(args, "--max-runtime", 0, true, problem);
  const auto interval = duration_option(args, "--interval", min_interval_s, true, problem);
  if (timeout && interval.value_or(default_exec_interval_s) >= *timeout && problem.empty()) {
    problem = fmt::format(
        "option '--interval': heartbeats every {} s would come too late for a "
        "--heartbeat-timeout of {} s",
        format_exact(interval.value_or(default_exec_interval_s)), format_exact(*timeout));
  }
  o.interval = core::to_duration(interval.value_or(default_exec_interval_s));
  if (const std::string* v = args.value("--result-file")) {
    if (v->empty() && problem.empty()) problem = "option '--result-file': the path is empty";
    o.result_file = *v;
  }
  if (const std::string* v = args.value("--on-timeout"); v != nullptr && problem.empty()) {
    if (*v == "kill" || *v == "keep") {
      o.on_timeout = *v == "kill" ? timeout_action::kill : timeout_action::keep;
    } else {
      problem =
          fmt::format("option '--on-timeout': expected kill or keep, got '{}'", printable(*v, 40));
    }
  }
  if (const auto grace = duration_option(args, "--kill-grace", 0, true, problem)) {
    o.kill_grace = core::to_duration(*grace);
    if (o.on_timeout == timeout_action::keep && problem.empty()) {
      problem = "option '--kill-grace': applies only with --on-timeout kill, not keep";
    }
  }
  if (const std::string* v = args.value("--spool-dir")) {
    if (v->empty() && problem.empty()) problem = "option '--spool-dir': the path is empty";
    o.spool_dir = *v;
  }
  o.argv = args.operands;
  if (problem.empty() && o.argv.empty()) {
    problem =
        "missing the command to run (usage: sweepctl exec --run ID [OPTIONS] -- CMD "
        "[ARGS...])";
  } else if (problem.empty() && o.argv.front().empty()) {
    problem = "the command to run is an empty string";
  }
  return o;
}

}  // namespace sweepd::cli
