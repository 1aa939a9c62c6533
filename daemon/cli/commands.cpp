#include "cli/commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>

#include "cli/exec.hpp"
#include "cli/spool_command.hpp"
#include "cli/table.hpp"
#include "core/protocol.hpp"
#include "core/run.hpp"
#include "core/tokens.hpp"
#include "core/version.hpp"
#include "io/client.hpp"
#include "io/tokens.hpp"

namespace sweepd::cli {

namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Reading replies. sweepd may be older or newer than sweepctl, so every field is optional and
// read without throwing: a missing or odd field shows as "-", never as a crash.

const json* field(const json& j, std::string_view key) {
  if (!j.is_object()) return nullptr;
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> number_of(const json& j, std::string_view key) {
  const json* v = field(j, key);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->get<double>();
}

std::string dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::optional<std::string> text_of(const json& j, std::string_view key) {
  const json* v = field(j, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  if (v->is_number()) return format_exact(v->get<double>());
  return dump(*v);
}

std::string text_or_dash(const json& j, std::string_view key) {
  return text_of(j, key).value_or("-");
}

const json& object_of(const json& j, std::string_view key) {
  static const json empty = json::object();
  const json* v = field(j, key);
  return v != nullptr && v->is_object() ? *v : empty;
}

const json& array_of(const json& j, std::string_view key) {
  static const json empty = json::array();
  const json* v = field(j, key);
  return v != nullptr && v->is_array() ? *v : empty;
}

std::string number_or_dash(const json& j, std::string_view key) {
  const auto v = number_of(j, key);
  return v ? format_number(*v) : "-";
}

std::string duration_or_dash(const json& j, std::string_view key) {
  const auto v = number_of(j, key);
  return v ? format_duration(*v) : "-";
}

/// A per-run limit: "off" when zero, a duration otherwise.
std::string limit_of(const json& j, std::string_view key) {
  const auto v = number_of(j, key);
  if (!v) return "-";
  return *v <= 0 ? "off" : format_duration(*v);
}

std::string timestamp_or_dash(const json& j, std::string_view key) {
  const auto v = text_of(j, key);
  return v ? format_timestamp(*v) : "-";
}

// ---------------------------------------------------------------------------------------------
// Numbers and requests from the command line.

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

/// Integral values go on the wire as integers ("progress":1200, not 1200.0).
json number_json(double v) {
  constexpr double exact_integer_limit = 9007199254740992.0;  // 2^53
  if (std::trunc(v) == v && std::fabs(v) < exact_integer_limit) {
    return static_cast<std::int64_t>(v);
  }
  return v;
}

/// Builds one request from a command's arguments, checking each value before anything is sent;
/// keeps the first problem, which names the option.
class request_builder {
 public:
  request_builder(const arguments& args, std::string_view op) : args_(args) { request_["op"] = op; }

  bool ok() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }
  const json& request() const { return request_; }

  /// The first operand as "run"; the parser has checked that it is there.
  void run_operand() {
    const std::string& run = args_.operands.front();
    if (!core::is_valid_run_id(run)) {
      fail(fmt::format("RUN '{}' is not a valid run id (1-{} characters of [A-Za-z0-9._-])",
                       printable(run, 40), core::max_run_id_chars));
    }
    request_["run"] = run;
  }

  void text(std::string_view option, const char* key) {
    if (const std::string* v = args_.value(option)) request_[key] = *v;
  }

  void flag(std::string_view option, const char* key) {
    if (args_.has(option)) request_[key] = true;
  }

  void state(std::string_view option, const char* key) {
    const std::string* v = args_.value(option);
    if (v == nullptr) return;
    if (!core::parse_run_state(*v)) {
      std::string states;
      for (core::run_state s : core::all_run_states) {
        states += states.empty() ? "" : ", ";
        states += core::to_string(s);
      }
      return fail(
          fmt::format("option '{}': '{}' is not a state ({})", option, printable(*v, 40), states));
    }
    request_[key] = *v;
  }

  void count(std::string_view option, const char* key, std::size_t lo, std::size_t hi) {
    const std::string* v = args_.value(option);
    if (v == nullptr) return;
    std::size_t n = 0;
    const char* end = v->data() + v->size();
    const auto [ptr, ec] = std::from_chars(v->data(), end, n);
    if (ec != std::errc() || ptr != end || n < lo || n > hi) {
      return fail(fmt::format("option '{}': expected a whole number from {} to {}, got '{}'",
                              option, lo, hi, printable(*v, 40)));
    }
    request_[key] = n;
  }

  /// A finite number, at least `min` when given.
  void number(std::string_view option, const char* key, std::optional<double> min = {}) {
    const std::string* v = args_.value(option);
    if (v == nullptr) return;
    const parsed_number parsed = parse_finite(option, *v);
    if (!parsed.value) return fail(parsed.problem);
    if (min && *parsed.value < *min) {
      return fail(fmt::format("option '{}': must be at least {}, got {}", option, *min, *v));
    }
    request_[key] = number_json(*parsed.value);
  }

  /// Seconds (units allowed), up to a year; `positive` refuses zero.
  void duration(std::string_view option, const char* key, bool positive) {
    const std::string* v = args_.value(option);
    if (v == nullptr) return;
    const parsed_number parsed = parse_duration(option, *v);
    if (!parsed.value) return fail(parsed.problem);
    if (positive && *parsed.value <= 0) {
      return fail(fmt::format("option '{}': must be more than 0 seconds, got '{}'", option, *v));
    }
    if (*parsed.value > core::max_timeout_s) {
      return fail(fmt::format("option '{}': at most {} seconds (a year), got '{}'", option,
                              core::max_timeout_s, *v));
    }
    request_[key] = number_json(*parsed.value);
  }

  void json_object(std::string_view option, const char* key, std::size_t max_bytes) {
    const std::string* v = args_.value(option);
    if (v == nullptr) return;
    json parsed = json::parse(*v, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      return fail(
          fmt::format("option '{}': expected a JSON object such as '{{\"lr\": 0.01}}', "
                      "got '{}'",
                      option, printable(*v, 60)));
    }
    if (const std::size_t size = dump(parsed).size(); size > max_bytes) {
      return fail(fmt::format("option '{}': {} bytes of JSON, more than the {} allowed", option,
                              size, max_bytes));
    }
    request_[key] = std::move(parsed);
  }

  void set(const char* key, std::string value) { request_[key] = std::move(value); }
  void fail(std::string problem) {
    if (problem_.empty()) problem_ = std::move(problem);
  }

 private:
  const arguments& args_;
  json request_ = json::object();
  std::string problem_;
};

// ---------------------------------------------------------------------------------------------
// Talking to sweepd.

int usage_error(const invocation& in, std::string_view problem) {
  in.err << fmt::format("sweepctl: {}\nTry 'sweepctl {} --help'.\n", problem, in.cmd.name);
  return exit_usage;
}

void report_daemon_error(const invocation& in, const json& reply) {
  const json& error = object_of(reply, "error");
  const std::string code = text_of(error, "code").value_or("error");
  const std::string message =
      text_of(error, "message").value_or("sweepd refused the request without saying why");
  in.err << fmt::format("sweepctl: {}: {}\n", printable(code, 64), printable(message));
}

/// sweepd's successful reply, or (after the problem was reported) the exit status to return.
struct daemon_answer {
  std::optional<json> reply;
  int status = exit_ok;
};

/// Connects to sweepd: exit_ok, or (after saying why) exit_unreachable when it cannot be reached
/// and exit_refused when its TLS listener refused the token.
int connect_daemon(const invocation& in, io::client& c) {
  if (c.connect(in.global.address, in.global.tls, in.global.token, in.global.timeout)) {
    return exit_ok;
  }
  if (c.refused()) {
    // sweepd is running and said why: the "is sweepd running?" hint would mislead.
    in.err << fmt::format("sweepctl: {}\n", printable(c.last_error(), 400));
    return exit_refused;
  }
  in.err << fmt::format(
      "sweepctl: {}\n(is sweepd running? choose its socket with --socket PATH or "
      "$SWEEPD_SOCKET, or a remote one with --address tls://HOST:PORT)\n",
      c.last_error());
  return exit_unreachable;
}

/// Sends one request on the connection `c` and reads its reply within the global --timeout.
/// Transport failures exit 3; an error reply, or one that is not a protocol reply, exits 1.
daemon_answer ask_daemon(const invocation& in, io::client& c, const json& request) {
  std::optional<std::string> line;
  if (c.send_raw(dump(request) + "\n")) line = c.read_line(in.global.timeout);
  if (!line) {
    in.err << "sweepctl: " << c.last_error() << '\n';
    return {std::nullopt, exit_unreachable};
  }
  json reply = json::parse(*line, nullptr, false);
  const json* ok = field(reply, "ok");
  if (ok == nullptr || !ok->is_boolean()) {
    in.err << fmt::format("sweepctl: sweepd at {} sent a reply sweepctl does not understand: {}\n",
                          in.global.socket, printable(*line, 200));
    return {std::nullopt, exit_daemon_error};
  }
  if (!ok->get<bool>()) {
    report_daemon_error(in, reply);
    return {std::nullopt, exit_daemon_error};
  }
  return {std::move(reply), exit_ok};
}

/// Sends one request on a fresh connection (see above).
daemon_answer ask_daemon(const invocation& in, const json& request) {
  io::client c;
  if (const int status = connect_daemon(in, c); status != exit_ok) return {std::nullopt, status};
  return ask_daemon(in, c, request);
}

using renderer = void (*)(const json& reply, const invocation& in);

/// Asks sweepd and shows the reply: rendered for people, or as JSON with --json (indented for
/// the record-like replies of status and show).
int exchange(const invocation& in, const json& request, renderer render, bool pretty = false) {
  daemon_answer answer = ask_daemon(in, request);
  if (!answer.reply) return answer.status;
  if (in.global.json) {
    in.out << dump(*answer.reply, pretty ? 2 : -1) << '\n';
  } else {
    render(*answer.reply, in);
  }
  return exit_ok;
}

int exchange(const invocation& in, const request_builder& built, renderer render,
             bool pretty = false) {
  if (!built.ok()) return usage_error(in, built.problem());
  return exchange(in, built.request(), render, pretty);
}

/// Asks for the pages of `list` or `observations` (`key` names their entries) on one
/// connection, following "next" until the daemon has no more or `want` entries came (the request
/// asks for no more than that), and shows them as if they were one reply. When more are left, the
/// shown reply keeps "truncated" and the "next" to continue from (a sweepd before pages says
/// truncated without a cursor: then that first page is all there is to show).
int exchange_pages(const invocation& in, const request_builder& built, const char* key,
                   std::optional<std::size_t> want, renderer render) {
  if (!built.ok()) return usage_error(in, built.problem());
  io::client c;
  if (const int status = connect_daemon(in, c); status != exit_ok) return status;
  json request = built.request();
  std::optional<json> shown;
  for (;;) {
    daemon_answer answer = ask_daemon(in, c, request);
    if (!answer.reply) return answer.status;
    json& page = *answer.reply;
    const json* next = field(page, "next");
    const bool more = page.value("truncated", false) == true && next != nullptr &&
                      next->is_string() && !array_of(page, key).empty();
    if (!shown) {
      shown = std::move(page);
    } else {
      json& entries = (*shown)[key];
      for (json& entry : page[key]) entries.push_back(std::move(entry));
      (*shown)["truncated"] = page.value("truncated", false);
      if (next != nullptr) {
        (*shown)["next"] = *next;
      } else {
        shown->erase("next");
      }
    }
    const std::size_t have = array_of(*shown, key).size();
    if (!more || (want && have >= *want)) break;
    if (request.contains("after") && request["after"] == *next) {
      in.err << "sweepctl: sweepd sent the same page twice; stopping\n";
      return exit_daemon_error;
    }
    request["after"] = *next;
    if (want) request["limit"] = *want - have;
  }
  if (in.global.json) {
    in.out << dump(*shown) << '\n';
  } else {
    render(*shown, in);
  }
  return exit_ok;
}

/// How to see what a truncated page left out, for the line under its table.
std::string how_to_continue(const json& reply, std::string_view command) {
  const json* next = field(reply, "next");
  if (next == nullptr || !next->is_string()) return "";
  return fmt::format("; sweepctl {} --after {} shows the next ones", command,
                     printable(next->get<std::string>(), 200));
}

// ---------------------------------------------------------------------------------------------
// Rendering replies for people.

void render_run_state(const json& reply, const invocation& in) {
  in.out << fmt::format("{}: {}\n", printable(text_or_dash(reply, "run")),
                        printable(text_or_dash(reply, "state")));
}

void render_hello(const json& reply, const invocation& in) {
  in.out << fmt::format("{} {}, protocol {}, at {}\n", printable(text_or_dash(reply, "server")),
                        printable(text_or_dash(reply, "version")), text_or_dash(reply, "protocol"),
                        in.global.socket);
}

/// "12 total: initializing 1, running 3, …" in state-machine order, then any state sweepctl does
/// not know yet.
std::string runs_line(const json& reply) {
  const json& runs = object_of(reply, "runs");
  std::string counts;
  double total = 0;
  auto add = [&](const std::string& state) {
    const auto n = number_of(runs, state);
    if (!n) return;
    counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", state, format_exact(*n));
    total += *n;
  };
  for (core::run_state s : core::all_run_states) add(std::string(core::to_string(s)));
  for (const auto& [state, n] : runs.items()) {
    if (!core::parse_run_state(state)) add(state);
  }
  const double shown_total = number_of(reply, "runs_total").value_or(total);
  return fmt::format("{} total{}{}", format_exact(shown_total), counts.empty() ? "" : ": ", counts);
}

/// "online, pending 0, in_flight 0, dead 0": the mode, the known counters, then anything else.
std::string wandb_line(const json& wandb) {
  std::vector<std::string> parts;
  if (const auto mode = text_of(wandb, "mode")) parts.push_back(*mode);
  const std::vector<std::string> known = {"pending", "in_flight", "dead"};
  for (const std::string& key : known) {
    if (const auto v = text_of(wandb, key)) parts.push_back(key + " " + *v);
  }
  for (const auto& [key, value] : wandb.items()) {
    const bool listed = key == "mode" || key == "last_error" ||
                        std::find(known.begin(), known.end(), key) != known.end();
    if (!listed && !value.is_structured()) parts.push_back(key + " " + text_or_dash(wandb, key));
  }
  if (parts.empty()) return "not reported";
  std::string line;
  for (const std::string& part : parts) {
    if (!line.empty()) line += ", ";
    line += part;
  }
  return line;
}

void render_status(const json& reply, const invocation& in) {
  key_values kv;
  std::string version = text_or_dash(reply, "version");
  if (const auto protocol = text_of(reply, "protocol")) version += " (protocol " + *protocol + ")";
  kv.add("sweepd", version);
  kv.add("socket", in.global.socket);
  kv.add("uptime", duration_or_dash(reply, "uptime_s"));
  kv.add("runs", runs_line(reply));
  kv.add("connections", text_or_dash(reply, "connections"));
  const json& wandb = object_of(reply, "wandb");
  kv.add("wandb", wandb_line(wandb));
  if (const auto last_error = text_of(wandb, "last_error")) {
    kv.add("wandb last error", printable(*last_error, 200));
  }
  const json& reconcile = object_of(reply, "reconcile");
  if (const auto passes = number_of(reconcile, "passes"); passes && *passes > 0) {
    kv.add("reconcile",
           fmt::format("last pass {}, {} passes, {} adopted, {} errors",
                       timestamp_or_dash(reconcile, "last_pass_at"), format_exact(*passes),
                       text_or_dash(reconcile, "adopted"), text_or_dash(reconcile, "errors")));
    if (const auto last_error = text_of(reconcile, "last_error")) {
      kv.add("reconcile last error", printable(*last_error, 200));
    }
  }
  in.out << kv.render();
}

/// "4 to mark: 1 success, 1 crashed, 2 timeout; 1 alive; dry run: nothing written, run with
/// --apply" — what a reconcile did or would do, in one line.
std::string reconcile_summary(const json& reply) {
  const json& counts = object_of(reply, "counts");
  const auto count = [&](const char* key) {
    return static_cast<std::size_t>(number_of(counts, key).value_or(0));
  };
  const bool applied = field(reply, "apply") != nullptr && *field(reply, "apply") == true;
  std::string states;
  for (const char* state : {"success", "failed", "crashed", "timeout"}) {
    if (count(state) == 0) continue;
    states += fmt::format("{}{} {}", states.empty() ? "" : ", ", count(state), state);
  }
  std::string line = count("adopt") == 0
                         ? std::string("nothing to mark")
                         : fmt::format("{} {}{}", count("adopt"), applied ? "marked" : "to mark",
                                       states.empty() ? "" : ": " + states);
  std::size_t alive = 0;
  std::size_t live = 0;
  std::size_t final_in_wandb = 0;
  for (const json& row : array_of(reply, "runs")) {
    const std::string reason = text_or_dash(row, "reason");
    alive += reason == "alive_in_wandb";
    live += reason == "live_in_sweepd";
    final_in_wandb += reason == "final_in_wandb";
  }
  if (alive > 0) line += fmt::format("; {} alive", alive);
  if (live > 0) line += fmt::format("; {} live in sweepd", live);
  if (count("repair") > 0) {
    line += fmt::format("; {} {} from sweepd's own state", count("repair"),
                        applied ? "rewritten" : "to rewrite");
  }
  if (final_in_wandb > 0) line += fmt::format("; {} already final", final_in_wandb);
  const bool writes = count("adopt") + count("repair") > 0;
  if (applied && writes) line += "; the W&B writes are queued";
  if (!applied && writes) line += "; dry run: nothing written, run with --apply";
  return line;
}

void render_reconcile(const json& reply, const invocation& in) {
  const json& runs = array_of(reply, "runs");
  if (!runs.empty()) {
    table t({{"RUN"}, {"W&B STATE"}, {"SUMMARY STATE"}, {"LAST HEARTBEAT"}, {"ACTION"}});
    for (const json& row : runs) {
      std::string action = text_or_dash(row, "action");
      if (const auto state = text_of(row, "state"); state && action != "skip") {
        action += " -> " + *state;
      }
      action += " (" + text_or_dash(row, "reason") + ")";
      t.add_row({printable(text_or_dash(row, "run")), printable(text_or_dash(row, "wandb_state")),
                 printable(text_or_dash(row, "summary_state")),
                 timestamp_or_dash(row, "heartbeat_at"), printable(action)});
    }
    in.out << t.render();
  }
  if (const json* truncated = field(reply, "truncated"); truncated && *truncated == true) {
    in.out << fmt::format("(only the first {} runs are listed; the counts cover them all)\n",
                          runs.size());
  }
  in.out << fmt::format("sweep {} in {}/{}: {}\n", printable(text_or_dash(reply, "sweep")),
                        printable(text_or_dash(reply, "entity")),
                        printable(text_or_dash(reply, "project")), reconcile_summary(reply));
}

/// Terminal runs show how long they ran; live ones how old they are.
std::string age_or_runtime(const json& run) {
  const auto runtime = number_of(run, "runtime_s");
  return format_duration(runtime ? *runtime : number_of(run, "age_s").value_or(-1));
}

std::string sweep_of(const json& run) {
  std::string sweep = text_or_dash(run, "sweep");
  return sweep.empty() ? "-" : sweep;
}

void render_list(const json& reply, const invocation& in) {
  const json& runs = array_of(reply, "runs");
  if (runs.empty()) {
    in.out << "no runs\n";
    return;
  }
  table t({{"RUN"},
           {"SWEEP"},
           {"STATE"},
           {"REASON"},
           {"AGE/RUNTIME", align::right},
           {"OBJECTIVE", align::right},
           {"UPDATED"}});
  for (const json& run : runs) {
    t.add_row({text_or_dash(run, "run"), sweep_of(run), text_or_dash(run, "state"),
               text_or_dash(run, "reason"), age_or_runtime(run), number_or_dash(run, "objective"),
               timestamp_or_dash(run, "updated_at")});
  }
  in.out << t.render();
  const json* truncated = field(reply, "truncated");
  if (truncated != nullptr && truncated->is_boolean() && truncated->get<bool>()) {
    in.out << fmt::format(
        "(only the first {} runs are shown; more match: narrow with --sweep/--state or raise "
        "--limit{})\n",
        runs.size(), how_to_continue(reply, "list"));
  }
}

std::string watch_of(const json& run) {
  const json* watch = field(run, "watch_peer");
  if (watch == nullptr || !watch->is_boolean()) return "-";
  if (!watch->get<bool>()) return "no";
  const auto pid = text_of(run, "peer_pid");
  return pid ? "yes, pid " + *pid : "yes";
}

std::string state_with_reason(const json& run) {
  return fmt::format("{} ({})", text_or_dash(run, "state"), text_or_dash(run, "reason"));
}

/// "acme/mnist"; "-" for a part that is empty (sweepd had no default for it).
std::string entity_project_of(const json& run) {
  auto part = [&](std::string_view key) {
    std::string v = text_of(run, key).value_or("");
    return v.empty() ? std::string("-") : v;
  };
  return part("entity") + "/" + part("project");
}

key_values run_details(const json& run) {
  key_values kv;
  kv.add("run", text_or_dash(run, "run"));
  kv.add("sweep", sweep_of(run));
  kv.add("entity/project", entity_project_of(run));
  kv.add("state", state_with_reason(run));
  kv.add("registered", timestamp_or_dash(run, "registered_at"));
  kv.add("updated", timestamp_or_dash(run, "updated_at"));
  if (field(run, "finished_at")) kv.add("finished", timestamp_or_dash(run, "finished_at"));
  if (field(run, "runtime_s")) kv.add("runtime", duration_or_dash(run, "runtime_s"));
  if (field(run, "age_s")) kv.add("age", duration_or_dash(run, "age_s"));
  if (field(run, "last_seen_s")) kv.add("last seen", duration_or_dash(run, "last_seen_s") + " ago");
  if (const auto v = number_of(run, "objective")) kv.add("objective", format_exact(*v));
  if (const auto v = number_of(run, "cost")) kv.add("cost", format_exact(*v));
  if (const auto v = text_of(run, "error")) kv.add("error", *v);
  if (field(run, "late_by_s")) kv.add("late by", duration_or_dash(run, "late_by_s"));
  if (const auto v = number_of(run, "progress")) kv.add("progress", format_exact(*v));
  kv.add("heartbeat timeout", limit_of(run, "heartbeat_timeout_s"));
  kv.add("max runtime", limit_of(run, "max_runtime_s"));
  kv.add("stall timeout", limit_of(run, "stall_timeout_s"));
  if (field(run, "deadline_in_s")) {
    kv.add("next deadline in", duration_or_dash(run, "deadline_in_s"));
  }
  kv.add("watch peer", watch_of(run));
  kv.add("owner uid", text_or_dash(run, "owner_uid"));
  kv.add("suggestion", printable(text_or_dash(run, "suggestion"), 300));
  return kv;
}

table transitions_table(const json& run) {
  table t({{"AT"},
           {"FROM"},
           {"TO"},
           {"REASON"},
           {"RUNTIME", align::right},
           {"OBJECTIVE", align::right},
           {"COST", align::right},
           {"ERROR"}});
  for (const json& tr : array_of(run, "transitions")) {
    t.add_row({timestamp_or_dash(tr, "at"), text_or_dash(tr, "from"), text_or_dash(tr, "to"),
               text_or_dash(tr, "reason"), duration_or_dash(tr, "runtime_s"),
               number_or_dash(tr, "objective"), number_or_dash(tr, "cost"),
               printable(text_of(tr, "error").value_or(""), 60)});
  }
  return t;
}

/// "delivered 2026-11-30 12:00:01Z (attempts 1), converging"; "pending 2 (attempts 3: HTTP 503)".
std::string wandb_delivery_of(const json& run) {
  const json& w = object_of(run, "wandb");
  if (w.empty()) return "-";
  const std::string status = text_or_dash(w, "status");
  std::string text = status;
  if (status == "pending") text = fmt::format("pending {}", text_or_dash(w, "pending"));
  if (field(w, "mode")) text += fmt::format(" (W&B {})", text_or_dash(w, "mode"));
  if (const auto attempts = number_of(w, "attempts"); attempts && *attempts > 0) {
    text += fmt::format(", attempts {}", format_exact(*attempts));
  }
  if (const json* flight = field(w, "in_flight"); flight != nullptr && *flight == true) {
    text += ", in flight";
  }
  if (const auto dead = number_of(w, "dead"); dead && *dead > 0) {
    text += fmt::format(", {} dead-lettered", format_exact(*dead));
  }
  if (field(w, "last_delivered_at")) {
    text += ", last delivered " + timestamp_or_dash(w, "last_delivered_at");
  }
  if (const json* c = field(w, "converging"); c != nullptr && *c == true) {
    text += ", re-checking (W&B shows the run live)";
  }
  if (const auto e = text_of(w, "last_error")) text += "; last error: " + printable(*e, 200);
  return text;
}

void render_show(const json& reply, const invocation& in) {
  const json& run = object_of(reply, "run");
  key_values details = run_details(run);
  if (field(run, "wandb")) details.add("W&B delivery", wandb_delivery_of(run));
  in.out << details.render() << "\ntransitions:\n" << transitions_table(run).render();
}

void render_resync(const json& reply, const invocation& in) {
  in.out << fmt::format("{}: {}, W&B summary queued again\n", text_or_dash(reply, "run"),
                        text_or_dash(reply, "state"));
}

void render_observations(const json& reply, const invocation& in) {
  const json& observations = array_of(reply, "observations");
  if (observations.empty()) {
    in.out << "no observations\n";
    return;
  }
  table t({{"RUN"}, {"STATE"}, {"OBJECTIVE", align::right}, {"COST", align::right}, {"FAILURE"}});
  for (const json& o : observations) {
    std::string state = text_or_dash(o, "state");
    if (const json* late = field(o, "late"); late != nullptr && *late == true) state += " (late)";
    const json* failure = field(o, "is_failure");
    const std::string failed =
        failure == nullptr || !failure->is_boolean() ? "-" : (failure->get<bool>() ? "yes" : "no");
    t.add_row({text_or_dash(o, "run_id"), state, number_or_dash(o, "objective"),
               number_or_dash(o, "cost"), failed});
  }
  in.out << t.render();
  const json* truncated = field(reply, "truncated");
  if (truncated != nullptr && truncated->is_boolean() && truncated->get<bool>()) {
    in.out << fmt::format("(only the first {} observations are shown{})\n", observations.size(),
                          how_to_continue(reply, "observations"));
  }
}

// ---------------------------------------------------------------------------------------------
// The commands: one function each.

int run_status(const invocation& in) {
  return exchange(in, json{{"op", "status"}}, render_status, true);
}

int run_list(const invocation& in) {
  request_builder b(in.args, "list");
  b.text("--sweep", "sweep");
  b.state("--state", "state");
  b.count("--limit", "limit", 1, core::max_list_limit);
  b.text("--after", "after");
  const json* limit = field(b.request(), "limit");
  // A page may stop before the limit when its replies would pass sweepd's reply size cap.
  const std::size_t want = limit != nullptr ? limit->get<std::size_t>() : core::default_list_limit;
  return exchange_pages(in, b, "runs", want, render_list);
}

int run_show(const invocation& in) {
  request_builder b(in.args, "show");
  b.run_operand();
  return exchange(in, b, render_show, true);
}

int run_observations(const invocation& in) {
  request_builder b(in.args, "observations");
  b.text("--sweep", "sweep");
  b.count("--limit", "limit", 1, core::max_list_limit);
  b.text("--after", "after");
  const json* limit = field(b.request(), "limit");
  std::optional<std::size_t> want;
  if (limit != nullptr) want = limit->get<std::size_t>();
  return exchange_pages(in, b, "observations", want, render_observations);
}

int run_register(const invocation& in) {
  request_builder b(in.args, "register");
  b.run_operand();
  b.text("--sweep", "sweep");
  b.text("--entity", "entity");
  b.text("--project", "project");
  b.json_object("--suggestion", "suggestion", core::max_suggestion_bytes);
  b.flag("--watch-peer", "watch_peer");
  b.duration("--heartbeat-timeout", "heartbeat_timeout_s", true);
  b.duration("--max-runtime", "max_runtime_s", false);
  return exchange(in, b, render_run_state);
}

int run_start(const invocation& in) {
  request_builder b(in.args, "start");
  b.run_operand();
  return exchange(in, b, render_run_state);
}

int run_heartbeat(const invocation& in) {
  request_builder b(in.args, "heartbeat");
  b.run_operand();
  b.number("--progress", "progress");
  b.duration("--timeout", "timeout_s", true);
  return exchange(in, b, render_run_state);
}

int run_complete(const invocation& in) {
  request_builder b(in.args, "complete");
  b.run_operand();
  b.number("--objective", "objective");
  b.number("--cost", "cost", 0.0);
  return exchange(in, b, render_run_state);
}

int run_fail(const invocation& in) {
  request_builder b(in.args, "fail");
  b.run_operand();
  const std::string* option = in.args.value("--error");
  const bool positional = in.args.operands.size() > 1;
  if (option != nullptr && positional) {
    b.fail("give the error either as --error TEXT or as MESSAGE, not both");
  } else if (option == nullptr && !positional) {
    b.fail("missing the error: give --error TEXT or MESSAGE");
  } else {
    b.set("error", option != nullptr ? *option : in.args.operands[1]);
  }
  return exchange(in, b, render_run_state);
}

int run_reconcile(const invocation& in) {
  request_builder b(in.args, "reconcile");
  b.text("--sweep", "sweep");
  b.text("--entity", "entity");
  b.text("--project", "project");
  b.duration("--stale-after", "stale_after_s", false);
  b.flag("--apply", "apply");
  if (b.ok() && !b.request().contains("sweep")) b.fail("missing --sweep S, the sweep to reconcile");
  if (in.global.timeout_given) return exchange(in, b, render_reconcile);
  // Reading every page of a large sweep from W&B takes longer than a request usually may.
  global_options patient = in.global;
  patient.timeout = default_reconcile_timeout;
  const invocation longer{in.cmd, patient, in.args, in.out, in.err};
  return exchange(longer, b, render_reconcile);
}

int run_resync(const invocation& in) {
  request_builder b(in.args, "resync");
  b.run_operand();
  return exchange(in, b, render_resync);
}

int run_token(const invocation& in) {
  const auto& operands = in.args.operands;
  if (operands[0] != "new") {
    return usage_error(
        in, fmt::format("unknown token action '{}' (known: new)", printable(operands[0], 40)));
  }
  const std::string& name = operands[1];
  if (!core::is_valid_principal(name)) {
    return usage_error(in, fmt::format("the name must be 1-{} characters of [A-Za-z0-9._@-]",
                                       core::max_principal_chars));
  }
  const std::string token = io::random_token();
  if (token.empty()) {
    in.err << "sweepctl: the random number generator failed; no token made\n";
    return exit_daemon_error;
  }
  const std::string entry = fmt::format("{} {}", name, core::to_hex(io::sha256(token)));
  if (in.global.json) {
    in.out << dump(json{{"principal", name}, {"token", token}, {"tokens_file_line", entry}})
           << '\n';
    return exit_ok;
  }
  in.out << fmt::format(
      "token for {} (shown once; give it to the worker as $SWEEPD_TOKEN or in a --token-file):\n"
      "  {}\n"
      "line for sweepd's remote.tokens_file (then reload sweepd, e.g. systemctl reload "
      "sweepd):\n"
      "  {}\n",
      name, token, entry);
  return exit_ok;
}

int run_hello(const invocation& in) { return exchange(in, json{{"op", "hello"}}, render_hello); }

int run_ping(const invocation& in) {
  const auto sent = std::chrono::steady_clock::now();
  daemon_answer answer = ask_daemon(in, json{{"op", "hello"}});
  if (!answer.reply) return answer.status;
  const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - sent;
  if (in.global.json) {
    in.out << dump(*answer.reply) << '\n';
  } else {
    in.out << fmt::format("sweepd at {} answered in {:.1f} ms\n", in.global.socket,
                          elapsed.count());
  }
  return exit_ok;
}

// ---------------------------------------------------------------------------------------------
// The command table and help.

std::vector<command> make_commands() {
  return {
      {"status",
       "",
       "show sweepd's version, uptime, run counts and W&B delivery",
       "",
       {},
       0,
       0,
       run_status},
      {"list",
       "",
       "list runs, oldest first",
       "Shows at most --limit runs (1000 unless given) and says when more match, with the\n"
       "--after CURSOR that shows the next ones.",
       {{"--sweep", "S", "only runs of sweep S"},
        {"--state", "STATE",
         "only runs in STATE: initializing, running, success, failed, crashed, timeout"},
        {"--limit", "N", "show at most N runs (1-100000)"},
        {"--after", "CURSOR", "only runs after the last one of an earlier list"}},
       0,
       0,
       run_list},
      {"show", "RUN", "show one run in full, with its state transitions", "", {}, 1, 1, run_show},
      {"observations",
       "",
       "list finished runs as optimizer observations (objective, cost, failure)",
       "Every terminal run: success, failed, crashed and timeout, in the order they finished\n"
       "(sweepctl reads every page sweepd sends).",
       {{"--sweep", "S", "only runs of sweep S"},
        {"--limit", "N", "show at most N observations (1-100000)"},
        {"--after", "CURSOR", "only runs that finished after the last one of an earlier list"}},
       0,
       0,
       run_observations},
      {"register",
       "RUN",
       "register a new run; it starts in state initializing",
       "RUN is the W&B run id: 1-128 characters of [A-Za-z0-9._-].\n"
       "Durations are seconds, or a number with a unit: 90s, 15m, 2h, 1d.",
       {{"--sweep", "S", "the sweep the run belongs to"},
        {"--entity", "E", "the W&B entity (default: sweepd's wandb.entity)"},
        {"--project", "P", "the W&B project (default: sweepd's wandb.project)"},
        {"--suggestion", "JSON", "the hyperparameters, as a JSON object such as '{\"lr\":0.01}'"},
        {"--watch-peer", "",
         "mark the run crashed when the registering process exits; that process is this "
         "sweepctl, which exits at once, so this is only useful in tests"},
        {"--heartbeat-timeout", "S", "mark the run timeout after S seconds without a heartbeat"},
        {"--max-runtime", "S", "mark the run timeout S seconds after registration (0: off)"}},
       1,
       1,
       run_register},
      {"start", "RUN", "mark RUN as running", "", {}, 1, 1, run_start},
      {"heartbeat",
       "RUN",
       "tell sweepd that RUN is alive",
       "Write the global --timeout before the command; after it, --timeout is the run's own.",
       {{"--progress", "X", "how far the run is (e.g. its step), to detect stalls"},
        {"--timeout", "S", "from now on, mark the run timeout after S seconds of silence"}},
       1,
       1,
       run_heartbeat},
      {"complete",
       "RUN",
       "mark RUN as finished successfully",
       "",
       {{"--objective", "X", "the run's objective value (a finite number)"},
        {"--cost", "C", "what the run cost, at least 0 (default: its runtime in seconds)"}},
       1,
       1,
       run_complete},
      {"fail",
       "RUN [MESSAGE]",
       "mark RUN as failed, with an error message",
       "The message is --error TEXT or MESSAGE (one of them); sweepd keeps up to 4 KiB of it.",
       {{"--error", "TEXT", "what went wrong"}},
       1,
       2,
       run_fail},
      exec_command(),
      {"reconcile",
       "--sweep S",
       "give the runs W&B shows stuck in running a true final state",
       "Lists the sweep's W&B runs whose summary state is still initializing or running (every\n"
       "page) and says what each should become: success when the summary has a finite objective;\n"
       "crashed/failed when W&B says crashed, failed or killed, or finished without an objective;\n"
       "timeout when W&B has not heard from it for --stale-after (default: sweepd's\n"
       "reconcile.stale_after); runs sweepd tracks itself are left to it, and runs W&B still "
       "hears\n"
       "from are left alone. A dry run (the default) changes nothing; --apply records each run in\n"
       "sweepd and queues its W&B summary write (root and socket.admin_uids only). Needs W&B "
       "online.\n"
       "Waits up to 10 minutes unless --timeout is given.",
       {{"--sweep", "S", "the sweep id (required)"},
        {"--entity", "E", "the W&B entity (default: sweepd's wandb.entity)"},
        {"--project", "P", "the W&B project (default: sweepd's wandb.project)"},
        {"--stale-after", "DUR", "a run W&B has not heard from for this long is timed out"},
        {"--apply", "", "record the final states and write them to W&B (default: dry run)"}},
       0,
       0,
       run_reconcile},
      {"resync",
       "RUN",
       "queue RUN's current state for its W&B summary again",
       "For a run whose W&B write was dead-lettered (a revoked key, a deleted and re-created\n"
       "run): once the cause is fixed, this writes sweepd's state for the run again. Allowed to\n"
       "the run's owner, root and socket.admin_uids. 'sweepctl show RUN' shows the delivery.",
       {},
       1,
       1,
       run_resync},
      spool_command(),
      {"token",
       "new NAME",
       "make a token for a remote worker identity NAME",
       "Prints a fresh random token once, and the line for sweepd's remote.tokens_file: the\n"
       "name and the token's SHA-256 (the file never holds the token). Runs on its own; sweepd\n"
       "learns of the token when its tokens file is reloaded (SIGHUP). Remote callers own\n"
       "their runs as token:NAME.",
       {},
       2,
       2,
       run_token},
      {"hello", "", "ask sweepd for its version and protocol", "", {}, 0, 0, run_hello},
      {"ping", "", "check that sweepd answers, and how fast", "", {}, 0, 0, run_ping},
  };
}

/// Options as two columns, the help text wrapped to fit the usual 100-column terminal.
std::string options_block(const std::vector<option_spec>& options) {
  constexpr std::size_t line_width = 100;
  auto left = [](const option_spec& o) {
    return o.value_name.empty() ? std::string(o.name) : fmt::format("{} {}", o.name, o.value_name);
  };
  std::size_t width = 0;
  for (const option_spec& o : options) width = std::max(width, left(o).size());
  const std::size_t indent = 2 + width + 2;
  std::string out;
  for (const option_spec& o : options) {
    const auto lines = wrap_words(o.help, line_width - std::min(line_width - 20, indent));
    out += fmt::format("  {:<{}}  {}\n", left(o), width, lines.front());
    for (std::size_t i = 1; i < lines.size(); ++i) {
      out += fmt::format("{:{}}{}\n", "", indent, lines[i]);
    }
  }
  return out;
}

}  // namespace

const std::string* arguments::value(std::string_view option) const {
  const auto it = options.find(option);
  return it == options.end() ? nullptr : &it->second;
}

const option_spec* command::find_option(std::string_view option) const {
  const auto it = std::find_if(options.begin(), options.end(),
                               [&](const option_spec& o) { return o.name == option; });
  return it == options.end() ? nullptr : &*it;
}

const std::vector<command>& all_commands() {
  static const std::vector<command> commands = make_commands();
  return commands;
}

const command* find_command(std::string_view name) {
  const auto& commands = all_commands();
  const auto it = std::find_if(commands.begin(), commands.end(),
                               [&](const command& c) { return c.name == name; });
  return it == commands.end() ? nullptr : &*it;
}

const std::vector<option_spec>& global_option_specs() {
  static const std::vector<option_spec> options = {
      {"--socket", "PATH",
       "sweepd's control socket (default: $SWEEPD_ADDRESS, $SWEEPD_SOCKET, else "
       "/run/sweepd/sweepd.sock)"},
      {"--address", "ADDR",
       "a socket path, or tls://HOST:PORT for sweepd's TLS listener (remote workers)"},
      {"--token-file", "FILE", "the token for a tls:// address (default: $SWEEPD_TOKEN)"},
      {"--ca-file", "FILE",
       "the CA that signed sweepd's certificate (default: $SWEEPD_CA_FILE, else the "
       "system's)"},
      {"--json", "", "print sweepd's reply as JSON instead of tables, for scripts"},
      {"--timeout", "SECONDS", "how long to wait for sweepd's reply (default: 10)"},
      {"-h, --help", "", "show this help; 'sweepctl COMMAND --help' shows a command's options"},
      {"--version", "", "print sweepctl's version"},
  };
  return options;
}

std::string program_usage() {
  std::string out =
      "Usage: sweepctl [--socket PATH | --address tls://HOST:PORT] [--json] [--timeout SECONDS] "
      "COMMAND [ARGS]\n\n"
      "Inspects and drives sweepd, the supervisor of hyperparameter-sweep runs.\n\nCommands:\n";
  std::size_t width = 0;
  for (const command& c : all_commands()) width = std::max(width, c.name.size());
  for (const command& c : all_commands()) {
    out += fmt::format("  {:<{}}  {}\n", c.name, width, c.summary);
  }
  out += "\nGlobal options (before or after the command):\n" + options_block(global_option_specs());
  out +=
      "\nExit status: 0 done; 1 sweepd answered with an error; 2 usage error (nothing was sent);\n"
      "3 sweepd could not be reached or did not answer in time; 4 sweepd's TLS listener refused "
      "the\n"
      "token (not accepted, or too many failed attempts). exec exits with its command's status.\n";
  return out;
}

std::string command_usage(const command& cmd) {
  std::string out = fmt::format("Usage: sweepctl [GLOBAL OPTIONS] {}", cmd.name);
  if (!cmd.operands.empty()) out += fmt::format(" {}", cmd.operands);
  if (!cmd.options.empty() && cmd.operands.find("[OPTIONS]") == std::string_view::npos) {
    out += " [OPTIONS]";
  }
  std::string summary(cmd.summary);
  if (!summary.empty()) summary[0] = static_cast<char>(std::toupper(summary[0]));
  out += fmt::format("\n\n{}.\n", summary);
  if (!cmd.details.empty()) out += fmt::format("\n{}\n", cmd.details);
  if (!cmd.options.empty()) out += "\nOptions:\n" + options_block(cmd.options);
  out += "\nGlobal options:\n" + options_block(global_option_specs());
  return out;
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
