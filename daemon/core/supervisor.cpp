#include "core/supervisor.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sweepd::core {

namespace {

std::size_t index_of(run_state s) { return static_cast<std::size_t>(s); }

bool can_revive(const run_record& r, mono_time now) {
  if (r.state != run_state::timeout || r.reason != transition_reason::heartbeat_timeout) {
    return false;
  }
  // A run already past its max_runtime stays given up on rather than reviving to time out again.
  return r.max_runtime <= mono_clock::duration::zero() || now < r.registered_mono + r.max_runtime;
}

bool is_live(run_state s) { return s == run_state::initializing || s == run_state::running; }

/// Whether `who` is the caller (uid, principal): a remote caller by its principal, a local one by
/// its uid. A uid never matches a principal's run, whatever uid that run records.
bool is_caller(const caller& who, std::uint32_t uid, std::string_view principal) {
  return who.principal.empty() ? principal.empty() && who.uid == uid : who.principal == principal;
}

bool owns(const caller& who, const run_record& r) {
  return is_caller(who, r.owner_uid, r.owner_principal);
}

std::string name_of(const caller& who) { return caller_name(who.uid, who.principal); }

error conflict_already(const run_record& r) {
  return {error_code::conflict, fmt::format("run '{}' is already {}", r.id, to_string(r.state))};
}

}  // namespace

supervisor::supervisor(supervisor_limits limits) : limits_(std::move(limits)) {}

run_record* supervisor::lookup(std::string_view run) {
  auto it = runs_.find(run);
  return it == runs_.end() ? nullptr : &it->second;
}

const run_record* supervisor::find(std::string_view run) const {
  auto it = runs_.find(run);
  return it == runs_.end() ? nullptr : &it->second;
}

const run_record* supervisor::target_of(const run_change& c) const {
  if (c.target != nullptr && c.target_epoch == forgotten_) return c.target;
  return find(c.run);
}

std::optional<std::uint32_t> supervisor::sweep_owner(std::string_view sweep) const {
  auto it = sweeps_.find(sweep);
  if (it == sweeps_.end()) return std::nullopt;
  return it->second.owner_uid;
}

bool supervisor::owned_by_another(std::string_view sweep, const caller& who) const {
  auto it = sweeps_.find(sweep);
  return it != sweeps_.end() && !is_caller(who, it->second.owner_uid, it->second.owner_principal);
}

bool supervisor::may_read(const run_record& run, const caller& who) const {
  if (who.admin || owns(who, run)) return true;
  return !run.sweep.empty() && sweeps_.contains(run.sweep.str()) &&
         !owned_by_another(run.sweep.str(), who);
}

void supervisor::join_sweep(const run_record& r) {
  if (r.sweep.empty()) return;
  auto [it, created] = sweeps_.try_emplace(r.sweep.str());
  sweep_info& info = it->second;
  if (created || r.registered_wall < info.first_registered) {
    info.owner_uid = r.owner_uid;
    info.owner_principal = r.owner_principal;
    info.first_registered = r.registered_wall;
  }
  ++info.runs;
}

void supervisor::leave_sweep(const run_record& r) {
  auto it = sweeps_.find(r.sweep.str());
  if (it == sweeps_.end()) return;
  if (--it->second.runs == 0) sweeps_.erase(it);
}

void supervisor::for_each(const std::function<void(const run_record&)>& visit) const {
  for (const auto& [id, r] : runs_) visit(r);
}

run_record* supervisor::authorized(std::string_view run, const caller& who, outcome& o) {
  run_record* r = lookup(run);
  if (r == nullptr) {
    o.err = {error_code::unknown_run, fmt::format("no run '{}'", run)};
    return nullptr;
  }
  if (!who.admin && !owns(who, *r)) {
    o.err = {error_code::forbidden,
             fmt::format("run '{}' belongs to {}; {} may not change it", r->id,
                         caller_name(r->owner_uid, r->owner_principal), name_of(who))};
    return nullptr;
  }
  o.run = r;
  return r;
}

outcome supervisor::may_change(std::string_view run, const caller& who) {
  outcome o;
  authorized(run, who, o);
  return o;
}

