#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/enum_print.hpp"
#include "core/json_text.hpp"
#include "core/name_pool.hpp"
#include "core/time.hpp"

namespace sweepd::core {

/// Run states. `success` and `failed` are the worker's own word and final; `crashed` and
/// `timeout` are sweepd's judgement and can be corrected by the worker's late completion (and a
/// silence timeout revived by a heartbeat).
/// One byte: a run and each of its transitions carry a few of these.
enum class run_state : std::uint8_t { initializing, running, success, failed, crashed, timeout };
inline constexpr run_state all_run_states[] = {run_state::initializing, run_state::running,
                                               run_state::success,      run_state::failed,
                                               run_state::crashed,      run_state::timeout};

std::string_view to_string(run_state s);
/// Parses a wire name; nullopt for anything else.
std::optional<run_state> parse_run_state(std::string_view name);
/// success, failed: the worker's own report, never changed afterwards.
bool is_final(run_state s);
/// crashed, timeout: sweepd gave up on the run; the worker's late report still corrects it.
bool is_correctable(run_state s);
struct run_record;
/// A run whose end is sweepd's judgement, not its worker's word: crashed, timeout, or adopted by
/// reconcile. A late complete/fail from the worker corrects it.
bool is_correctable(const run_record& r);
/// Final or correctable: the run is an observation for the optimizer.
bool is_terminal(run_state s);
/// failed, crashed, timeout count as failures for the optimizer.
bool is_failure(run_state s);

/// Why a transition happened (DESIGN §2).
enum class transition_reason : std::uint8_t {
  registered,
  started,
  completed,
  worker_failed,
  process_exited,
  heartbeat_timeout,
  max_runtime,
  stalled,
  revived,
  late_completed,
  late_failed,
  // Reconcile adopted a run that never talked to sweepd, judging from what W&B shows.
  reconciled_objective,      // its summary has an objective: success
  reconciled_wandb_crashed,  // W&B says crashed
  reconciled_wandb_failed,   // W&B says failed
  reconciled_wandb_killed,   // W&B says killed
  reconciled_no_objective,   // W&B says finished, but there is no objective
  reconciled_stale,          // W&B's heartbeat is older than reconcile.stale_after
};
/// How many reasons there are (tables indexed by reason); reconciled_stale must stay the last.
inline constexpr std::size_t transition_reason_count =
    static_cast<std::size_t>(transition_reason::reconciled_stale) + 1;

/// True for the reasons reconcile adopts a run with: sweepd's judgement, which the worker's own
/// late report corrects.
bool is_reconciled(transition_reason r);

std::string_view to_string(transition_reason r);
std::optional<transition_reason> parse_transition_reason(std::string_view name);

/// One state change, as journaled, logged and sent to W&B.
struct transition {
  std::string run;
  std::optional<run_state> from;  // nullopt for the registration that created the run
  run_state to = run_state::initializing;
  transition_reason reason = transition_reason::registered;
  wall_time at{};
  std::optional<double> runtime_s;  // terminal transitions: seconds since register
  std::optional<double> objective;
  std::optional<double> cost;
  std::optional<std::string> error;
  std::optional<double> late_by_s;  // late completions: seconds since the timeout
};

/// Transitions kept per run: the registration and the newest ones. A run that flaps (timeout,
/// revived, timeout, …) would otherwise grow its history, its `show` and its journal rows forever.
inline constexpr std::size_t max_history = 256;

struct run_record;
/// Runs by their earliest deadline, the supervisor's index (see run_record::deadline_slot).
using deadline_index = std::set<std::pair<mono_time, run_record*>>;

/// Everything sweepd knows about one run.
struct run_record {
  // Identity, fixed at register.
  std::string id;
  // Shared by the many runs of a sweep (interned by the supervisor), not a copy each.
  shared_name sweep;
  shared_name entity;
  shared_name project;
  json_text suggestion;  // null when not given
  std::uint32_t owner_uid = 0;
  std::string owner_principal;  // a remote owner's principal; empty when the owner is a local uid
  bool watch_peer = false;
  std::int32_t peer_pid = 0;  // from SO_PEERCRED at register, never from a message
  /// Which process `peer_pid` was: its start time (clock ticks since boot) and the boot it ran
  /// in, so that after a restart a reused pid is not taken for the worker. 0/empty: unknown.
  std::uint64_t peer_start_time = 0;
  shared_name peer_boot_id;  // the same for every run registered since the machine booted

  run_state state = run_state::initializing;
  transition_reason reason = transition_reason::registered;

  // Liveness and deadlines (monotonic; a zero duration turns a limit off).
  mono_time registered_mono{};
  wall_time registered_wall{};
  mono_time last_seen{};
  mono_clock::duration heartbeat_timeout{};
  mono_clock::duration max_runtime{};
  mono_clock::duration stall_timeout{};
  std::optional<double> progress;
  mono_time progress_changed_at{};
  mono_time deadline = mono_time::max();  // the earliest active deadline, max() when none
  // This run's entry in the supervisor's deadline index while `deadline` is not max(): a heartbeat
  // or a timeout re-indexes the run without searching the index for it.
  deadline_index::iterator deadline_slot{};
  mono_time given_up_at{};  // when sweepd gave up on the run (`timeout` or `crashed`)
  mono_time not_before{};   // no deadline fires earlier (the grace a restart gives live runs)

  // Outcome.
  std::optional<double> objective;
  std::optional<double> cost;
  std::optional<std::string> error;
  std::optional<double> runtime_s;
  std::optional<double> late_by_s;
  std::optional<wall_time> finished_wall;

  std::vector<transition> history;
};

/// How messages and records name an owner or caller: "uid 1000" or "token:NAME".
std::string caller_name(std::uint32_t uid, std::string_view principal);

/// The cost an observation reports: the given cost, else the runtime; either at least 1 ms,
/// since Protein loaders take log(cost).
double observation_cost(const run_record& run);

/// The fields that every JSON form of a run (the `show` reply, the journal's record) writes under
/// the same names in the same form: its sweep, settings, state and outcome. One encoder, so that
/// a field added to the record is added to both forms alike.
void put_run_fields(nlohmann::json& j, const run_record& run);

/// JSON views of a run: the one-line summary of `list` and the full record of `show`.
nlohmann::json run_summary_json(const run_record& run, instant now);
nlohmann::json run_detail_json(const run_record& run, instant now);
nlohmann::json transition_json(const transition& t);
/// The entry a Protein loader needs for one terminal run, with when it finished.
nlohmann::json observation_json(const run_record& run);
/// `detail` (run_detail_json) or an observation without what only the run's and its sweep's
/// owners may read: the suggestion becomes null and errors are removed; "withheld" says so.
void withhold_private_fields(nlohmann::json& j);

}  // namespace sweepd::core
