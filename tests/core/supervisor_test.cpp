#include "core/supervisor.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/core_test_support.hpp"

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

double seconds_of(mono_clock::duration d) { return seconds_d(d).count(); }

std::size_t count_of(const supervisor& s, run_state state) {
  return s.counts()[static_cast<std::size_t>(state)];
}

/// The cost a transition carried, nullopt when there was no transition or no cost.
std::optional<double> cost_of(const outcome& o) { return o.change ? o.change->cost : std::nullopt; }

// Public so that table-driven cases can call the helpers.
class SupervisorTest : public ::testing::Test {
 public:
  static supervisor_limits defaults() {
    supervisor_limits l;
    l.default_entity = "team";
    l.default_project = "proj";
    return l;
  }

  void TearDown() override { expect_consistent(sup); }

  outcome reg(const std::string& id, mono_clock::duration when = 0s, const caller& who = alice) {
    register_params p;
    p.run = id;
    return sup.register_run(p, who, at(when));
  }

  outcome heartbeat(const std::string& id, mono_clock::duration when,
                    std::optional<double> progress = std::nullopt,
                    std::optional<double> timeout_s = std::nullopt, const caller& who = alice) {
    heartbeat_params p;
    p.run = id;
    p.progress = progress;
    p.timeout_s = timeout_s;
    return sup.heartbeat(p, who, at(when));
  }

  outcome complete(const std::string& id, mono_clock::duration when,
                   std::optional<double> objective = std::nullopt,
                   std::optional<double> cost = std::nullopt, const caller& who = alice) {
    complete_params p;
    p.run = id;
    p.objective = objective;
    p.cost = cost;
    return sup.complete(p, who, at(when));
  }

  outcome fail(const std::string& id, mono_clock::duration when, const std::string& error,
               const caller& who = alice) {
    return sup.fail({id, error}, who, at(when));
  }

  /// Registers `id` at 0 s and drives it to `state` by 20 s (a timeout is for silence, at 310 s).
  void drive_to(const std::string& id, run_state state) {
    ASSERT_TRUE(reg(id).ok());
    if (state == run_state::initializing) return;
    ASSERT_TRUE(sup.start(id, alice, at(10s)).ok());
    switch (state) {
      case run_state::success:
        ASSERT_TRUE(complete(id, 20s, 0.5, 7.0).ok());
        break;
      case run_state::failed:
        ASSERT_TRUE(fail(id, 20s, "boom").ok());
        break;
      case run_state::crashed:
        ASSERT_TRUE(sup.process_exited(id, at(20s)).change);
        break;
      case run_state::timeout:
        sup.expire(at(310s));
        ASSERT_EQ(sup.find(id)->reason, transition_reason::heartbeat_timeout);
        break;
      default:
        break;
    }
    ASSERT_EQ(sup.find(id)->state, state);
  }

  const run_record& run(const std::string& id) {
    const run_record* r = sup.find(id);
    EXPECT_NE(r, nullptr) << id;
    static const run_record none;
    return r != nullptr ? *r : none;
  }

  static constexpr caller alice{1000, 4242, false};
  static constexpr caller bob{1001, 5353, false};
  static constexpr caller admin{0, 1, true};

  supervisor sup{defaults()};
};

// ---------------------------------------------------------------------------------------------
// the run a planned change targets

TEST_F(SupervisorTest, APlannedChangeTargetsTheRunItWasPlannedAgainst) {
  drive_to("r", run_state::running);
  complete_params p;
  p.run = "r";
  const outcome o = sup.plan_complete(p, alice, at(30s));
  ASSERT_TRUE(o.change);
  EXPECT_EQ(sup.target_of(*o.change), sup.find("r"));
  EXPECT_EQ(sup.apply(*o.change).state, run_state::success);
}

TEST_F(SupervisorTest, APlannedChangeFindsItsRunByIdOnceAnotherRunWasForgotten) {
  drive_to("old", run_state::success);
  ASSERT_TRUE(reg("live", 25s).ok());
  complete_params p;
  p.run = "live";
  const outcome o = sup.plan_complete(p, alice, at(30s));
  ASSERT_TRUE(o.change);
  EXPECT_THAT(sup.prune(at(21s).wall), ElementsAre("old"));
  EXPECT_EQ(sup.target_of(*o.change), sup.find("live"));
  EXPECT_EQ(sup.apply(*o.change).state, run_state::success);
}

TEST_F(SupervisorTest, APlannedChangeOfARunForgottenSinceHasNoTarget) {
  drive_to("late", run_state::timeout);  // terminal, and a late complete still corrects it
  complete_params p;
  p.run = "late";
  const outcome o = sup.plan_complete(p, alice, at(400s));
  ASSERT_TRUE(o.change);
  EXPECT_THAT(sup.prune(at(311s).wall), ElementsAre("late"));
  EXPECT_EQ(sup.target_of(*o.change), nullptr);
}

// ---------------------------------------------------------------------------------------------
// register

TEST_F(SupervisorTest, RegisterCreatesInitializingRun) {
  register_params p;
  p.run = "ab12cd34";
  p.sweep = "s1";
  p.suggestion = json_text(nlohmann::json{{"lr", 0.01}});
  p.watch_peer = true;
  const outcome o = sup.register_run(p, alice, at(35s));
  ASSERT_TRUE(o.ok()) << o.err.message;
  ASSERT_TRUE(o.change);
  EXPECT_TRUE(o.change->created);  // a registration creates its run
  EXPECT_EQ(o.change->run, "ab12cd34");
  EXPECT_FALSE(o.change->from.has_value());
  EXPECT_EQ(o.change->to, run_state::initializing);
  EXPECT_EQ(o.change->reason, transition_reason::registered);
  EXPECT_EQ(o.change->at, at(35s).wall);
  EXPECT_FALSE(o.change->runtime_s.has_value());
  EXPECT_FALSE(o.change->cost.has_value());

  const run_record& r = run("ab12cd34");
  EXPECT_EQ(o.run, &r);
  EXPECT_EQ(r.state, run_state::initializing);
  EXPECT_EQ(r.sweep, "s1");
  EXPECT_EQ(r.entity, "team");
  EXPECT_EQ(r.project, "proj");
  EXPECT_EQ(r.suggestion.value(), nlohmann::json({{"lr", 0.01}}));
  EXPECT_EQ(r.owner_uid, 1000u);
  EXPECT_TRUE(r.watch_peer);
  EXPECT_EQ(r.peer_pid, 4242);
  EXPECT_EQ(r.registered_wall, at(35s).wall);
  EXPECT_EQ(r.history.size(), 1u);
  EXPECT_EQ(sup.size(), 1u);
  EXPECT_EQ(count_of(sup, run_state::initializing), 1u);
  EXPECT_EQ(sup.next_deadline(), at(335s).mono);
}

TEST_F(SupervisorTest, RegisterKeepsGivenEntityAndProjectAndIgnoresPidWithoutWatch) {
  register_params p;
  p.run = "r1";
  p.entity = "other-team";
  p.project = "other-proj";
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  EXPECT_EQ(run("r1").entity, "other-team");
  EXPECT_EQ(run("r1").project, "other-proj");
  EXPECT_FALSE(run("r1").watch_peer);
  EXPECT_EQ(run("r1").peer_pid, 0);
  EXPECT_EQ(run("r1").sweep, "");
  EXPECT_TRUE(run("r1").suggestion.is_null());
}

TEST_F(SupervisorTest, ReRegisterOfLiveRunIsIdempotentAndRefreshesLiveness) {
  for (run_state state : {run_state::initializing, run_state::running}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const std::size_t transitions = run(id).history.size();
    const outcome again = reg(id, 200s);
    ASSERT_TRUE(again.ok()) << again.err.message;
    EXPECT_FALSE(again.change.has_value());
    EXPECT_EQ(again.run, sup.find(id));
    EXPECT_EQ(run(id).state, state);
    EXPECT_EQ(run(id).history.size(), transitions);
    EXPECT_EQ(run(id).deadline, at(500s).mono);
  }
  EXPECT_EQ(count_of(sup, run_state::initializing), 1u);
  EXPECT_EQ(count_of(sup, run_state::running), 1u);
  EXPECT_EQ(sup.size(), 2u);
  // Refreshed liveness: nothing is due at the original deadlines.
  EXPECT_TRUE(sup.expire(at(499s)).empty());
  EXPECT_EQ(sup.expire(at(500s)).size(), 2u);
}

