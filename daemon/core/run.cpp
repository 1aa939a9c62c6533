#include "core/run.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sweepd::core {

namespace {

constexpr double min_observation_cost_s = 0.001;

template <typename Enum, std::size_t N>
std::optional<Enum> parse_by_name(std::string_view name, const Enum (&all)[N]) {
  for (Enum e : all) {
    if (to_string(e) == name) return e;
  }
  return std::nullopt;
}

constexpr transition_reason all_reasons[] = {
    transition_reason::registered,
    transition_reason::started,
    transition_reason::completed,
    transition_reason::worker_failed,
    transition_reason::process_exited,
    transition_reason::heartbeat_timeout,
    transition_reason::max_runtime,
    transition_reason::stalled,
    transition_reason::revived,
    transition_reason::late_completed,
    transition_reason::late_failed,
    transition_reason::reconciled_objective,
    transition_reason::reconciled_wandb_crashed,
    transition_reason::reconciled_wandb_failed,
    transition_reason::reconciled_wandb_killed,
    transition_reason::reconciled_no_objective,
    transition_reason::reconciled_stale,
};

template <typename T>
void put_optional(nlohmann::json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}

double seconds_or_off(mono_clock::duration d) {
  return std::chrono::duration_cast<seconds_d>(d).count();
}

}  // namespace

std::string_view to_string(run_state s) {
  switch (s) {
    case run_state::initializing:
      return "initializing";
    case run_state::running:
      return "running";
    case run_state::success:
      return "success";
    case run_state::failed:
      return "failed";
    case run_state::crashed:
      return "crashed";
    case run_state::timeout:
      return "timeout";
  }
  return "unknown";
}

std::optional<run_state> parse_run_state(std::string_view name) {
  return parse_by_name(name, all_run_states);
}

bool is_final(run_state s) { return s == run_state::success || s == run_state::failed; }

bool is_correctable(run_state s) { return s == run_state::crashed || s == run_state::timeout; }

bool is_terminal(run_state s) { return is_final(s) || is_correctable(s); }

bool is_reconciled(transition_reason r) {
  switch (r) {
    case transition_reason::reconciled_objective:
    case transition_reason::reconciled_wandb_crashed:
    case transition_reason::reconciled_wandb_failed:
    case transition_reason::reconciled_wandb_killed:
    case transition_reason::reconciled_no_objective:
    case transition_reason::reconciled_stale:
      return true;
    default:
      return false;
  }
}

bool is_correctable(const run_record& r) {
  return is_correctable(r.state) || (is_terminal(r.state) && is_reconciled(r.reason));
}

bool is_failure(run_state s) {
  return s == run_state::failed || s == run_state::crashed || s == run_state::timeout;
}

std::string_view to_string(transition_reason r) {
  switch (r) {
    case transition_reason::registered:
      return "registered";
    case transition_reason::started:
      return "started";
    case transition_reason::completed:
      return "completed";
    case transition_reason::worker_failed:
      return "worker_failed";
    case transition_reason::process_exited:
      return "process_exited";
    case transition_reason::heartbeat_timeout:
      return "heartbeat_timeout";
    case transition_reason::max_runtime:
      return "max_runtime";
    case transition_reason::stalled:
      return "stalled";
    case transition_reason::revived:
      return "revived";
    case transition_reason::late_completed:
      return "late_completed";
    case transition_reason::late_failed:
      return "late_failed";
    case transition_reason::reconciled_objective:
      return "reconciled_objective";
    case transition_reason::reconciled_wandb_crashed:
      return "reconciled_wandb_crashed";
    case transition_reason::reconciled_wandb_failed:
      return "reconciled_wandb_failed";
    case transition_reason::reconciled_wandb_killed:
      return "reconciled_wandb_killed";
    case transition_reason::reconciled_no_objective:
      return "reconciled_no_objective";
    case transition_reason::reconciled_stale:
      return "reconciled_stale";
  }
  return "unknown";
}

std::optional<transition_reason> parse_transition_reason(std::string_view name) {
  return parse_by_name(name, all_reasons);
}