mono_time supervisor::earliest_deadline(const run_record& r) const {
  if (!is_live(r.state)) return mono_time::max();
  mono_time earliest = mono_time::max();
  if (r.heartbeat_timeout > mono_clock::duration::zero()) {
    earliest = std::min(earliest, r.last_seen + r.heartbeat_timeout);
  }
  if (r.max_runtime > mono_clock::duration::zero()) {
    earliest = std::min(earliest, r.registered_mono + r.max_runtime);
  }
  if (r.stall_timeout > mono_clock::duration::zero() && r.progress) {
    earliest = std::min(earliest, r.progress_changed_at + r.stall_timeout);
  }
  if (earliest != mono_time::max()) earliest = std::max(earliest, r.not_before);
  return earliest;
}

transition_reason supervisor::due_reason(const run_record& r) const {
  // Ties go to the reasons that cannot be revived: a run over its runtime stays over it.
  if (r.max_runtime > mono_clock::duration::zero() &&
      r.registered_mono + r.max_runtime <= r.deadline) {
    return transition_reason::max_runtime;
  }
  if (r.stall_timeout > mono_clock::duration::zero() && r.progress &&
      r.progress_changed_at + r.stall_timeout <= r.deadline) {
    return transition_reason::stalled;
  }
  return transition_reason::heartbeat_timeout;
}

void supervisor::reindex(run_record& r) {
  const mono_time next = earliest_deadline(r);
  if (next == r.deadline) return;
  // Through the run's own slot, and with the end as the hint: a heartbeat's new deadline is
  // usually the latest of all, which makes both steps constant time rather than two searches.
  if (r.deadline != mono_time::max()) deadlines_.erase(r.deadline_slot);
  r.deadline = next;
  if (next != mono_time::max()) r.deadline_slot = deadlines_.insert(deadlines_.end(), {next, &r});
}

void supervisor::refresh_liveness(run_record& r, instant now) {
  r.last_seen = now.mono;
  reindex(r);
}

run_state_fields fields_after(const run_record& current, const run_change& c) {
  run_state_fields f;
  f.state = c.to;
  f.reason = c.reason;
  if (is_terminal(c.to)) {
    f.finished_wall = c.at;
    f.runtime_s = c.runtime_s;
  }  // a revived run is live again: no runtime or finish time until it ends once more
  f.objective = c.result_given ? c.objective : current.objective;
  f.cost = c.result_given ? c.given_cost : current.cost;
  f.error = c.result_given ? c.error : current.error;
  f.late_by_s = c.late_by_s ? c.late_by_s : current.late_by_s;
  f.progress = c.progress ? c.progress : current.progress;
  f.heartbeat_timeout = c.heartbeat_timeout.value_or(current.heartbeat_timeout);
  return f;
}

run_change supervisor::change_of(const run_record& r, run_state to, transition_reason why,
                                 instant now) const {
  run_change c;
  c.run = r.id;
  c.target = &r;
  c.target_epoch = forgotten_;
  c.from = r.history.empty() ? std::nullopt : std::optional<run_state>(r.state);
  c.to = to;
  c.reason = why;
  c.at = now.wall;
  c.at_mono = now.mono;
  if (is_terminal(to)) c.runtime_s = seconds_between(r.registered_mono, now.mono);
  return c;
}

run_change supervisor::ending(const run_record& r, run_state to, transition_reason why,
                              transition_reason late_why, instant now, bool result,
                              std::optional<double> objective, std::optional<double> given_cost,
                              std::optional<std::string> error) const {
  const bool late = is_correctable(r);
  run_change c = change_of(r, to, late ? late_why : why, now);
  if (late) c.late_by_s = seconds_between(r.given_up_at, now.mono);
  c.result_given = result;
  if (result) {
    c.objective = objective;
    c.given_cost = given_cost;
    c.error = std::move(error);
  } else {
    c.error = r.error;  // the run's own, for the log line and W&B
  }
  // The cost always travels with a terminal transition: the runtime when the worker gave none,
  // at least 1 ms (Protein loaders take log(cost)).
  const std::optional<double> cost = result ? given_cost : r.cost;
  c.cost = std::max(cost.value_or(c.runtime_s.value_or(0.0)), 0.001);
  return c;
}