TEST_F(SupervisorTest, ReRegisterOfTerminalRunConflicts) {
  for (run_state state :
       {run_state::success, run_state::failed, run_state::crashed, run_state::timeout}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const std::size_t transitions = run(id).history.size();
    const outcome again = reg(id, 400s);
    EXPECT_EQ(again.err.code, error_code::conflict);
    EXPECT_THAT(again.err.message, HasSubstr(id));
    EXPECT_FALSE(again.change.has_value());
    EXPECT_EQ(run(id).state, state);
    EXPECT_EQ(run(id).history.size(), transitions);
  }
}

TEST_F(SupervisorTest, ReRegisterUnderAnotherEntityOrProjectConflicts) {
  ASSERT_TRUE(reg("r1").ok());
  register_params p;
  p.run = "r1";
  p.entity = "elsewhere";
  outcome o = sup.register_run(p, alice, at(5s));
  EXPECT_EQ(o.err.code, error_code::conflict);
  EXPECT_THAT(o.err.message, HasSubstr("elsewhere"));

  p.entity = "team";
  p.project = "another";
  o = sup.register_run(p, alice, at(5s));
  EXPECT_EQ(o.err.code, error_code::conflict);
  EXPECT_THAT(o.err.message, HasSubstr("another"));

  // The defaults spelled out are the same identity.
  p.project = "proj";
  o = sup.register_run(p, alice, at(5s));
  EXPECT_TRUE(o.ok()) << o.err.message;
  EXPECT_EQ(run("r1").entity, "team");
  EXPECT_EQ(sup.size(), 1u);
}

TEST_F(SupervisorTest, ReRegisterByAnotherUidIsForbiddenButAdminMay) {
  ASSERT_TRUE(reg("r1").ok());
  const outcome denied = reg("r1", 100s, bob);
  EXPECT_EQ(denied.err.code, error_code::forbidden);
  EXPECT_FALSE(denied.change.has_value());
  // A forbidden call does not refresh liveness.
  EXPECT_EQ(run("r1").deadline, at(300s).mono);

  const outcome allowed = reg("r1", 100s, admin);
  EXPECT_TRUE(allowed.ok()) << allowed.err.message;
  EXPECT_EQ(run("r1").deadline, at(400s).mono);
  EXPECT_EQ(run("r1").owner_uid, 1000u);
}

TEST_F(SupervisorTest, RegisterBeyondMaxRunsIsBusy) {
  supervisor_limits l = defaults();
  l.max_runs = 2;
  sup.set_limits(l);
  ASSERT_TRUE(reg("r1").ok());
  ASSERT_TRUE(reg("r2").ok());
  const outcome o = reg("r3");
  EXPECT_EQ(o.err.code, error_code::busy);
  EXPECT_THAT(o.err.message, HasSubstr("max_runs"));
  EXPECT_EQ(sup.find("r3"), nullptr);
  EXPECT_EQ(sup.size(), 2u);
  EXPECT_EQ(count_of(sup, run_state::initializing), 2u);
  // Re-registering a tracked run is not a new run and still works at the limit.
  EXPECT_TRUE(reg("r1", 10s).ok());
}

TEST_F(SupervisorTest, OtherUidMayNotChangeARunButAdminMay) {
  ASSERT_TRUE(reg("r1").ok());
  EXPECT_EQ(sup.start("r1", bob, at(1s)).err.code, error_code::forbidden);
  EXPECT_EQ(heartbeat("r1", 1s, 5.0, std::nullopt, bob).err.code, error_code::forbidden);
  EXPECT_EQ(complete("r1", 1s, 0.9, 1.0, bob).err.code, error_code::forbidden);
  const outcome f = fail("r1", 1s, "no", bob);
  EXPECT_EQ(f.err.code, error_code::forbidden);
  EXPECT_THAT(f.err.message, HasSubstr("1001"));
  EXPECT_EQ(run("r1").state, run_state::initializing);
  EXPECT_FALSE(run("r1").progress.has_value());
  EXPECT_EQ(run("r1").deadline, at(300s).mono);

  EXPECT_TRUE(sup.start("r1", admin, at(2s)).change);
  EXPECT_TRUE(complete("r1", 3s, 0.9, 1.0, admin).change);
  EXPECT_EQ(run("r1").state, run_state::success);
}

TEST_F(SupervisorTest, OperationsOnUnknownRunsAnswerUnknownRun) {
  EXPECT_EQ(sup.start("nope", alice, at(0s)).err.code, error_code::unknown_run);
  EXPECT_EQ(heartbeat("nope", 0s).err.code, error_code::unknown_run);
  EXPECT_EQ(complete("nope", 0s).err.code, error_code::unknown_run);
  EXPECT_EQ(fail("nope", 0s, "x").err.code, error_code::unknown_run);
  const outcome o = sup.process_exited("nope", at(0s));
  EXPECT_EQ(o.err.code, error_code::unknown_run);
  EXPECT_THAT(o.err.message, HasSubstr("nope"));
  EXPECT_EQ(sup.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// start

TEST_F(SupervisorTest, StartMovesInitializingToRunning) {
  ASSERT_TRUE(reg("r1").ok());
  const outcome o = sup.start("r1", alice, at(100s));
  ASSERT_TRUE(o.ok());
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->from, run_state::initializing);
  EXPECT_EQ(o.change->to, run_state::running);
  EXPECT_EQ(o.change->reason, transition_reason::started);
  EXPECT_EQ(o.change->at, at(100s).wall);
  EXPECT_FALSE(o.change->runtime_s.has_value());
  EXPECT_FALSE(o.change->cost.has_value());
  EXPECT_EQ(run("r1").state, run_state::running);
  EXPECT_EQ(run("r1").history.size(), 2u);
  EXPECT_EQ(sup.next_deadline(), at(400s).mono);
  EXPECT_EQ(count_of(sup, run_state::initializing), 0u);
  EXPECT_EQ(count_of(sup, run_state::running), 1u);
}

TEST_F(SupervisorTest, StartInRunningIsIdempotentAndRefreshesLiveness) {
  drive_to("r1", run_state::running);
  const outcome o = sup.start("r1", alice, at(200s));
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o.change.has_value());
  EXPECT_EQ(o.run, sup.find("r1"));
  EXPECT_EQ(run("r1").state, run_state::running);
  EXPECT_EQ(run("r1").history.size(), 2u);
  EXPECT_EQ(sup.next_deadline(), at(500s).mono);
}

TEST_F(SupervisorTest, StartOnFinalRunAnswersOkUnchanged) {
  for (run_state state : {run_state::success, run_state::failed, run_state::crashed}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const outcome o = sup.start(id, alice, at(30s));
    ASSERT_TRUE(o.ok()) << o.err.message;
    EXPECT_FALSE(o.change.has_value());
    ASSERT_NE(o.run, nullptr);
    EXPECT_EQ(o.run->state, state);
    EXPECT_EQ(run(id).history.size(), 3u);
  }
  EXPECT_FALSE(sup.next_deadline().has_value());
}

TEST_F(SupervisorTest, StartRevivesARunTimedOutForSilence) {
  drive_to("r1", run_state::timeout);
  const outcome o = sup.start("r1", alice, at(400s));
  ASSERT_TRUE(o.ok());
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->from, run_state::timeout);
  EXPECT_EQ(o.change->to, run_state::running);
  EXPECT_EQ(o.change->reason, transition_reason::revived);
  EXPECT_EQ(run("r1").state, run_state::running);
  EXPECT_EQ(run("r1").reason, transition_reason::revived);
  EXPECT_EQ(sup.next_deadline(), at(700s).mono);
  EXPECT_EQ(count_of(sup, run_state::timeout), 0u);
  EXPECT_EQ(count_of(sup, run_state::running), 1u);
}

