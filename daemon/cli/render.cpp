#include "cli/render.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cli/table.hpp"
#include "core/json_limits.hpp"
#include "core/protocol.hpp"
#include "core/run.hpp"

namespace sweepd::cli {

namespace {

using json = nlohmann::json;

// Reading replies. sweepd may be older or newer than sweepctl, so every field is optional and
// read without throwing: a missing or odd field shows as "-", never as a crash.

std::optional<double> number_of(const json& j, std::string_view key) {
  const json* v = reply_field(j, key);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->get<double>();
}

std::optional<std::string> text_of(const json& j, std::string_view key) {
  const json* v = reply_field(j, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  if (v->is_number()) return format_exact(v->get<double>());
  return dump_json(*v);
}

std::string text_or_dash(const json& j, std::string_view key) {
  return text_of(j, key).value_or("-");
}

const json& object_of(const json& j, std::string_view key) {
  static const json empty = json::object();
  const json* v = reply_field(j, key);
  return v != nullptr && v->is_object() ? *v : empty;
}

const json& array_of(const json& j, std::string_view key) {
  static const json empty = json::array();
  const json* v = reply_field(j, key);
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

/// How to see what a truncated page left out, for the line under its table.
std::string how_to_continue(const json& reply, std::string_view command) {
  const json* next = reply_field(reply, "next");
  if (next == nullptr || !next->is_string()) return "";
  return fmt::format("; sweepctl {} --after {} shows the next ones", command,
                     printable(next->get<std::string>(), 200));
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

/// "4 to mark: 1 success, 1 crashed, 2 timeout; 1 alive; dry run: nothing written, run with
/// --apply" — what a reconcile did or would do, in one line.
std::string reconcile_summary(const json& reply) {
  const json& counts = object_of(reply, "counts");
  const auto count = [&](const char* key) {
    return static_cast<std::size_t>(number_of(counts, key).value_or(0));
  };
  const bool applied =
      reply_field(reply, "apply") != nullptr && *reply_field(reply, "apply") == true;
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

/// Terminal runs show how long they ran; live ones how old they are.
std::string age_or_runtime(const json& run) {
  const auto runtime = number_of(run, "runtime_s");
  return format_duration(runtime ? *runtime : number_of(run, "age_s").value_or(-1));
}

std::string sweep_of(const json& run) {
  std::string sweep = text_or_dash(run, "sweep");
  return sweep.empty() ? "-" : sweep;
}

std::string watch_of(const json& run) {
  const json* watch = reply_field(run, "watch_peer");
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
  if (reply_field(run, "finished_at")) kv.add("finished", timestamp_or_dash(run, "finished_at"));
  if (reply_field(run, "runtime_s")) kv.add("runtime", duration_or_dash(run, "runtime_s"));
  if (reply_field(run, "age_s")) kv.add("age", duration_or_dash(run, "age_s"));
  if (reply_field(run, "last_seen_s"))
    kv.add("last seen", duration_or_dash(run, "last_seen_s") + " ago");
  if (const auto v = number_of(run, "objective")) kv.add("objective", format_exact(*v));
  if (const auto v = number_of(run, "cost")) kv.add("cost", format_exact(*v));
  if (const auto v = text_of(run, "error")) kv.add("error", *v);
  if (reply_field(run, "late_by_s")) kv.add("late by", duration_or_dash(run, "late_by_s"));
  if (const auto v = number_of(run, "progress")) kv.add("progress", format_exact(*v));
  kv.add("heartbeat timeout", limit_of(run, "heartbeat_timeout_s"));
  kv.add("max runtime", limit_of(run, "max_runtime_s"));
  kv.add("stall timeout", limit_of(run, "stall_timeout_s"));
  if (reply_field(run, "deadline_in_s")) {
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
  if (reply_field(w, "mode")) text += fmt::format(" (W&B {})", text_or_dash(w, "mode"));
  if (const auto attempts = number_of(w, "attempts"); attempts && *attempts > 0) {
    text += fmt::format(", attempts {}", format_exact(*attempts));
  }
  if (const json* flight = reply_field(w, "in_flight"); flight != nullptr && *flight == true) {
    text += ", in flight";
  }
  if (const auto dead = number_of(w, "dead"); dead && *dead > 0) {
    text += fmt::format(", {} dead-lettered", format_exact(*dead));
  }
  if (reply_field(w, "last_delivered_at")) {
    text += ", last delivered " + timestamp_or_dash(w, "last_delivered_at");
  }
  if (const json* c = reply_field(w, "converging"); c != nullptr && *c == true) {
    text += ", re-checking (W&B shows the run live)";
  }
  if (const auto e = text_of(w, "last_error")) text += "; last error: " + printable(*e, 200);
  return text;
}

}  // namespace

const json* reply_field(const json& j, std::string_view key) {
  if (!j.is_object()) return nullptr;
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::optional<json> protocol_reply(std::string_view line, std::string_view where,
                                   std::string& why) {
  // Checked before parsing: destroying a value nested that deep would recurse past the stack.
  if (core::json_nests_deeper_than(line, core::max_stored_json_depth)) {
    why = fmt::format("sweepd at {} sent a reply nested more than {} levels deep", where,
                      core::max_stored_json_depth);
    return std::nullopt;
  }
  json reply = json::parse(line, nullptr, false);
  if (const json* ok = reply_field(reply, "ok"); ok != nullptr && ok->is_boolean()) return reply;
  why = fmt::format("sweepd at {} sent a reply sweepctl does not understand: {}", where,
                    printable(line, 200));
  return std::nullopt;
}

shown_error shown_error_of(const json& reply, std::size_t message_width) {
  const core::reply_error e = core::error_of_reply(reply);
  return {printable(e.code.empty() ? "error" : e.code, 64),
          printable(e.message.empty() ? "sweepd refused the request without saying why" : e.message,
                    message_width)};
}

// ---------------------------------------------------------------------------------------------
// Rendering replies for people.

std::string render_run_state(const json& reply) {
  return fmt::format("{}: {}\n", printable(text_or_dash(reply, "run")),
                     printable(text_or_dash(reply, "state")));
}

std::string render_hello(const json& reply, std::string_view socket) {
  return fmt::format("{} {}, protocol {}, at {}\n", printable(text_or_dash(reply, "server")),
                     printable(text_or_dash(reply, "version")), text_or_dash(reply, "protocol"),
                     socket);
}

std::string render_status(const json& reply, std::string_view socket) {
  key_values kv;
  std::string version = text_or_dash(reply, "version");
  if (const auto protocol = text_of(reply, "protocol")) version += " (protocol " + *protocol + ")";
  kv.add("sweepd", version);
  kv.add("socket", std::string(socket));
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
  return kv.render();
}

std::string render_reconcile(const json& reply) {
  std::string out;
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
    out += t.render();
  }
  if (const json* truncated = reply_field(reply, "truncated"); truncated && *truncated == true) {
    out += fmt::format("(only the first {} runs are listed; the counts cover them all)\n",
                       runs.size());
  }
  out += fmt::format("sweep {} in {}/{}: {}\n", printable(text_or_dash(reply, "sweep")),
                     printable(text_or_dash(reply, "entity")),
                     printable(text_or_dash(reply, "project")), reconcile_summary(reply));
  return out;
}

std::string render_list(const json& reply) {
  std::string out;
  const json& runs = array_of(reply, "runs");
  if (runs.empty()) {
    return "no runs\n";
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
  out += t.render();
  const json* truncated = reply_field(reply, "truncated");
  if (truncated != nullptr && truncated->is_boolean() && truncated->get<bool>()) {
    out += fmt::format(
        "(only the first {} runs are shown; more match: narrow with --sweep/--state or raise "
        "--limit{})\n",
        runs.size(), how_to_continue(reply, "list"));
  }
  return out;
}

std::string render_show(const json& reply) {
  const json& run = object_of(reply, "run");
  key_values details = run_details(run);
  if (reply_field(run, "wandb")) details.add("W&B delivery", wandb_delivery_of(run));
  return details.render() + "\ntransitions:\n" + transitions_table(run).render();
}

std::string render_resync(const json& reply) {
  return fmt::format("{}: {}, W&B summary queued again\n", text_or_dash(reply, "run"),
                     text_or_dash(reply, "state"));
}

std::string render_observations(const json& reply) {
  std::string out;
  const json& observations = array_of(reply, "observations");
  if (observations.empty()) {
    return "no observations\n";
  }
  table t({{"RUN"}, {"STATE"}, {"OBJECTIVE", align::right}, {"COST", align::right}, {"FAILURE"}});
  for (const json& o : observations) {
    std::string state = text_or_dash(o, "state");
    if (const json* late = reply_field(o, "late"); late != nullptr && *late == true)
      state += " (late)";
    const json* failure = reply_field(o, "is_failure");
    const std::string failed =
        failure == nullptr || !failure->is_boolean() ? "-" : (failure->get<bool>() ? "yes" : "no");
    t.add_row({text_or_dash(o, "run_id"), state, number_or_dash(o, "objective"),
               number_or_dash(o, "cost"), failed});
  }
  out += t.render();
  const json* truncated = reply_field(reply, "truncated");
  if (truncated != nullptr && truncated->is_boolean() && truncated->get<bool>()) {
    out += fmt::format("(only the first {} observations are shown{})\n", observations.size(),
                       how_to_continue(reply, "observations"));
  }
  return out;
}

}  // namespace sweepd::cli
