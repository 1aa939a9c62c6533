#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/errors.hpp"
#include "core/run.hpp"
#include "core/time.hpp"

namespace sweepd::core {

/// Who sent a request: from SO_PEERCRED, never from the message.
struct caller {
  constexpr caller() = default;
  constexpr caller(std::uint32_t uid_, std::int32_t pid_, bool admin_,
                   std::uint64_t pid_start_time_ = 0, std::string_view boot_id_ = {})
      : uid(uid_), pid(pid_), admin(admin_), pid_start_time(pid_start_time_), boot_id(boot_id_) {}

  std::uint32_t uid = 0;
  std::int32_t pid = 0;
  bool admin = false;  // root or socket.admin_uids: may act on any run
  /// The peer process's start time (clock ticks since boot) and the boot id, read when the
  /// connection was accepted; stored with a watch_peer run. 0/empty: unknown.
  std::uint64_t pid_start_time = 0;
  std::string_view boot_id;
};

/// Defaults applied to runs that do not set their own limits (config `timeouts`, `state`).
struct supervisor_limits {
  double heartbeat_timeout_s = 300;
  double max_runtime_s = 0;  // 0 = off
  double stall_timeout_s = 0;
  std::uint64_t max_runs = 1000000;
  std::string default_entity;
  std::string default_project;
};

struct register_params {
  std::string run;
  std::optional<std::string> sweep;
  std::optional<std::string> entity;
  std::optional<std::string> project;
  nlohmann::json suggestion;  // null when absent
  bool watch_peer = false;
  std::optional<double> heartbeat_timeout_s;
  std::optional<double> max_runtime_s;
};

struct heartbeat_params {
  std::string run;
  std::optional<double> progress;
  std::optional<double> timeout_s;
};

struct complete_params {
  std::string run;
  std::optional<double> objective;
  std::optional<double> cost;
};

struct fail_params {
  std::string run;
  std::string error;
};

/// A run reconcile takes over from what W&B shows: it never talked to sweepd.
struct adoption {
  std::string run;
  std::string sweep;
  std::string entity;
  std::string project;
  run_state to = run_state::timeout;  // terminal
  transition_reason why = transition_reason::reconciled_stale;
  std::optional<wall_time> created_at;  // W&B's createdAt: when it registered, as far as known
  double runtime_s = 0;                 // heartbeatAt - createdAt
  std::optional<double> objective;
  std::optional<double> cost;
  std::optional<std::string> error;
};

/// What an operation did. On success `run` points at the run (valid until the next mutation);
/// `change` is set when a transition happened and carries what undo() needs.
struct outcome {
  error err;
  const run_record* run = nullptr;
  std::optional<transition> change;
  /// The run as it was before the transition; nullopt when the transition created it.
  std::optional<run_record> before;

  bool ok() const { return err.code == error_code::ok; }
};

/// The run state machines of DESIGN §2 and their deadlines. Pure: every call takes `now`;
/// nothing here reads a clock or does I/O. One ordered index holds each run's earliest deadline,
/// so a heartbeat costs a hash lookup plus an O(log n) re-index, and expiry visits only due runs.
class supervisor {
 public:
  explicit supervisor(supervisor_limits limits);

  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  outcome register_run(const register_params& p, const caller& who, instant now);
  outcome start(std::string_view run, const caller& who, instant now);
  outcome heartbeat(const heartbeat_params& p, const caller& who, instant now);
  outcome complete(const complete_params& p, const caller& who, instant now);
  outcome fail(const fail_params& p, const caller& who, instant now);
  /// Journals a run reconcile adopted as terminal, with one transition carrying the reconcile
  /// reason and a positive cost. Its worker's late complete/fail still corrects it.
  outcome adopt(const adoption& a, const caller& who, instant now);
  /// The watched process of `run` exited: `crashed` if it was still initializing or running.
  outcome process_exited(std::string_view run, instant now);

