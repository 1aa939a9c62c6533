// The supervisor's side of durability (DESIGN §5): runs restored from the journal after a restart,
// retention pruning, and undoing a batch of timeouts that could not be stored.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/core_test_support.hpp"
#include "core/run_codec.hpp"
#include "core/supervisor.hpp"

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

/// The fake clock of the daemon before the restart: `d` after an arbitrary origin, on both the
/// monotonic and the wall clock.
/// The restarted daemon's clock when the wall clock reads `wall` after the origin: its monotonic
/// clock starts afresh (a reboot), so old monotonic times mean nothing to it.
instant restarted_at(mono_clock::duration wall) { return {mono_time{} + 3s, at(wall).wall}; }

/// `d` after `t`, on both clocks.
instant plus(instant t, mono_clock::duration d) {
  return {t.mono + d, t.wall + std::chrono::duration_cast<wall_time::duration>(d)};
}

std::size_t count_of(const supervisor& s, run_state state) {
  return s.counts()[static_cast<std::size_t>(state)];
}

std::vector<std::string> ids_of(const std::vector<transition>& ts) {
  std::vector<std::string> ids;
  ids.reserve(ts.size());
  for (const transition& t : ts) ids.push_back(t.run);
  return ids;
}

/// What undo() must put back exactly, for one run.
struct run_view {
  run_state state;
  transition_reason reason;
  mono_time deadline;
  mono_time last_seen;
  mono_time given_up_at;
  std::size_t transitions;
  std::optional<double> runtime_s;
  std::optional<wall_time> finished_wall;
};

/// Every run of `s` by id, plus the supervisor-wide counts and next deadline.
struct supervisor_view {
  std::map<std::string, run_view> runs;
  std::array<std::size_t, std::size(all_run_states)> counts;
  std::optional<mono_time> next_deadline;
};

supervisor_view view_of(const supervisor& s) {
  supervisor_view v;
  s.for_each([&](const run_record& r) {
    v.runs[r.id] = {r.state,       r.reason,         r.deadline,  r.last_seen,
                    r.given_up_at, r.history.size(), r.runtime_s, r.finished_wall};
  });
  v.counts = s.counts();
  v.next_deadline = s.next_deadline();
  return v;
}

void expect_same_view(const supervisor_view& got, const supervisor_view& want) {
  EXPECT_EQ(got.counts, want.counts);
  EXPECT_EQ(got.next_deadline, want.next_deadline);
  ASSERT_EQ(got.runs.size(), want.runs.size());
  for (const auto& [id, w] : want.runs) {
    SCOPED_TRACE(id);
    auto it = got.runs.find(id);
    ASSERT_NE(it, got.runs.end());
    const run_view& g = it->second;
    EXPECT_EQ(g.state, w.state);
    EXPECT_EQ(g.reason, w.reason);
    EXPECT_EQ(g.deadline, w.deadline);
    EXPECT_EQ(g.last_seen, w.last_seen);
    EXPECT_EQ(g.given_up_at, w.given_up_at);
    EXPECT_EQ(g.transitions, w.transitions);
    EXPECT_EQ(g.runtime_s, w.runtime_s);
    EXPECT_EQ(g.finished_wall, w.finished_wall);
  }
}

class DurabilityTest : public ::testing::Test {
 public:
  static supervisor_limits defaults() {
    supervisor_limits l;
    l.default_entity = "team";
    l.default_project = "proj";
    return l;
  }

  void TearDown() override {
    expect_consistent(before);
    expect_consistent(sup);
  }

  static outcome reg(supervisor& s, const std::string& id, instant when,
                     std::optional<double> heartbeat_timeout_s = std::nullopt,
                     std::optional<double> max_runtime_s = std::nullopt) {
    register_params p;
    p.run = id;
    p.heartbeat_timeout_s = heartbeat_timeout_s;
    p.max_runtime_s = max_runtime_s;
    return s.register_run(p, alice, when);
  }

  static outcome heartbeat(supervisor& s, const std::string& id, instant when,
                           std::optional<double> progress = std::nullopt) {
    heartbeat_params p;
    p.run = id;
    p.progress = progress;
    return s.heartbeat(p, alice, when);
  }