const run_record& supervisor::apply(run_change c) {
  run_record* r = nullptr;
  if (c.created) {
    r = &runs_.try_emplace(c.run, std::move(*c.created)).first->second;
    c.created.reset();
    r->deadline = mono_time::max();  // not in the index yet, whatever the plan's copy said
    join_sweep(*r);
  } else {
    r = const_cast<run_record*>(target_of(c));  // the runs are this supervisor's own
    if (r == nullptr) throw std::logic_error("apply: no run '" + c.run + "'");  // cannot happen
  }
  const run_state_fields f = fields_after(*r, c);
  if (!r->history.empty()) --counts_[index_of(r->state)];
  ++counts_[index_of(f.state)];
  r->state = f.state;
  r->reason = f.reason;
  r->finished_wall = f.finished_wall;
  r->runtime_s = f.runtime_s;
  r->objective = f.objective;
  r->cost = f.cost;
  r->error = f.error;
  r->late_by_s = f.late_by_s;
  if (c.progress) r->progress_changed_at = c.at_mono;
  r->progress = f.progress;
  r->heartbeat_timeout = f.heartbeat_timeout;
  if (c.heard) r->last_seen = c.at_mono;
  if (is_correctable(f.state) || is_reconciled(f.reason)) r->given_up_at = c.at_mono;
  r->history.push_back(static_cast<transition&&>(std::move(c)));
  if (r->history.size() > max_history) r->history.erase(r->history.begin() + 1);
  reindex(*r);
  return *r;
}

outcome supervisor::settle(outcome o) {
  if (o.change) o.run = &apply(*o.change);
  return o;
}

outcome supervisor::plan_register(const register_params& p, const caller& who, instant now) {
  outcome o;
  const std::string& entity = p.entity ? *p.entity : limits_.default_entity;
  const std::string& project = p.project ? *p.project : limits_.default_project;
  if (run_record* existing = lookup(p.run)) {
    if (!who.admin && !owns(who, *existing)) {
      o.err = {error_code::forbidden,
               fmt::format("run '{}' belongs to {}", p.run,
                           caller_name(existing->owner_uid, existing->owner_principal))};
      return o;
    }
    if (existing->entity != entity || existing->project != project) {
      o.err = {error_code::conflict,
               fmt::format("run '{}' is registered under '{}/{}', not '{}/{}'", p.run,
                           existing->entity.str(), existing->project.str(), entity, project)};
      return o;
    }
    if (is_terminal(existing->state)) {
      o.err = conflict_already(*existing);
      return o;
    }
    refresh_liveness(*existing, now);  // registering again is a sign of life, never stored
    o.run = existing;
    return o;
  }
  if (p.sweep && !who.admin && owned_by_another(*p.sweep, who)) {
    const sweep_info& owner = sweeps_.find(*p.sweep)->second;
    o.err = {error_code::forbidden,
             fmt::format("sweep '{}' belongs to {}; {} may not add runs to it", *p.sweep,
                         caller_name(owner.owner_uid, owner.owner_principal), name_of(who))};
    return o;
  }
  if (runs_.size() >= limits_.max_runs) {
    o.err = {error_code::busy,
             fmt::format("sweepd tracks {} runs, the limit (state.max_runs)", runs_.size())};
    return o;
  }
  run_record r;
  r.id = p.run;
  r.sweep = names_.intern(p.sweep.value_or(""));
  r.entity = names_.intern(entity);
  r.project = names_.intern(project);
  r.suggestion = p.suggestion;
  r.owner_uid = who.uid;
  r.owner_principal = std::string(who.principal);
  r.watch_peer = p.watch_peer;
  r.peer_pid = p.watch_peer ? who.pid : 0;
  if (p.watch_peer) {
    r.peer_start_time = who.pid_start_time;
    r.peer_boot_id = names_.intern(who.boot_id);
  }
  r.registered_mono = now.mono;
  r.registered_wall = now.wall;
  r.last_seen = now.mono;
  r.heartbeat_timeout = to_duration(p.heartbeat_timeout_s.value_or(limits_.heartbeat_timeout_s));
  r.max_runtime = to_duration(p.max_runtime_s.value_or(limits_.max_runtime_s));
  r.stall_timeout = to_duration(limits_.stall_timeout_s);
  run_change c = change_of(r, run_state::initializing, transition_reason::registered, now);
  c.created = std::move(r);
  o.change = std::move(c);
  return o;
}

outcome supervisor::plan_start(std::string_view run, const caller& who, instant now) {
  outcome o;
  run_record* r = authorized(run, who, o);
  if (r == nullptr) return o;
  if (r->state == run_state::initializing || can_revive(*r, now.mono)) {
    const auto why = r->state == run_state::initializing ? transition_reason::started
                                                         : transition_reason::revived;
    run_change c = change_of(*r, run_state::running, why, now);
    c.heard = true;
    o.change = std::move(c);
  } else if (r->state == run_state::running) {
    refresh_liveness(*r, now);
  }
  // Final runs and timeouts that cannot be revived answer with their state, unchanged.
  return o;
}