TEST_F(SupervisorTest, StartAndHeartbeatDoNotReviveAfterMaxRuntimeOrStall) {
  supervisor_limits l = defaults();
  l.stall_timeout_s = 50;
  sup.set_limits(l);
  register_params p;
  p.run = "long";
  p.max_runtime_s = 100;
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  ASSERT_TRUE(reg("stuck").ok());
  ASSERT_TRUE(heartbeat("stuck", 10s, 1.0).ok());
  // long: heartbeats keep it from silence; stuck: progress stops increasing after 10 s.
  ASSERT_TRUE(heartbeat("long", 50s).ok());
  const auto fired = sup.expire(at(100s));
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(run("stuck").reason, transition_reason::stalled);
  EXPECT_EQ(run("long").reason, transition_reason::max_runtime);

  for (const std::string id : {"long", "stuck"}) {
    SCOPED_TRACE(id);
    outcome o = sup.start(id, alice, at(110s));
    EXPECT_TRUE(o.ok());
    EXPECT_FALSE(o.change.has_value());
    EXPECT_EQ(o.run->state, run_state::timeout);
    o = heartbeat(id, 120s, 99.0, 600.0);
    EXPECT_TRUE(o.ok());
    EXPECT_FALSE(o.change.has_value());
    EXPECT_EQ(o.run->state, run_state::timeout);
    EXPECT_EQ(run(id).history.size(), 2u);
  }
  EXPECT_EQ(count_of(sup, run_state::timeout), 2u);
  EXPECT_FALSE(sup.next_deadline().has_value());
}

TEST_F(SupervisorTest, NoRevivalOncePastMaxRuntime) {
  register_params p;
  p.run = "r1";
  p.max_runtime_s = 1000;
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  ASSERT_EQ(sup.expire(at(300s)).size(), 1u);
  ASSERT_EQ(run("r1").reason, transition_reason::heartbeat_timeout);
  // Before max_runtime the silent run can still come back...
  const outcome early = sup.plan_heartbeat({"r1", std::nullopt, std::nullopt}, alice, at(999s));
  ASSERT_TRUE(early.change);
  EXPECT_EQ(early.change->reason, transition_reason::revived);  // planned only: not applied
  // ...but once it is over max_runtime it stays given up on.
  for (auto t : {1000s, 1500s}) {
    outcome o = heartbeat("r1", t, 10.0);
    EXPECT_TRUE(o.ok());
    EXPECT_FALSE(o.change.has_value());
    EXPECT_EQ(o.run->state, run_state::timeout);
    o = sup.start("r1", alice, at(t));
    EXPECT_TRUE(o.ok());
    EXPECT_FALSE(o.change.has_value());
  }
  EXPECT_EQ(run("r1").history.size(), 2u);
  EXPECT_TRUE(sup.expire(at(2000s)).empty());
}

// ---------------------------------------------------------------------------------------------
// heartbeat

TEST_F(SupervisorTest, HeartbeatNeverChangesLiveStates) {
  for (run_state state : {run_state::initializing, run_state::running}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const std::size_t transitions = run(id).history.size();
    const outcome o = heartbeat(id, 250s, 3.0);
    ASSERT_TRUE(o.ok());
    EXPECT_FALSE(o.change.has_value());
    EXPECT_EQ(o.run->state, state);
    EXPECT_EQ(run(id).history.size(), transitions);
    EXPECT_EQ(run(id).deadline, at(550s).mono);
  }
  EXPECT_TRUE(sup.expire(at(549s)).empty());
}

TEST_F(SupervisorTest, HeartbeatOnFinalRunAnswersOkUnchanged) {
  for (run_state state : {run_state::success, run_state::failed, run_state::crashed}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const outcome o = heartbeat(id, 30s, 5.0, 900.0);
    ASSERT_TRUE(o.ok());
    EXPECT_FALSE(o.change.has_value());
    EXPECT_EQ(o.run->state, state);
    EXPECT_FALSE(run(id).progress.has_value());
    EXPECT_EQ(run(id).deadline, mono_time::max());
  }
}

TEST_F(SupervisorTest, HeartbeatTimeoutOverrideMovesTheDeadlineAndSticks) {
  drive_to("r1", run_state::running);
  ASSERT_TRUE(heartbeat("r1", 100s, std::nullopt, 900.0).ok());
  EXPECT_EQ(sup.next_deadline(), at(1000s).mono);
  EXPECT_DOUBLE_EQ(seconds_of(run("r1").heartbeat_timeout), 900.0);
  // Later heartbeats without timeout_s keep the new timeout.
  ASSERT_TRUE(heartbeat("r1", 200s).ok());
  EXPECT_EQ(sup.next_deadline(), at(1100s).mono);
  // A shorter timeout brings the deadline closer.
  ASSERT_TRUE(heartbeat("r1", 300s, std::nullopt, 10.5).ok());
  EXPECT_EQ(sup.next_deadline(), at(310500ms).mono);
  EXPECT_TRUE(sup.expire(at(310500ms - 1ns)).empty());
  const auto fired = sup.expire(at(310500ms));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].reason, transition_reason::heartbeat_timeout);
}

TEST_F(SupervisorTest, HeartbeatRecordsOnlyIncreasingProgress) {
  drive_to("r1", run_state::running);
  ASSERT_TRUE(heartbeat("r1", 20s, 100.0).ok());
  EXPECT_EQ(run("r1").progress, 100.0);
  EXPECT_EQ(run("r1").progress_changed_at, at(20s).mono);
  ASSERT_TRUE(heartbeat("r1", 30s, 250.0).ok());
  EXPECT_EQ(run("r1").progress, 250.0);
  EXPECT_EQ(run("r1").progress_changed_at, at(30s).mono);
  ASSERT_TRUE(heartbeat("r1", 40s, 250.0).ok());
  ASSERT_TRUE(heartbeat("r1", 50s, 10.0).ok());
  ASSERT_TRUE(heartbeat("r1", 60s).ok());
  EXPECT_EQ(run("r1").progress, 250.0);
  EXPECT_EQ(run("r1").progress_changed_at, at(30s).mono);
}

TEST_F(SupervisorTest, HeartbeatRevivesARunTimedOutForSilence) {
  drive_to("r1", run_state::timeout);
  const outcome o = heartbeat("r1", 400s, 7.0, 120.0);
  ASSERT_TRUE(o.ok());
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->from, run_state::timeout);
  EXPECT_EQ(o.change->to, run_state::running);
  EXPECT_EQ(o.change->reason, transition_reason::revived);
  EXPECT_EQ(o.change->at, at(400s).wall);
  EXPECT_EQ(run("r1").state, run_state::running);
  EXPECT_EQ(run("r1").progress, 7.0);
  EXPECT_EQ(sup.next_deadline(), at(520s).mono);
  EXPECT_EQ(count_of(sup, run_state::running), 1u);
  EXPECT_EQ(count_of(sup, run_state::timeout), 0u);
  // A revived run is live again: it has no outcome of a finished run.
  EXPECT_FALSE(run("r1").runtime_s.has_value());
  EXPECT_FALSE(run("r1").finished_wall.has_value());
  // And it can time out again.
  const auto fired = sup.expire(at(520s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].reason, transition_reason::heartbeat_timeout);
  EXPECT_EQ(fired[0].from, run_state::running);
}

// ---------------------------------------------------------------------------------------------
// complete and fail

TEST_F(SupervisorTest, CompleteFromInitializingAndRunning) {
  for (run_state state : {run_state::initializing, run_state::running}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const outcome o = complete(id, 200s, 0.93, 3600.5);
    ASSERT_TRUE(o.ok()) << o.err.message;
    ASSERT_TRUE(o.change);
    EXPECT_EQ(o.change->from, state);
    EXPECT_EQ(o.change->to, run_state::success);
    EXPECT_EQ(o.change->reason, transition_reason::completed);
    EXPECT_EQ(o.change->at, at(200s).wall);
    EXPECT_EQ(o.change->runtime_s, 200.0);
    EXPECT_EQ(o.change->objective, 0.93);
    EXPECT_EQ(o.change->cost, 3600.5);
    EXPECT_FALSE(o.change->error.has_value());
    EXPECT_FALSE(o.change->late_by_s.has_value());
    const run_record& r = run(id);
    EXPECT_EQ(r.state, run_state::success);
    EXPECT_EQ(r.objective, 0.93);
    EXPECT_EQ(r.cost, 3600.5);
    EXPECT_EQ(r.runtime_s, 200.0);
    EXPECT_EQ(r.finished_wall, at(200s).wall);
    EXPECT_EQ(r.deadline, mono_time::max());
  }
  EXPECT_EQ(count_of(sup, run_state::success), 2u);
  EXPECT_EQ(count_of(sup, run_state::initializing), 0u);
  EXPECT_EQ(count_of(sup, run_state::running), 0u);
  EXPECT_FALSE(sup.next_deadline().has_value());
}

