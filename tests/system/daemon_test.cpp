// The real sweepd binary, driven over its socket and through the real sweepctl.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/client.hpp"
#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

class DaemonTest : public ::testing::Test {
 protected:
  std::string socket_path() const { return daemon_.socket_path(); }

  json call(const json& request) { return daemon_.call(request); }
  test::process& proc() { return daemon_.proc(); }

  test::command_result sweepctl(std::vector<std::string> args) {
    args.insert(args.begin(), {SWEEPCTL_BINARY, "--socket", socket_path()});
    return test::run_command(args, {}, std::chrono::seconds(20));
  }

  test::temp_dir dir_;
  test::sweepd_under_test daemon_{dir_};
};

TEST_F(DaemonTest, WholeLifecycleThroughSweepctl) {
  daemon_.start();
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
  daemon_.start();
  ASSERT_EQ(call({{"op", "hello"}})["ok"], true);
  ASSERT_TRUE(proc().send_signal(SIGTERM));
  const auto code = proc().wait_for(std::chrono::seconds(10));
  ASSERT_TRUE(code) << "sweepd did not stop on SIGTERM";
  EXPECT_EQ(*code, 0) << proc().err();
  EXPECT_FALSE(std::filesystem::exists(socket_path()));
  EXPECT_THAT(proc().err(), HasSubstr("SIGTERM"));
}

TEST_F(DaemonTest, SigintExitsZero) {
  daemon_.start();
  ASSERT_TRUE(proc().send_signal(SIGINT));
  const auto code = proc().wait_for(std::chrono::seconds(10));
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << proc().err();
}

// Timeouts at the deadline and revival by a late heartbeat: tests/app (DaemonLogicTest), on a fake
// clock.

TEST_F(DaemonTest, EveryErrorCodeKeepsTheConnectionAndOtherClientsServed) {
  daemon_.start();
  io::client other;
  ASSERT_TRUE(other.connect(socket_path())) << other.last_error();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{nope", "bad_json"},
      {R"({"op":"start"})", "bad_request"},
      {R"({"op":"fly"})", "unknown_op"},
      {R"({"op":"start","run":"missing"})", "unknown_run"},
  };
  io::client raw;
  ASSERT_TRUE(raw.connect(socket_path())) << raw.last_error();
  for (const auto& [line, code] : cases) {
    ASSERT_TRUE(raw.send_raw(line + "\n"));
    auto reply = raw.read_line();
    ASSERT_TRUE(reply) << raw.last_error();
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
  const test::daemon_paths paths = test::daemon_paths::in(dir);
  test::write_daemon_config(paths, "wandb: {mode: online}\n");
  const std::string& online = paths.config;
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

TEST(DaemonCli, RefusesToStartOnASocketAnotherDaemonServes) {
  test::temp_dir dir;
  test::sweepd_under_test first(dir);
  first.start();
  const test::daemon_paths second_paths{first.socket_path(), dir.file("b.db"), dir.file("b.yaml")};
  test::write_daemon_config(second_paths, "");
  auto second = test::run_command({SWEEPD_BINARY, "--config", second_paths.config}, {},
                                  std::chrono::seconds(10));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("another process"));
  EXPECT_EQ(first.call({{"op", "hello"}})["ok"], true);  // the first one is untouched
}

TEST(DaemonCli, RefusesToStartOnAStateFileAnotherDaemonUses) {
  test::temp_dir dir;
  test::sweepd_under_test first(dir);
  first.start();
  const test::daemon_paths second_paths{dir.file("b.sock"), first.state_path(), dir.file("b.yaml")};
  test::write_daemon_config(second_paths, "");
  auto second = test::run_command({SWEEPD_BINARY, "--config", second_paths.config}, {},
                                  std::chrono::seconds(10));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("another sweepd (pid " + std::to_string(first.proc().pid())));
  EXPECT_THAT(second.err, HasSubstr(first.state_path()));
  EXPECT_FALSE(std::filesystem::exists(dir.file("b.sock")));
  EXPECT_EQ(first.call({{"op", "hello"}})["ok"], true);
}

}  // namespace
}  // namespace sweepd
