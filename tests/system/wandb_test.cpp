// The real sweepd binary delivering to the fake W&B server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <nlohmann/json.hpp>

#include "fakes/fake_wandb.hpp"
#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

class WandbSystemTest : public ::testing::Test {
 protected:
  std::string socket_path() const { return test::daemon_paths::in(dir_).socket; }

  /// The config's W&B section for `mode`, at the fake W&B server.
  std::string wandb_config(const std::string& mode) const {
    return "wandb: {mode: " + mode + ", base_url: \"" + wandb_.base_url() +
           "\", entity: team, project: sweeps, request_timeout: 2}\n";
  }

  void start_daemon(const std::string& mode, bool with_key = true) {
    std::vector<std::string> env = {"HOME=" + dir_.path().string()};
    if (with_key) env.push_back("WANDB_API_KEY=" + wandb_.api_key());
    daemon_.emplace(dir_, wandb_config(mode), env);
    daemon_->start();
  }

  json call(const json& request) { return daemon_->call(request); }
  test::process& proc() { return daemon_->proc(); }

  bool has_state(const std::string& run, const std::string& state) {
    return wandb_.summary("team", "sweeps", run).find("\"protein.state\":\"" + state + "\"") !=
           std::string::npos;
  }

  /// Polls `status` until W&B has nothing pending (bounded; no event to wait on).
  bool drained() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (call({{"op", "status"}})["wandb"]["pending"] == 0) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  test::fake_wandb wandb_;
  test::temp_dir dir_;
  std::optional<test::sweepd_under_test> daemon_;
};

TEST_F(WandbSystemTest, EveryTransitionReachesTheSummaryAndTheKeyIsNeverShown) {
  wandb_.add_run("team", "sweeps", "ab12cd34", R"({"loss":NaN,"epoch":3})");
  start_daemon("online");
  ASSERT_EQ(call({{"op", "register"}, {"run", "ab12cd34"}, {"sweep", "s1"}})["ok"], true);
  ASSERT_EQ(call({{"op", "start"}, {"run", "ab12cd34"}})["ok"], true);
  ASSERT_EQ(call({{"op", "complete"}, {"run", "ab12cd34"}, {"objective", 0.9}})["ok"], true);
  ASSERT_TRUE(wandb_.wait_until([&] { return has_state("ab12cd34", "success"); }, 10s));
  ASSERT_TRUE(drained());
  const json status = call({{"op", "status"}});
  EXPECT_EQ(status["wandb"]["mode"], "online");
  EXPECT_EQ(status["wandb"]["dead"], 0);
  const std::string summary = wandb_.summary("team", "sweeps", "ab12cd34");
  EXPECT_THAT(summary, HasSubstr(R"("loss":NaN)"));
  EXPECT_THAT(summary, HasSubstr(R"("epoch":3)"));
  EXPECT_THAT(summary, HasSubstr(R"("protein.objective":0.9)"));
  EXPECT_THAT(status.dump(), Not(HasSubstr(wandb_.api_key())));
  ASSERT_TRUE(proc().send_signal(SIGTERM));
  ASSERT_EQ(proc().wait_for(10s), 0);
  EXPECT_THAT(proc().err(), Not(HasSubstr(wandb_.api_key())));
  EXPECT_THAT(proc().err(), HasSubstr("key from $WANDB_API_KEY"));
}

TEST_F(WandbSystemTest, PendingWritesSurviveAKillAndAreDeliveredAfterRestart) {
  wandb_.add_run("team", "sweeps", "r1");
  start_daemon("offline");
  ASSERT_EQ(call({{"op", "register"}, {"run", "r1"}})["ok"], true);
  ASSERT_EQ(call({{"op", "fail"}, {"run", "r1"}, {"error", "CUDA out of memory"}})["ok"], true);
  EXPECT_EQ(call({{"op", "status"}})["wandb"]["pending"], 1);  // the fail supersedes the register
  EXPECT_EQ(wandb_.requests(), 0u);                            // offline sends nothing
  proc().kill();
  start_daemon("online");
  ASSERT_TRUE(wandb_.wait_until([&] { return has_state("r1", "failed"); }, 10s)) << proc().err();
  ASSERT_TRUE(drained());
  const std::string summary = wandb_.summary("team", "sweeps", "r1");
  EXPECT_THAT(summary, HasSubstr(R"("protein.is_failure":true)"));
  EXPECT_THAT(summary, HasSubstr(R"("protein.error":"CUDA out of memory")"));
}

TEST_F(WandbSystemTest, SigtermWithNothingInFlightExitsAtOnce) {
  wandb_.add_run("team", "sweeps", "r1");
  start_daemon("online");
  ASSERT_EQ(call({{"op", "register"}, {"run", "r1"}})["ok"], true);
  ASSERT_TRUE(drained());
  ASSERT_TRUE(proc().send_signal(SIGTERM));
  // The shutdown grace for writes in flight is 2 s; with none in flight the daemon must not sit
  // it out (it used to, every time).
  EXPECT_EQ(proc().wait_for(1500ms), 0) << proc().err();
}

TEST_F(WandbSystemTest, SigtermLetsAWriteInFlightLandAndRecordsIt) {
  wandb_.add_run("team", "sweeps", "r1");
  // The run query of the first write answers after 600 ms: SIGTERM arrives while it is in flight.
  wandb_.push_fault(test::fake_wandb::fault::slow, 600ms);
  start_daemon("online");
  ASSERT_EQ(call({{"op", "register"}, {"run", "r1"}})["ok"], true);
  ASSERT_TRUE(wandb_.wait_until([&] { return wandb_.requests() >= 1; }, 10s));
  ASSERT_TRUE(proc().send_signal(SIGTERM));
  ASSERT_EQ(proc().wait_for(10s), 0) << proc().err();
  EXPECT_TRUE(has_state("r1", "initializing"));
  // Recorded as delivered before the exit: nothing is pending after a restart.
  start_daemon("offline");
  EXPECT_EQ(call({{"op", "status"}})["wandb"]["pending"], 0);
}