TEST_F(SupervisorTest, FailFromInitializingAndRunning) {
  for (run_state state : {run_state::initializing, run_state::running}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const outcome o = fail(id, 90s, "CUDA out of memory");
    ASSERT_TRUE(o.ok()) << o.err.message;
    ASSERT_TRUE(o.change);
    EXPECT_EQ(o.change->from, state);
    EXPECT_EQ(o.change->to, run_state::failed);
    EXPECT_EQ(o.change->reason, transition_reason::worker_failed);
    EXPECT_EQ(o.change->error, "CUDA out of memory");
    EXPECT_EQ(o.change->runtime_s, 90.0);
    EXPECT_EQ(o.change->cost, 90.0);
    EXPECT_FALSE(o.change->objective.has_value());
    EXPECT_EQ(run(id).state, run_state::failed);
    EXPECT_EQ(run(id).error, "CUDA out of memory");
  }
  EXPECT_EQ(count_of(sup, run_state::failed), 2u);
}

TEST_F(SupervisorTest, IdenticalCompleteRetryIsOkWithoutTransition) {
  drive_to("r1", run_state::running);
  ASSERT_TRUE(complete("r1", 100s, 0.5, 12.0).change);
  const outcome retry = complete("r1", 105s, 0.5, 12.0);
  EXPECT_TRUE(retry.ok()) << retry.err.message;
  EXPECT_FALSE(retry.change.has_value());
  EXPECT_EQ(retry.run->state, run_state::success);
  // Without objective or cost, an identical retry is also just ok.
  drive_to("r2", run_state::running);
  ASSERT_TRUE(complete("r2", 100s).change);
  EXPECT_TRUE(complete("r2", 101s).ok());
  EXPECT_EQ(run("r1").history.size(), 3u);
  EXPECT_EQ(run("r2").history.size(), 3u);
  EXPECT_EQ(count_of(sup, run_state::success), 2u);
}

TEST_F(SupervisorTest, DifferentCompleteOnSuccessConflicts) {
  drive_to("r1", run_state::running);
  ASSERT_TRUE(complete("r1", 100s, 0.5, 12.0).change);
  for (const auto& [objective, cost] :
       std::vector<std::pair<std::optional<double>, std::optional<double>>>{
           {0.6, 12.0}, {0.5, 13.0}, {std::nullopt, 12.0}, {0.5, std::nullopt}}) {
    const outcome o = complete("r1", 110s, objective, cost);
    EXPECT_EQ(o.err.code, error_code::conflict);
    EXPECT_THAT(o.err.message, HasSubstr("success"));
    EXPECT_FALSE(o.change.has_value());
  }
  EXPECT_EQ(run("r1").objective, 0.5);
  EXPECT_EQ(run("r1").cost, 12.0);
  EXPECT_EQ(run("r1").history.size(), 3u);
}

TEST_F(SupervisorTest, IdenticalFailRetryIsOkAndDifferentFailConflicts) {
  drive_to("r1", run_state::running);
  ASSERT_TRUE(fail("r1", 100s, "boom").change);
  const outcome retry = fail("r1", 101s, "boom");
  EXPECT_TRUE(retry.ok()) << retry.err.message;
  EXPECT_FALSE(retry.change.has_value());
  const outcome other = fail("r1", 102s, "bang");
  EXPECT_EQ(other.err.code, error_code::conflict);
  EXPECT_FALSE(other.change.has_value());
  EXPECT_EQ(run("r1").error, "boom");
  EXPECT_EQ(run("r1").history.size(), 3u);
}

TEST_F(SupervisorTest, CompleteAndFailAcrossFinalStatesConflict) {
  drive_to("failed", run_state::failed);
  drive_to("success", run_state::success);
  EXPECT_EQ(complete("failed", 30s, 0.5, 7.0).err.code, error_code::conflict);
  EXPECT_EQ(fail("success", 30s, "boom").err.code, error_code::conflict);
  EXPECT_EQ(run("failed").state, run_state::failed);
  EXPECT_EQ(run("success").state, run_state::success);
  EXPECT_FALSE(run("failed").objective.has_value());
  EXPECT_FALSE(run("success").error.has_value());
  EXPECT_EQ(count_of(sup, run_state::failed), 1u);
  EXPECT_EQ(count_of(sup, run_state::success), 1u);
}

TEST_F(SupervisorTest, LateCompletionAfterCrashIsKeptAndMarkedLate) {
  // The worker finished while sweepd was down; on restart sweepd found its process gone.
  drive_to("r1", run_state::running);
  ASSERT_TRUE(sup.process_exited("r1", at(100s)).change);
  const outcome o = complete("r1", 160s, 0.93, 42.0);
  ASSERT_TRUE(o.ok()) << o.err.message;
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->from, run_state::crashed);
  EXPECT_EQ(o.change->to, run_state::success);
  EXPECT_EQ(o.change->reason, transition_reason::late_completed);
  EXPECT_DOUBLE_EQ(*o.change->late_by_s, 60.0);
  EXPECT_EQ(o.change->objective, 0.93);
  EXPECT_EQ(o.change->cost, 42.0);
  EXPECT_EQ(run("r1").state, run_state::success);
  EXPECT_EQ(count_of(sup, run_state::crashed), 0u);
  EXPECT_EQ(count_of(sup, run_state::success), 1u);
  // The spooled report delivered a second time is an identical retry: no new transition.
  const outcome again = complete("r1", 170s, 0.93, 42.0);
  EXPECT_TRUE(again.ok());
  EXPECT_FALSE(again.change.has_value());
  EXPECT_EQ(fail("r1", 171s, "boom").err.code, error_code::conflict);
}

TEST_F(SupervisorTest, LateFailureAfterCrashIsKeptAndMarkedLate) {
  drive_to("r1", run_state::running);
  ASSERT_TRUE(sup.process_exited("r1", at(100s)).change);
  const outcome o = fail("r1", 105s, "ValueError: diverged");
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->from, run_state::crashed);
  EXPECT_EQ(o.change->to, run_state::failed);
  EXPECT_EQ(o.change->reason, transition_reason::late_failed);
  EXPECT_DOUBLE_EQ(*o.change->late_by_s, 5.0);
  EXPECT_EQ(run("r1").error, "ValueError: diverged");
  EXPECT_EQ(count_of(sup, run_state::failed), 1u);
  EXPECT_EQ(count_of(sup, run_state::crashed), 0u);
}

TEST_F(SupervisorTest, CrashIsNeitherRevivedNorRestarted) {
  drive_to("r1", run_state::running);
  ASSERT_TRUE(sup.process_exited("r1", at(100s)).change);
  EXPECT_FALSE(heartbeat("r1", 101s).change.has_value());
  EXPECT_FALSE(sup.start("r1", alice, at(102s)).change.has_value());
  EXPECT_EQ(run("r1").state, run_state::crashed);
}

TEST_F(SupervisorTest, LateCompletionAfterTimeoutIsKeptAndMarkedLate) {
  drive_to("r1", run_state::timeout);  // timed out at 310 s
  const outcome o = complete("r1", 355500ms, 0.8, 2.0);
  ASSERT_TRUE(o.ok()) << o.err.message;
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->from, run_state::timeout);
  EXPECT_EQ(o.change->to, run_state::success);
  EXPECT_EQ(o.change->reason, transition_reason::late_completed);
  ASSERT_TRUE(o.change->late_by_s);
  EXPECT_DOUBLE_EQ(*o.change->late_by_s, 45.5);
  EXPECT_EQ(o.change->objective, 0.8);
  EXPECT_EQ(o.change->cost, 2.0);
  EXPECT_DOUBLE_EQ(*o.change->runtime_s, 355.5);
  EXPECT_EQ(run("r1").state, run_state::success);
  EXPECT_DOUBLE_EQ(*run("r1").late_by_s, 45.5);
  EXPECT_EQ(count_of(sup, run_state::timeout), 0u);
  EXPECT_EQ(count_of(sup, run_state::success), 1u);
  // The client's retry of the late completion is an identical retry.
  const outcome retry = complete("r1", 356s, 0.8, 2.0);
  EXPECT_TRUE(retry.ok());
  EXPECT_FALSE(retry.change.has_value());
}

