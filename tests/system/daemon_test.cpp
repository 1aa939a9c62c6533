// The real sweepd binary, driven over its socket and through the real sweepctl.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/client.hpp"
#include "support/process_support.hpp"

namespace sweepd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

class DaemonTest : public ::testing::Test {
 protected:
  std::string socket_path() const { return dir_.file("sweepd.sock"); }

  std::string write_config(const std::string& extra_timeouts = "") {
    const std::string path = dir_.file("sweepd.yaml");
    std::ofstream(path) << "socket: {path: " << socket_path() << "}\n"
                        << "state: {path: " << dir_.file("state.db") << "}\n"
                        << "wandb: {mode: offline}\n"
                        << "log: {level: debug}\n"
                        << extra_timeouts;
    return path;
  }

  /// Starts sweepd and waits (bounded) until its socket answers.
  void start_daemon(const std::string& extra = "") {
    daemon_.emplace(test::process::start({SWEEPD_BINARY, "--config", write_config(extra)}));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      ASSERT_FALSE(daemon_->wait_for(std::chrono::milliseconds(20))) << daemon_->err();
      if (client_.connect(socket_path())) return;
    }
    FAIL() << "sweepd did not open its socket: " << daemon_->err();
  }

  json call(const json& request) {
    auto reply = client_.call(request);
    EXPECT_TRUE(reply) << client_.last_error();
    return reply.value_or(json());
  }

  test::command_result sweepctl(std::vector<std::string> args) {
    args.insert(args.begin(), {SWEEPCTL_BINARY, "--socket", socket_path()});
    return test::run_command(args, {}, std::chrono::seconds(20));
  }

  /// Polls `show` until the run reaches `state`, for at most 10 s.
  json wait_for_state(const std::string& run, const std::string& state) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    json shown;
    while (std::chrono::steady_clock::now() < deadline) {
      shown = call({{"op", "show"}, {"run", run}});
      if (shown["run"]["state"] == state) return shown["run"];
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // no event to wait on
    }
    ADD_FAILURE() << run << " never became " << state << ": " << shown.dump();
    return shown;
  }

  test::temp_dir dir_;
  std::optional<test::process> daemon_;
  io::client client_;
};