double observation_cost(const run_record& run) {
  // A given cost of 0 is valid input but would still be log(0) = -inf for the optimizer.
  return std::max(run.cost ? *run.cost : run.runtime_s.value_or(0.0), min_observation_cost_s);
}

nlohmann::json transition_json(const transition& t) {
  nlohmann::json j = {{"run", t.run},
                      {"from", t.from ? nlohmann::json(to_string(*t.from)) : nlohmann::json()},
                      {"to", to_string(t.to)},
                      {"reason", to_string(t.reason)},
                      {"at", format_utc(t.at)}};
  put_optional(j, "runtime_s", t.runtime_s);
  put_optional(j, "objective", t.objective);
  put_optional(j, "cost", t.cost);
  put_optional(j, "error", t.error);
  put_optional(j, "late_by_s", t.late_by_s);
  return j;
}

std::string caller_name(std::uint32_t uid, std::string_view principal) {
  return principal.empty() ? fmt::format("uid {}", uid) : fmt::format("token:{}", principal);
}

nlohmann::json run_summary_json(const run_record& run, instant now) {
  nlohmann::json j = {{"run", run.id},
                      {"sweep", run.sweep.str()},
                      {"state", to_string(run.state)},
                      {"reason", to_string(run.reason)},
                      {"registered_at", format_utc(run.registered_wall)},
                      {"updated_at", format_utc(run.history.back().at)},
                      {"owner", caller_name(run.owner_uid, run.owner_principal)}};
  if (is_terminal(run.state)) {
    put_optional(j, "runtime_s", run.runtime_s);
  } else {
    j["age_s"] = seconds_between(run.registered_mono, now.mono);
    j["last_seen_s"] = seconds_between(run.last_seen, now.mono);
  }
  put_optional(j, "objective", run.objective);
  put_optional(j, "cost", run.cost);
  return j;
}

void put_run_fields(nlohmann::json& j, const run_record& run) {
  j["sweep"] = run.sweep.str();
  j["entity"] = run.entity.str();
  j["project"] = run.project.str();
  j["suggestion"] = run.suggestion.value();
  j["owner_uid"] = run.owner_uid;
  j["watch_peer"] = run.watch_peer;
  j["state"] = to_string(run.state);
  j["reason"] = to_string(run.reason);
  j["heartbeat_timeout_s"] = seconds_or_off(run.heartbeat_timeout);
  j["max_runtime_s"] = seconds_or_off(run.max_runtime);
  j["stall_timeout_s"] = seconds_or_off(run.stall_timeout);
  put_optional(j, "progress", run.progress);
  put_optional(j, "objective", run.objective);
  put_optional(j, "cost", run.cost);
  put_optional(j, "error", run.error);
  put_optional(j, "late_by_s", run.late_by_s);
}

nlohmann::json run_detail_json(const run_record& run, instant now) {
  nlohmann::json j = run_summary_json(run, now);
  put_run_fields(j, run);
  if (run.watch_peer) j["peer_pid"] = run.peer_pid;
  if (run.deadline != mono_time::max()) {
    j["deadline_in_s"] = seconds_between(now.mono, run.deadline);
  }
  if (run.finished_wall) j["finished_at"] = format_utc(*run.finished_wall);
  nlohmann::json history = nlohmann::json::array();
  for (const transition& t : run.history) history.push_back(transition_json(t));
  j["transitions"] = std::move(history);
  return j;
}

void withhold_private_fields(nlohmann::json& j) {
  j["suggestion"] = nullptr;
  j.erase("error");
  if (auto t = j.find("transitions"); t != j.end()) {
    for (auto& tr : *t) tr.erase("error");
  }
  j["withheld"] = true;
}

nlohmann::json observation_json(const run_record& run) {
  nlohmann::json j = {
      {"run_id", run.id},
      {"suggestion", run.suggestion.value()},
      {"objective", run.objective ? nlohmann::json(*run.objective) : nlohmann::json()},
      {"cost", observation_cost(run)},
      {"is_failure", is_failure(run.state)},
      {"state", to_string(run.state)}};
  if (run.finished_wall) j["finished_at"] = format_utc(*run.finished_wall);
  if (run.late_by_s) j["late"] = true;
  return j;
}

}  // namespace sweepd::core
