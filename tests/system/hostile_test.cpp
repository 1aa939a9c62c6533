// The adversarial suite: bounded versions of the attacks and accidents that once took sweepd down
// or let one user reach another's runs. Each runs the real daemon.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/client.hpp"
#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::HasSubstr;

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

}  // namespace
}  // namespace sweepd
