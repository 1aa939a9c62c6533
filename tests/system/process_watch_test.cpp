// Process watch in the real binary: a worker that finishes normally, a connection handed to a
// child, and bound workers across a restart (the plain crash is in tests/app, on a fake clock).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <csignal>
#include <nlohmann/json.hpp>

#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class ProcessWatchSystemTest : public ::testing::Test {
 protected:
  void SetUp() override { daemon_.start(); }

  /// A worker process that registers `run` with watch_peer on its own connection, then waits.
  test::process start_worker(const std::string& run) {
    const std::string script =
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect(sys.argv[1])\n"
        "s.sendall(b'{\"op\":\"register\",\"run\":\"' + sys.argv[2].encode() + "
        "b'\",\"watch_peer\":true}\\n')\n"
        "s.recv(4096)\n"
        "time.sleep(60)\n";
    return test::process::start({"/usr/bin/python3", "-c", script, daemon_.socket_path(), run});
  }

  json show(const std::string& run) { return daemon_.call({{"op", "show"}, {"run", run}})["run"]; }
  json wait_for_state(const std::string& run, const std::string& state) {
    return daemon_.wait_for_state(run, state);
  }

  test::temp_dir dir_;
  test::sweepd_under_test daemon_{dir_};
};

// A killed worker crashes its run: tests/app (DaemonLogicTest.WatchedWorkerThatExitsCrashesItsRun).

TEST_F(ProcessWatchSystemTest, WorkerThatFinishesNormallyIsNotCrashed) {
  auto worker = start_worker("w2");
  wait_for_state("w2", "initializing");
  // The run completes from elsewhere (root may act on any run), then its process exits.
  ASSERT_EQ(daemon_.call({{"op", "complete"}, {"run", "w2"}, {"objective", 1.0}})["ok"], true);
  ASSERT_TRUE(worker.send_signal(SIGKILL));
  ASSERT_TRUE(worker.wait_for(10s));
  // Still success afterwards: ask twice so that the exit has surely been handled in between.
  EXPECT_EQ(show("w2")["state"], "success");
  daemon_.call({{"op", "status"}});
  EXPECT_EQ(show("w2")["state"], "success");
}

TEST_F(ProcessWatchSystemTest, SocketHandedToAChildByAConnectorThatExitedIsNotBound) {
  // The connector forks, exits, and its child registers on the inherited connection: the run
  // must not be bound to (and crashed for) the process that is gone.
  const std::string script =
      "import os, socket, sys\n"
      "s = socket.socket(socket.AF_UNIX)\n"
      "s.connect(sys.argv[1])\n"
      "r, w = os.pipe()\n"
      "if os.fork() != 0:\n"
      "    os._exit(0)\n"
      "os.close(w)\n"
      "while os.getppid() == int(sys.argv[2]):\n"
      "    pass\n"  // wait until the parent is gone (reparented)
      "s.sendall(b'{\"op\":\"register\",\"run\":\"handed\",\"watch_peer\":true}\\n')\n"
      "print(s.recv(4096).decode(), flush=True)\n";
  auto worker = test::process::start({"/bin/sh", "-c", "exec /usr/bin/python3 -c \"$0\" \"$1\" $$",
                                      script, daemon_.socket_path()});
  ASSERT_EQ(worker.wait_for(10s), 0) << worker.err();
  // The parent exited at once; the child printed the reply. Wait for it (bounded).
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  json reply;
  while (std::chrono::steady_clock::now() < deadline) {
    reply = json::parse(worker.out(), nullptr, false);
    if (!reply.is_discarded()) break;
    std::this_thread::sleep_for(10ms);  // the orphaned child has no event we can wait on
  }
  ASSERT_TRUE(reply.is_object()) << worker.out() << worker.err();
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"]["code"], "bad_request");
  EXPECT_THAT(reply["error"]["message"].get<std::string>(), ::testing::HasSubstr("has exited"));
  EXPECT_EQ(daemon_.call({{"op", "show"}, {"run", "handed"}})["error"]["code"], "unknown_run");
}

/// Kills sweepd, rewrites a field of a run's stored record (as if the world had changed while it
/// was down), and starts it again.
class ProcessWatchRestartTest : public ProcessWatchSystemTest {
 protected:
  void restart_with_record_change(const std::string& run, const std::string& set) {
    daemon_.proc().kill();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(daemon_.state_path().c_str(), &db), SQLITE_OK);
    const std::string sql = "UPDATE runs SET " + set + " WHERE id = '" + run + "'";
    char* message = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message), SQLITE_OK)
        << (message ? message : "");
    sqlite3_free(message);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
    daemon_.start();
  }
};

TEST_F(ProcessWatchRestartTest, WorkerStillThereAfterARestartKeepsItsRunLive) {
  auto worker = start_worker("w1");
  wait_for_state("w1", "initializing");
  restart_with_record_change("w1", "sweep = ''");  // nothing that matters
  EXPECT_EQ(show("w1")["state"], "initializing");
  daemon_.call({{"op", "status"}});  // one more turn of the loop: a crash would show now
  EXPECT_EQ(show("w1")["state"], "initializing");
  ASSERT_TRUE(worker.send_signal(SIGKILL));
  wait_for_state("w1", "crashed");
}

TEST_F(ProcessWatchRestartTest, PidNamingAnotherProcessAfterARestartCrashesTheRun) {
  // While sweepd was down the worker died and its pid went to another process: here the worker
  // lives on, but the start time stored with the run says the pid is no longer it.
  auto worker = start_worker("w1");
  wait_for_state("w1", "initializing");
  restart_with_record_change("w1", "peer_start_time = peer_start_time + 1");
  const json run = wait_for_state("w1", "crashed");
  EXPECT_EQ(run["reason"], "process_exited");
  EXPECT_TRUE(worker.running());
}

TEST_F(ProcessWatchRestartTest, RunFromBeforeARebootIsCrashedAfterTheRestart) {
  auto worker = start_worker("w1");
  wait_for_state("w1", "initializing");
  restart_with_record_change("w1", "peer_boot_id = 'another-boot'");
  EXPECT_EQ(wait_for_state("w1", "crashed")["reason"], "process_exited");
}

TEST_F(ProcessWatchSystemTest, UnwatchedRunIsNotTiedToItsProcess) {
  ASSERT_EQ(daemon_.call({{"op", "register"}, {"run", "free"}})["ok"], true);
  EXPECT_FALSE(show("free").contains("peer_pid"));
}

}  // namespace
}  // namespace sweepd