  /// Registers `id` in `before` at 0 s and drives it to `state`: success, failed and crashed
  /// finish at 20 s; a timeout is for silence (a 50 s heartbeat timeout from the start) at 60 s.
  void drive_to(const std::string& id, run_state state) {
    const bool times_out = state == run_state::timeout;
    ASSERT_TRUE(reg(before, id, at(0s), times_out ? std::optional(50.0) : std::nullopt).ok());
    if (state == run_state::initializing) return;
    ASSERT_TRUE(before.start(id, alice, at(10s)).ok());
    switch (state) {
      case run_state::success:
        ASSERT_TRUE(before.complete({id, 0.5, 7.0}, alice, at(20s)).ok());
        break;
      case run_state::failed:
        ASSERT_TRUE(before.fail({id, "boom"}, alice, at(20s)).ok());
        break;
      case run_state::crashed:
        ASSERT_TRUE(before.process_exited(id, at(20s)).change);
        break;
      case run_state::timeout:
        ASSERT_THAT(ids_of(before.expire(at(60s))), ElementsAre(id));
        break;
      default:
        break;
    }
    ASSERT_EQ(before.find(id)->state, state);
  }

  /// The restart: every run of `before` goes through the journal's form (run_codec, history
  /// alongside) and is restored into `sup` at `now`.
  void restart(instant now) {
    before.for_each([&](const run_record& r) {
      decoded_run d = decode_run(nlohmann::json::parse(encode_run(r).dump()), now);
      ASSERT_TRUE(d.run) << d.error;
      d.run->history = r.history;
      ASSERT_TRUE(sup.restore(std::move(*d.run), now)) << r.id;
    });
    ASSERT_EQ(sup.size(), before.size());
  }

  const run_record& run(const std::string& id) {
    const run_record* r = sup.find(id);
    EXPECT_NE(r, nullptr) << id;
    static const run_record none;
    return r != nullptr ? *r : none;
  }

  static constexpr caller alice{1000, 4242, false};

  supervisor before{defaults()};  // the daemon that stopped
  supervisor sup{defaults()};     // the daemon that restored its runs
};

// ---------------------------------------------------------------------------------------------
// restore

TEST_F(DurabilityTest, RestoredLiveRunCountsSilenceFromRestart) {
  // Before: last heard of at 100 s, due at 400 s. The daemon is down until 1000 s.
  for (const char* id : {"quiet", "chatty"}) {
    ASSERT_TRUE(reg(before, id, at(0s)).ok());
    ASSERT_TRUE(before.start(id, alice, at(10s)).ok());
    ASSERT_TRUE(heartbeat(before, id, at(100s)).ok());
  }
  const instant now = restarted_at(1000s);
  restart(now);

  EXPECT_EQ(run("quiet").state, run_state::running);
  EXPECT_EQ(run("quiet").deadline, now.mono + 300s);
  EXPECT_EQ(sup.next_deadline(), now.mono + 300s);
  EXPECT_THAT(sup.expire(now), IsEmpty());
  EXPECT_THAT(sup.expire(plus(now, 299s)), IsEmpty());

  // A heartbeat after the restart counts as usual.
  ASSERT_TRUE(heartbeat(sup, "chatty", plus(now, 200s)).ok());
  EXPECT_EQ(run("chatty").deadline, now.mono + 500s);

  const auto fired = sup.expire(plus(now, 300s));
  ASSERT_THAT(ids_of(fired), ElementsAre("quiet"));
  EXPECT_EQ(fired[0].reason, transition_reason::heartbeat_timeout);
  EXPECT_EQ(fired[0].from, run_state::running);
  // Its runtime counts the whole life of the run, down time included: 1300 s since register.
  EXPECT_EQ(fired[0].runtime_s, 1300.0);

  EXPECT_THAT(sup.expire(plus(now, 499s)), IsEmpty());
  EXPECT_THAT(ids_of(sup.expire(plus(now, 500s))), ElementsAre("chatty"));
}

