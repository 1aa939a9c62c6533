// The daemon's own logic on a fake clock, in this process: deadlines, retention, reload, a journal
// that refuses writes and a worker that exits. Time moves when the test says, never by waiting.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "app/app_harness.hpp"

namespace sweepd::app {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::HasSubstr;

json register_request(const std::string& run) {
  return {{"op", "register"}, {"run", run}, {"sweep", "s1"}};
}

class DaemonLogicTest : public ::testing::Test {
 protected:
  /// The daemon on `extra`, started.
  test::daemon_in_process& start(const std::string& extra = "timeouts: {heartbeat: 300}\n") {
    daemon_.emplace(dir_, extra);
    daemon_->start();
    return *daemon_;
  }

  json ok(const json& request) {
    json reply = daemon_->call(request);
    EXPECT_EQ(reply["ok"], true) << request.dump() << " -> " << reply.dump();
    return reply;
  }

  /// Moves the clock to 1 ms before `run`'s deadline, `left` from now: still live; then to the
  /// deadline: timed out.
  void expect_deadline_in(const std::string& run, std::chrono::nanoseconds left) {
    daemon_->advance(left - 1ms);
    EXPECT_NE(state_of(run), "timeout") << run << " timed out before its deadline";
    daemon_->advance(1ms);
    EXPECT_EQ(state_of(run), "timeout") << run << " did not time out at its deadline";
  }

  json show(const std::string& run) { return daemon_->call({{"op", "show"}, {"run", run}}); }
  std::string state_of(const std::string& run) {
    return show(run)["run"]["state"].get<std::string>();
  }

