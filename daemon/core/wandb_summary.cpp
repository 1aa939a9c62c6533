#include "core/wandb_summary.hpp"

#include <algorithm>
#include <string>

#include "core/lenient_json.hpp"

namespace sweepd::core {

namespace {

using json = nlohmann::json;

/// W&B summaries nest a few levels (`_wandb.stats`); this bound only stops pathological input.
constexpr std::size_t max_summary_depth = 512;

json parse_summary(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return json::object();
  json summary = parse_lenient_json(text, max_summary_depth).value;
  // `null` with any whitespace around it: W&B's way of saying "no summary yet".
  if (summary.is_null()) return json::object();
  return summary;
}

}  // namespace

json summary_keys_for(const transition& t, const std::map<std::string, std::string>& state_names) {
  const std::string state(to_string(t.to));
  const auto mapped = state_names.find(state);
  json keys = {{"state", mapped == state_names.end() ? state : mapped->second},
               {"state_reason", to_string(t.reason)},
               {"updated_at", format_utc(t.at)}};
  if (!is_terminal(t.to)) return keys;
  // observation_cost's floor: a Protein loader takes log(cost).
  keys["cost"] = std::max(t.cost.value_or(t.runtime_s.value_or(0.0)), 0.001);
  if (t.to == run_state::success) {
    if (t.objective) keys["objective"] = *t.objective;
    keys["completion_time"] = format_utc(t.at);
  } else {
    keys["is_failure"] = true;
    keys["failure_time"] = format_utc(t.at);
    keys["error"] = t.error ? *t.error : std::string(to_string(t.reason));
  }
  if (t.late_by_s) {
    keys["late"] = true;
    keys["late_by_s"] = *t.late_by_s;
  }
  return keys;
}

summary_merge merge_summary(std::string_view summary_text, const json& keys,
                            const std::string& prefix) {
  json summary = parse_summary(summary_text);
  if (summary.is_discarded() || !summary.is_object()) {
    return {std::nullopt, "the run's summary is not a JSON object"};
  }
  for (const char* key : managed_summary_keys) {
    auto value = keys.find(key);
    if (value == keys.end()) {
      summary.erase(prefix + key);
    } else {
      summary[prefix + key] = *value;
    }
  }
  return {dump_lenient_json(summary), {}};
}

std::optional<std::string> summary_state(std::string_view summary_text, const std::string& prefix) {
  const json summary = parse_summary(summary_text);
  if (!summary.is_object()) return std::nullopt;
  auto it = summary.find(prefix + "state");
  if (it == summary.end() || !it->is_string() || nonfinite_of(*it)) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace sweepd::core