  /// Marks runs whose deadline is at or before `now` as `timeout`, earliest first, at most
  /// `limit` of them (so a caller can serve other work between batches); returns the transitions.
  std::vector<transition> expire(instant now,
                                 std::size_t limit = std::numeric_limits<std::size_t>::max());
  /// Like expire(), with each transition's outcome, so that a batch can be undone if it cannot be
  /// stored.
  std::vector<outcome> expire_outcomes(instant now,
                                       std::size_t limit = std::numeric_limits<std::size_t>::max());
  /// The earliest deadline of any run, nullopt when no run has one. "Wake me at T".
  std::optional<mono_time> next_deadline() const;

  /// Reverts the transition of a successful outcome (used when it could not be stored).
  void undo(const outcome& o);

  /// Puts back a run read from the journal at startup. A live run starts afresh: its silence and
  /// stall clocks count from `now`, and no deadline of it fires within its heartbeat timeout, so a
  /// restart never mass-times-out runs. False if a run with that id is already known.
  bool restore(run_record run, instant now);
  /// Forgets terminal runs that finished before `cutoff`; returns their ids.
  std::vector<std::string> prune(wall_time cutoff);

  const run_record* find(std::string_view run) const;
  /// The uid that owns `sweep` (the owner of its first registered run); nullopt for no sweep.
  std::optional<std::uint32_t> sweep_owner(std::string_view sweep) const;
  /// Whether `who` may read the run's suggestion and error: its owner, its sweep's owner, or an
  /// admin. Others see its state and figures only.
  bool may_read(const run_record& run, const caller& who) const;
  /// The run if `who` may change it (its owner, or an admin); else the outcome's error says why
  /// (unknown_run, forbidden). Changes nothing.
  outcome may_change(std::string_view run, const caller& who);
  std::size_t size() const { return runs_.size(); }
  /// Number of runs per state, indexed by run_state.
  const std::array<std::size_t, std::size(all_run_states)>& counts() const { return counts_; }
  /// Visits every run (unordered).
  void for_each(const std::function<void(const run_record&)>& visit) const;

  /// New defaults for runs registered from now on (config reload).
  void set_limits(supervisor_limits limits) { limits_ = std::move(limits); }
  const supervisor_limits& limits() const { return limits_; }

 private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using run_map = std::unordered_map<std::string, run_record, string_hash, std::equal_to<>>;
  using deadline_key = std::pair<mono_time, run_record*>;

  run_record* lookup(std::string_view run);
  /// Finds a run the caller may change, or sets the error of `o`.
  run_record* authorized(std::string_view run, const caller& who, outcome& o);

  /// Records a transition: history, counters, and the outcome's copy.
  void apply(run_record& r, run_state to, transition_reason why, instant now, outcome& o,
             transition extra = {});
  /// Moves a run to a terminal state with its runtime and cost; from `timeout`, with `late_why`
  /// and how late it is.
  void end_run(run_record& r, run_state to, transition_reason why, transition_reason late_why,
               instant now, outcome& o, transition extra = {});
  void refresh_liveness(run_record& r, instant now);
  void reindex(run_record& r);
  mono_time earliest_deadline(const run_record& r) const;
  /// The reason a deadline fired (the earliest of silence, max_runtime, stall).
  transition_reason due_reason(const run_record& r) const;

  supervisor_limits limits_;
  /// Who owns a sweep, and how many runs keep it alive.
  struct sweep_info {
    std::uint32_t owner_uid = 0;
    wall_time first_registered{};
    std::size_t runs = 0;
  };
  /// Counts a run in its sweep; the earliest registered run's owner owns the sweep.
  void join_sweep(const run_record& r);
  void leave_sweep(const run_record& r);

  run_map runs_;
  std::unordered_map<std::string, sweep_info, string_hash, std::equal_to<>> sweeps_;
  std::set<deadline_key> deadlines_;
  std::array<std::size_t, std::size(all_run_states)> counts_{};
};

}  // namespace sweepd::core
