// SIGHUP reloads the config of a running sweepd (the unit's ExecReload): valid files apply to new
// runs, invalid ones are refused with every problem logged, and reloading under load loses nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/client.hpp"
#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

json register_request(const std::string& run) {
  return {{"op", "register"}, {"run", run}, {"sweep", "s1"}};
}

TEST(ReloadTest, ValidReloadAppliesToNewRunsAndLeavesOldRunsAlone) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir, "timeouts: {heartbeat: 300}\n");
  d.start();
  ASSERT_EQ(d.call(register_request("before"))["ok"], true);

  ASSERT_TRUE(d.reload("timeouts: {heartbeat: 123}\n")) << d.proc().err();
  ASSERT_EQ(d.call(register_request("after"))["ok"], true);

  EXPECT_EQ(d.call({{"op", "show"}, {"run", "before"}})["run"]["heartbeat_timeout_s"], 300.0);
  EXPECT_EQ(d.call({{"op", "show"}, {"run", "after"}})["run"]["heartbeat_timeout_s"], 123.0);
  EXPECT_THAT(d.proc().err(), HasSubstr("reloaded"));
  EXPECT_EQ(d.stop(), 0) << d.proc().err();
}

TEST(ReloadTest, ReloadIsRepeatableAndChangesTheLogLevel) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir);
  d.start();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(d.reload("log: {level: info}\n")) << "reload " << i << ": " << d.proc().err();
  }
  ASSERT_TRUE(d.reload("log: {level: error}\n")) << d.proc().err();
  ASSERT_EQ(d.call(register_request("quiet"))["ok"], true);
  ASSERT_TRUE(d.reload("log: {level: info}\n")) << d.proc().err();
  ASSERT_EQ(d.call(register_request("loud"))["ok"], true);
  const std::string log = d.proc().err();
  EXPECT_THAT(log, Not(HasSubstr("run quiet:")));
  EXPECT_THAT(log, HasSubstr("run loud:"));
  EXPECT_EQ(d.stop(), 0) << log;
}

// An invalid file is refused with every problem logged: tests/app (DaemonLogicTest).

TEST(ReloadTest, HundredReloadsWhileClientsPipelineRequests) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir, "log: {level: warn}\n");
  d.start();
  constexpr int clients = 4;
  constexpr int batch = 50;
  std::atomic<bool> done{false};
  std::atomic<int> answered{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  threads.reserve(clients);
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      io::client conn;
      if (!conn.connect(d.socket_path())) {
        ++refused;
        return;
      }
      for (int round = 0; !done; ++round) {
        std::string lines;
        for (int i = 0; i < batch; ++i) {
          const std::string run = "c" + std::to_string(c) + "-" + std::to_string(round);
          const json request = i == 0  ? register_request(run)
                               : i % 2 ? json{{"op", "heartbeat"}, {"run", run}}
                                       : json{{"op", "status"}};
          lines += request.dump() + "\n";
        }
        if (!conn.send_raw(lines)) {
          ++refused;
          return;
        }
        for (int i = 0; i < batch; ++i) {
          const auto line = conn.read_line();
          if (!line || json::parse(*line, nullptr, false).value("ok", false) != true) {
            ++refused;
            return;
          }
          ++answered;
        }
      }
    });
  }
  int reloaded = 0;
  for (int i = 0; i < 100; ++i) {
    const std::string heartbeat = std::to_string(100 + i);
    if (!d.reload("log: {level: warn}\ntimeouts: {heartbeat: " + heartbeat + "}\n")) break;
    ++reloaded;
  }
  done = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(reloaded, 100) << d.proc().err();
  EXPECT_EQ(refused, 0);
  EXPECT_GT(answered, clients * batch);
  // The last reload is the one in force.
  ASSERT_EQ(d.call(register_request("last"))["ok"], true);
  EXPECT_EQ(d.call({{"op", "show"}, {"run", "last"}})["run"]["heartbeat_timeout_s"], 199.0);
  EXPECT_EQ(d.stop(), 0) << d.proc().err();
}

}  // namespace
}  // namespace sweepd