TEST_F(SupervisorTest, LateByIsMeasuredFromWhenTheRunWasMarked) {
  ASSERT_TRUE(reg("r1").ok());
  // The expiry pass ran 0.4 s after the 300 s deadline.
  ASSERT_EQ(sup.expire(at(300400ms)).size(), 1u);
  const outcome o = complete("r1", 310s, 1.0);
  ASSERT_TRUE(o.change);
  EXPECT_DOUBLE_EQ(*o.change->late_by_s, 9.6);
}

TEST_F(SupervisorTest, LateFailureAfterTimeoutIsKeptAndMarkedLate) {
  drive_to("r1", run_state::timeout);  // timed out at 310 s
  const outcome o = fail("r1", 320s, "OOM");
  ASSERT_TRUE(o.ok()) << o.err.message;
  ASSERT_TRUE(o.change);
  EXPECT_EQ(o.change->from, run_state::timeout);
  EXPECT_EQ(o.change->to, run_state::failed);
  EXPECT_EQ(o.change->reason, transition_reason::late_failed);
  EXPECT_EQ(o.change->error, "OOM");
  EXPECT_DOUBLE_EQ(*o.change->late_by_s, 10.0);
  EXPECT_DOUBLE_EQ(*o.change->cost, 320.0);
  EXPECT_EQ(run("r1").state, run_state::failed);
  EXPECT_EQ(run("r1").reason, transition_reason::late_failed);
  EXPECT_EQ(count_of(sup, run_state::failed), 1u);
  EXPECT_EQ(count_of(sup, run_state::timeout), 0u);
}

TEST_F(SupervisorTest, LateCompletionCorrectsEveryKindOfTimeout) {
  supervisor_limits l = defaults();
  l.max_runtime_s = 100;
  l.stall_timeout_s = 20;
  sup.set_limits(l);
  ASSERT_TRUE(reg("long").ok());
  ASSERT_TRUE(reg("stuck", 90s).ok());
  ASSERT_TRUE(heartbeat("stuck", 91s, 1.0).ok());
  ASSERT_TRUE(heartbeat("long", 95s).ok());
  ASSERT_EQ(sup.expire(at(100s)).size(), 1u);
  ASSERT_EQ(sup.expire(at(111s)).size(), 1u);
  ASSERT_EQ(run("long").reason, transition_reason::max_runtime);
  ASSERT_EQ(run("stuck").reason, transition_reason::stalled);
  const outcome a = complete("long", 120s, 0.1);
  const outcome b = fail("stuck", 120s, "stuck");
  ASSERT_TRUE(a.change);
  ASSERT_TRUE(b.change);
  EXPECT_EQ(a.change->reason, transition_reason::late_completed);
  EXPECT_DOUBLE_EQ(*a.change->late_by_s, 20.0);
  EXPECT_EQ(b.change->reason, transition_reason::late_failed);
  EXPECT_DOUBLE_EQ(*b.change->late_by_s, 9.0);
}

// ---------------------------------------------------------------------------------------------
// sweep ownership

TEST_F(SupervisorTest, SweepBelongsToTheOwnerOfItsFirstRun) {
  register_params p;
  p.run = "a1";
  p.sweep = "s1";
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  EXPECT_EQ(sup.sweep_owner("s1"), alice.uid);
  // Another uid may neither add a run to it nor pre-register one of its ids in it.
  p.run = "fake-best";
  const outcome squat = sup.register_run(p, bob, at(1s));
  EXPECT_EQ(squat.err.code, error_code::forbidden);
  EXPECT_THAT(squat.err.message, HasSubstr("sweep 's1' belongs to uid 1000"));
  EXPECT_EQ(sup.find("fake-best"), nullptr);
  // Its owner and admins may; the sweep's owner stays.
  p.run = "a2";
  EXPECT_TRUE(sup.register_run(p, alice, at(2s)).ok());
  p.run = "root1";
  EXPECT_TRUE(sup.register_run(p, admin, at(3s)).ok());
  EXPECT_EQ(sup.sweep_owner("s1"), alice.uid);
  // Bob's own sweep is his.
  p.run = "b1";
  p.sweep = "s2";
  EXPECT_TRUE(sup.register_run(p, bob, at(4s)).ok());
  EXPECT_EQ(sup.sweep_owner("s2"), bob.uid);
  EXPECT_EQ(sup.sweep_owner("nope"), std::nullopt);
}

TEST_F(SupervisorTest, SweepOwnershipIsRestoredFromTheEarliestRunAndEndsWithItsLastRun) {
  supervisor other(defaults());
  register_params p;
  p.run = "late";
  p.sweep = "s1";
  ASSERT_TRUE(sup.register_run(p, bob, at(50s)).ok());
  const run_record late = run("late");
  run_record early = late;
  early.id = "early";
  early.owner_uid = alice.uid;
  early.registered_wall = at(10s).wall;
  // Restored in any order: the earliest registered run's owner owns the sweep.
  ASSERT_TRUE(other.restore(late, at(100s)));
  ASSERT_TRUE(other.restore(early, at(100s)));
  EXPECT_EQ(other.sweep_owner("s1"), alice.uid);
}

TEST_F(SupervisorTest, RunsShareOneCopyOfTheirSweepEntityProjectAndBootId) {
  register_params p;
  p.sweep = "a-sweep-name-longer-than-fifteen-characters";
  p.watch_peer = true;
  const caller watched(alice.uid, 77, false, 123, "5e1f9b0c-7d31-4c5e-9a42-5a1b2c3d4e5f");
  for (const char* id : {"r1", "r2"}) {
    p.run = id;
    ASSERT_TRUE(sup.register_run(p, watched, at(0s)).ok());
  }
  const run_record& r1 = run("r1");
  const run_record& r2 = run("r2");
  EXPECT_EQ(r1.sweep, "a-sweep-name-longer-than-fifteen-characters");
  EXPECT_EQ(&r1.sweep.str(), &r2.sweep.str());
  EXPECT_EQ(&r1.entity.str(), &r2.entity.str());
  EXPECT_EQ(&r1.project.str(), &r2.project.str());
  EXPECT_EQ(r1.peer_boot_id, "5e1f9b0c-7d31-4c5e-9a42-5a1b2c3d4e5f");
  EXPECT_EQ(&r1.peer_boot_id.str(), &r2.peer_boot_id.str());

  // A run read back on its own (a copy of each name) shares the live runs' copies once restored.
  run_record read = r1;
  read.id = "r3";
  read.sweep = std::string(r1.sweep.str());
  read.peer_boot_id = std::string(r1.peer_boot_id.str());
  ASSERT_NE(&read.sweep.str(), &r1.sweep.str());
  const run_record* restored = sup.restore(std::move(read), at(10s));
  ASSERT_NE(restored, nullptr);
  EXPECT_EQ(&restored->sweep.str(), &r1.sweep.str());
  EXPECT_EQ(&restored->peer_boot_id.str(), &r1.peer_boot_id.str());
  EXPECT_EQ(sup.restore(run("r3"), at(10s)), nullptr);  // known already: nothing changes
}

TEST_F(SupervisorTest, PrunedSweepHasNoOwnerAnyMore) {
  register_params p;
  p.run = "a1";
  p.sweep = "s1";
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  ASSERT_TRUE(complete("a1", 10s, 0.5).ok());
  ASSERT_EQ(sup.prune(at(20s).wall).size(), 1u);
  EXPECT_EQ(sup.sweep_owner("s1"), std::nullopt);
  p.run = "b1";
  EXPECT_TRUE(sup.register_run(p, bob, at(30s)).ok());
  EXPECT_EQ(sup.sweep_owner("s1"), bob.uid);
}

TEST_F(SupervisorTest, PlannedRegistrationTakesNoSweep) {
  register_params p;
  p.run = "a1";
  p.sweep = "s1";
  ASSERT_TRUE(sup.plan_register(p, alice, at(0s)).change);
  EXPECT_EQ(sup.sweep_owner("s1"), std::nullopt);  // only once it is stored and applied
}