TEST_F(DurabilityTest, RestoredStallClockCountsFromRestart) {
  supervisor_limits l = defaults();
  l.stall_timeout_s = 600;
  before.set_limits(l);
  ASSERT_TRUE(reg(before, "r", at(0s)).ok());
  ASSERT_TRUE(heartbeat(before, "r", at(10s), 5.0).ok());  // progress stuck at 5 since 10 s
  const instant now = restarted_at(5000s);
  restart(now);
  EXPECT_EQ(run("r").progress, 5.0);

  // Heartbeats keep the silence clock away; the stall clock started at the restart.
  ASSERT_TRUE(heartbeat(sup, "r", plus(now, 250s), 5.0).ok());
  ASSERT_TRUE(heartbeat(sup, "r", plus(now, 500s), 5.0).ok());
  EXPECT_EQ(sup.next_deadline(), now.mono + 600s);
  EXPECT_THAT(sup.expire(plus(now, 599s)), IsEmpty());
  const auto fired = sup.expire(plus(now, 600s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].reason, transition_reason::stalled);
}

TEST_F(DurabilityTest, MaxRuntimePassedWhileDownGetsGraceThenTimesOutForMaxRuntime) {
  // max_runtime 600 s ran out at 600 s, while the daemon was down (500 s to 1000 s).
  ASSERT_TRUE(reg(before, "long", at(0s), 300.0, 600.0).ok());
  ASSERT_TRUE(before.start("long", alice, at(10s)).ok());
  ASSERT_TRUE(heartbeat(before, "long", at(500s)).ok());
  const instant now = restarted_at(1000s);
  restart(now);

  EXPECT_EQ(sup.next_deadline(), now.mono + 300s);  // the grace: its heartbeat timeout
  EXPECT_THAT(sup.expire(now), IsEmpty());
  EXPECT_THAT(sup.expire(plus(now, 299s)), IsEmpty());
  EXPECT_EQ(run("long").state, run_state::running);

  // Heartbeats do not stretch the grace: the run is over its runtime.
  ASSERT_TRUE(heartbeat(sup, "long", plus(now, 100s)).ok());
  EXPECT_EQ(sup.next_deadline(), now.mono + 300s);

  const auto fired = sup.expire(plus(now, 300s));
  ASSERT_THAT(ids_of(fired), ElementsAre("long"));
  EXPECT_EQ(fired[0].reason, transition_reason::max_runtime);
  EXPECT_EQ(fired[0].runtime_s, 1300.0);
  // Not revivable: a run over its runtime stays given up on.
  EXPECT_FALSE(sup.start("long", alice, plus(now, 301s)).change);
  EXPECT_EQ(run("long").state, run_state::timeout);
}

TEST_F(DurabilityTest, MaxRuntimeNotYetReachedStillCountsFromRegister) {
  // 2000 s of max_runtime, restarted at 1000 s: 1000 s left, well beyond the grace.
  ASSERT_TRUE(reg(before, "r", at(0s), 300.0, 2000.0).ok());
  const instant now = restarted_at(1000s);
  restart(now);
  for (int i = 1; i <= 4; ++i) {
    ASSERT_TRUE(heartbeat(sup, "r", plus(now, i * 250s)).ok());
  }
  EXPECT_EQ(sup.next_deadline(), now.mono + 1000s);
  const auto fired = sup.expire(plus(now, 1000s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].reason, transition_reason::max_runtime);
}

