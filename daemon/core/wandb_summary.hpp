#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/run.hpp"

namespace sweepd::core {

/// The summary keys sweepd owns, without the prefix (DESIGN §4). A write sets those that apply to
/// the transition and removes the others, so that, say, a late success clears `is_failure`.
inline constexpr const char* managed_summary_keys[] = {
    "state",      "state_reason", "updated_at",   "objective", "cost",     "completion_time",
    "is_failure", "error",        "failure_time", "late",      "late_by_s"};

/// The keys one transition writes (unprefixed), with the state name mapped through
/// `state_names` (e.g. failed → failure for legacy Protein loaders). Terminal states always carry
/// a positive cost.
nlohmann::json summary_keys_for(const transition& t,
                                const std::map<std::string, std::string>& state_names);

/// A merged summary, or why the stored one could not be read.
struct summary_merge {
  std::optional<std::string> text;
  std::string error;
};

/// Merges `keys` (from summary_keys_for) into a W&B summary given as JSON text: every managed key
/// under `prefix` is set or removed; every other key is kept as it was, including the NaN,
/// Infinity and -Infinity tokens W&B summaries contain (not JSON, so nlohmann cannot read them
/// as they are). Empty or `null` text is an empty summary; one nested deeper than
/// max_stored_json_depth is refused unparsed.
summary_merge merge_summary(std::string_view summary_text, const nlohmann::json& keys,
                            const std::string& prefix);

/// The value of `<prefix>state` in a summary text, if it is there as a string (nullopt too for a
/// summary merge_summary refuses).
std::optional<std::string> summary_state(std::string_view summary_text, const std::string& prefix);

}  // namespace sweepd::core
