// `sweepctl exec` against the real sweepd: what each way a command can end does to its run, strict
// result files, signal forwarding, heartbeats, timeouts (--on-timeout), a daemon that is absent or
// comes late, and the report spool with `sweepctl spool`. Commands are /bin/sh scripts.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

/// Waits (bounded, polling: there is no event to wait on) until `path` exists.
bool wait_for_file(const std::string& path, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

/// Waits (bounded, polling: a process's stderr has no event to wait on) until `p` wrote `text`.
bool wait_for_text(const test::process& p, const std::string& text,
                   std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (p.err().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

class ExecTest : public ::testing::Test {
 protected:
  std::string socket_path() const { return dir_.file("sweepd.sock"); }
  /// Every sweepctl here spools in the test's own directory, never in the user's.
  std::string spool_dir() const { return dir_.file("spool"); }
  std::vector<std::string> env() const {
    return test::environment_with({"SWEEPD_SPOOL_DIR=" + spool_dir()});
  }

  void start_daemon(const std::string& extra = "") {
    daemon_.emplace(dir_, extra);
    daemon_->start();
  }

  /// The argv of `sweepctl --socket S exec ARGS...`.
  std::vector<std::string> exec_argv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {SWEEPCTL_BINARY, "--socket", socket_path(), "exec"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  test::command_result exec(const std::vector<std::string>& args) {
    return test::run_command(exec_argv(args), env(), 30s);
  }

  /// The run's full record from `show`.
  json show(const std::string& run) {
    const json reply = daemon_->call({{"op", "show"}, {"run", run}});
    if (reply["ok"] != true) {
      ADD_FAILURE() << "show " << run << ": " << reply.dump();
      return json::object();
    }
    return reply["run"];
  }

  /// Polls `show` until the run is in `state` (it may not be registered yet), for at most 10 s.
  json wait_for_state(const std::string& run, const std::string& state) {
    return daemon_->wait_for_state(run, state);
  }

  static std::vector<std::string> reasons_of(const json& run) {
    std::vector<std::string> reasons;
    for (const json& t : run.value("transitions", json::array())) reasons.push_back(t["reason"]);
    return reasons;
  }

  test::temp_dir dir_;
  std::optional<test::sweepd_under_test> daemon_;
};

TEST_F(ExecTest, ExitZeroCompletesWithObjectiveAndCostFromTheResultFile) {
  start_daemon();
  const std::string result = dir_.file("result.json");
  auto r =
      exec({"--run", "r0", "--sweep", "s1", "--suggestion", R"({"lr":0.01})", "--result-file",
            result, "--", "/bin/sh", "-c",
            R"(echo training; printf '{"objective": 0.93, "cost": 12.5}' > "$1")", "sh", result});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "training\n");  // the command's output, and nothing from exec
  EXPECT_EQ(r.err, "");
  const json run = show("r0");
  EXPECT_EQ(run["state"], "success");
  EXPECT_EQ(run["objective"], 0.93);
  EXPECT_EQ(run["cost"], 12.5);
  EXPECT_EQ(run["sweep"], "s1");
  EXPECT_EQ(run["suggestion"]["lr"], 0.01);
  EXPECT_EQ(run["watch_peer"], true);
  EXPECT_EQ(reasons_of(run), (std::vector<std::string>{"registered", "started", "completed"}));
}

TEST_F(ExecTest, NonZeroExitFailsTheRunAndIsExecsStatus) {
  start_daemon();
  auto r = exec({"--run", "r3", "--", "/bin/sh", "-c", "exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.err, "");
  const json run = show("r3");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_EQ(run["error"], "exit code 3");
}

TEST_F(ExecTest, DeathBySignalFailsTheRunAndExitsWith128PlusTheSignal) {
  start_daemon();
  auto r = exec({"--run", "r9", "--", "/bin/sh", "-c", "kill -9 $$"});
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
  const json run = show("r9");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_EQ(run["error"], "killed by SIGKILL");
}

TEST_F(ExecTest, SigtermIsForwardedAndTheCommandsStatusReturned) {
  start_daemon();
  const std::string ready = dir_.file("ready");
  // The trap is set before `ready` appears, so the forwarded SIGTERM meets it.
  auto exec_process = test::process::start(
      exec_argv({"--run", "rt", "--", "/bin/sh", "-c",
                 R"(trap 'kill $pid; exit 42' TERM; sleep 30 & pid=$!; : > "$1"; wait)", "sh",
                 ready}),
      env());
  ASSERT_TRUE(wait_for_file(ready)) << exec_process.err();
  const json live = wait_for_state("rt", "running");
  EXPECT_EQ(live["watch_peer"], true);
  EXPECT_EQ(live["peer_pid"], exec_process.pid());  // bound to exec itself, not to the command

  ASSERT_TRUE(exec_process.send_signal(SIGTERM));  // to exec only, not its process group
  EXPECT_EQ(exec_process.wait_for(10s), 42) << exec_process.err();
  const json run = show("rt");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_EQ(run["error"], "exit code 42 after SIGTERM");
}

TEST_F(ExecTest, ForwardedSignalThatKillsTheCommandIsReported) {
  start_daemon();
  const std::string ready = dir_.file("ready");
  auto exec_process = test::process::start(
      exec_argv({"--run", "rk", "--", "/bin/sh", "-c", R"(: > "$1"; exec sleep 30)", "sh", ready}),
      env());
  ASSERT_TRUE(wait_for_file(ready)) << exec_process.err();
  ASSERT_TRUE(exec_process.send_signal(SIGINT));
  EXPECT_EQ(exec_process.wait_for(10s), 128 + SIGINT) << exec_process.err();
  const json run = show("rk");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_EQ(run["error"], "killed by SIGINT");
}

TEST_F(ExecTest, KilledExecLeavesItsRunCrashed) {
  start_daemon();
  const std::string ready = dir_.file("ready");
  auto exec_process = test::process::start(
      exec_argv({"--run", "rc", "--", "/bin/sh", "-c", R"(: > "$1"; exec sleep 30)", "sh", ready}),
      env());
  ASSERT_TRUE(wait_for_file(ready)) << exec_process.err();
  wait_for_state("rc", "running");
  ASSERT_TRUE(exec_process.send_signal(SIGKILL));
  EXPECT_EQ(exec_process.wait_for(10s), 128 + SIGKILL);
  ::kill(-exec_process.pid(), SIGKILL);  // the orphaned command, in exec's process group
  const json run = wait_for_state("rc", "crashed");
  EXPECT_EQ(run["reason"], "process_exited");
}

TEST_F(ExecTest, HeartbeatsKeepTheRunAliveWhileTheCommandRuns) {
  start_daemon("timeouts: {heartbeat: 1}\n");
  auto exec_process = test::process::start(
      exec_argv({"--run", "rh", "--interval", "0.2", "--", "/bin/sh", "-c", "sleep 2.5"}), env());
  // Without heartbeats the run would time out 1-2 s in; watch it until the command ends.
  std::vector<std::string> seen;
  while (!exec_process.wait_for(100ms)) {
    const json reply = daemon_->call({{"op", "show"}, {"run", "rh"}});
    if (reply["ok"] == true) seen.push_back(reply["run"]["state"]);
  }
  EXPECT_EQ(exec_process.wait_for(0ms), 0) << exec_process.err();
  EXPECT_THAT(seen, Not(::testing::Contains("timeout")));
  EXPECT_THAT(seen, ::testing::Contains("running"));
  const json run = show("rh");
  EXPECT_EQ(run["state"], "success");
  EXPECT_EQ(reasons_of(run), (std::vector<std::string>{"registered", "started", "completed"}));
}

TEST_F(ExecTest, MissingCommandExits127AndFailsTheRun) {
  start_daemon();
  auto r = exec({"--run", "rm", "--", "no-such-command-for-sweepctl-exec", "--flag"});
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_THAT(r.err, HasSubstr("cannot start no-such-command-for-sweepctl-exec"));
  const json run = show("rm");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_THAT(run.value("error", ""), HasSubstr("cannot start no-such-command-for-sweepctl-exec"));
}

TEST_F(ExecTest, CommandIsFoundInPath) {
  start_daemon();
  auto r = exec({"--run", "rp", "--", "sh", "-c", "exit 0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(show("rp")["state"], "success");
}

TEST_F(ExecTest, WithoutDaemonTheCommandStillRunsAndItsStatusIsReturned) {
  const std::string marker = dir_.file("ran");
  auto r = exec({"--run", "ra", "--interval", "0.2", "--", "/bin/sh", "-c",
                 R"(sleep 0.5; : > "$1"; exit 7)", "sh", marker});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(std::filesystem::exists(marker));
  EXPECT_EQ(count_of(r.err, "cannot connect to sweepd"), 2u) << r.err;  // once, then at the end
  EXPECT_EQ(count_of(r.err, "keeps trying in the background"), 1u) << r.err;
  EXPECT_THAT(r.err, HasSubstr("could not record the end of run ra")) << r.err;
}

TEST_F(ExecTest, DaemonThatStartsLateStillGetsTheRun) {
  auto exec_process = test::process::start(
      exec_argv({"--run", "rl", "--interval", "0.2", "--", "/bin/sh", "-c", "sleep 3"}), env());
  // Started once exec has found no daemon and gone on without it.
  ASSERT_TRUE(wait_for_text(exec_process, "cannot connect to sweepd")) << exec_process.err();
  start_daemon();
  EXPECT_EQ(exec_process.wait_for(20s), 0) << exec_process.err();
  EXPECT_EQ(count_of(exec_process.err(), "keeps trying in the background"), 1u)
      << exec_process.err();
  const json run = show("rl");
  EXPECT_EQ(run["state"], "success");
}

TEST_F(ExecTest, BadResultFileFailsTheRunButExecExitsZero) {
  start_daemon();
  const std::string result = dir_.file("result.json");
  auto r = exec({"--run", "ro", "--result-file", result, "--", "/bin/sh", "-c",
                 R"(echo '{"objective": "high", "cost": 2}' > "$1")", "sh", result});
  EXPECT_EQ(r.exit_code, 0) << r.err;  // the command's own status
  const std::string error =
      "result file " + result + ": 'objective' is \"high\" (not a finite number)";
  EXPECT_EQ(r.err, "sweepctl exec: /bin/sh exited 0, but " + error + "; failing run ro\n");
  const json run = show("ro");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_EQ(run["error"], error);
  EXPECT_FALSE(run.contains("objective")) << run.dump();
}

TEST_F(ExecTest, WithoutResultFileExitZeroCompletesWithoutObjective) {
  start_daemon();
  auto r = exec({"--run", "rw", "--", "/bin/sh", "-c", "exit 0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const json run = show("rw");
  EXPECT_EQ(run["state"], "success");
  EXPECT_FALSE(run.contains("objective")) << run.dump();
}

TEST_F(ExecTest, ResultFileIgnoredWhenTheCommandFails) {
  start_daemon();
  const std::string result = dir_.file("result.json");
  auto r = exec({"--run", "rf", "--result-file", result, "--", "/bin/sh", "-c",
                 R"(echo '{"objective": 1}' > "$1"; exit 1)", "sh", result});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err, "");
  const json run = show("rf");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_FALSE(run.contains("objective")) << run.dump();
}

TEST_F(ExecTest, RunThatIsAlreadyFinishedIsRefusedButTheCommandRuns) {
  start_daemon();
  ASSERT_EQ(exec({"--run", "rd", "--", "/bin/sh", "-c", "exit 0"}).exit_code, 0);
  auto r = exec({"--run", "rd", "--", "/bin/sh", "-c", "exit 4"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_THAT(r.err, HasSubstr("sweepd refused to register run rd: conflict"));
  EXPECT_EQ(show("rd")["state"], "success");  // the first run's end stands
}

// ---- strict result files: exit 0 with a bad result fails the run, saying what is wrong ----------

struct result_case {
  std::string name;
  std::optional<std::string> content;  // what the command writes; nullopt: nothing
  std::string problem;                 // the run's error after "result file F: "
};

void PrintTo(const result_case& c, std::ostream* os) { *os << c.name; }

class ExecResultFile : public ExecTest, public ::testing::WithParamInterface<result_case> {};

TEST_P(ExecResultFile, FailsTheRunSayingWhy) {
  start_daemon();
  const result_case& c = GetParam();
  const std::string result = dir_.file("result.json");
  const std::string script = c.content ? R"(printf '%s' "$2" > "$1")" : std::string("exit 0");
  auto r = exec({"--run", "rr", "--result-file", result, "--", "/bin/sh", "-c", script, "sh",
                 result, c.content.value_or("")});
  EXPECT_EQ(r.exit_code, 0) << r.err;  // exec's status stays the command's
  const std::string error = "result file " + result + ": " + c.problem;
  EXPECT_THAT(r.err, HasSubstr("/bin/sh exited 0, but " + error + "; failing run rr\n"));
  const json run = show("rr");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_EQ(run["reason"], "worker_failed");
  EXPECT_EQ(run["error"], error);
  EXPECT_FALSE(run.contains("objective")) << run.dump();
}

const result_case result_cases[] = {
    {"Missing", std::nullopt, "does not exist (/bin/sh exited 0 without writing it)"},
    {"NotJson", "objective=0.9", "not valid JSON"},
    {"Empty", "", "not valid JSON"},
    {"NotAnObject", "[0.5]",
     R"([0.5] is not a JSON object such as {"objective": 0.93, "cost": 12.5})"},
    {"TooDeep", std::string(100, '[') + std::string(100, ']'), "nested deeper than 64 levels"},
    {"NanToken", R"({"objective": NaN, "cost": 1.5})", "'objective' is NaN (not a finite number)"},
    {"InfinityToken", R"({"objective": Infinity})",
     "'objective' is Infinity (not a finite number)"},
    {"MinusInfinityToken", R"({"objective": -Infinity})",
     "'objective' is -Infinity (not a finite number)"},
    {"ObjectiveMissing", R"({"cost": 2})", "no 'objective' key"},
    {"ObjectiveNull", R"({"objective": null})", "'objective' is null (not a finite number)"},
    {"ObjectiveString", R"({"objective": "0.9"})", R"('objective' is "0.9" (not a finite number))"},
    {"NegativeCost", R"({"objective": 0.5, "cost": -1})",
     "'cost' is -1 (not a finite number of at least 0)"},
    {"InfiniteCost", R"({"objective": 0.5, "cost": Infinity})",
     "'cost' is Infinity (not a finite number of at least 0)"},
    {"CostString", R"({"objective": 0.5, "cost": "12"})",
     R"('cost' is "12" (not a finite number of at least 0))"},
    {"ObjectiveAndCostBad", R"({"objective": NaN, "cost": -2})",
     "'objective' is NaN (not a finite number); 'cost' is -2 (not a finite number of at least 0)"},
};

INSTANTIATE_TEST_SUITE_P(Exec, ExecResultFile, ::testing::ValuesIn(result_cases),
                         [](const auto& param_info) { return param_info.param.name; });

TEST_F(ExecTest, StaleResultFileFailsTheRun) {
  start_daemon();
  const std::string result = dir_.file("result.json");
  std::ofstream(result) << R"({"objective": 1.5})";  // left from an earlier trial
  auto r = exec({"--run", "rs", "--result-file", result, "--", "/bin/sh", "-c", "exit 0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json run = show("rs");
  EXPECT_EQ(run["state"], "failed");
  EXPECT_EQ(run["error"], "result file " + result +
                              ": unchanged since /bin/sh started (left from an earlier run?)");
  EXPECT_FALSE(run.contains("objective")) << run.dump();
}

TEST_F(ExecTest, UnknownResultKeysAreWarnedAboutByNameAndTheRunCompletes) {
  start_daemon();
  const std::string result = dir_.file("result.json");
  auto r = exec({"--run", "ru", "--result-file", result, "--", "/bin/sh", "-c",
                 R"(echo '{"objective": 0.5, "loss": 0.1, "acc": 0.9, "cost": null}' > "$1")", "sh",
                 result});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "sweepctl exec: result file " + result +
                       ": ignoring 'acc', 'loss' (only 'objective' and 'cost' are read)\n");
  const json run = show("ru");
  EXPECT_EQ(run["state"], "success");
  EXPECT_EQ(run["objective"], 0.5);
}

// ---- --on-timeout: what exec does when sweepd gives up on the run for good ---------------------

TEST_F(ExecTest, MaxRuntimeTimeoutSendsSigtermAndTheRunStaysTimeout) {
  start_daemon();
  auto r =
      exec({"--run", "tk", "--max-runtime", "1", "--interval", "0.2", "--", "/bin/sleep", "30"});
  EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.err;
  EXPECT_FALSE(r.timed_out);
  EXPECT_THAT(r.err, HasSubstr("sweepctl exec: sweepd marked run tk timeout; sending SIGTERM to "
                               "/bin/sleep (SIGKILL in 30 s)\n"));
  EXPECT_THAT(r.err, HasSubstr("/bin/sleep ended (killed by SIGTERM); run tk stays timeout"));
  const json run = show("tk");
  EXPECT_EQ(run["state"], "timeout");
  EXPECT_EQ(run["reason"], "max_runtime");
  EXPECT_FALSE(run.contains("error")) << run.dump();  // no fail was sent for the killed command
  EXPECT_EQ(reasons_of(run), (std::vector<std::string>{"registered", "started", "max_runtime"}));
}

TEST_F(ExecTest, CommandThatIgnoresSigtermGetsSigkillAfterTheGrace) {
  start_daemon();
  auto r = exec({"--run", "tg", "--max-runtime", "1", "--interval", "0.2", "--kill-grace", "0.3",
                 "--", "/bin/sh", "-c", "trap '' TERM; exec sleep 30"});
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
  EXPECT_FALSE(r.timed_out);
  EXPECT_THAT(r.err, HasSubstr("(SIGKILL in 0.3 s)"));
  EXPECT_THAT(r.err, HasSubstr("/bin/sh still runs 0.3 s after SIGTERM; sending SIGKILL"));
  const json run = show("tg");
  EXPECT_EQ(run["state"], "timeout");
  EXPECT_EQ(run["reason"], "max_runtime");
}

TEST_F(ExecTest, OnTimeoutKeepLetsTheCommandFinishAndReportsItLate) {
  start_daemon();
  const std::string go = dir_.file("go");
  const std::string result = dir_.file("result.json");
  auto exec_process = test::process::start(
      exec_argv({"--run", "tp", "--max-runtime", "1", "--interval", "0.2", "--on-timeout", "keep",
                 "--result-file", result, "--", "/bin/sh", "-c",
                 R"(while [ ! -e "$1" ]; do sleep 0.05; done; echo '{"objective": 0.8}' > "$2")",
                 "sh", go, result}),
      env());
  ASSERT_TRUE(wait_for_text(exec_process,
                            "sweepd reports run tp as timeout; the command keeps "
                            "running"))
      << exec_process.err();
  std::ofstream(go) << "";
  EXPECT_EQ(exec_process.wait_for(10s), 0) << exec_process.err();
  EXPECT_THAT(exec_process.err(), Not(HasSubstr("SIGTERM")));
  const json run = show("tp");
  EXPECT_EQ(run["state"], "success");
  EXPECT_EQ(run["reason"], "late_completed");
  EXPECT_EQ(run["objective"], 0.8);
  EXPECT_TRUE(run.contains("late_by_s")) << run.dump();
}

TEST_F(ExecTest, SilenceTimeoutIsRevivedNotKilled) {
  start_daemon();
  const std::string go = dir_.file("go");
  auto exec_process = test::process::start(
      exec_argv({"--run", "tv", "--heartbeat-timeout", "0.5", "--interval", "0.2", "--", "/bin/sh",
                 "-c", R"(while [ ! -e "$1" ]; do sleep 0.05; done)", "sh", go}),
      env());
  wait_for_state("tv", "running");
  ASSERT_TRUE(exec_process.send_signal(SIGSTOP));  // exec falls silent; the command runs on
  EXPECT_EQ(wait_for_state("tv", "timeout")["reason"], "heartbeat_timeout");
  ASSERT_TRUE(exec_process.send_signal(SIGCONT));
  wait_for_state("tv", "running");  // revived by the next heartbeat
  std::ofstream(go) << "";
  EXPECT_EQ(exec_process.wait_for(10s), 0) << exec_process.err();
  EXPECT_THAT(exec_process.err(), Not(HasSubstr("SIGTERM")));
  const json run = show("tv");
  EXPECT_EQ(run["state"], "success");
  EXPECT_THAT(reasons_of(run), ::testing::Contains("revived"));
}

// ---- the report spool (docs/spool.md) ----------------------------------------------------------

class SpoolTest : public ExecTest {
 protected:
  test::command_result sweepctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SWEEPCTL_BINARY, "--socket", socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_command(argv, env(), 30s);
  }

  /// A spool file as another client (the Python one) would write it.
  void put_spool_file(const std::string& run, const std::string& socket, const json& report,
                      const std::string& spooled_at = "2026-11-30T12:00:00.000Z") {
    std::filesystem::create_directories(spool_dir());
    std::filesystem::permissions(spool_dir(), std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace);
    const json file = {
        {"version", 1},      {"socket", socket},
        {"run", run},        {"register", {{"op", "register"}, {"run", run}, {"sweep", "s1"}}},
        {"report", report},  {"spooled_at", spooled_at},
        {"client", "python"}};
    std::ofstream(spool_file(run)) << file.dump(2);
  }

  std::string spool_file(const std::string& run) const { return spool_dir() + "/" + run + ".json"; }

  static unsigned mode_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  static json read_json(const std::string& path) {
    std::ifstream in(path);
    return json::parse(in, nullptr, false);
  }
};

TEST_F(SpoolTest, WithoutDaemonTheReportIsSpooledAndFlushDeliversItOnce) {
  const std::string result = dir_.file("result.json");
  auto r = exec({"--run", "sp", "--sweep", "s1", "--suggestion", R"({"lr":0.1})", "--result-file",
                 result, "--interval", "0.2", "--", "/bin/sh", "-c",
                 R"(echo '{"objective": 0.75, "cost": 3}' > "$1")", "sh", result});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string file = spool_file("sp");
  EXPECT_THAT(r.err, HasSubstr("the report of run sp is spooled at " + file +
                               "; the next sweepctl exec or SweepRun start for this socket, or "
                               "'sweepctl spool flush', delivers it"));
  EXPECT_EQ(mode_of(spool_dir()), 0700u);
  EXPECT_EQ(mode_of(file), 0600u);
  const json spooled = read_json(file);
  EXPECT_EQ(spooled["version"], 1);
  EXPECT_EQ(spooled["socket"], socket_path());
  EXPECT_EQ(spooled["run"], "sp");
  EXPECT_EQ(
      spooled["register"],
      json({{"op", "register"}, {"run", "sp"}, {"sweep", "s1"}, {"suggestion", {{"lr", 0.1}}}}));
  EXPECT_EQ(spooled["report"],
            json({{"op", "complete"}, {"run", "sp"}, {"objective", 0.75}, {"cost", 3}}));
  EXPECT_THAT(spooled["spooled_at"].get<std::string>(),
              ::testing::MatchesRegex(R"(20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:]+\.[0-9]{3}Z)"));
  EXPECT_EQ(spooled["client"], "sweepctl exec");

  auto flush = sweepctl({"spool", "flush"});  // still no sweepd
  EXPECT_EQ(flush.exit_code, 3) << flush.err;
  EXPECT_THAT(flush.out, HasSubstr("sp: left: cannot connect to sweepd at " + socket_path()));
  EXPECT_TRUE(std::filesystem::exists(file));

  start_daemon();
  flush = sweepctl({"spool", "flush"});
  EXPECT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_EQ(flush.out, "sp: delivered success\n");
  EXPECT_FALSE(std::filesystem::exists(file));
  const json run = show("sp");
  EXPECT_EQ(run["state"], "success");
  EXPECT_EQ(run["objective"], 0.75);
  EXPECT_EQ(run["cost"], 3);
  EXPECT_EQ(run["sweep"], "s1");
  EXPECT_EQ(run["suggestion"]["lr"], 0.1);

  flush = sweepctl({"spool", "flush"});
  EXPECT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_EQ(flush.out, "nothing spooled in " + spool_dir() + "\n");
}

TEST_F(SpoolTest, ReportThatGetsThroughOnARetryHasItsSpoolFileRemoved) {
  auto exec_process = test::process::start(
      exec_argv({"--run", "rr", "--interval", "0.2", "--", "/bin/sh", "-c", "exit 0"}), env());
  // The first attempt failed, so the report is spooled at once; sweepd comes within the budget.
  ASSERT_TRUE(wait_for_file(spool_file("rr"))) << exec_process.err();
  start_daemon();
  EXPECT_EQ(exec_process.wait_for(20s), 0) << exec_process.err();
  EXPECT_THAT(exec_process.err(), HasSubstr("is back; run rr is success"));
  EXPECT_THAT(exec_process.err(), Not(HasSubstr("spooled at")));
  // Removed by the retry that got through, not found and delivered again by a flush.
  EXPECT_THAT(exec_process.err(), Not(HasSubstr("spooled report of run rr")));
  EXPECT_FALSE(std::filesystem::exists(spool_file("rr")));
  EXPECT_EQ(show("rr")["state"], "success");
}

TEST_F(SpoolTest, ReportSpooledWhileSweepdWasDownLandsLateAfterTheRestartCrashedTheRun) {
  start_daemon();
  const std::string go = dir_.file("go");
  const std::string result = dir_.file("result.json");
  auto exec_process = test::process::start(
      exec_argv({"--run", "rk", "--interval", "0.2", "--result-file", result, "--", "/bin/sh", "-c",
                 R"(while [ ! -e "$1" ]; do sleep 0.05; done; echo '{"objective": 0.6}' > "$2")",
                 "sh", go, result}),
      env());
  wait_for_state("rk", "running");
  daemon_->proc().kill();   // SIGKILL mid-run
  std::ofstream(go) << "";  // the command ends well during the outage
  EXPECT_EQ(exec_process.wait_for(20s), 0) << exec_process.err();
  EXPECT_THAT(exec_process.err(), HasSubstr("spooled at " + spool_file("rk")));

  start_daemon();  // the same state file: exec's process is gone, so the run is crashed
  EXPECT_EQ(wait_for_state("rk", "crashed")["reason"], "process_exited");
  auto flush = sweepctl({"spool", "flush"});
  EXPECT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_EQ(flush.out, "rk: delivered success\n");
  const json run = show("rk");
  EXPECT_EQ(run["state"], "success");
  EXPECT_EQ(run["reason"], "late_completed");
  EXPECT_EQ(run["objective"], 0.6);
  EXPECT_TRUE(run["late_by_s"].is_number()) << run.dump();
  EXPECT_FALSE(std::filesystem::exists(spool_file("rk")));
}

TEST_F(SpoolTest, ExecDeliversWhatWaitsOnceSweepdAnswered) {
  start_daemon();
  put_spool_file("old", socket_path(), {{"op", "complete"}, {"run", "old"}, {"objective", 0.4}});
  auto r = exec({"--run", "new", "--", "/bin/sh", "-c", "exit 0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "sweepctl exec: spooled report of run old: delivered success\n");
  EXPECT_FALSE(std::filesystem::exists(spool_file("old")));
  const json old = show("old");
  EXPECT_EQ(old["state"], "success");
  EXPECT_EQ(old["objective"], 0.4);
  EXPECT_EQ(old["sweep"], "s1");  // registered from the file: sweepd had never heard of it
  EXPECT_EQ(show("new")["state"], "success");
}

TEST_F(SpoolTest, FlushLeavesOtherSocketsFilesAloneAndSetsAsideMalformedOnes) {
  start_daemon();
  put_spool_file("fa", socket_path(), {{"op", "fail"}, {"run", "fa"}, {"error", "exit code 2"}});
  put_spool_file("fb", "/elsewhere/sweepd.sock", {{"op", "complete"}, {"run", "fb"}});
  std::ofstream(spool_file("fc")) << "{\"version\": 1,";
  auto flush = sweepctl({"spool", "flush"});
  EXPECT_EQ(flush.exit_code, 0) << flush.err;  // nothing left for this socket
  EXPECT_EQ(flush.out,
            "fa: delivered failed\n"
            "fb: left: spooled for the sweepd at /elsewhere/sweepd.sock\n"
            "fc: malformed: not valid JSON; renamed to " +
                spool_file("fc") + ".bad\n");
  EXPECT_TRUE(std::filesystem::exists(spool_file("fb")));
  EXPECT_TRUE(std::filesystem::exists(spool_file("fc") + ".bad"));
  EXPECT_EQ(show("fa")["error"], "exit code 2");

  flush = sweepctl({"--json", "spool", "flush"});
  EXPECT_EQ(flush.exit_code, 0) << flush.err;
  const json j = json::parse(flush.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << flush.out;
  EXPECT_EQ(j["left"], 0);
  ASSERT_EQ(j["files"].size(), 1u) << flush.out;
  EXPECT_EQ(j["files"][0]["run"], "fb");
  EXPECT_EQ(j["files"][0]["outcome"], "foreign");
}

TEST_F(SpoolTest, RefusedReportIsSweepdsFinalWordAndRemoved) {
  start_daemon();
  ASSERT_EQ(exec({"--run", "rf", "--", "/bin/sh", "-c", "exit 1"}).exit_code, 1);
  put_spool_file("rf", socket_path(), {{"op", "complete"}, {"run", "rf"}, {"objective", 1}});
  auto flush = sweepctl({"spool", "flush"});
  EXPECT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_EQ(flush.out, "rf: refused conflict: run 'rf' is already failed\n");
  EXPECT_FALSE(std::filesystem::exists(spool_file("rf")));
  EXPECT_EQ(show("rf")["state"], "failed");
}

TEST_F(SpoolTest, ListShowsEveryFileWithItsReportTimeAndSocket) {
  auto r = sweepctl({"spool", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "no spooled reports in " + spool_dir() + "\n");

  put_spool_file("la", socket_path(),
                 {{"op", "complete"}, {"run", "la"}, {"objective", 0.93}, {"cost", 12.5}});
  put_spool_file("lb", "/elsewhere/sweepd.sock",
                 {{"op", "fail"}, {"run", "lb"}, {"error", "exit code 3"}},
                 "2026-11-30T12:00:01.000Z");
  std::ofstream(spool_file("lc")) << "nope";
  r = sweepctl({"spool", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines;
  for (std::size_t at = 0, nl; (nl = r.out.find('\n', at)) != std::string::npos; at = nl + 1) {
    lines.push_back(r.out.substr(at, nl - at));
  }
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_THAT(lines[0], ::testing::MatchesRegex("RUN +REPORT +SPOOLED AT +SOCKET"));
  EXPECT_THAT(lines[1], ::testing::MatchesRegex("la +complete \\(objective 0.93, cost 12.5\\) +"
                                                "2026-11-30 12:00:00Z +" +
                                                socket_path()));
  EXPECT_THAT(lines[2], ::testing::MatchesRegex(
                            "lb +fail: exit code 3 +2026-11-30 12:00:01Z +/elsewhere/sweepd.sock"));
  EXPECT_THAT(lines[3], ::testing::MatchesRegex("lc +malformed: not valid JSON +- +-"));
  EXPECT_TRUE(std::filesystem::exists(spool_file("lc")));  // list only looks

  r = sweepctl({"--json", "spool", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["spool_dir"], spool_dir());
  ASSERT_EQ(j["reports"].size(), 3u);
  EXPECT_EQ(j["reports"][0]["report"]["objective"], 0.93);
  EXPECT_EQ(j["reports"][1]["client"], "python");
  EXPECT_EQ(j["reports"][2]["problem"], "not valid JSON");
}

TEST_F(SpoolTest, AnUnsafeSpoolDirectoryIsRefusedAndTheReportNotSpooled) {
  std::filesystem::create_directories(spool_dir());
  std::filesystem::permissions(spool_dir(), std::filesystem::perms::all,
                               std::filesystem::perm_options::replace);
  auto r = exec({"--run", "ru", "--interval", "0.2", "--", "/bin/sh", "-c", "exit 0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the report of run ru is lost: cannot spool it: spool directory "
                               "refused: " +
                               spool_dir() + " may be written by others"));
  EXPECT_FALSE(std::filesystem::exists(spool_file("ru")));
  auto flush = sweepctl({"spool", "flush"});
  EXPECT_EQ(flush.exit_code, 1);
  EXPECT_THAT(flush.err, HasSubstr("may be written by others"));
}

TEST_F(SpoolTest, SpoolDirOptionBeatsTheEnvironment) {
  const std::string elsewhere = dir_.file("elsewhere");
  auto r = exec({"--run", "ro", "--spool-dir", elsewhere, "--interval", "0.2", "--", "/bin/sh",
                 "-c", "exit 4"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(std::filesystem::exists(elsewhere + "/ro.json")) << r.err;
  EXPECT_FALSE(std::filesystem::exists(spool_file("ro")));
  auto list = sweepctl({"spool", "list", "--spool-dir", elsewhere});
  EXPECT_THAT(list.out, HasSubstr("fail: exit code 4"));
}

// Usage errors exit 2 before anything is started.
TEST(ExecUsage, ExitsTwoNamingTheProblemWithoutStartingTheCommand) {
  test::temp_dir dir;
  const std::string marker = dir.file("ran");
  const std::vector<std::string> cmd = {"--", "/bin/sh", "-c", ": > " + marker};
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "missing --run"},
      {{"--run", "bad id!"}, "not a valid run id"},
      {{"--run", "r1", "--interval", "0"}, "option '--interval'"},
      {{"--run", "r1", "--interval", "soon"}, "option '--interval'"},
      {{"--run", "r1", "--suggestion", "[1]"}, "option '--suggestion'"},
      {{"--run", "r1", "--heartbeat-timeout", "0"}, "option '--heartbeat-timeout'"},
      {{"--run", "r1", "--heartbeat-timeout", "20"}, "option '--interval'"},  // 30 s default
      {{"--run", "r1", "--result-file", ""}, "option '--result-file'"},
      {{"--run", "r1", "--on-timeout", "stop"}, "option '--on-timeout': expected kill or keep"},
      {{"--run", "r1", "--kill-grace", "-1"}, "option '--kill-grace'"},
      {{"--run", "r1", "--kill-grace", "soon"}, "option '--kill-grace'"},
      {{"--run", "r1", "--on-timeout", "keep", "--kill-grace", "5"},
       "option '--kill-grace': applies only with --on-timeout kill"},
      {{"--run", "r1", "--spool-dir", ""}, "option '--spool-dir'"},
      {{"--run", "r1", "--bogus", "x"}, "unknown option '--bogus' for 'exec'"},
  };
  for (const auto& [args, expected] : cases) {
    std::vector<std::string> argv = {SWEEPCTL_BINARY, "--socket", dir.file("s.sock"), "exec"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    auto r = test::run_command(argv, {}, 20s);
    EXPECT_EQ(r.exit_code, 2) << expected << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(expected));
    EXPECT_FALSE(std::filesystem::exists(marker)) << expected;
  }
  auto r = test::run_command({SWEEPCTL_BINARY, "exec", "--run", "r1"}, {}, 20s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("missing the command to run"));
}

TEST(ExecHelp, DocumentsEveryOptionAndTheExitStatus) {
  auto r = test::run_command({SWEEPCTL_BINARY, "exec", "--help"}, {}, 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Usage: sweepctl [GLOBAL OPTIONS] exec --run ID [OPTIONS] -- CMD"));
  for (const char* option :
       {"--run ID", "--sweep S", "--entity E", "--project P", "--suggestion JSON",
        "--result-file F", "--interval S", "--heartbeat-timeout S", "--max-runtime S",
        "--on-timeout kill|keep", "--kill-grace S", "--spool-dir DIR", "SIGTERM, SIGINT and SIGHUP",
        "Exit status", "128+N", "127", "143", "sweepctl spool"}) {
    EXPECT_THAT(r.out, HasSubstr(option));
  }
  r = test::run_command({SWEEPCTL_BINARY, "--help"}, {}, 20s);
  EXPECT_THAT(r.out, HasSubstr("  exec "));
}

// examples/sweep.sh, the shell sweep from the README, against the real daemon.
TEST_F(ExecTest, ExampleShellSweepRecordsEveryTrial) {
  start_daemon();
  auto r = test::run_command(
      {"/bin/sh", std::string(SWEEPD_SOURCE_DIR) + "/examples/sweep.sh", "3"},
      test::environment_with({std::string("SWEEPCTL=") + SWEEPCTL_BINARY,
                              "SWEEPD_SOCKET=" + socket_path(), "SWEEPD_SPOOL_DIR=" + spool_dir(),
                              "SWEEP=demo", "TRAIN_SECONDS=0"}),
      60s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const json reply = daemon_->call({{"op", "observations"}, {"sweep", "demo"}});
  const json& observations = reply["observations"];
  ASSERT_EQ(observations.size(), 3u) << reply.dump();
  for (const json& o : observations) {
    EXPECT_TRUE(o["suggestion"].contains("lr")) << o.dump();
    if (o["is_failure"] == false) {
      EXPECT_TRUE(o["objective"].is_number()) << o.dump();
    }
  }
}

}  // namespace
}  // namespace sweepd
