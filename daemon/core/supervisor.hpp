#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/errors.hpp"
#include "core/name_pool.hpp"
#include "core/run.hpp"
#include "core/time.hpp"

namespace sweepd::core {

/// Who sent a request: from SO_PEERCRED on the local socket, from the verified token on the remote
/// one; never from the message.
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
  /// A remote caller's principal (the name its token stands for); empty for a local caller, who
  /// is its uid. Ownership compares callers: a principal owns only what it registered.
  std::string_view principal;
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
  json_text suggestion;  // null when absent
  bool watch_peer = false;
  std::optional<double> heartbeat_timeout_s;
  std::optional<double> max_runtime_s;

  friend bool operator==(const register_params&, const register_params&) = default;
};

struct heartbeat_params {
  std::string run;
  std::optional<double> progress;
  std::optional<double> timeout_s;

  friend bool operator==(const heartbeat_params&, const heartbeat_params&) = default;
};

struct complete_params {
  std::string run;
  std::optional<double> objective;
  std::optional<double> cost;

  friend bool operator==(const complete_params&, const complete_params&) = default;
};

struct fail_params {
  std::string run;
  std::string error;

  friend bool operator==(const fail_params&, const fail_params&) = default;
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

/// A change one operation would make to one run: the transition it records (from, to, reason,
/// time, figures) and what else it sets. Computed without touching anything (plan_*); apply()
/// makes it, once it is stored. Two changes of one run are planned and applied in turn.
struct run_change : transition {
  /// A registration or adoption: the run to create (identity, limits, clocks), no history yet.
  std::optional<run_record> created;
  /// complete/fail/adopt: the run's objective, given cost and error become these.
  bool result_given = false;
  std::optional<double> given_cost;
  /// start/heartbeat: the run was heard from; its silence counts from `at_mono`.
  bool heard = false;
  std::optional<mono_clock::duration> heartbeat_timeout;  // a heartbeat's timeout_s
  std::optional<double> progress;                         // a heartbeat's progress, advanced
  mono_time at_mono{};
  /// The run the change was planned against (none for `created`), so that storing and applying
  /// it need not look the run up again; trusted only while no run has been forgotten since
  /// (supervisor::target_of).
  const run_record* target = nullptr;
  std::uint64_t target_epoch = 0;
};

/// What an operation decided. Refused: `err`. Otherwise `run` is the run as it is (nullptr for
/// one a change creates) and `change`, when set, is what must be stored and then applied; an
/// operation with nothing to store (a heartbeat) has taken effect already.
struct outcome {
  error err;
  const run_record* run = nullptr;
  std::optional<run_change> change;

  bool ok() const { return err.code == error_code::ok; }
  /// The state a reply reports: the change's, else the run's.
  run_state state() const { return change ? change->to : run->state; }
};

/// The part of a run a change sets, as it will be once the change is applied (the journal stores
/// exactly this with each transition).
struct run_state_fields {
  run_state state = run_state::initializing;
  transition_reason reason = transition_reason::registered;
  std::optional<wall_time> finished_wall;
  std::optional<double> objective;
  std::optional<double> cost;  // as the worker gave it
  std::optional<std::string> error;
  std::optional<double> runtime_s;
  std::optional<double> late_by_s;
  std::optional<double> progress;
  mono_clock::duration heartbeat_timeout{};
};
/// `current`'s fields after `c` (for a created run, `current` is `*c.created`).
run_state_fields fields_after(const run_record& current, const run_change& c);

/// The run state machines and their deadlines. Pure: every call takes `now`; nothing here reads
/// a clock or does I/O. One ordered index holds each run's earliest deadline, so a heartbeat
/// costs a hash lookup plus an O(log n) re-index, and expiry visits only due runs.
///
/// Changes are planned, then stored by the caller, then applied: plan_* change nothing but the
/// liveness of runs they touch without a transition (a heartbeat is never stored), and apply()
/// makes a planned change. Nothing is ever undone: a change that cannot be stored is dropped.
class supervisor {
 public:
  explicit supervisor(supervisor_limits limits);

  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  outcome plan_register(const register_params& p, const caller& who, instant now);
  outcome plan_start(std::string_view run, const caller& who, instant now);
  outcome plan_heartbeat(const heartbeat_params& p, const caller& who, instant now);
  outcome plan_complete(const complete_params& p, const caller& who, instant now);
  outcome plan_fail(const fail_params& p, const caller& who, instant now);
  /// A run reconcile adopts as terminal, with one transition carrying the reconcile reason and a
  /// positive cost. Its worker's late complete/fail still corrects it.
  outcome plan_adopt(const adoption& a, const caller& who, instant now);
  /// The watched process of `run` exited: `crashed` if it was still initializing or running.
  outcome plan_process_exited(std::string_view run, instant now);
  /// Timeouts of runs whose deadline is at or before `now`, earliest first, at most `limit` (so
  /// a caller can serve other work between batches).
  std::vector<run_change> plan_expiry(
      instant now, std::size_t limit = std::numeric_limits<std::size_t>::max()) const;
  /// Runs listed by due_runs(): valid while no run has been forgotten since (is_current).
  struct due_listing {
    std::vector<const run_record*> runs;
    std::uint64_t epoch = 0;
  };
  /// The runs whose deadline is at or before `now`, at most `limit` of the earliest, in id order:
  /// the order the journal keeps runs in, so that timing out a slice of them writes neighbouring
  /// pages rather than one page per run (deadlines fall in no particular order of ids). Pointers,
  /// not ids: a storm lists 100 000 runs, and copying, sorting and looking up their ids again was
  /// a tenth of its time.
  due_listing due_runs(mono_time now, std::size_t limit) const;
  /// False once a run was forgotten (prune) since `listed` was made: its pointers may dangle.
  bool is_current(const due_listing& listed) const { return listed.epoch == forgotten_; }
  /// The timeouts of those of `runs` (from a listing still current) still due at `now`, in that
  /// order: since they were listed, a run may have reported, been revived or timed out.
  std::vector<run_change> plan_expiry_of(std::span<const run_record* const> runs,
                                         instant now) const;
  /// Makes a planned change (after it was stored); the run as it is now.
  const run_record& apply(run_change c);

