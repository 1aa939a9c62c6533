#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/enum_print.hpp"
#include "core/run.hpp"
#include "core/supervisor.hpp"
#include "core/time.hpp"

namespace sweepd::core {

/// One W&B run as the sweep's run listing shows it.
struct wandb_listed_run {
  std::string name;   // the run id
  std::string state;  // W&B's own run state: running, finished, crashed, failed, killed, …
  std::optional<wall_time> created_at;
  std::optional<wall_time> heartbeat_at;
  std::string summary_text;  // JSON text, possibly with bare NaN/Infinity tokens
};

/// What reconcile does with a listed run (the rules, first match wins).
struct reconcile_decision {
  enum class action {
    skip,    // live in sweepd (its clocks decide), alive in W&B, or already final there
    repair,  // sweepd has it final but W&B still shows it live: write sweepd's state again
    adopt,   // never talked to sweepd: journal it terminal, as W&B's evidence says
  };
  std::string run;
  std::string wandb_state;
  std::optional<std::string> summary_state;
  std::optional<wall_time> heartbeat_at;
  action what = action::skip;
  /// adopt: the state given; repair: sweepd's state.
  std::optional<run_state> state;
  /// adopt: the reconcile reason; skip/repair: why ("live_in_sweepd", "alive_in_wandb",
  /// "final_in_wandb", "final_in_sweepd").
  std::string reason;
  adoption adopted;  // for adopt
};

std::string_view to_string(reconcile_decision::action a);

/// Names the summary's `<prefix>state` takes while a run is live (initializing, running, as
/// mapped by `wandb.state_names`): the listing's filter, and what counts as stuck.
std::vector<std::string> live_summary_names(const std::map<std::string, std::string>& names);

struct reconcile_rules {
  std::string prefix = "protein.";
  std::map<std::string, std::string> state_names;
  double stale_after_s = 300;
  std::string sweep;
  std::string entity;
  std::string project;
};

/// Classifies one listed run by the reconcile rules:
///  1. sweepd tracks it live → skip (live_in_sweepd);
///  2. sweepd tracks it terminal → repair (final_in_sweepd);
///  3. a finite `<prefix>objective` → success (reconciled_objective), cost `<prefix>cost` > 0
///     or the runtime;
///  4. W&B crashed → crashed, failed → failed, killed → failed, finished → failed without an
///     objective;
///  5. heartbeatAt (else createdAt) older than stale_after_s → timeout (reconciled_stale);
///  6. else skip (alive_in_wandb).
/// A summary state that is not live means W&B has a final state already: skip (final_in_wandb).
/// Every adoption has a positive cost: runtime = heartbeatAt − createdAt, at least 1 ms.
reconcile_decision classify_for_reconcile(const wandb_listed_run& listed, const run_record* known,
                                          const reconcile_rules& rules, wall_time now);

/// The W&B `runs(filters:)` filter for a sweep's runs whose summary state is live, as JSON text:
/// {"$and":[{"sweep":S},{"summary_metrics.<prefix>state":{"$in":[live names]}}]}.
std::string reconcile_filter(const std::string& sweep, const std::string& prefix,
                             const std::vector<std::string>& live_names);

/// Counts by action and new state, e.g. {"adopt": 4, "skip": 1, "success": 1, "timeout": 2}.
std::map<std::string, std::size_t> count_decisions(const std::vector<reconcile_decision>& d);

}  // namespace sweepd::core
