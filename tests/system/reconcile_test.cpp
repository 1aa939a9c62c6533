// Reconcile with the real sweepd against the fake W&B: a sweep of stuck runs, every rule, dry
// run, apply, a second apply, W&B failing mid-listing, the periodic pass.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/lenient_json.hpp"
#include "core/time.hpp"
#include "fakes/fake_wandb.hpp"
#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* entity = "team";
constexpr const char* project = "sweeps";

std::string ago(std::chrono::seconds d) {
  return core::format_utc(std::chrono::system_clock::now() - d);
}

class ReconcileSystemTest : public ::testing::Test {
 protected:
  /// A run of sweep `sweep` in the fake W&B, created an hour ago, last heard of `silent` ago.
  void add(const std::string& name, const std::string& state, const std::string& summary,
           std::chrono::seconds silent = 3600s, const std::string& sweep = "sw") {
    wandb_.add_run(entity, project, name, summary, state);
    wandb_.set_run_meta(entity, project, name, sweep, ago(7200s), ago(silent));
  }

  std::string config(const std::string& extra = "") {
    return "wandb: {mode: online, base_url: \"" + wandb_.base_url() +
           "\", entity: team, project: sweeps, request_timeout: 5}\n"
           "reconcile: {stale_after: 300" +
           extra + "}\n";
  }

  void start(const std::string& extra = "") {
    d_.emplace(dir_, config(extra),
               std::vector<std::string>{"WANDB_API_KEY=" + wandb_.api_key(),
                                        "HOME=" + dir_.path().string()});
    d_->start();
  }

  test::command_result sweepctl(std::vector<std::string> args) {
    args.insert(args.begin(), {SWEEPCTL_BINARY, "--socket", d_->socket_path()});
    return test::run_command(args, {}, 60s);
  }

  json reconcile(bool apply, const std::string& sweep = "sw") {
    std::vector<std::string> args = {"--json", "reconcile", "--sweep", sweep};
    if (apply) args.push_back("--apply");
    const auto r = sweepctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return json::parse(r.out, nullptr, false);
  }