TEST_F(SupervisorTest, FlappingRunKeepsABoundedHistory) {
  // Heartbeats further apart than the timeout: timeout, revived, timeout, … for ever.
  register_params p;
  p.run = "r1";
  p.heartbeat_timeout_s = 1.0;
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  mono_clock::duration t = 0s;
  for (int i = 0; i < 2000; ++i) {
    t += 2s;
    ASSERT_EQ(sup.expire(at(t)).size(), 1u);
    ASSERT_TRUE(heartbeat("r1", t).change);
  }
  const run_record& r = run("r1");
  EXPECT_EQ(r.history.size(), max_history);
  EXPECT_EQ(r.history.front().reason, transition_reason::registered);
  EXPECT_EQ(r.history.back().reason, transition_reason::revived);
  EXPECT_EQ(r.history.back().at, at(t).wall);
}

// ---------------------------------------------------------------------------------------------
// process exit

TEST_F(SupervisorTest, ProcessExitCrashesLiveRuns) {
  for (run_state state : {run_state::initializing, run_state::running}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const outcome o = sup.process_exited(id, at(60s));
    ASSERT_TRUE(o.ok());
    ASSERT_TRUE(o.change);
    EXPECT_EQ(o.change->from, state);
    EXPECT_EQ(o.change->to, run_state::crashed);
    EXPECT_EQ(o.change->reason, transition_reason::process_exited);
    EXPECT_EQ(o.change->runtime_s, 60.0);
    EXPECT_EQ(o.change->cost, 60.0);
    EXPECT_EQ(run(id).state, run_state::crashed);
  }
  EXPECT_EQ(count_of(sup, run_state::crashed), 2u);
  EXPECT_FALSE(sup.next_deadline().has_value());
}

TEST_F(SupervisorTest, ProcessExitLeavesTerminalRunsAlone) {
  for (run_state state :
       {run_state::success, run_state::failed, run_state::crashed, run_state::timeout}) {
    SCOPED_TRACE(to_string(state));
    const std::string id = std::string("r-") + std::string(to_string(state));
    drive_to(id, state);
    const std::size_t transitions = run(id).history.size();
    const outcome o = sup.process_exited(id, at(400s));
    EXPECT_TRUE(o.ok());
    EXPECT_FALSE(o.change.has_value());
    EXPECT_EQ(o.run->state, state);
    EXPECT_EQ(run(id).history.size(), transitions);
  }
  EXPECT_EQ(count_of(sup, run_state::crashed), 1u);
}

// ---------------------------------------------------------------------------------------------
// expiry

TEST_F(SupervisorTest, SilenceTimeoutFiresExactlyAtTheDeadline) {
  ASSERT_TRUE(reg("r1", 35s).ok());
  EXPECT_EQ(sup.next_deadline(), at(335s).mono);
  EXPECT_TRUE(sup.expire(at(335s - 1ns)).empty());
  EXPECT_EQ(run("r1").state, run_state::initializing);
  const auto fired = sup.expire(at(335s));
  ASSERT_EQ(fired.size(), 1u);
  const transition& t = fired[0];
  EXPECT_EQ(t.run, "r1");
  EXPECT_EQ(t.from, run_state::initializing);
  EXPECT_EQ(t.to, run_state::timeout);
  EXPECT_EQ(t.reason, transition_reason::heartbeat_timeout);
  EXPECT_EQ(t.at, at(335s).wall);
  EXPECT_EQ(t.runtime_s, 300.0);
  EXPECT_EQ(t.cost, 300.0);
  EXPECT_FALSE(t.objective.has_value());
  EXPECT_FALSE(t.late_by_s.has_value());
  EXPECT_EQ(run("r1").state, run_state::timeout);
  EXPECT_EQ(run("r1").history.size(), 2u);
  EXPECT_EQ(count_of(sup, run_state::timeout), 1u);
  EXPECT_EQ(count_of(sup, run_state::initializing), 0u);
  EXPECT_FALSE(sup.next_deadline().has_value());
  EXPECT_TRUE(sup.expire(at(1000s)).empty());
}

TEST_F(SupervisorTest, PerRunHeartbeatTimeoutAtRegister) {
  register_params p;
  p.run = "quick";
  p.heartbeat_timeout_s = 60;
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  ASSERT_TRUE(reg("default").ok());
  EXPECT_TRUE(sup.expire(at(60s - 1ns)).empty());
  const auto fired = sup.expire(at(60s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].run, "quick");
  EXPECT_EQ(sup.next_deadline(), at(300s).mono);
}

TEST_F(SupervisorTest, SilenceTimeoutIsOffWhenZero) {
  supervisor_limits l = defaults();
  l.heartbeat_timeout_s = 0;
  sup.set_limits(l);
  ASSERT_TRUE(reg("r1").ok());
  EXPECT_FALSE(sup.next_deadline().has_value());
  EXPECT_TRUE(sup.expire(at(std::chrono::hours(24 * 365))).empty());
}

TEST_F(SupervisorTest, DefaultMaxRuntimeFiresDespiteHeartbeats) {
  supervisor_limits l = defaults();
  l.max_runtime_s = 1000;
  sup.set_limits(l);
  drive_to("r1", run_state::running);
  for (auto t = 100s; t <= 900s; t += 100s) ASSERT_TRUE(heartbeat("r1", t).ok());
  EXPECT_EQ(sup.next_deadline(), at(1000s).mono);
  EXPECT_TRUE(sup.expire(at(1000s - 1ns)).empty());
  const auto fired = sup.expire(at(1000s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].reason, transition_reason::max_runtime);
  EXPECT_EQ(fired[0].from, run_state::running);
  EXPECT_EQ(fired[0].runtime_s, 1000.0);
}

TEST_F(SupervisorTest, PerRunMaxRuntimeOverridesTheDefault) {
  supervisor_limits l = defaults();
  l.max_runtime_s = 1000;
  sup.set_limits(l);
  register_params p;
  p.run = "short";
  p.max_runtime_s = 150;
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  p.run = "unbounded";
  p.max_runtime_s = 0;
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  ASSERT_TRUE(heartbeat("short", 100s).ok());
  EXPECT_TRUE(sup.expire(at(150s - 1ns)).empty());
  const auto fired = sup.expire(at(150s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].run, "short");
  EXPECT_EQ(fired[0].reason, transition_reason::max_runtime);
  // max_runtime_s 0 turns the limit off for that run: only silence can end it.
  for (auto t = 250s; t <= 2500s; t += 250s) ASSERT_TRUE(heartbeat("unbounded", t).ok());
  EXPECT_TRUE(sup.expire(at(2500s)).empty());
  EXPECT_EQ(run("unbounded").state, run_state::initializing);
}

TEST_F(SupervisorTest, TieBetweenSilenceAndMaxRuntimeIsMaxRuntime) {
  register_params p;
  p.run = "r1";
  p.max_runtime_s = 300;
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  const auto fired = sup.expire(at(300s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].reason, transition_reason::max_runtime);
}

TEST_F(SupervisorTest, StallFiresWhenProgressStopsIncreasing) {
  supervisor_limits l = defaults();
  l.stall_timeout_s = 100;
  sup.set_limits(l);
  drive_to("r1", run_state::running);
  ASSERT_TRUE(heartbeat("r1", 20s, 1.0).ok());
  EXPECT_EQ(sup.next_deadline(), at(120s).mono);
  ASSERT_TRUE(heartbeat("r1", 50s, 2.0).ok());
  EXPECT_EQ(sup.next_deadline(), at(150s).mono);
  // Equal, lower or absent progress does not reset the stall clock.
  ASSERT_TRUE(heartbeat("r1", 100s, 2.0).ok());
  ASSERT_TRUE(heartbeat("r1", 120s, 1.0).ok());
  ASSERT_TRUE(heartbeat("r1", 145s).ok());
  EXPECT_EQ(sup.next_deadline(), at(150s).mono);
  EXPECT_TRUE(sup.expire(at(150s - 1ns)).empty());
  const auto fired = sup.expire(at(150s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].reason, transition_reason::stalled);
  EXPECT_EQ(fired[0].cost, 150.0);
}

