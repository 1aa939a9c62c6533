#include "core/reconcile.hpp"

#include <algorithm>
#include <cmath>

#include "core/json_limits.hpp"
#include "core/lenient_json.hpp"

namespace sweepd::core {

namespace {

using json = nlohmann::json;

std::string mapped_name(run_state s, const std::map<std::string, std::string>& names) {
  const std::string name(to_string(s));
  const auto it = names.find(name);
  return it == names.end() ? name : it->second;
}

/// A finite number under `key`, if the summary has one there.
std::optional<double> finite_number(const json& summary, const std::string& key) {
  const auto it = summary.find(key);
  if (it == summary.end() || !it->is_number()) return std::nullopt;
  const double v = it->get<double>();
  return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
}

std::optional<std::string> text_at(const json& summary, const std::string& key) {
  const auto it = summary.find(key);
  if (it == summary.end() || !it->is_string() || nonfinite_of(*it)) return std::nullopt;
  return it->get<std::string>();
}

double runtime_of(const wandb_listed_run& r) {
  if (!r.created_at || !r.heartbeat_at) return 0;
  return std::max(0.0, std::chrono::duration<double>(*r.heartbeat_at - *r.created_at).count());
}

}  // namespace

std::string_view to_string(reconcile_decision::action a) {
  switch (a) {
    case reconcile_decision::action::skip:
      return "skip";
    case reconcile_decision::action::repair:
      return "repair";
    case reconcile_decision::action::adopt:
      return "adopt";
  }
  return "skip";
}

std::vector<std::string> live_summary_names(const std::map<std::string, std::string>& names) {
  std::vector<std::string> live = {mapped_name(run_state::initializing, names),
                                   mapped_name(run_state::running, names)};
  if (live[0] == live[1]) live.pop_back();
  return live;
}

reconcile_decision classify_for_reconcile(const wandb_listed_run& listed, const run_record* known,
                                          const reconcile_rules& rules, wall_time now) {
  reconcile_decision d;
  d.run = listed.name;
  d.wandb_state = listed.state;
  d.heartbeat_at = listed.heartbeat_at;
  json summary = json::object();
  if (!json_nests_deeper_than(listed.summary_text, max_stored_json_depth)) {
    json parsed = parse_lenient_json(listed.summary_text, max_stored_json_depth).value;
    if (parsed.is_object()) summary = std::move(parsed);
  }
  d.summary_state = text_at(summary, rules.prefix + "state");

  if (known != nullptr) {
    d.state = known->state;
    if (!is_terminal(known->state)) {
      d.reason = "live_in_sweepd";  // sweepd's own clocks decide
    } else {
      d.what = reconcile_decision::action::repair;
      d.reason = "final_in_sweepd";
    }
    return d;
  }
  const auto live = live_summary_names(rules.state_names);
  if (!d.summary_state || std::find(live.begin(), live.end(), *d.summary_state) == live.end()) {
    d.reason = "final_in_wandb";  // never overwrite a state W&B already has as final
    return d;
  }

  adoption& a = d.adopted;
  a.run = listed.name;
  a.sweep = rules.sweep;
  a.entity = rules.entity;
  a.project = rules.project;
  a.created_at = listed.created_at;
  a.runtime_s = std::max(runtime_of(listed), 0.001);
  const auto adopt = [&](run_state to, transition_reason why) {
    d.what = reconcile_decision::action::adopt;
    d.state = to;
    d.reason = std::string(to_string(why));
    a.to = to;
    a.why = why;
  };
  if (const auto objective = finite_number(summary, rules.prefix + "objective")) {
    a.objective = objective;
    if (const auto cost = finite_number(summary, rules.prefix + "cost"); cost && *cost > 0) {
      a.cost = cost;
    }
    adopt(run_state::success, transition_reason::reconciled_objective);
  } else if (listed.state == "crashed") {
    a.error = "W&B marked the run crashed";
    adopt(run_state::crashed, transition_reason::reconciled_wandb_crashed);
  } else if (listed.state == "failed") {
    a.error = "W&B marked the run failed";
    adopt(run_state::failed, transition_reason::reconciled_wandb_failed);
  } else if (listed.state == "killed") {
    a.error = "W&B marked the run killed";
    adopt(run_state::failed, transition_reason::reconciled_wandb_killed);
  } else if (listed.state == "finished") {
    a.error = "finished without an objective";
    adopt(run_state::failed, transition_reason::reconciled_no_objective);
  } else {
    const auto last_sign = listed.heartbeat_at ? listed.heartbeat_at : listed.created_at;
    const bool stale =
        !last_sign || std::chrono::duration<double>(now - *last_sign).count() > rules.stale_after_s;
    if (stale) {
      a.error = "no heartbeat in W&B for longer than reconcile.stale_after";
      adopt(run_state::timeout, transition_reason::reconciled_stale);
    } else {
      d.reason = "alive_in_wandb";
    }
  }
  return d;
}

std::string reconcile_filter(const std::string& sweep, const std::string& prefix,
                             const std::vector<std::string>& live_names) {
  const json filter = {
      {"$and", json::array({{{"sweep", sweep}},
                            {{"summary_metrics." + prefix + "state", {{"$in", live_names}}}}})}};
  return filter.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::map<std::string, std::size_t> count_decisions(const std::vector<reconcile_decision>& ds) {
  std::map<std::string, std::size_t> counts;
  for (const reconcile_decision& d : ds) {
    ++counts[std::string(to_string(d.what))];
    if (d.what == reconcile_decision::action::adopt && d.state) {
      ++counts[std::string(to_string(*d.state))];
    }
  }
  return counts;
}

}  // namespace sweepd::core
