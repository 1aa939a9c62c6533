#include "core/reconcile.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/core_test_support.hpp"

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using action = reconcile_decision::action;

constexpr caller root{0, 1, true};
constexpr caller alice{1000, 4242, false};

/// A W&B run of the sweep that started 100 s before "now" (at 1000 s) and was last heard of
/// `silent` ago.
wandb_listed_run listed(const std::string& name, const std::string& state,
                        const std::string& summary, mono_clock::duration silent = 10s) {
  wandb_listed_run r;
  r.name = name;
  r.state = state;
  r.created_at = at(900s).wall;
  r.heartbeat_at = at(1000s).wall - std::chrono::duration_cast<wall_time::duration>(silent);
  r.summary_text = summary;
  return r;
}

class ReconcileTest : public ::testing::Test {
 protected:
  reconcile_decision classify(const wandb_listed_run& r) {
    rules.sweep = "sw";
    rules.entity = "team";
    rules.project = "proj";
    return classify_for_reconcile(r, sup.find(r.name), rules, at(1000s).wall);
  }

  supervisor sup{supervisor_limits{}};
  reconcile_rules rules;
};

TEST_F(ReconcileTest, RunSweepdTracksLiveIsLeftToSweepdsClocks) {
  register_params p;
  p.run = "mine";
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  const auto d = classify(listed("mine", "crashed", R"({"protein.state":"running"})", 1h));
  EXPECT_EQ(d.what, action::skip);
  EXPECT_EQ(d.reason, "live_in_sweepd");
}

TEST_F(ReconcileTest, RunSweepdHasFinalIsRepairedWithSweepdsState) {
  register_params p;
  p.run = "done";
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  ASSERT_TRUE(sup.complete({"done", 0.5, 2.0}, alice, at(5s)).ok());
  const auto d = classify(listed("done", "running", R"({"protein.state":"running"})"));
  EXPECT_EQ(d.what, action::repair);
  EXPECT_EQ(d.state, run_state::success);
  EXPECT_EQ(d.reason, "final_in_sweepd");
}

TEST_F(ReconcileTest, FiniteObjectiveIsASuccessWithItsCost) {
  const auto d = classify(
      listed("r", "running",
             R"({"protein.state":"running","protein.objective":0.93,"protein.cost":12})", 1h));
  ASSERT_EQ(d.what, action::adopt);
  EXPECT_EQ(d.state, run_state::success);
  EXPECT_EQ(d.reason, "reconciled_objective");
  EXPECT_EQ(d.adopted.objective, 0.93);
  EXPECT_EQ(d.adopted.cost, 12.0);
  EXPECT_EQ(d.adopted.sweep, "sw");
  EXPECT_EQ(d.adopted.entity, "team");
}

TEST_F(ReconcileTest, ObjectiveWithoutAPositiveCostCostsItsRuntime) {
  const auto d = classify(
      listed("r", "finished",
             R"({"protein.state":"running","protein.objective":1,"protein.cost":0})", 40s));
  ASSERT_EQ(d.what, action::adopt);
  EXPECT_FALSE(d.adopted.cost.has_value());
  EXPECT_DOUBLE_EQ(d.adopted.runtime_s, 60.0);  // heartbeatAt - createdAt
}

TEST_F(ReconcileTest, NonFiniteObjectiveIsNoObjective) {
  const auto d =
      classify(listed("r", "finished", R"({"protein.state":"running","protein.objective":NaN})"));
  ASSERT_EQ(d.what, action::adopt);
  EXPECT_EQ(d.state, run_state::failed);
  EXPECT_EQ(d.reason, "reconciled_no_objective");
  EXPECT_EQ(d.adopted.error, "finished without an objective");
}

TEST_F(ReconcileTest, WandbsOwnEndStatesAreTakenOver) {
  const std::vector<std::tuple<std::string, run_state, std::string>> cases = {
      {"crashed", run_state::crashed, "reconciled_wandb_crashed"},
      {"failed", run_state::failed, "reconciled_wandb_failed"},
      {"killed", run_state::failed, "reconciled_wandb_killed"},
      {"finished", run_state::failed, "reconciled_no_objective"}};
  for (const auto& [wandb_state, state, reason] : cases) {
    SCOPED_TRACE(wandb_state);
    const auto d = classify(listed("r", wandb_state, R"({"protein.state":"running"})"));
    ASSERT_EQ(d.what, action::adopt);
    EXPECT_EQ(d.state, state);
    EXPECT_EQ(d.reason, reason);
    EXPECT_TRUE(d.adopted.error.has_value());
  }
}

TEST_F(ReconcileTest, SilentRunningRunTimesOutAndAHeardOneIsAlive) {
  rules.stale_after_s = 300;
  const auto stale = classify(listed("r", "running", R"({"protein.state":"running"})", 301s));
  ASSERT_EQ(stale.what, action::adopt);
  EXPECT_EQ(stale.state, run_state::timeout);
  EXPECT_EQ(stale.reason, "reconciled_stale");
  const auto alive = classify(listed("r", "running", R"({"protein.state":"running"})", 299s));
  EXPECT_EQ(alive.what, action::skip);
  EXPECT_EQ(alive.reason, "alive_in_wandb");
}

