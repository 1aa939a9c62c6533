#include "core/wandb_summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "core/json_limits.hpp"
#include "core/lenient_json.hpp"

namespace sweepd::core {

namespace {

using json = nlohmann::json;

/// A summary as a value, or why it cannot be one.
struct parsed_summary {
  json value;
  std::string error;  // set for a summary sweepd refuses to hold
};

parsed_summary parse_summary(std::string_view text) {
  // Anyone who can write to the run can nest its summary as deep as they like; nlohmann parses
  // iteratively but dumps, compares and destroys recursively, so the depth is bounded up front.
  if (json_nests_deeper_than(text, max_stored_json_depth)) {
    return {json(json::value_t::discarded),
            fmt::format("the run's W&B summary nests deeper than {} levels; sweepd will not "
                        "rewrite it",
                        max_stored_json_depth)};
  }
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {json::object(), {}};
  json summary = parse_lenient_json(text, max_stored_json_depth).value;
  // `null` with any whitespace around it: W&B's way of saying "no summary yet".
  if (summary.is_null()) return {json::object(), {}};
  return {std::move(summary), {}};
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
  parsed_summary parsed = parse_summary(summary_text);
  if (!parsed.error.empty()) return {std::nullopt, std::move(parsed.error)};
  json& summary = parsed.value;
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
  const json summary = parse_summary(summary_text).value;
  if (!summary.is_object()) return std::nullopt;
  auto it = summary.find(prefix + "state");
  if (it == summary.end() || !it->is_string() || nonfinite_of(*it)) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace sweepd::core