outcome supervisor::plan_heartbeat(const heartbeat_params& p, const caller& who, instant now) {
  outcome o;
  run_record* r = authorized(p.run, who, o);
  if (r == nullptr) return o;
  const bool revive = can_revive(*r, now.mono);
  if (!is_live(r->state) && !revive) return o;
  const bool advanced = p.progress && (!r->progress || *p.progress > *r->progress);
  if (revive) {
    run_change c = change_of(*r, run_state::running, transition_reason::revived, now);
    c.heard = true;
    if (p.timeout_s) c.heartbeat_timeout = to_duration(*p.timeout_s);
    if (advanced) c.progress = p.progress;
    o.change = std::move(c);
    return o;
  }
  // The hot path: no transition, nothing stored; liveness takes effect at once.
  if (p.timeout_s) r->heartbeat_timeout = to_duration(*p.timeout_s);
  if (advanced) {
    r->progress = p.progress;
    r->progress_changed_at = now.mono;
  }
  refresh_liveness(*r, now);
  return o;
}

outcome supervisor::plan_complete(const complete_params& p, const caller& who, instant now) {
  outcome o;
  const run_record* r = authorized(p.run, who, o);
  if (r == nullptr) return o;
  // The worker's own success or failure is final; a run sweepd gave up on, or adopted, is not.
  const bool final_word = is_final(r->state) && !is_correctable(*r);
  if (final_word && r->state == run_state::success) {
    if (r->objective != p.objective || r->cost != p.cost) o.err = conflict_already(*r);
    return o;  // an identical retry: ok, nothing new
  }
  if (final_word) {
    o.err = conflict_already(*r);
    return o;
  }
  o.change =
      ending(*r, run_state::success, transition_reason::completed,
             transition_reason::late_completed, now, true, p.objective, p.cost, std::nullopt);
  return o;
}

outcome supervisor::plan_fail(const fail_params& p, const caller& who, instant now) {
  outcome o;
  const run_record* r = authorized(p.run, who, o);
  if (r == nullptr) return o;
  const bool final_word = is_final(r->state) && !is_correctable(*r);
  if (final_word && r->state == run_state::failed) {
    if (r->error != p.error) o.err = conflict_already(*r);
    return o;
  }
  if (final_word) {
    o.err = conflict_already(*r);
    return o;
  }
  o.change = ending(*r, run_state::failed, transition_reason::worker_failed,
                    transition_reason::late_failed, now, true, std::nullopt, std::nullopt, p.error);
  return o;
}

outcome supervisor::plan_adopt(const adoption& a, const caller& who, instant now) {
  outcome o;
  if (lookup(a.run) != nullptr) {
    o.err = {error_code::conflict, fmt::format("run '{}' is already known to sweepd", a.run)};
    return o;
  }
  if (runs_.size() >= limits_.max_runs) {
    o.err = {error_code::busy,
             fmt::format("sweepd tracks {} runs, the limit (state.max_runs)", runs_.size())};
    return o;
  }
  run_record r;
  r.id = a.run;
  r.sweep = names_.intern(a.sweep);
  r.entity = names_.intern(a.entity);
  r.project = names_.intern(a.project);
  // The sweep's owner, so that the run's own worker (running as that user) may still report.
  r.owner_uid = who.uid;
  r.owner_principal = std::string(who.principal);
  if (auto owner = sweeps_.find(a.sweep); owner != sweeps_.end()) {
    r.owner_uid = owner->second.owner_uid;
    r.owner_principal = owner->second.owner_principal;
  }
  r.registered_wall = a.created_at.value_or(now.wall);
  r.registered_mono = now.mono - to_duration(std::max(a.runtime_s, 0.0));
  r.last_seen = now.mono;
  run_change c = ending(r, a.to, a.why, a.why, now, true, a.objective, a.cost, a.error);
  c.from.reset();  // the transition that creates it
  c.created = std::move(r);
  o.change = std::move(c);
  return o;
}

outcome supervisor::plan_process_exited(std::string_view run, instant now) {
  outcome o;
  const run_record* r = lookup(run);
  if (r == nullptr) {
    o.err = {error_code::unknown_run, fmt::format("no run '{}'", run)};
    return o;
  }
  o.run = r;
  if (!is_live(r->state)) return o;
  o.change = ending(*r, run_state::crashed, transition_reason::process_exited,
                    transition_reason::process_exited, now, false, std::nullopt, std::nullopt,
                    std::nullopt);
  return o;
}