TEST_F(DurabilityTest, ThousandRestoredRunsWithPastDeadlinesDoNotExpireAtOnce) {
  for (int i = 0; i < 1000; ++i) {
    const std::string id = "run-" + std::to_string(i);
    // Every third one also has a max_runtime, long past at the restart.
    const auto max_runtime = i % 3 == 0 ? std::optional(100.0) : std::nullopt;
    ASSERT_TRUE(reg(before, id, at(std::chrono::milliseconds(i)), std::nullopt, max_runtime).ok());
    if (i % 2 == 0) {
      ASSERT_TRUE(before.start(id, alice, at(10s)).ok());
    }
  }
  const instant now = restarted_at(100000s);
  restart(now);

  EXPECT_EQ(sup.size(), 1000u);
  EXPECT_EQ(count_of(sup, run_state::running), 500u);
  EXPECT_EQ(count_of(sup, run_state::initializing), 500u);
  EXPECT_THAT(sup.expire(now), IsEmpty());
  EXPECT_THAT(sup.expire(plus(now, 299s)), IsEmpty());
  EXPECT_EQ(sup.next_deadline(), now.mono + 300s);
  EXPECT_EQ(count_of(sup, run_state::timeout), 0u);
  // When the grace ends, they do time out: none was lost from the deadline index.
  EXPECT_EQ(sup.expire(plus(now, 300s)).size(), 1000u);
  EXPECT_EQ(count_of(sup, run_state::timeout), 1000u);
}

TEST_F(DurabilityTest, CountsAndRecordsAreRightAfterRestore) {
  for (run_state state : all_run_states) drive_to(std::string(to_string(state)), state);
  drive_to("running-2", run_state::running);
  const instant now = restarted_at(1000s);
  restart(now);

  EXPECT_EQ(sup.size(), 7u);
  EXPECT_EQ(sup.counts(), before.counts());
  EXPECT_EQ(count_of(sup, run_state::running), 2u);
  before.for_each([&](const run_record& want) {
    SCOPED_TRACE(want.id);
    const run_record& got = run(want.id);
    EXPECT_EQ(got.state, want.state);
    EXPECT_EQ(got.reason, want.reason);
    EXPECT_EQ(got.history.size(), want.history.size());
    EXPECT_EQ(got.finished_wall, want.finished_wall);
  });
}

TEST_F(DurabilityTest, RestoreOfKnownIdIsRefusedAndChangesNothing) {
  drive_to("r", run_state::running);
  const instant now = restarted_at(1000s);
  restart(now);
  const auto counts = sup.counts();
  const auto next = sup.next_deadline();

  run_record other = *before.find("r");
  other.state = run_state::success;
  other.reason = transition_reason::completed;
  other.finished_wall = at(20s).wall;
  EXPECT_FALSE(sup.restore(other, plus(now, 5s)));

  EXPECT_EQ(sup.size(), 1u);
  EXPECT_EQ(run("r").state, run_state::running);
  EXPECT_EQ(sup.counts(), counts);
  EXPECT_EQ(sup.next_deadline(), next);
}

TEST_F(DurabilityTest, RestoredTerminalRunsKeepStateAndHaveNoDeadline) {
  for (run_state state :
       {run_state::success, run_state::failed, run_state::crashed, run_state::timeout}) {
    drive_to(std::string(to_string(state)), state);
  }
  const instant now = restarted_at(1000s);
  restart(now);

  for (run_state state :
       {run_state::success, run_state::failed, run_state::crashed, run_state::timeout}) {
    const run_record& r = run(std::string(to_string(state)));
    EXPECT_EQ(r.state, state);
    EXPECT_EQ(r.deadline, mono_time::max());
    EXPECT_EQ(count_of(sup, state), 1u);
  }
  EXPECT_EQ(sup.next_deadline(), std::nullopt);
  EXPECT_THAT(sup.expire(plus(now, 1000000s)), IsEmpty());
}

TEST_F(DurabilityTest, RestoredTimeoutIsLateByTheWallTimeSinceItTimedOut) {
  drive_to("late", run_state::timeout);  // timed out at 60 s
  const instant now = restarted_at(1000s);
  restart(now);
  const outcome o = sup.complete({"late", 0.25, std::nullopt}, alice, plus(now, 10s));
  ASSERT_TRUE(o.ok()) << o.err.message;
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->reason, transition_reason::late_completed);
  EXPECT_EQ(o.change->late_by_s, 950.0);
  EXPECT_EQ(o.change->runtime_s, 1010.0);
}

