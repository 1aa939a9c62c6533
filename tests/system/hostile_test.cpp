// The adversarial suite: bounded versions of the attacks and accidents that once took sweepd down
// or let one user reach another's runs. Each runs the real daemon.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/client.hpp"
#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> reasons_of(const json& run) {
  std::vector<std::string> reasons;
  for (const json& t : run["transitions"]) reasons.push_back(t["reason"]);
  return reasons;
}

TEST(HostileTest, HeartbeatsQueuedWhileTheDaemonWasStoppedAreReadBeforeExpiry) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir, "timeouts: {heartbeat: 2}\n");
  d.start();
  ASSERT_EQ(d.call({{"op", "register"}, {"run", "alive"}})["ok"], true);
  ASSERT_EQ(d.call({{"op", "register"}, {"run", "silent"}})["ok"], true);

  // A worker heartbeating every 200 ms on its connection, never waiting for the replies.
  std::atomic<bool> done{false};
  std::thread worker([&] {
    io::client conn;
    if (!conn.connect(d.socket_path())) return;
    while (!done) {
      conn.send_raw(R"({"op":"heartbeat","run":"alive"})"
                    "\n");
      std::this_thread::sleep_for(200ms);
    }
  });
  ASSERT_TRUE(d.proc().send_signal(SIGSTOP));
  // The thing under test is time passing while sweepd cannot run: both runs' deadlines pass.
  std::this_thread::sleep_for(3s);
  ASSERT_TRUE(d.proc().send_signal(SIGCONT));
  // The silent run times out once sweepd has looked at its deadlines again…
  d.wait_for_state("silent", "timeout");
  done = true;
  worker.join();
  // …but the worker that kept sending never did: its queued heartbeats were read first.
  const json alive = d.call({{"op", "show"}, {"run", "alive"}})["run"];
  EXPECT_EQ(alive["state"], "initializing");
  EXPECT_THAT(reasons_of(alive), ::testing::ElementsAre("registered"));
  EXPECT_EQ(d.stop(), 0) << d.proc().err();
}

/// sweepctl run as another uid (nobody), as a second user on the machine would run it.
class OtherUidTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to run sweepctl as another uid (setpriv)";
    // The socket's directory and the socket itself open to every uid, as a careless 0666 would be.
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::owner_all |
                                                  std::filesystem::perms::group_exec |
                                                  std::filesystem::perms::others_exec);
    d_.emplace(dir_, "socket: {mode: \"0666\"}\n");
    d_->start();
  }

  test::command_result as_nobody(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534",
                               "--clear-groups", SWEEPCTL_BINARY, "--socket", d_->socket_path()});
    return test::run_command(args, {}, 20s);
  }

  test::temp_dir dir_;
  std::optional<test::sweepd_under_test> d_;
};

TEST_F(OtherUidTest, CannotAddToChangeOrReadIntoAnotherUsersSweep) {
  ASSERT_EQ(d_->call({{"op", "register"},
                      {"run", "mine"},
                      {"sweep", "s1"},
                      {"suggestion", {{"data", "/root/secret-dataset"}}}})["ok"],
            true);
  ASSERT_EQ(
      d_->call({{"op", "fail"}, {"run", "mine"}, {"error", "cannot open /root/secret"}})["ok"],
      true);

  // A fake best result in root's sweep, and a squatted id of root's next run in it.
  auto r = as_nobody({"register", "fake-best", "--sweep", "s1"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("forbidden"));
  EXPECT_THAT(r.err, HasSubstr("sweep 's1' belongs to uid 0"));
  r = as_nobody({"complete", "mine", "--objective", "1e308"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("forbidden"));
  r = as_nobody({"resync", "mine"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("forbidden"));

  // What it may read: states and figures, not the suggestion or the error.
  r = as_nobody({"--json", "show", "mine"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json shown = json::parse(r.out)["run"];
  EXPECT_EQ(shown["state"], "failed");
  EXPECT_EQ(shown["suggestion"], nullptr);
  EXPECT_FALSE(shown.contains("error"));
  EXPECT_THAT(r.out, Not(HasSubstr("secret")));
  r = as_nobody({"--json", "observations", "--sweep", "s1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("secret")));
  EXPECT_EQ(json::parse(r.out)["observations"].size(), 1u);

  // Its own sweep is its own.
  r = as_nobody({"register", "theirs", "--sweep", "s2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(d_->call({{"op", "observations"}, {"sweep", "s1"}})["observations"].size(), 1u);
}

TEST(HostileTest, DeepSuggestionIsRefusedEvenWithLongLinesAllowed) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir, "socket: {max_line_bytes: 1048576}\n");
  d.start();
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  io::client c;
  ASSERT_TRUE(c.connect(d.socket_path()));
  ASSERT_TRUE(c.send_raw(R"({"op":"register","run":"deep","suggestion":{"a":)" + deep + "}}\n"));
  const auto line = c.read_line();
  ASSERT_TRUE(line);
  const json reply = json::parse(*line);
  EXPECT_EQ(reply["error"]["code"], "bad_request");
  EXPECT_THAT(reply["error"]["message"].get<std::string>(), HasSubstr("levels deep"));
  EXPECT_EQ(d.call({{"op", "status"}})["ok"], true);  // alive, and serving
}

TEST(HostileTest, TimeoutsTooShortToMeanAnythingAreRefused) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir);
  d.start();
  EXPECT_EQ(
      d.call({{"op", "register"}, {"run", "r"}, {"heartbeat_timeout_s", 1e-300}})["error"]["code"],
      "bad_request");
  ASSERT_EQ(d.call({{"op", "register"}, {"run", "r"}})["ok"], true);
  EXPECT_EQ(d.call({{"op", "heartbeat"}, {"run", "r"}, {"timeout_s", 1e-10}})["error"]["code"],
            "bad_request");
}

}  // namespace
}  // namespace sweepd