run_change supervisor::timeout_of(const run_record& r, instant now) const {
  const transition_reason why = due_reason(r);
  return ending(r, run_state::timeout, why, why, now, false, std::nullopt, std::nullopt,
                std::nullopt);
}

std::vector<run_change> supervisor::plan_expiry(instant now, std::size_t limit) const {
  std::vector<run_change> due;
  for (auto it = deadlines_.begin();
       due.size() < limit && it != deadlines_.end() && it->first <= now.mono; ++it) {
    due.push_back(timeout_of(*it->second, now));
  }
  return due;
}

supervisor::due_listing supervisor::due_runs(mono_time now, std::size_t limit) const {
  due_listing listed;
  listed.epoch = forgotten_;
  for (auto it = deadlines_.begin();
       listed.runs.size() < limit && it != deadlines_.end() && it->first <= now; ++it) {
    listed.runs.push_back(it->second);
  }
  std::sort(listed.runs.begin(), listed.runs.end(),
            [](const run_record* a, const run_record* b) { return a->id < b->id; });
  return listed;
}

std::vector<run_change> supervisor::plan_expiry_of(std::span<const run_record* const> runs,
                                                   instant now) const {
  std::vector<run_change> due;
  due.reserve(runs.size());
  for (const run_record* r : runs) {
    if (r->deadline <= now.mono) due.push_back(timeout_of(*r, now));
  }
  return due;
}

outcome supervisor::register_run(const register_params& p, const caller& who, instant now) {
  return settle(plan_register(p, who, now));
}
outcome supervisor::start(std::string_view run, const caller& who, instant now) {
  return settle(plan_start(run, who, now));
}
outcome supervisor::heartbeat(const heartbeat_params& p, const caller& who, instant now) {
  return settle(plan_heartbeat(p, who, now));
}
outcome supervisor::complete(const complete_params& p, const caller& who, instant now) {
  return settle(plan_complete(p, who, now));
}
outcome supervisor::fail(const fail_params& p, const caller& who, instant now) {
  return settle(plan_fail(p, who, now));
}
outcome supervisor::adopt(const adoption& a, const caller& who, instant now) {
  return settle(plan_adopt(a, who, now));
}
outcome supervisor::process_exited(std::string_view run, instant now) {
  return settle(plan_process_exited(run, now));
}

std::vector<transition> supervisor::expire(instant now, std::size_t limit) {
  std::vector<transition> fired;
  for (run_change& c : plan_expiry(now, limit)) {
    fired.push_back(c);
    apply(std::move(c));
  }
  return fired;
}

// NOLINTNEXTLINE(performance-unnecessary-value-param): it is moved into runs_ when new
const run_record* supervisor::restore(run_record run, instant now) {
  auto [it, inserted] = runs_.try_emplace(run.id, std::move(run));  // `run` is left if known
  if (!inserted) return nullptr;
  run_record& r = it->second;
  // Whoever read it may have shared its names among the runs it read, not with the live ones.
  r.sweep = names_.intern(r.sweep.str());
  r.entity = names_.intern(r.entity.str());
  r.project = names_.intern(r.project.str());
  r.peer_boot_id = names_.intern(r.peer_boot_id.str());
  r.deadline = mono_time::max();
  r.last_seen = now.mono;
  r.progress_changed_at = now.mono;
  r.not_before = now.mono + r.heartbeat_timeout;
  if (r.history.size() > max_history) {
    r.history.erase(r.history.begin() + 1, r.history.end() - (max_history - 1));
  }
  ++counts_[index_of(r.state)];
  join_sweep(r);
  reindex(r);
  return &r;
}

std::vector<std::string> supervisor::prune(wall_time cutoff) {
  std::vector<std::string> pruned;
  for (auto it = runs_.begin(); it != runs_.end();) {
    const run_record& r = it->second;
    if (is_terminal(r.state) && r.finished_wall && *r.finished_wall < cutoff) {
      --counts_[index_of(r.state)];
      leave_sweep(r);
      pruned.push_back(r.id);
      if (r.deadline != mono_time::max()) deadlines_.erase(r.deadline_slot);
      it = runs_.erase(it);
      ++forgotten_;
    } else {
      ++it;
    }
  }
  return pruned;
}

std::optional<mono_time> supervisor::next_deadline() const {
  if (deadlines_.empty()) return std::nullopt;
  return deadlines_.begin()->first;
}

}  // namespace sweepd::core