  test::temp_dir dir_;
  std::optional<test::daemon_in_process> daemon_;
};

TEST_F(DaemonLogicTest, SilentRunTimesOutExactlyAtItsDeadline) {
  test::daemon_in_process& d = start();
  ok(register_request("quiet"));
  ok({{"op", "start"}, {"run", "quiet"}});
  ASSERT_EQ(state_of("quiet"), "running");

  expect_deadline_in("quiet", 300s);
  const json run = show("quiet")["run"];
  EXPECT_EQ(run["state"], "timeout") << run.dump();
  EXPECT_EQ(run["reason"], "heartbeat_timeout") << run.dump();
  EXPECT_TRUE(d.wait_for_log("run quiet: running -> timeout (heartbeat_timeout)")) << d.log();
}

TEST_F(DaemonLogicTest, RunsOwnHeartbeatTimeoutOverridesTheConfigs) {
  test::daemon_in_process& d = start("timeouts: {heartbeat: 0.3}\n");
  ok(register_request("quiet"));
  ok({{"op", "register"}, {"run", "slow"}, {"heartbeat_timeout_s", 60}});
  d.advance(300ms);
  const json quiet = show("quiet")["run"];
  EXPECT_EQ(quiet["state"], "timeout");
  EXPECT_EQ(quiet["runtime_s"], 0.3);  // from register to the timeout, not a moment late
  EXPECT_EQ(state_of("slow"), "initializing");
  EXPECT_THAT(d.log(), HasSubstr("run quiet: initializing -> timeout (heartbeat_timeout)"));
}

TEST_F(DaemonLogicTest, HeartbeatRevivesATimedOutRun) {
  test::daemon_in_process& d = start("timeouts: {heartbeat: 0.2}\n");
  ok(register_request("r1"));
  d.advance(200ms);
  ASSERT_EQ(state_of("r1"), "timeout");
  EXPECT_EQ(ok({{"op", "heartbeat"}, {"run", "r1"}, {"timeout_s", 60}})["state"], "running");
  EXPECT_EQ(show("r1")["run"]["reason"], "revived");
}

TEST_F(DaemonLogicTest, HeartbeatPushesTheDeadlineBack) {
  test::daemon_in_process& d = start();
  ok(register_request("alive"));
  d.advance(200s);
  ok({{"op", "heartbeat"}, {"run", "alive"}});
  expect_deadline_in("alive", 300s);  // from the heartbeat, not from registering
}

TEST_F(DaemonLogicTest, HeartbeatThatShortensTheTimeoutRearmsTheTimer) {
  // The timer, armed for the 300 s default, must be brought forward without a transition.
  start();
  ok(register_request("short"));
  ok({{"op", "heartbeat"}, {"run", "short"}, {"timeout_s", 0.2}});
  expect_deadline_in("short", 200ms);
  const json run = show("short")["run"];
  EXPECT_EQ(run["state"], "timeout");
  EXPECT_EQ(run["reason"], "heartbeat_timeout");
  EXPECT_EQ(run["runtime_s"], 0.2);
}

TEST_F(DaemonLogicTest, RestartGivesLiveRunsAFullTimeoutAgain) {
  constexpr int n = 50;
  test::daemon_in_process& d = start("timeouts: {heartbeat: 2}\n");
  for (int i = 0; i < n; ++i) {
    const std::string run = "run" + std::to_string(i);
    ok(register_request(run));
    ok({{"op", "start"}, {"run", run}});
  }
  d.stop();
  // Every run's old deadline (2 s after its start) goes by while the daemon is down.
  d.clock().advance(2500ms);
  d.start();
  json s = d.call({{"op", "status"}});
  EXPECT_EQ(s["runs"]["running"], n);
  EXPECT_EQ(s["runs"]["timeout"], 0);
  EXPECT_EQ(show("run7")["run"]["deadline_in_s"], 2.0) << show("run7").dump();

  // Silence still counts, from the restart.
  expect_deadline_in("run7", 2s);
  s = d.call({{"op", "status"}});
  EXPECT_EQ(s["runs"]["timeout"], n) << s.dump();
  EXPECT_EQ(s["runs"]["running"], 0);
  const json late = show("run7")["run"];
  EXPECT_EQ(late["reason"], "heartbeat_timeout");
  EXPECT_EQ(late["transitions"].size(), 3u);
}

TEST_F(DaemonLogicTest, CommitFailureAnswersInternalAndChangesNothing) {
  test::daemon_in_process& d = start();
  ok(register_request("kept"));
  const json before = show("kept")["run"];
  const json counts = d.call({{"op", "status"}})["runs"];

  d.refuse_journal_writes(true);
  EXPECT_EQ(d.call(register_request("new"))["error"]["code"], "internal");
  EXPECT_EQ(d.call({{"op", "start"}, {"run", "kept"}})["error"]["code"], "internal");
  EXPECT_EQ(d.call({{"op", "complete"}, {"run", "kept"}, {"objective", 1}})["error"]["code"],
            "internal");

  EXPECT_EQ(show("new")["error"]["code"], "unknown_run");
  EXPECT_EQ(show("kept")["run"], before);
  EXPECT_EQ(d.call({{"op", "status"}})["runs"], counts);
  EXPECT_THAT(d.log(), HasSubstr("failed, nothing changed"));

  d.refuse_journal_writes(false);
  ok({{"op", "complete"}, {"run", "kept"}, {"objective", 1}});
  EXPECT_EQ(state_of("kept"), "success");
}

TEST_F(DaemonLogicTest, TimeoutThatCannotBeStoredIsStoredOnceTheJournalWorksAgain) {
  test::daemon_in_process& d = start();
  ok(register_request("due"));
  d.refuse_journal_writes(true);
  d.advance(300s);
  EXPECT_EQ(state_of("due"), "initializing");  // not stored, so not changed
  EXPECT_TRUE(d.wait_for_log("failed, nothing changed")) << d.log();

  d.refuse_journal_writes(false);
  d.advance(1s);  // the pause before expiry tries again
  EXPECT_EQ(state_of("due"), "timeout");
}

TEST_F(DaemonLogicTest, InvalidReloadIsRefusedAndTheRunningConfigStays) {
  test::daemon_in_process& d = start();
  d.reload("timeouts: {heartbeat: -5, bogus: 1}\nlog: {level: loud}\n");
  const std::string log = d.log();
  EXPECT_THAT(log, HasSubstr("timeouts.heartbeat"));  // every problem, not only the first
  EXPECT_THAT(log, HasSubstr("bogus"));
  EXPECT_THAT(log, HasSubstr("log.level"));
  EXPECT_THAT(log, HasSubstr("keeping the running config"));
  ok(register_request("after"));
  EXPECT_EQ(show("after")["run"]["heartbeat_timeout_s"], 300.0);
  // And in force, not only reported: the run is timed out after 300 s, not 5.
  expect_deadline_in("after", 300s);
}

TEST_F(DaemonLogicTest, ValidReloadAppliesToNewRunsOnly) {
  test::daemon_in_process& d = start();
  ok(register_request("before"));
  d.reload("timeouts: {heartbeat: 60}\n");
  ok(register_request("after"));
  EXPECT_EQ(show("after")["run"]["heartbeat_timeout_s"], 60.0);
  d.advance(60s);
  EXPECT_EQ(state_of("after"), "timeout");
  EXPECT_EQ(state_of("before"), "initializing");
}

TEST_F(DaemonLogicTest, WatchedWorkerThatExitsCrashesItsRun) {
  test::daemon_in_process& d = start();
  // A worker that registers with watch_peer on its own connection, then waits to be killed.
  const std::string script =
      "import socket, sys, time\n"
      "s = socket.socket(socket.AF_UNIX)\n"
      "s.connect(sys.argv[1])\n"
      "s.sendall(b'{\"op\":\"register\",\"run\":\"w1\",\"watch_peer\":true}\\n')\n"
      "s.recv(4096)\n"
      "time.sleep(60)\n";
  auto worker = test::process::start({"/usr/bin/python3", "-c", script, d.paths().socket});
  ASSERT_TRUE(d.wait_for_log("run w1: new -> initializing")) << d.log() << worker.err();
  EXPECT_EQ(show("w1")["run"]["peer_pid"], worker.pid());

  d.advance(30s);
  worker.kill();
  ASSERT_TRUE(d.wait_for_log("run w1: initializing -> crashed (process_exited)")) << d.log();
  const json run = show("w1")["run"];
  EXPECT_EQ(run["state"], "crashed");
  EXPECT_EQ(run["transitions"].back()["cost"], 30.0) << run.dump();  // on the daemon's clock
}

TEST_F(DaemonLogicTest, FinishedRunIsPrunedOnceRetentionRunsOut) {
  // Retention sweeps every tenth of state.retention: here every 6 s.
  test::daemon_in_process& d = start("state: {retention: 60}\n");
  ok(register_request("old"));
  ok({{"op", "complete"}, {"run", "old"}, {"objective", 1}});
  ok(register_request("live"));

  d.advance(59s);
  EXPECT_EQ(state_of("old"), "success");
  d.advance(6s);  // past retention, and a sweep came
  EXPECT_EQ(show("old")["error"]["code"], "unknown_run");
  EXPECT_EQ(ok({{"op", "observations"}, {"sweep", "s1"}})["observations"], json::array());
  EXPECT_EQ(state_of("live"), "initializing");  // live runs are never pruned
  EXPECT_THAT(d.log(), HasSubstr("pruned 1 runs"));

  d.stop();  // pruned from the file too, not only from memory
  d.start();
  EXPECT_EQ(show("old")["error"]["code"], "unknown_run");
}

TEST_F(DaemonLogicTest, RunPastRetentionIsGoneAfterARestart) {
  test::daemon_in_process& d = start("state: {retention: 60}\n");
  ok(register_request("old"));
  ok({{"op", "complete"}, {"run", "old"}, {"objective", 1}});
  ok(register_request("live"));
  d.stop();
  // The time passes while the daemon is down: pruned as the journal is restored.
  d.clock().advance(61s);
  d.start();
  EXPECT_EQ(show("old")["error"]["code"], "unknown_run");
  EXPECT_EQ(state_of("live"), "initializing");
  const json s = d.call({{"op", "status"}});
  EXPECT_EQ(s["runs"]["success"], 0);
  EXPECT_EQ(s["runs"]["initializing"], 1);
  // The pruned run's last W&B write is still owed to W&B and stays in the outbox.
  EXPECT_EQ(s["wandb"]["pending"], 2);
  EXPECT_THAT(d.log(), HasSubstr("pruned 1 runs"));
}

}  // namespace
}  // namespace sweepd::app