  /// Polls `status` until W&B has nothing pending (bounded; no event to wait on).
  bool drained() {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (d_->call({{"op", "status"}})["wandb"]["pending"] == 0) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::string summary_state(const std::string& run) {
    const json s = core::parse_lenient_json(wandb_.summary(entity, project, run), 64).value;
    return s.is_object() ? s.value("protein.state", "") : "(not JSON)";
  }

  /// Every rule of reconcile, plus enough stale runs for three pages of 100.
  void populate() {
    add("obj", "running",
        R"({"protein.state":"running","protein.objective":0.93,)"
        R"("protein.cost":12.5,"loss":NaN,"note":"kept"})");
    add("crash", "crashed", R"({"protein.state":"running"})", 60s);
    add("fail", "failed", R"({"protein.state":"running"})", 60s);
    add("kill", "killed", R"({"protein.state":"initializing"})", 60s);
    add("noobj", "finished", R"({"protein.state":"running","protein.objective":NaN})", 60s);
    add("alive", "running", R"({"protein.state":"running"})", 10s);
    add("done", "finished", R"({"protein.state":"success","protein.objective":1})", 60s);
    add("other", "running", R"({"protein.state":"running"})", 3600s, "another-sweep");
    for (int i = 0; i < 230; ++i) {
      add(fmt::format("stale{:03}", i), "running", R"({"protein.state":"running","step":7})");
    }
  }

  test::temp_dir dir_;
  test::fake_wandb wandb_;
  std::optional<test::sweepd_under_test> d_;
};

TEST_F(ReconcileSystemTest, DryRunThenApplyGivesEveryStuckRunItsTrueStateOnce) {
  populate();
  // One run sweepd tracks live, one it has final while W&B still shows it running.
  add("mine-live", "running", R"({"protein.state":"running"})");
  add("mine-done", "running", R"({"protein.state":"running"})");
  start();
  ASSERT_EQ(d_->call({{"op", "register"}, {"run", "mine-live"}, {"sweep", "sw"}})["ok"], true);
  ASSERT_EQ(d_->call({{"op", "register"}, {"run", "mine-done"}, {"sweep", "sw"}})["ok"], true);
  ASSERT_EQ(d_->call({{"op", "complete"}, {"run", "mine-done"}, {"objective", 0.5}})["ok"], true);
  ASSERT_TRUE(drained());
  wandb_.set_summary(entity, project, "mine-done", R"({"protein.state":"running"})");  // stale
  const std::size_t upserts = wandb_.upserts();

  // Dry run: the whole picture, nothing written.
  const json dry = reconcile(false);
  ASSERT_TRUE(dry.is_object());
  EXPECT_EQ(dry["apply"], false);
  EXPECT_EQ(dry["counts"]["adopt"], 5 + 230);
  EXPECT_EQ(dry["counts"]["success"], 1);
  EXPECT_EQ(dry["counts"]["crashed"], 1);
  EXPECT_EQ(dry["counts"]["failed"], 3);
  EXPECT_EQ(dry["counts"]["timeout"], 230);
  EXPECT_EQ(dry["counts"]["repair"], 1);
  EXPECT_EQ(dry["counts"]["skip"], 2);   // alive in W&B, live in sweepd
  EXPECT_GE(wandb_.list_queries(), 3u);  // more than two pages
  EXPECT_EQ(d_->call({{"op", "show"}, {"run", "obj"}})["error"]["code"], "unknown_run");
  EXPECT_EQ(wandb_.upserts(), upserts);
  const auto table = sweepctl({"reconcile", "--sweep", "sw"});
  EXPECT_THAT(table.out, HasSubstr("235 to mark: 1 success, 3 failed, 1 crashed, 230 timeout"));
  EXPECT_THAT(table.out, HasSubstr("dry run: nothing written, run with --apply"));

  // Apply: each run gets its state and a positive cost in sweepd and in W&B.
  const json applied = reconcile(true);
  EXPECT_EQ(applied["apply"], true);
  EXPECT_EQ(applied["counts"]["adopt"], 235);
  const std::map<std::string, std::pair<std::string, std::string>> expected = {
      {"obj", {"success", "reconciled_objective"}},
      {"crash", {"crashed", "reconciled_wandb_crashed"}},
      {"fail", {"failed", "reconciled_wandb_failed"}},
      {"kill", {"failed", "reconciled_wandb_killed"}},
      {"noobj", {"failed", "reconciled_no_objective"}},
      {"stale000", {"timeout", "reconciled_stale"}}};
  for (const auto& [run, want] : expected) {
    SCOPED_TRACE(run);
    const json shown = d_->call({{"op", "show"}, {"run", run}})["run"];
    EXPECT_EQ(shown["state"], want.first);
    EXPECT_EQ(shown["reason"], want.second);
    EXPECT_GT(shown["transitions"][0]["cost"].get<double>(), 0.0);
  }
  EXPECT_EQ(d_->call({{"op", "show"}, {"run", "obj"}})["run"]["objective"], 0.93);
  EXPECT_EQ(d_->call({{"op", "show"}, {"run", "alive"}})["error"]["code"], "unknown_run");
  EXPECT_EQ(d_->call({{"op", "show"}, {"run", "mine-live"}})["run"]["state"], "initializing");
  ASSERT_TRUE(drained());
  EXPECT_EQ(summary_state("obj"), "success");
  EXPECT_EQ(summary_state("kill"), "failed");
  EXPECT_EQ(summary_state("stale229"), "timeout");
  EXPECT_EQ(summary_state("mine-done"), "success");  // repaired from sweepd's own state
  EXPECT_EQ(summary_state("alive"), "running");      // really alive: untouched
  EXPECT_EQ(summary_state("other"), "running");      // another sweep: untouched
  EXPECT_EQ(summary_state("done"), "success");
  const std::string obj = wandb_.summary(entity, project, "obj");
  EXPECT_THAT(obj, HasSubstr(R"("loss":NaN)"));
  EXPECT_THAT(obj, HasSubstr(R"("note":"kept")"));
  EXPECT_THAT(wandb_.summary(entity, project, "stale000"), HasSubstr(R"("step":7)"));
  EXPECT_THAT(wandb_.summary(entity, project, "stale000"), HasSubstr(R"("protein.cost":)"));

  // A second apply finds nothing new to do.
  const std::size_t after_apply = wandb_.upserts();
  const json again = reconcile(true);
  EXPECT_EQ(again["counts"].value("adopt", 0), 0);
  EXPECT_EQ(again["counts"].value("repair", 0), 0);
  ASSERT_TRUE(drained());
  EXPECT_EQ(wandb_.upserts(), after_apply);
  EXPECT_THAT(sweepctl({"reconcile", "--sweep", "sw"}).out, HasSubstr("nothing to mark; 1 alive"));

  // The worker of an adopted run reports after all: a late completion.
  const json late = d_->call({{"op", "complete"}, {"run", "stale001"}, {"objective", 0.7}});
  EXPECT_EQ(late["state"], "success");
  EXPECT_EQ(d_->call({{"op", "show"}, {"run", "stale001"}})["run"]["reason"], "late_completed");
}

TEST_F(ReconcileSystemTest, WandbFailingMidListingAdoptsNothing) {
  populate();
  start();
  // The first page is answered; every try at the second fails.
  wandb_.fail_listings_after(1);
  const auto r = sweepctl({"reconcile", "--sweep", "sw", "--apply"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("unavailable"));
  EXPECT_THAT(r.err, HasSubstr("page 2"));
  EXPECT_THAT(r.err, HasSubstr("nothing was changed"));
  const json status = d_->call({{"op", "status"}});
  EXPECT_EQ(status["runs_total"], 0);
  EXPECT_EQ(status["wandb"]["pending"], 0);
}

TEST_F(ReconcileSystemTest, ApplyIsForAdminsAndDryRunForAll) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run sweepctl as another uid (setpriv)";
  populate();
  std::filesystem::permissions(
      dir_.path(), std::filesystem::perms::owner_all | std::filesystem::perms::others_exec);
  d_.emplace(dir_, config() + "socket: {mode: \"0666\"}\n",
             std::vector<std::string>{"WANDB_API_KEY=" + wandb_.api_key(),
                                      "HOME=" + dir_.path().string()});
  d_->start();
  auto as_nobody = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534",
                               "--clear-groups", SWEEPCTL_BINARY, "--socket", d_->socket_path()});
    return test::run_command(args, {}, 60s);
  };
  auto r = as_nobody({"reconcile", "--sweep", "sw", "--apply"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("forbidden"));
  r = as_nobody({"reconcile", "--sweep", "sw"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(d_->call({{"op", "status"}})["runs_total"], 0);
}

TEST_F(ReconcileSystemTest, PeriodicPassAdoptsTheConfiguredSweeps) {
  add("stale-a", "running", R"({"protein.state":"running"})");
  add("crash-b", "crashed", R"({"protein.state":"running"})");
  start(", interval: 0.2, sweeps: [{entity: team, project: sweeps, sweep_id: sw}]");
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  json reconcile;
  while (std::chrono::steady_clock::now() < deadline) {
    reconcile = d_->call({{"op", "status"}})["reconcile"];
    if (reconcile.value("adopted", 0) >= 2) break;
    std::this_thread::sleep_for(20ms);  // the pass has no event a client can wait on
  }
  EXPECT_EQ(reconcile["adopted"], 2);
  EXPECT_GE(reconcile["passes"].get<int>(), 1);
  EXPECT_TRUE(reconcile["last_pass_at"].is_string());
  EXPECT_EQ(d_->call({{"op", "show"}, {"run", "crash-b"}})["run"]["state"], "crashed");
  EXPECT_THAT(d_->proc().err(), HasSubstr("reconcile of sweep sw in team/sweeps"));
  const auto status = sweepctl({"status"});
  EXPECT_THAT(status.out, HasSubstr("2 adopted"));
}

TEST_F(ReconcileSystemTest, OfflineSweepdSaysReconcileIsUnavailable) {
  d_.emplace(dir_, "wandb: {mode: offline}\n");
  d_->start();
  const json reply = d_->call({{"op", "reconcile"}, {"sweep", "sw"}});
  EXPECT_EQ(reply["error"]["code"], "unavailable");
  EXPECT_THAT(reply["error"]["message"].get<std::string>(), HasSubstr("offline"));
}

}  // namespace
}  // namespace sweepd