TEST_F(WandbSystemTest, ShowTellsTheRunsDeliveryAndResyncRepairsADeadLetter) {
  wandb_.add_run("team", "sweeps", "r1");
  wandb_.push_fault(test::fake_wandb::fault::unauthorized_401);  // a key revoked, then fixed
  start_daemon("online");
  ASSERT_EQ(call({{"op", "register"}, {"run", "r1"}})["ok"], true);
  ASSERT_TRUE(drained());
  const auto sweepctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {SWEEPCTL_BINARY, "--socket", socket_path()});
    return test::run_command(args, {}, 20s);
  };
  auto shown = sweepctl({"show", "r1"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr("W&B delivery"));
  EXPECT_THAT(shown.out, HasSubstr("dead"));
  EXPECT_THAT(shown.out, HasSubstr("401"));

  const auto resynced = sweepctl({"resync", "r1"});
  ASSERT_EQ(resynced.exit_code, 0) << resynced.err;
  EXPECT_THAT(resynced.out, HasSubstr("r1: initializing, W&B summary queued again"));
  ASSERT_TRUE(wandb_.wait_until([&] { return has_state("r1", "initializing"); }, 10s));
  ASSERT_TRUE(drained());
  const json run = call({{"op", "show"}, {"run", "r1"}})["run"];
  EXPECT_EQ(run["wandb"]["status"], "delivered");
  EXPECT_TRUE(run["wandb"]["last_delivered_at"].is_string());
}

// A run summary nested 80 000 deep (anyone who can write to the run can store one) and a run
// whose `id` W&B answers as a number used to kill sweepd at the first attempt, and again at every
// restart while the write was pending: a crash loop. Now each is a dead letter and sweepd stays up.
TEST_F(WandbSystemTest, HostileAnswersAreDeadLettersAndARestartDoesNotCrashLoop) {
  wandb_.add_run("team", "sweeps", "deep", test::fake_wandb::nested_summary(80000));
  wandb_.add_run("team", "sweeps", "numeric");
  wandb_.set_raw_field("team", "sweeps", "numeric", "id", "42");
  wandb_.add_run("team", "sweeps", "good");
  // The writes are pending when sweepd starts online: they are the ones retried at start.
  start_daemon("offline");
  for (const char* run : {"deep", "numeric", "good"}) {
    ASSERT_EQ(call({{"op", "register"}, {"run", run}})["ok"], true);
  }
  proc().kill();

  start_daemon("online");
  ASSERT_TRUE(wandb_.wait_until([&] { return has_state("good", "initializing"); }, 10s));
  ASSERT_TRUE(drained()) << proc().err();
  const json status = call({{"op", "status"}});
  EXPECT_EQ(status["wandb"]["dead"], 2);
  const json deep = call({{"op", "show"}, {"run", "deep"}})["run"]["wandb"];
  EXPECT_EQ(deep["status"], "dead");
  EXPECT_THAT(deep.value("last_error", ""),
              HasSubstr("the run's W&B summary nests deeper than 256 levels; sweepd will not "
                        "rewrite it"));
  const json numeric = call({{"op", "show"}, {"run", "numeric"}})["run"]["wandb"];
  EXPECT_EQ(numeric["status"], "dead");
  EXPECT_THAT(numeric.value("last_error", ""), HasSubstr("`data.project.run.id` is a number (42)"));
  EXPECT_EQ(proc().wait_for(0ms), std::nullopt) << proc().err();

  // A write of the deep run is in flight (its read answers late) when sweepd is SIGKILLed: it is
  // pending at the restart and retried at once.
  wandb_.push_fault(test::fake_wandb::fault::slow, 3s);
  const auto before = wandb_.requests();
  ASSERT_EQ(call({{"op", "start"}, {"run", "deep"}})["ok"], true);
  ASSERT_TRUE(wandb_.wait_until([&] { return wandb_.requests() > before; }, 10s));
  proc().kill();
  start_daemon("online");
  ASSERT_TRUE(drained()) << proc().err();
  EXPECT_EQ(call({{"op", "status"}})["wandb"]["dead"], 3);
  // Still up once the retried write is settled, and still answering.
  EXPECT_EQ(proc().wait_for(500ms), std::nullopt) << proc().err();
  EXPECT_EQ(call({{"op", "status"}})["ok"], true);
  ASSERT_TRUE(proc().send_signal(SIGTERM));
  EXPECT_EQ(proc().wait_for(10s), 0) << proc().err();
}

TEST_F(WandbSystemTest, ResyncWithWandbDisabledIsUnavailable) {
  start_daemon("disabled");
  ASSERT_EQ(call({{"op", "register"}, {"run", "r1"}})["ok"], true);
  const json reply = call({{"op", "resync"}, {"run", "r1"}});
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"]["code"], "unavailable");
}

TEST_F(WandbSystemTest, OnlineWithoutAKeyRefusesToStart) {
  const test::daemon_paths paths = test::daemon_paths::in(dir_);
  test::write_daemon_config(paths, wandb_config("online"));
  auto r = test::run_command({SWEEPD_BINARY, "--config", paths.config},
                             {"HOME=" + dir_.path().string()}, 10s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no W&B API key was found"));
}

TEST_F(WandbSystemTest, AutoWithoutAKeyRunsOffline) {
  start_daemon("auto", false);
  EXPECT_EQ(call({{"op", "status"}})["wandb"]["mode"], "offline");
}

}  // namespace
}  // namespace sweepd