TEST_F(ReconcileTest, WithoutHeartbeatTheCreationTimeTells) {
  wandb_listed_run r = listed("r", "running", R"({"protein.state":"initializing"})");
  r.heartbeat_at.reset();  // created at 900 s, 100 s ago
  rules.stale_after_s = 50;
  EXPECT_EQ(classify(r).what, action::adopt);
  rules.stale_after_s = 200;
  EXPECT_EQ(classify(r).what, action::skip);
}

TEST_F(ReconcileTest, SummaryAlreadyFinalIsNeverWritten) {
  for (const char* summary : {R"({"protein.state":"success"})", R"({"protein.state":"failure"})",
                              R"({"loss":1})", "not json", R"({"protein.state":7})"}) {
    SCOPED_TRACE(summary);
    const auto d = classify(listed("r", "crashed", summary));
    EXPECT_EQ(d.what, action::skip);
    EXPECT_EQ(d.reason, "final_in_wandb");
  }
}

TEST_F(ReconcileTest, LegacyStateNamesAreHonoured) {
  rules.state_names = {{"running", "active"}, {"failed", "failure"}};
  EXPECT_THAT(live_summary_names(rules.state_names), ElementsAre("initializing", "active"));
  EXPECT_EQ(classify(listed("r", "crashed", R"({"protein.state":"active"})")).what, action::adopt);
  EXPECT_EQ(classify(listed("r", "crashed", R"({"protein.state":"running"})")).what, action::skip);
}

TEST_F(ReconcileTest, CountsByActionAndNewState) {
  std::vector<reconcile_decision> ds = {
      classify(listed("a", "crashed", R"({"protein.state":"running"})")),
      classify(listed("b", "running", R"({"protein.state":"running"})", 1h)),
      classify(listed("c", "running", R"({"protein.state":"running"})", 1h)),
      classify(listed("d", "running", R"({"protein.state":"running"})"))};
  const auto counts = count_decisions(ds);
  EXPECT_EQ(counts.at("adopt"), 3u);
  EXPECT_EQ(counts.at("skip"), 1u);
  EXPECT_EQ(counts.at("timeout"), 2u);
  EXPECT_EQ(counts.at("crashed"), 1u);
}

TEST_F(ReconcileTest, AdoptedRunIsTerminalWithOneTransitionAndAPositiveCost) {
  const auto d = classify(listed("r", "running", R"({"protein.state":"running"})", 1h));
  const outcome o = sup.adopt(d.adopted, root, at(1000s));
  ASSERT_TRUE(o.ok()) << o.err.message;
  ASSERT_TRUE(o.change);
  EXPECT_FALSE(o.change->from.has_value());
  EXPECT_EQ(o.change->to, run_state::timeout);
  EXPECT_EQ(o.change->reason, transition_reason::reconciled_stale);
  EXPECT_GT(*o.change->cost, 0.0);
  const run_record& r = *sup.find("r");
  EXPECT_EQ(r.history.size(), 1u);
  EXPECT_EQ(r.sweep, "sw");
  EXPECT_EQ(r.registered_wall, at(900s).wall);
  EXPECT_EQ(sup.next_deadline(), std::nullopt);
  expect_consistent(sup);
  // A second adoption of the same run is refused: nothing new to do.
  EXPECT_EQ(sup.adopt(d.adopted, root, at(1001s)).err.code, error_code::conflict);
}

TEST_F(ReconcileTest, AdoptedRunsWorkerStillCorrectsItLate) {
  // Even a failure W&B reported is reconcile's judgement: the worker's own word wins.
  const auto d = classify(listed("r", "killed", R"({"protein.state":"running"})"));
  ASSERT_TRUE(sup.adopt(d.adopted, root, at(1000s)).ok());
  const outcome late = sup.complete({"r", 0.8, std::nullopt}, root, at(1030s));
  ASSERT_TRUE(late.ok()) << late.err.message;
  ASSERT_TRUE(late.change);
  EXPECT_EQ(late.change->reason, transition_reason::late_completed);
  EXPECT_DOUBLE_EQ(*late.change->late_by_s, 30.0);
  EXPECT_EQ(sup.find("r")->state, run_state::success);
  // …and once the worker has spoken, that is final.
  EXPECT_EQ(sup.fail({"r", "boom"}, root, at(1040s)).err.code, error_code::conflict);
  expect_consistent(sup);
}

TEST_F(ReconcileTest, AdoptedRunBelongsToItsSweepsOwner) {
  register_params p;
  p.run = "first";
  p.sweep = "sw";
  ASSERT_TRUE(sup.register_run(p, alice, at(0s)).ok());
  const auto d = classify(listed("r", "running", R"({"protein.state":"running"})", 1h));
  ASSERT_TRUE(sup.adopt(d.adopted, root, at(1000s)).ok());
  EXPECT_EQ(sup.find("r")->owner_uid, alice.uid);  // her worker may still report
}

}  // namespace
}  // namespace sweepd::core
