#include <chrono>

#include "core/json_limits.hpp"
#include "core/lenient_json.hpp"
#include "core/wandb_summary.hpp"
#include "fuzz_targets.hpp"

namespace sweepd::fuzz {

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

const std::string prefix = "protein.";

core::transition transition(core::run_state from, core::run_state to,
                            core::transition_reason reason, std::chrono::seconds at) {
  core::transition t;
  t.from = from;
  t.to = to;
  t.reason = reason;
  t.at = core::wall_time{} + at;
  return t;
}

/// Two writes that between them set and remove every managed key: a late failure, then a success.
json late_failure_keys() {
  auto t = transition(core::run_state::timeout, core::run_state::failed,
                      core::transition_reason::late_failed, 1795900000s);
  t.runtime_s = 12.5;
  t.error = "CUDA out of memory";
  t.late_by_s = 3.25;
  return core::summary_keys_for(t, {{"failed", "failure"}});
}

json success_keys() {
  auto t = transition(core::run_state::running, core::run_state::success,
                      core::transition_reason::completed, 1795900100s);
  t.objective = 0.93;
  t.cost = 3600.5;
  return core::summary_keys_for(t, {});
}

/// The summary without the keys sweepd owns: what a merge must leave exactly as it was.
json foreign_keys(json summary) {
  for (const char* key : core::managed_summary_keys) summary.erase(prefix + key);
  return summary;
}

}  // namespace

void wandb_summary_target(input data) {
  static const json failure = late_failure_keys();
  static const json success = success_keys();
  const std::string_view text = as_text(data);

  const core::summary_merge merged = core::merge_summary(text, failure, prefix);
  require(merged.text.has_value() == merged.error.empty(), "a merge or why not, never both");
  if (!merged.text) {
    require(!core::summary_state(text, prefix), "no state is read from a refused summary");
    return;
  }
  const core::lenient_parse before = core::parse_lenient_json(text, core::max_stored_json_depth);
  const core::lenient_parse after =
      core::parse_lenient_json(*merged.text, core::max_stored_json_depth);
  require(after.problem.empty() && after.value.is_object(), "a merged summary reads back");
  require(core::summary_state(*merged.text, prefix) == failure["state"].get<std::string>(),
          "the merged state reads back");
  // Empty text and `null` merge as an empty summary; anything else merged was parsed whole.
  if (before.problem.empty() && before.value.is_object()) {
    require(foreign_keys(before.value) == foreign_keys(after.value),
            "keys sweepd does not own are kept as they were");
  }
  // Every write sets or removes all the managed keys, so an earlier write leaves no trace.
  const core::summary_merge twice = core::merge_summary(*merged.text, failure, prefix);
  require(twice.text == merged.text, "merging the same keys again changes nothing");
  const core::summary_merge other = core::merge_summary(*merged.text, success, prefix);
  require(other.text.has_value(), "a merged summary merges again");
  require(core::merge_summary(*other.text, failure, prefix).text == merged.text,
          "a second write leaves no trace of the first");
}

}  // namespace sweepd::fuzz