TEST_F(SupervisorTest, StallIsOffWhenZeroOrWithoutProgress) {
  drive_to("no-stall-limit", run_state::running);
  for (auto t = 100s; t <= 1000s; t += 100s) {
    ASSERT_TRUE(heartbeat("no-stall-limit", t, 5.0).ok());
  }
  supervisor_limits l = defaults();
  l.stall_timeout_s = 50;
  sup.set_limits(l);
  ASSERT_TRUE(reg("no-progress", 1000s).ok());
  for (auto t = 1100s; t <= 2000s; t += 100s) ASSERT_TRUE(heartbeat("no-progress", t).ok());
  for (auto t = 1250s; t <= 2000s; t += 250s) {
    ASSERT_TRUE(heartbeat("no-stall-limit", t, 5.0).ok());
  }
  EXPECT_TRUE(sup.expire(at(2000s)).empty());
  EXPECT_EQ(count_of(sup, run_state::timeout), 0u);
  EXPECT_EQ(sup.next_deadline(), at(2300s).mono);
}

TEST_F(SupervisorTest, NextDeadlineIsTheEarliestAndMovesOnHeartbeat) {
  EXPECT_FALSE(sup.next_deadline().has_value());
  ASSERT_TRUE(reg("a", 10s).ok());
  ASSERT_TRUE(reg("b", 20s).ok());
  register_params p;
  p.run = "c";
  p.heartbeat_timeout_s = 500;
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  EXPECT_EQ(sup.next_deadline(), at(310s).mono);
  ASSERT_TRUE(heartbeat("a", 100s).ok());
  EXPECT_EQ(sup.next_deadline(), at(320s).mono);
  ASSERT_TRUE(heartbeat("b", 100s).ok());
  EXPECT_EQ(sup.next_deadline(), at(400s).mono);
  ASSERT_TRUE(complete("a", 110s).ok());
  ASSERT_TRUE(fail("b", 110s, "x").ok());
  EXPECT_EQ(sup.next_deadline(), at(500s).mono);
  const auto fired = sup.expire(at(500s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].run, "c");
  EXPECT_FALSE(sup.next_deadline().has_value());
}

TEST_F(SupervisorTest, TenThousandRunsExpireInOneCallAndNoneEarly) {
  constexpr int n = 10000;
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(reg("run-" + std::to_string(i), std::chrono::milliseconds(i)).ok());
  }
  EXPECT_EQ(count_of(sup, run_state::initializing), std::size_t{n});
  // Half of them are due: runs registered at 0..4999 ms.
  const instant half = at(300s + 4999ms);
  auto fired = sup.expire(half);
  ASSERT_EQ(fired.size(), std::size_t{n / 2});
  for (const transition& t : fired) {
    const int i = std::stoi(t.run.substr(4));
    ASSERT_LT(i, n / 2) << t.run;
    EXPECT_EQ(t.reason, transition_reason::heartbeat_timeout);
  }
  EXPECT_EQ(count_of(sup, run_state::timeout), std::size_t{n / 2});
  EXPECT_EQ(sup.next_deadline(), at(305s).mono);
  fired = sup.expire(at(300s + std::chrono::milliseconds(n)));
  EXPECT_EQ(fired.size(), std::size_t{n / 2});
  EXPECT_EQ(count_of(sup, run_state::timeout), std::size_t{n});
  EXPECT_EQ(count_of(sup, run_state::initializing), 0u);
  EXPECT_FALSE(sup.next_deadline().has_value());
}

TEST_F(SupervisorTest, ExpireInBatchesTakesTheEarliestFirstAndLeavesTheRestDue) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(reg("run-" + std::to_string(i), std::chrono::seconds(i)).ok());
  }
  auto fired = sup.expire(at(400s), 2);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0].run, "run-0");
  EXPECT_EQ(fired[1].run, "run-1");
  EXPECT_EQ(sup.next_deadline(), at(302s).mono);  // still due: the caller comes back at once
  fired = sup.expire(at(400s), 2);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0].run, "run-2");
  EXPECT_EQ(sup.expire(at(400s), 2).size(), 1u);
  EXPECT_FALSE(sup.next_deadline().has_value());
}

TEST_F(SupervisorTest, DueRunsAreTheEarliestDueListedInIdOrder) {
  // Deadlines in an order unrelated to the ids, as worker heartbeats give them.
  ASSERT_TRUE(reg("run-c", 0s).ok());
  ASSERT_TRUE(reg("run-a", 1s).ok());
  ASSERT_TRUE(reg("run-d", 2s).ok());
  ASSERT_TRUE(reg("run-b", 3s).ok());
  ASSERT_TRUE(reg("run-e", 50s).ok());  // not due yet
  const auto ids = [&](std::size_t limit, mono_clock::duration t) {
    std::vector<std::string> out;
    for (const core::run_record* r : sup.due_runs(at(t).mono, limit).runs) out.push_back(r->id);
    return out;
  };
  EXPECT_THAT(ids(100, 303s), ElementsAre("run-a", "run-b", "run-c", "run-d"));
  // The limit keeps the earliest deadlines, then sorts them.
  EXPECT_THAT(ids(3, 303s), ElementsAre("run-a", "run-c", "run-d"));
  EXPECT_THAT(ids(100, 299s), IsEmpty());
}

TEST_F(SupervisorTest, ExpiryOfListedRunsSkipsThoseThatReportedOrWentSinceTheListing) {
  for (const char* id : {"run-a", "run-b", "run-c", "run-d"}) ASSERT_TRUE(reg(id, 0s).ok());
  const auto listed = sup.due_runs(at(300s).mono, 100);
  ASSERT_EQ(listed.runs.size(), 4u);
  // Between the listing and the batch: one run ended, one was revived by a heartbeat (its
  // deadline moved), one was timed out by an earlier batch.
  ASSERT_TRUE(fail("run-a", 300s, "bad").ok());
  ASSERT_TRUE(heartbeat("run-b", 300s).ok());
  const auto earlier_batch =
      sup.plan_expiry_of(std::span<const core::run_record* const>(&listed.runs[2], 1), at(300s));
  ASSERT_EQ(earlier_batch.size(), 1u);
  EXPECT_EQ(earlier_batch[0].run, "run-c");
  sup.apply(earlier_batch[0]);
  EXPECT_TRUE(sup.is_current(listed));  // nothing was forgotten
  const auto due = sup.plan_expiry_of(listed.runs, at(300s));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].run, "run-d");
  EXPECT_EQ(due[0].to, run_state::timeout);
  EXPECT_EQ(due[0].reason, transition_reason::heartbeat_timeout);
  // Planning changed nothing.
  EXPECT_EQ(run("run-d").state, run_state::initializing);
}

TEST_F(SupervisorTest, ListingOfDueRunsIsNoLongerCurrentOnceARunIsForgotten) {
  ASSERT_TRUE(reg("run-a", 0s).ok());
  ASSERT_TRUE(reg("run-b", 0s).ok());
  ASSERT_TRUE(fail("run-b", 1s, "bad").ok());
  const auto listed = sup.due_runs(at(300s).mono, 100);
  ASSERT_EQ(listed.runs.size(), 1u);
  EXPECT_TRUE(sup.is_current(listed));
  ASSERT_THAT(sup.prune(at(2s).wall), ElementsAre("run-b"));
  // Its pointers may dangle now: the caller lists again.
  EXPECT_FALSE(sup.is_current(listed));
  EXPECT_TRUE(sup.is_current(sup.due_runs(at(300s).mono, 100)));
}

// ---------------------------------------------------------------------------------------------
// costs

TEST_F(SupervisorTest, TerminalTransitionsAlwaysCarryAPositiveCost) {
  drive_to("given", run_state::running);
  drive_to("runtime", run_state::running);
  ASSERT_TRUE(reg("instant", 50s).ok());
  drive_to("zero", run_state::running);
  drive_to("crash", run_state::running);
  ASSERT_TRUE(reg("silent", 40s).ok());
  EXPECT_EQ(cost_of(complete("given", 50s, 1.0, 12.5)), 12.5);
  EXPECT_EQ(cost_of(complete("runtime", 50s, 1.0)), 50.0);
  EXPECT_EQ(cost_of(fail("instant", 50s, "bad config")), 0.001);
  // A given cost of 0 is accepted, but an observation must stay usable by log(cost).
  EXPECT_EQ(cost_of(complete("zero", 50s, 1.0, 0.0)), 0.001);
  EXPECT_EQ(run("zero").cost, 0.0);  // the record keeps what was given (identical retries)
  EXPECT_TRUE(complete("zero", 51s, 1.0, 0.0).ok());
  EXPECT_EQ(observation_cost(run("zero")), 0.001);
  EXPECT_EQ(cost_of(sup.process_exited("crash", at(50s))), 50.0);
  const auto fired = sup.expire(at(340s));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].cost, 300.0);
  sup.for_each([](const run_record& r) {
    EXPECT_TRUE(is_terminal(r.state)) << r.id;
    ASSERT_TRUE(r.history.back().cost) << r.id;
    EXPECT_GT(*r.history.back().cost, 0.0) << r.id;
    EXPECT_GT(observation_cost(r), 0.0) << r.id;
  });
}