  // Plan and apply at once, for callers that store nothing (tests, tools). The outcome's `run` is
  // the run after the change.
  outcome register_run(const register_params& p, const caller& who, instant now);
  outcome start(std::string_view run, const caller& who, instant now);
  outcome heartbeat(const heartbeat_params& p, const caller& who, instant now);
  outcome complete(const complete_params& p, const caller& who, instant now);
  outcome fail(const fail_params& p, const caller& who, instant now);
  outcome adopt(const adoption& a, const caller& who, instant now);
  outcome process_exited(std::string_view run, instant now);
  std::vector<transition> expire(instant now,
                                 std::size_t limit = std::numeric_limits<std::size_t>::max());

  /// The earliest deadline of any run, nullopt when no run has one. "Wake me at T".
  std::optional<mono_time> next_deadline() const;

  /// Puts back a run read from the journal at startup. A live run starts afresh: its silence and
  /// stall clocks count from `now`, and no deadline of it fires within its heartbeat timeout, so a
  /// restart never mass-times-out runs. The run as restored; nullptr (and nothing changed) if a
  /// run with that id is already known.
  const run_record* restore(run_record run, instant now);
  /// Room for `runs` runs in all, so that restoring them does not grow the index step by step.
  void reserve(std::size_t runs) { runs_.reserve(runs); }
  /// Forgets terminal runs that finished before `cutoff`; returns their ids.
  std::vector<std::string> prune(wall_time cutoff);

  const run_record* find(std::string_view run) const;
  /// The run `c` changes: the one it was planned against when no run has been forgotten since
  /// (a timeout is planned, stored and applied with one lookup, not four), else found by id;
  /// nullptr when there is none.
  const run_record* target_of(const run_change& c) const;
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
  using deadline_key = deadline_index::value_type;

  run_record* lookup(std::string_view run);
  /// Finds a run the caller may change, or sets the error of `o`.
  run_record* authorized(std::string_view run, const caller& who, outcome& o);

  /// Applies `o.change` when there is one (the plan-and-apply-at-once calls).
  outcome settle(outcome o);
  /// A change of `r` to `to` for `why`, at `now` (runtime set for terminal states).
  run_change change_of(const run_record& r, run_state to, transition_reason why, instant now) const;
  /// A change that ends a run, with its runtime and positive cost; from a state sweepd gave up
  /// on, `late_why` and how late it is. `result` sets the objective, given cost and error.
  run_change ending(const run_record& r, run_state to, transition_reason why,
                    transition_reason late_why, instant now, bool result,
                    std::optional<double> objective, std::optional<double> given_cost,
                    std::optional<std::string> error) const;
  void refresh_liveness(run_record& r, instant now);
  void reindex(run_record& r);
  mono_time earliest_deadline(const run_record& r) const;
  /// The reason a deadline fired (the earliest of silence, max_runtime, stall).
  transition_reason due_reason(const run_record& r) const;
  /// The timeout of a run that is due.
  run_change timeout_of(const run_record& r, instant now) const;

  supervisor_limits limits_;
  /// Who owns a sweep, and how many runs keep it alive.
  struct sweep_info {
    std::uint32_t owner_uid = 0;
    std::string owner_principal;
    wall_time first_registered{};
    std::size_t runs = 0;
  };
  /// Counts a run in its sweep; the earliest registered run's owner owns the sweep.
  void join_sweep(const run_record& r);
  /// Whether `sweep` has an owner other than `who`.
  bool owned_by_another(std::string_view sweep, const caller& who) const;
  void leave_sweep(const run_record& r);

  /// The one copy of each sweep, entity, project and boot id that runs share.
  name_pool names_;
  run_map runs_;
  std::unordered_map<std::string, sweep_info, string_hash, std::equal_to<>> sweeps_;
  deadline_index deadlines_;
  /// Counts the runs forgotten (prune), which ends the trust in planned changes' targets.
  std::uint64_t forgotten_ = 0;
  std::array<std::size_t, std::size(all_run_states)> counts_{};
};

}  // namespace sweepd::core