TEST_F(DaemonTest, WholeLifecycleThroughSweepctl) {
  start_daemon();
  auto r = sweepctl({"register", "ab12cd34", "--sweep", "s1", "--suggestion", R"({"lr":0.01})"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("initializing"));
  r = sweepctl({"start", "ab12cd34"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("running"));
  r = sweepctl({"heartbeat", "ab12cd34", "--progress", "100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = sweepctl({"complete", "ab12cd34", "--objective", "0.93", "--cost", "12.5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("success"));

  r = sweepctl({"--json", "status"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json status = json::parse(r.out);
  EXPECT_EQ(status["runs"]["success"], 1);
  EXPECT_EQ(status["wandb"]["mode"], "offline");
  EXPECT_EQ(status["wandb"]["pending"], 1);  // the completion (it supersedes the other two)

  r = sweepctl({"--json", "observations", "--sweep", "s1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json obs = json::parse(r.out)["observations"];
  ASSERT_EQ(obs.size(), 1u);
  EXPECT_EQ(obs[0]["run_id"], "ab12cd34");
  EXPECT_EQ(obs[0]["objective"], 0.93);
  EXPECT_EQ(obs[0]["cost"], 12.5);
  EXPECT_EQ(obs[0]["is_failure"], false);
  EXPECT_EQ(obs[0]["suggestion"]["lr"], 0.01);

  r = sweepctl({"list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("ab12cd34"));
  EXPECT_THAT(r.out, HasSubstr("success"));

  r = sweepctl({"complete", "ab12cd34", "--objective", "0.5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("conflict"));
}

TEST_F(DaemonTest, SigtermExitsZeroAndRemovesTheSocket) {
  start_daemon();
  ASSERT_EQ(call({{"op", "hello"}})["ok"], true);
  ASSERT_TRUE(daemon_->send_signal(SIGTERM));
  const auto code = daemon_->wait_for(std::chrono::seconds(10));
  ASSERT_TRUE(code) << "sweepd did not stop on SIGTERM";
  EXPECT_EQ(*code, 0) << daemon_->err();
  EXPECT_FALSE(std::filesystem::exists(socket_path()));
  EXPECT_THAT(daemon_->err(), HasSubstr("SIGTERM"));
}

TEST_F(DaemonTest, SigintExitsZero) {
  start_daemon();
  ASSERT_TRUE(daemon_->send_signal(SIGINT));
  const auto code = daemon_->wait_for(std::chrono::seconds(10));
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << daemon_->err();
}

TEST_F(DaemonTest, SilentRunTimesOutWithinOneSecondOfItsDeadline) {
  start_daemon("timeouts: {heartbeat: 0.3}\n");
  ASSERT_EQ(call({{"op", "register"}, {"run", "quiet"}})["ok"], true);
  ASSERT_EQ(call({{"op", "register"}, {"run", "slow"}, {"heartbeat_timeout_s", 60}})["ok"], true);
  const json run = wait_for_state("quiet", "timeout");
  EXPECT_EQ(run["reason"], "heartbeat_timeout");
  EXPECT_EQ(call({{"op", "show"}, {"run", "slow"}})["run"]["state"], "initializing");
  // Runtime is measured from register to the timeout transition: deadline (0.3 s) + lateness.
  const double runtime = run["runtime_s"].get<double>();
  EXPECT_GE(runtime, 0.3);
  EXPECT_LT(runtime, 1.3);
  EXPECT_THAT(daemon_->err(), HasSubstr("run quiet: initializing -> timeout (heartbeat_timeout)"));
}

TEST_F(DaemonTest, HeartbeatRevivesATimedOutRun) {
  start_daemon("timeouts: {heartbeat: 0.2}\n");
  ASSERT_EQ(call({{"op", "register"}, {"run", "r1"}})["ok"], true);
  wait_for_state("r1", "timeout");
  const json reply = call({{"op", "heartbeat"}, {"run", "r1"}, {"timeout_s", 60}});
  EXPECT_EQ(reply["state"], "running");
  const json run = call({{"op", "show"}, {"run", "r1"}})["run"];
  EXPECT_EQ(run["reason"], "revived");
}

TEST_F(DaemonTest, EveryErrorCodeKeepsTheConnectionAndOtherClientsServed) {
  start_daemon();
  io::client other;
  ASSERT_TRUE(other.connect(socket_path())) << other.last_error();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{nope", "bad_json"},
      {R"({"op":"start"})", "bad_request"},
      {R"({"op":"fly"})", "unknown_op"},
      {R"({"op":"start","run":"missing"})", "unknown_run"},
  };
  for (const auto& [line, code] : cases) {
    ASSERT_TRUE(client_.send_raw(line + "\n"));
    auto reply = client_.read_line();
    ASSERT_TRUE(reply) << client_.last_error();
    EXPECT_EQ(json::parse(*reply)["error"]["code"], code) << line;
  }
  ASSERT_EQ(call({{"op", "register"}, {"run", "r1"}})["ok"], true);
  ASSERT_EQ(call({{"op", "fail"}, {"run", "r1"}, {"error", "boom"}})["ok"], true);
  EXPECT_EQ(call({{"op", "complete"}, {"run", "r1"}})["error"]["code"], "conflict");
  auto hello = other.call({{"op", "hello"}});
  ASSERT_TRUE(hello) << other.last_error();
  EXPECT_EQ((*hello)["ok"], true);
}

TEST(DaemonCli, VersionAndHelp) {
  auto r = test::run_command({SWEEPD_BINARY, "--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("sweepd "));
  r = test::run_command({SWEEPD_BINARY, "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--check-config"));
  r = test::run_command({SWEEPD_BINARY, "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--bogus"));
}

TEST(DaemonCli, CheckConfigPrintsTheEffectiveConfigOrLocatedErrors) {
  test::temp_dir dir;
  const std::string good = dir.file("good.yaml");
  std::ofstream(good) << "timeouts: {heartbeat: 42}\n";
  auto r = test::run_command({SWEEPD_BINARY, "--check-config", good});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("42"));
  const std::string bad = dir.file("bad.yaml");
  std::ofstream(bad) << "timeouts:\n  heartbeet: 42\n";
  r = test::run_command({SWEEPD_BINARY, "--check-config", bad});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(bad + ":2:3"));
}

TEST(DaemonCli, CheckConfigRefusesWhatStartWouldRefuseWithTheSameMessage) {
  test::temp_dir dir;
  const std::string online = dir.file("online.yaml");
  std::ofstream(online) << "socket: {path: " << dir.file("s.sock") << "}\n"
                        << "state: {path: " << dir.file("state.db") << "}\n"
                        << "wandb: {mode: online}\n";
  const auto checked = test::run_command({SWEEPD_BINARY, "--check-config", online});
  EXPECT_EQ(checked.exit_code, 1);
  EXPECT_THAT(checked.err, HasSubstr("no W&B API key was found"));
  const auto started = test::run_command({SWEEPD_BINARY, "--config", online});
  EXPECT_EQ(started.exit_code, 1);
  EXPECT_THAT(started.err, HasSubstr("no W&B API key was found"));

  const std::string key = "check-config-key-0123456789abcdef0123456789abcdef";
  const auto with_key =
      test::run_command({SWEEPD_BINARY, "--check-config", online}, {"WANDB_API_KEY=" + key});
  EXPECT_EQ(with_key.exit_code, 0) << with_key.err;
  EXPECT_THAT(with_key.out, HasSubstr("online (key from $WANDB_API_KEY)"));
  EXPECT_THAT(with_key.out + with_key.err, Not(HasSubstr(key)));

  const std::string missing_file = dir.file("keyfile.yaml");
  std::ofstream(missing_file) << "wandb: {mode: auto, api_key_file: " << dir.file("nokey") << "}\n";
  const auto no_file = test::run_command({SWEEPD_BINARY, "--check-config", missing_file});
  EXPECT_EQ(no_file.exit_code, 1);
  EXPECT_THAT(no_file.err, HasSubstr(dir.file("nokey")));
}

/// Starts sweepd on `config` and waits (bounded) until `socket` answers.
test::process start_and_connect(const std::string& config, const std::string& socket,
                                io::client& c) {
  auto daemon = test::process::start({SWEEPD_BINARY, "--config", config});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!c.connect(socket) && std::chrono::steady_clock::now() < deadline) {
    if (daemon.wait_for(std::chrono::milliseconds(20))) break;
  }
  EXPECT_TRUE(c.connected()) << daemon.err();
  return daemon;
}

TEST(DaemonCli, RefusesToStartOnASocketAnotherDaemonServes) {
  test::temp_dir dir;
  const std::string first_cfg = dir.file("a.yaml");
  const std::string second_cfg = dir.file("b.yaml");
  std::ofstream(first_cfg) << "socket: {path: " << dir.file("s.sock") << "}\n"
                           << "state: {path: " << dir.file("a.db") << "}\n";
  std::ofstream(second_cfg) << "socket: {path: " << dir.file("s.sock") << "}\n"
                            << "state: {path: " << dir.file("b.db") << "}\n";
  io::client c;
  auto first = start_and_connect(first_cfg, dir.file("s.sock"), c);
  ASSERT_TRUE(c.connected());
  auto second =
      test::run_command({SWEEPD_BINARY, "--config", second_cfg}, {}, std::chrono::seconds(10));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("another process"));
  EXPECT_TRUE(c.call({{"op", "hello"}}));  // the first one is untouched
}

TEST(DaemonCli, RefusesToStartOnAStateFileAnotherDaemonUses) {
  test::temp_dir dir;
  const std::string first_cfg = dir.file("a.yaml");
  const std::string second_cfg = dir.file("b.yaml");
  std::ofstream(first_cfg) << "socket: {path: " << dir.file("a.sock") << "}\n"
                           << "state: {path: " << dir.file("state.db") << "}\n";
  std::ofstream(second_cfg) << "socket: {path: " << dir.file("b.sock") << "}\n"
                            << "state: {path: " << dir.file("state.db") << "}\n";
  io::client c;
  auto first = start_and_connect(first_cfg, dir.file("a.sock"), c);
  ASSERT_TRUE(c.connected());
  auto second =
      test::run_command({SWEEPD_BINARY, "--config", second_cfg}, {}, std::chrono::seconds(10));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("another sweepd (pid " + std::to_string(first.pid())));
  EXPECT_THAT(second.err, HasSubstr(dir.file("state.db")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("b.sock")));
  EXPECT_TRUE(c.call({{"op", "hello"}}));
}

}  // namespace
}  // namespace sweepd