TEST_F(DurabilityTest, RestoredSilenceTimeoutCanBeRevived) {
  drive_to("lost", run_state::timeout);
  const instant now = restarted_at(1000s);
  restart(now);
  const outcome o = heartbeat(sup, "lost", plus(now, 10s));
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->reason, transition_reason::revived);
  EXPECT_EQ(run("lost").state, run_state::running);
  EXPECT_EQ(count_of(sup, run_state::timeout), 0u);
  EXPECT_EQ(count_of(sup, run_state::running), 1u);
  EXPECT_EQ(sup.next_deadline(), now.mono + 60s);  // its own 50 s timeout, from the heartbeat
}

// ---------------------------------------------------------------------------------------------
// prune

TEST_F(DurabilityTest, PruneRemovesOnlyTerminalRunsFinishedBeforeCutoff) {
  for (run_state state : all_run_states) drive_to(std::string(to_string(state)), state);
  // A timeout revived by a heartbeat is live again: no finish time, never pruned.
  drive_to("revived", run_state::timeout);
  ASSERT_TRUE(heartbeat(before, "revived", at(70s)).change);
  const auto next = before.next_deadline();

  // Finished at exactly the cutoff: kept.
  EXPECT_THAT(before.prune(at(20s).wall), IsEmpty());
  EXPECT_THAT(before.prune(at(21s).wall), UnorderedElementsAre("success", "failed", "crashed"));
  EXPECT_EQ(before.size(), 4u);
  for (run_state state : {run_state::success, run_state::failed, run_state::crashed}) {
    EXPECT_EQ(before.find(to_string(state)), nullptr);
    EXPECT_EQ(count_of(before, state), 0u);
  }
  EXPECT_EQ(count_of(before, run_state::timeout), 1u);
  EXPECT_EQ(before.next_deadline(), next);

  EXPECT_THAT(before.prune(at(60s).wall), IsEmpty());
  EXPECT_THAT(before.prune(at(61s).wall), ElementsAre("timeout"));
  EXPECT_EQ(count_of(before, run_state::timeout), 0u);

  // Live runs stay whatever the cutoff.
  EXPECT_THAT(before.prune(at(1000000s).wall), IsEmpty());
  EXPECT_EQ(before.size(), 3u);
  EXPECT_EQ(count_of(before, run_state::initializing), 1u);
  EXPECT_EQ(count_of(before, run_state::running), 2u);
  EXPECT_EQ(before.next_deadline(), next);
  EXPECT_NE(before.find("revived"), nullptr);
}

TEST_F(DurabilityTest, PruneOfRestoredRunsUsesTheirStoredFinishTimes) {
  for (run_state state : all_run_states) drive_to(std::string(to_string(state)), state);
  const instant now = restarted_at(1000s);
  restart(now);
  EXPECT_THAT(sup.prune(at(21s).wall), UnorderedElementsAre("success", "failed", "crashed"));
  EXPECT_THAT(sup.prune(now.wall), ElementsAre("timeout"));
  EXPECT_EQ(sup.size(), 2u);
  EXPECT_EQ(count_of(sup, run_state::initializing) + count_of(sup, run_state::running), 2u);
}

TEST_F(DurabilityTest, PrunedIdCanBeRegisteredAfresh) {
  drive_to("r", run_state::success);
  ASSERT_THAT(before.prune(at(21s).wall), ElementsAre("r"));
  const outcome o = reg(before, "r", at(30s));
  ASSERT_TRUE(o.ok()) << o.err.message;
  ASSERT_TRUE(o.change);
  EXPECT_FALSE(o.change->from.has_value());
  EXPECT_EQ(before.find("r")->history.size(), 1u);
  EXPECT_EQ(count_of(before, run_state::initializing), 1u);
  EXPECT_EQ(count_of(before, run_state::success), 0u);
}

// ---------------------------------------------------------------------------------------------
// expire_outcomes + undo