// ---------------------------------------------------------------------------------------------
// counts through every path

TEST_F(SupervisorTest, CountsFollowEveryPath) {
  auto counts_are = [&](std::size_t init, std::size_t running, std::size_t success,
                        std::size_t failed, std::size_t crashed, std::size_t timeout) {
    EXPECT_EQ(count_of(sup, run_state::initializing), init);
    EXPECT_EQ(count_of(sup, run_state::running), running);
    EXPECT_EQ(count_of(sup, run_state::success), success);
    EXPECT_EQ(count_of(sup, run_state::failed), failed);
    EXPECT_EQ(count_of(sup, run_state::crashed), crashed);
    EXPECT_EQ(count_of(sup, run_state::timeout), timeout);
  };
  for (const std::string id : {"a", "b", "c", "d", "e"}) ASSERT_TRUE(reg(id).ok());
  counts_are(5, 0, 0, 0, 0, 0);
  for (const std::string id : {"a", "b", "c"}) ASSERT_TRUE(sup.start(id, alice, at(10s)).ok());
  counts_are(2, 3, 0, 0, 0, 0);
  ASSERT_TRUE(complete("a", 20s).ok());
  ASSERT_TRUE(fail("d", 20s, "x").ok());
  ASSERT_TRUE(sup.process_exited("e", at(20s)).ok());
  counts_are(0, 2, 1, 1, 1, 0);
  // Refused and idempotent calls change nothing.
  EXPECT_FALSE(complete("a", 21s, 5.0).ok());
  EXPECT_FALSE(reg("d", 21s).ok());
  EXPECT_TRUE(sup.start("b", alice, at(21s)).ok());
  EXPECT_TRUE(heartbeat("e", 21s).ok());
  counts_are(0, 2, 1, 1, 1, 0);
  ASSERT_EQ(sup.expire(at(321s)).size(), 2u);
  counts_are(0, 0, 1, 1, 1, 2);
  ASSERT_TRUE(heartbeat("b", 330s).change);
  counts_are(0, 1, 1, 1, 1, 1);
  ASSERT_TRUE(complete("c", 340s, 1.0).change);
  counts_are(0, 1, 2, 1, 1, 0);
  EXPECT_EQ(sup.size(), 5u);
}

// ---------------------------------------------------------------------------------------------
// plan, then apply

TEST_F(SupervisorTest, PlannedRegistrationCreatesNothingUntilApplied) {
  ASSERT_TRUE(reg("keep").ok());
  register_params p;
  p.run = "new";
  outcome o = sup.plan_register(p, alice, at(10s));
  ASSERT_TRUE(o.change);
  ASSERT_TRUE(o.change->created);
  EXPECT_EQ(o.run, nullptr);
  EXPECT_EQ(o.state(), run_state::initializing);
  EXPECT_EQ(sup.find("new"), nullptr);  // dropped (not stored): nothing happened
  EXPECT_EQ(sup.size(), 1u);
  EXPECT_EQ(sup.next_deadline(), at(300s).mono);
  const run_record& r = sup.apply(std::move(*o.change));
  EXPECT_EQ(r.id, "new");
  EXPECT_EQ(r.history.size(), 1u);
  EXPECT_EQ(sup.size(), 2u);
  EXPECT_EQ(count_of(sup, run_state::initializing), 2u);
  expect_consistent(sup);
}

struct plan_case {
  const char* name;
  run_state from;
  std::function<outcome(SupervisorTest&, const std::string&)> plan;
};

TEST_F(SupervisorTest, APlanChangesNothingAndApplyingItIsTheTransition) {
  const std::vector<plan_case> cases = {
      {"start", run_state::initializing,
       [](SupervisorTest& t, const std::string& id) {
         return t.sup.plan_start(id, alice, at(100s));
       }},
      {"complete", run_state::running,
       [](SupervisorTest& t, const std::string& id) {
         return t.sup.plan_complete({id, 0.3, 9.0}, alice, at(100s));
       }},
      {"fail", run_state::initializing,
       [](SupervisorTest& t, const std::string& id) {
         return t.sup.plan_fail({id, "boom"}, alice, at(100s));
       }},
      {"crash", run_state::running,
       [](SupervisorTest& t, const std::string& id) {
         return t.sup.plan_process_exited(id, at(100s));
       }},
      {"revive-by-start", run_state::timeout,
       [](SupervisorTest& t, const std::string& id) {
         return t.sup.plan_start(id, alice, at(400s));
       }},
      {"revive-by-heartbeat", run_state::timeout,
       [](SupervisorTest& t, const std::string& id) {
         return t.sup.plan_heartbeat({id, 12.0, 30.0}, alice, at(400s));
       }},
      {"late-complete", run_state::timeout,
       [](SupervisorTest& t, const std::string& id) {
         return t.sup.plan_complete({id, 0.7, std::nullopt}, alice, at(400s));
       }},
      {"late-fail", run_state::timeout,
       [](SupervisorTest& t, const std::string& id) {
         return t.sup.plan_fail({id, "late"}, alice, at(400s));
       }},
  };
  for (const plan_case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string id = c.name;
    drive_to(id, c.from);
    ASSERT_TRUE(reg("other-" + id, 5s).ok());  // another run keeps the index non-trivial
    const run_record before = run(id);
    const auto counts_before = sup.counts();
    const auto next_before = sup.next_deadline();
    const std::size_t size_before = sup.size();

    outcome o = c.plan(*this, id);
    ASSERT_TRUE(o.ok()) << o.err.message;
    ASSERT_TRUE(o.change);

    const run_record& unchanged = run(id);
    EXPECT_EQ(unchanged.state, before.state);
    EXPECT_EQ(unchanged.reason, before.reason);
    EXPECT_EQ(unchanged.history.size(), before.history.size());
    EXPECT_EQ(unchanged.deadline, before.deadline);
    EXPECT_EQ(unchanged.last_seen, before.last_seen);
    EXPECT_EQ(unchanged.heartbeat_timeout, before.heartbeat_timeout);
    EXPECT_EQ(unchanged.progress, before.progress);
    EXPECT_EQ(unchanged.objective, before.objective);
    EXPECT_EQ(unchanged.cost, before.cost);
    EXPECT_EQ(unchanged.error, before.error);
    EXPECT_EQ(unchanged.late_by_s, before.late_by_s);
    EXPECT_EQ(unchanged.runtime_s, before.runtime_s);
    EXPECT_EQ(sup.counts(), counts_before);
    EXPECT_EQ(sup.next_deadline(), next_before);
    EXPECT_EQ(sup.size(), size_before);
    expect_consistent(sup);

    // Planned again, the same; applied, the transition happens.
    const outcome again = c.plan(*this, id);
    ASSERT_TRUE(again.change);
    EXPECT_EQ(again.change->to, o.change->to);
    EXPECT_EQ(again.change->reason, o.change->reason);
    const run_state to = o.change->to;
    const run_record& after = sup.apply(std::move(*o.change));
    EXPECT_EQ(after.state, to);
    EXPECT_EQ(after.history.size(), before.history.size() + 1);
    expect_consistent(sup);
  }
}

TEST_F(SupervisorTest, HeartbeatWithoutTransitionTakesEffectAtOnce) {
  ASSERT_TRUE(reg("r1").ok());
  const outcome o = sup.plan_heartbeat({"r1", 3.0, 50.0}, alice, at(100s));
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o.change);  // nothing to store
  EXPECT_EQ(run("r1").progress, 3.0);
  EXPECT_EQ(sup.next_deadline(), at(150s).mono);
}

}  // namespace
}  // namespace sweepd::core