/// Planned changes are stored by the daemon before they are applied; one that cannot be stored
/// is simply dropped. These tests check that planning changes nothing.
class DurabilityPlanTest : public DurabilityTest {
 protected:
  /// A mix of runs, restored and new, whose deadlines fall at different times and for different
  /// reasons; sets `now` to the restart.
  void SetUp() override {
    ASSERT_TRUE(reg(before, "restored-silent", at(0s)).ok());
    ASSERT_TRUE(reg(before, "restored-over-runtime", at(0s), 120.0, 600.0).ok());
    ASSERT_TRUE(reg(before, "restored-done", at(0s)).ok());
    ASSERT_TRUE(before.complete({"restored-done", 1.0, std::nullopt}, alice, at(5s)).ok());
    now = restarted_at(1000s);
    restart(now);

    supervisor_limits l = defaults();
    l.stall_timeout_s = 90;
    sup.set_limits(l);
    ASSERT_TRUE(reg(sup, "silent", plus(now, 1s), 60.0).ok());
    ASSERT_TRUE(reg(sup, "over-runtime", plus(now, 2s), 500.0, 100.0).ok());
    ASSERT_TRUE(reg(sup, "stalled", plus(now, 3s), 500.0).ok());
    ASSERT_TRUE(heartbeat(sup, "stalled", plus(now, 4s), 1.0).ok());
    ASSERT_TRUE(reg(sup, "far", plus(now, 5s), 5000.0).ok());
    ASSERT_TRUE(sup.start("far", alice, plus(now, 6s)).ok());
  }

  static std::vector<std::pair<std::string, transition_reason>> reasons_of(
      const std::vector<run_change>& changes) {
    std::vector<std::pair<std::string, transition_reason>> out;
    out.reserve(changes.size());
    for (const run_change& c : changes) out.emplace_back(c.run, c.reason);
    return out;
  }

  instant now;
};

TEST_F(DurabilityPlanTest, PlannedExpiryChangesNothingUntilApplied) {
  const supervisor_view was = view_of(sup);
  const auto due = sup.plan_expiry(plus(now, 400s));
  ASSERT_THAT(reasons_of(due),
              ElementsAre(std::pair("silent", transition_reason::heartbeat_timeout),
                          std::pair("stalled", transition_reason::stalled),
                          std::pair("over-runtime", transition_reason::max_runtime),
                          std::pair("restored-over-runtime", transition_reason::max_runtime),
                          std::pair("restored-silent", transition_reason::heartbeat_timeout)));
  for (const run_change& c : due) {
    EXPECT_EQ(c.to, run_state::timeout);
    EXPECT_GT(*c.cost, 0.0) << c.run;
  }
  // Dropped (as when it cannot be stored): everything is as it was, and the same runs are due.
  expect_same_view(view_of(sup), was);
  expect_consistent(sup);
  EXPECT_EQ(count_of(sup, run_state::timeout), 0u);
  EXPECT_EQ(reasons_of(sup.plan_expiry(plus(now, 400s))), reasons_of(due));
}

TEST_F(DurabilityPlanTest, ApplyingPlannedExpiryIsExpiry) {
  for (run_change& c : sup.plan_expiry(plus(now, 400s), 2)) sup.apply(std::move(c));
  EXPECT_EQ(count_of(sup, run_state::timeout), 2u);
  expect_consistent(sup);
  EXPECT_EQ(sup.expire(plus(now, 400s)).size(), 3u);
  EXPECT_EQ(sup.next_deadline(), now.mono + 5006s);
  expect_consistent(sup);
}

TEST_F(DurabilityPlanTest, PlannedRequestsChangeNothingButLiveness) {
  const supervisor_view was = view_of(sup);
  register_params p;
  p.run = "new";
  EXPECT_TRUE(sup.plan_register(p, alice, plus(now, 10s)).change);
  EXPECT_TRUE(sup.plan_complete({"silent", 0.5, 1.0}, alice, plus(now, 10s)).change);
  EXPECT_TRUE(sup.plan_fail({"far", "boom"}, alice, plus(now, 10s)).change);
  EXPECT_TRUE(sup.plan_start("silent", alice, plus(now, 10s)).change);
  EXPECT_TRUE(sup.plan_process_exited("far", plus(now, 10s)).change);
  expect_same_view(view_of(sup), was);
  EXPECT_EQ(sup.find("new"), nullptr);
  expect_consistent(sup);
}

}  // namespace
}  // namespace sweepd::core
