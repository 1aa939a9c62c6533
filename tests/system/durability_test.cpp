// Durability (DESIGN §5) with the real sweepd binary: kill -9 and restart, fresh deadlines after a
// restart, retention, loud startup failures, and a full or read-only disk under a running daemon.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <tuple>

#include "io/client.hpp"
#include "support/daemon_support.hpp"
#include "support/process_support.hpp"

namespace sweepd {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using ::testing::HasSubstr;

constexpr auto exit_timeout = seconds(10);

/// The commands run by the namespace tests are found here, not through the caller's PATH.
constexpr const char* tool_path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
const std::vector<std::string> tool_env = {tool_path};

/// Lines up to 1 MiB: the full-disk test registers runs with 60 KB suggestions.
constexpr const char* config_extra = "socket: {max_line_bytes: 1048576}\n";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

/// The (from, to, reason) of each transition in a `show` record, oldest first.
std::vector<std::tuple<json, json, json>> history_of(const json& run) {
  std::vector<std::tuple<json, json, json>> out;
  for (const json& t : run["transitions"]) out.emplace_back(t["from"], t["to"], t["reason"]);
  return out;
}

class DurabilityTest : public ::testing::Test {
 protected:
  /// kill -9, as a crash or the OOM killer would.
  void kill_sweepd() {
    ASSERT_TRUE(d_.proc().send_signal(SIGKILL));
    const auto code = d_.proc().wait_for(exit_timeout);
    ASSERT_TRUE(code) << "sweepd survived SIGKILL";
    EXPECT_EQ(*code, 128 + SIGKILL);
  }

  /// Starts sweepd where it must refuse to start: exit code 1 before READY=1. Its stderr.
  std::string refused_start() {
    EXPECT_FALSE(d_.try_start()) << "sweepd started";
    EXPECT_EQ(d_.proc().wait_for(milliseconds(0)), 1) << d_.proc().err();
    return d_.proc().err();
  }

  /// Sends `request` and expects an ok reply.
  json ok(const json& request) {
    json reply = d_.call(request);
    EXPECT_EQ(reply["ok"], true) << reply.dump() << " for " << request.dump().substr(0, 200);
    return reply;
  }

  json show(const std::string& run) { return d_.call({{"op", "show"}, {"run", run}}); }
  json status() { return ok({{"op", "status"}}); }

  test::temp_dir dir_;
  test::sweepd_under_test d_{dir_, config_extra};
};

// ---- 1. kill -9 right after a reply loses nothing acknowledged --------------------------------

TEST_F(DurabilityTest, CompletedRunSurvivesKillNine) {
  d_.start();
  ok({{"op", "register"}, {"run", "r1"}, {"sweep", "s1"}, {"suggestion", {{"lr", 0.01}}}});
  ok({{"op", "start"}, {"run", "r1"}});
  ok({{"op", "heartbeat"}, {"run", "r1"}, {"progress", 10}});  // not a transition
  const json done = ok({{"op", "complete"}, {"run", "r1"}, {"objective", 0.93}, {"cost", 12.5}});
  ASSERT_EQ(done["state"], "success");
  kill_sweepd();

  d_.start();
  const json run = show("r1")["run"];
  EXPECT_EQ(run["state"], "success");
  EXPECT_EQ(run["objective"], 0.93);
  EXPECT_EQ(run["cost"], 12.5);
  EXPECT_EQ(run["suggestion"]["lr"], 0.01);
  using h = std::tuple<json, json, json>;
  EXPECT_THAT(history_of(run), ::testing::ElementsAre(h{nullptr, "initializing", "registered"},
                                                      h{"initializing", "running", "started"},
                                                      h{"running", "success", "completed"}));
  const json s = status();
  EXPECT_EQ(s["runs"]["success"], 1);
  // One W&B write owed per run: the newest carries the whole state and supersedes the others.
  EXPECT_EQ(s["wandb"]["pending"], 1);
}

TEST_F(DurabilityTest, FailedRunSurvivesKillNine) {
  d_.start();
  ok({{"op", "register"}, {"run", "r1"}, {"sweep", "s1"}});
  ok({{"op", "start"}, {"run", "r1"}});
  const json failed = ok({{"op", "fail"}, {"run", "r1"}, {"error", "CUDA out of memory"}});
  ASSERT_EQ(failed["state"], "failed");
  kill_sweepd();

  d_.start();
  const json run = show("r1")["run"];
  EXPECT_EQ(run["state"], "failed");
  EXPECT_EQ(run["error"], "CUDA out of memory");
  using h = std::tuple<json, json, json>;
  EXPECT_THAT(history_of(run), ::testing::ElementsAre(h{nullptr, "initializing", "registered"},
                                                      h{"initializing", "running", "started"},
                                                      h{"running", "failed", "worker_failed"}));
  const json s = status();
  EXPECT_EQ(s["runs"]["failed"], 1);
  EXPECT_EQ(s["wandb"]["pending"], 1);
  // A retry of the same fail after the restart (the worker never saw the reply) is still ok.
  EXPECT_EQ(ok({{"op", "fail"}, {"run", "r1"}, {"error", "CUDA out of memory"}})["state"],
            "failed");
  EXPECT_EQ(status()["wandb"]["pending"], 1);
}

TEST_F(DurabilityTest, PipelinedMixedRequestsKilledWhileCommittingLoseNothingAcknowledged) {
  // Four connections pipeline registers, starts, heartbeats, reads, completes and fails of their
  // own runs, so that commits of batches from several connections are always under way; sweepd
  // is killed once a third of the replies are in, mid-commit or between two. Every request that
  // was answered ok must be in the state file afterwards, and every run's history must be a
  // prefix of what its worker asked for (a batch stores whole or not at all).
  constexpr int connections = 4;
  constexpr int runs_per_connection = 150;
  constexpr int requests_per_run = 5;  // register, start, heartbeat, status, complete|fail
  d_.start();
  const auto run_name = [](int c, int k) { return fmt::format("c{}-r{}", c, k); };

  std::vector<io::client> clients(connections);
  for (int c = 0; c < connections; ++c) {
    ASSERT_TRUE(clients[c].connect(d_.socket_path())) << clients[c].last_error();
    std::string lines;
    for (int k = 0; k < runs_per_connection; ++k) {
      const std::string run = run_name(c, k);
      const json end = k % 2 == 0 ? json{{"op", "complete"}, {"run", run}, {"objective", k}}
                                  : json{{"op", "fail"}, {"run", run}, {"error", "oom"}};
      for (const json& r : {json{{"op", "register"}, {"run", run}, {"sweep", "s"}},
                            json{{"op", "start"}, {"run", run}},
                            json{{"op", "heartbeat"}, {"run", run}, {"progress", 1}},
                            json{{"op", "status"}}, end}) {
        lines += r.dump() + "\n";
      }
    }
    ASSERT_TRUE(clients[c].send_raw(lines)) << clients[c].last_error();
  }
  // Reads replies round-robin until a third are in, then kills sweepd and reads what is left.
  constexpr int per_connection = runs_per_connection * requests_per_run;
  std::vector<std::vector<bool>> acknowledged(connections);
  const auto read_one = [&](int c) {
    auto line = clients[c].read_line(milliseconds(10000));
    if (!line) return false;
    acknowledged[c].push_back(json::parse(*line).value("ok", false));
    return true;
  };
  for (int round = 0; round < per_connection / 3; ++round) {
    for (int c = 0; c < connections; ++c) ASSERT_TRUE(read_one(c)) << clients[c].last_error();
  }
  kill_sweepd();
  for (int c = 0; c < connections; ++c) {
    while (acknowledged[c].size() < per_connection && read_one(c)) {
    }
    ASSERT_LT(acknowledged[c].size(), per_connection) << "every request was answered first";
  }

  d_.start();
  int stored_changes = 0;
  for (int c = 0; c < connections; ++c) {
    for (int k = 0; k < runs_per_connection; ++k) {
      const std::string run = run_name(c, k);
      SCOPED_TRACE(run);
      const auto acked = [&](int request) {
        const std::size_t i =
            static_cast<std::size_t>(k) * requests_per_run + static_cast<std::size_t>(request);
        return i < acknowledged[c].size() && acknowledged[c][i];
      };
      const json reply = show(run);
      if (!reply.value("ok", false)) {
        ASSERT_FALSE(acked(0)) << "an acknowledged register was lost";
        continue;
      }
      const json& record = reply["run"];
      const std::size_t transitions = record["transitions"].size();
      const std::string end = k % 2 == 0 ? "success" : "failed";
      // What was acknowledged is there; what is there is a prefix of the worker's requests.
      const std::size_t acked_transitions = acked(4) ? 3 : acked(1) ? 2 : 1;
      EXPECT_GE(transitions, acked_transitions) << record.dump();
      const std::vector<std::string> expected_states = {"initializing", "running", end};
      for (std::size_t t = 0; t < transitions; ++t) {
        EXPECT_EQ(record["transitions"][t]["to"], expected_states.at(t)) << record.dump();
      }
      EXPECT_EQ(record["state"], expected_states.at(transitions - 1));
      if (transitions == 3 && k % 2 == 0) {
        EXPECT_EQ(record["objective"], k);
      }
      stored_changes += static_cast<int>(transitions);
    }
  }
  EXPECT_GT(stored_changes, 0);
}

// ---- 2. a restart gives live runs fresh deadlines ---------------------------------------------
// In tests/app (DaemonLogicTest.RestartGivesLiveRunsAFullTimeoutAgain, and the re-arming for a
// heartbeat's shorter timeout_s that the full-disk test below relies on), on a fake clock.

// ---- 3. terminal runs are kept for state.retention, then pruned -------------------------------

TEST_F(DurabilityTest, TerminalRunIsAnObservationAfterRestart) {
  d_.start();
  ok({{"op", "register"}, {"run", "r1"}, {"sweep", "s1"}, {"suggestion", {{"lr", 0.5}}}});
  ok({{"op", "complete"}, {"run", "r1"}, {"objective", 0.25}, {"cost", 3}});
  ok({{"op", "register"}, {"run", "r2"}, {"sweep", "s1"}});
  ok({{"op", "fail"}, {"run", "r2"}, {"error", "boom"}});
  kill_sweepd();

  d_.start();
  const json obs = ok({{"op", "observations"}, {"sweep", "s1"}})["observations"];
  ASSERT_EQ(obs.size(), 2u) << obs.dump();
  std::map<std::string, json> by_id;
  for (const json& o : obs) by_id[o["run_id"].get<std::string>()] = o;
  ASSERT_EQ(by_id.count("r1"), 1u);
  ASSERT_EQ(by_id.count("r2"), 1u);
  EXPECT_EQ(by_id["r1"]["objective"], 0.25);
  EXPECT_EQ(by_id["r1"]["cost"], 3);
  EXPECT_EQ(by_id["r1"]["is_failure"], false);
  EXPECT_EQ(by_id["r1"]["suggestion"]["lr"], 0.5);
  EXPECT_EQ(by_id["r2"]["is_failure"], true);
  EXPECT_GT(by_id["r2"]["cost"].get<double>(), 0);
}

// Runs past state.retention are pruned, at a restart and while running: tests/app
// (DaemonLogicTest), on a fake clock rather than 1.5 s of real waiting.

// ---- 4. startup failures are loud -------------------------------------------------------------

TEST_F(DurabilityTest, CorruptStateFileStopsStartupAndIsLeftAlone) {
  std::string garbage;
  for (int i = 0; i < 8192; ++i) garbage.push_back(static_cast<char>((i * 7919 + 13) % 251));
  std::ofstream(d_.state_path(), std::ios::binary) << garbage;
  EXPECT_THAT(refused_start(), HasSubstr(d_.state_path()));
  EXPECT_EQ(read_file(d_.state_path()), garbage);
  EXPECT_FALSE(std::filesystem::exists(d_.socket_path()));
}

TEST_F(DurabilityTest, DamagedDatabaseStopsStartupAndIsLeftAlone) {
  // A real state file, then one of its pages overwritten: a valid SQLite header over a broken
  // b-tree, which only an integrity check finds.
  d_.start();
  for (const char* run : {"r1", "r2", "r3", "r4", "r5"}) ok({{"op", "register"}, {"run", run}});
  ASSERT_EQ(d_.stop(), 0) << d_.proc().err();
  ASSERT_FALSE(std::filesystem::exists(d_.state_path() + "-wal")) << "expected a checkpointed file";
  std::string damaged = read_file(d_.state_path());
  ASSERT_GE(damaged.size(), 2 * 4096u);
  for (std::size_t i = 4096; i < std::size_t{2} * 4096; ++i)
    damaged[i] = static_cast<char>((i * 31) % 256);
  std::ofstream(d_.state_path(), std::ios::binary | std::ios::trunc) << damaged;

  const std::string err = refused_start();
  EXPECT_THAT(err, HasSubstr(d_.state_path()));
  EXPECT_THAT(err, HasSubstr("corrupt"));
  EXPECT_THAT(err, ::testing::Not(HasSubstr("another row available")));  // SQLite's, not why
  EXPECT_EQ(read_file(d_.state_path()), damaged);
}

TEST_F(DurabilityTest, StateDirectoryThatCannotBeCreatedStopsStartup) {
  std::ofstream(dir_.file("plainfile")) << "not a directory\n";
  d_.set_state_path(dir_.file("plainfile") + "/sub/state.db");
  d_.write_config(config_extra);
  EXPECT_THAT(refused_start(), HasSubstr(dir_.file("plainfile") + "/sub"));
  EXPECT_FALSE(std::filesystem::exists(d_.socket_path()));
}

// ---- 5, 6. a full or read-only disk under a running daemon ------------------------------------

/// Runs sweepd in a private mount namespace with its state directory on a tiny tmpfs that only it
/// sees; the socket stays in the temp dir outside.
class DurabilityNamespaceTest : public DurabilityTest {
 protected:
  std::string mount_point() const { return dir_.file("state"); }

  /// Starts the namespaced sweepd with its state in the tmpfs, mounted with `options` (after
  /// "size=1m,"); false (with `skip_reason_` set when it is a permission problem) when it did not
  /// come up.
  bool launch_on_tmpfs(const std::string& options = "rw") {
    std::filesystem::create_directory(mount_point());
    d_.set_state_path(mount_point() + "/state.db");
    d_.write_config(config_extra);
    // The fixture appends sweepd and its arguments to the launcher: they are the script's $0 "$@".
    const std::string script = "mount -t tmpfs -o size=1m," + options + " tmpfs '" + mount_point() +
                               "' && exec \"$0\" \"$@\"";
    d_.set_launcher({"/usr/bin/env", tool_path, "/usr/bin/unshare", "-m", "--propagation",
                     "private", "/bin/sh", "-c", script});
    if (d_.try_start()) {
      // With `exec`, the env process became unshare, then sh, then sweepd itself.
      EXPECT_EQ(read_file("/proc/" + std::to_string(d_.proc().pid()) + "/comm"), "sweepd\n");
      return true;
    }
    const std::string err = lowercase(d_.proc().err());
    if (err.find("permission denied") != std::string::npos ||
        err.find("operation not permitted") != std::string::npos) {
      skip_reason_ = "cannot make a private mount namespace with a tmpfs: " + d_.proc().err();
    }
    return false;
  }

  /// The state file as seen from inside the daemon's namespace.
  std::string inside(const std::string& name) {
    return "/proc/" + std::to_string(d_.proc().pid()) + "/root" + mount_point() + "/" + name;
  }

  std::string skip_reason_;
};

TEST_F(DurabilityNamespaceTest, FullDiskAnswersInternalAndAcknowledgesOnlyWhatIsStored) {
  if (!launch_on_tmpfs()) {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    FAIL() << "namespaced sweepd did not start: " << d_.proc().err();
  }
  // Space to give back later: a file on the daemon's tmpfs, reached through its /proc root.
  std::ofstream(inside("filler"), std::ios::binary) << std::string(std::size_t{448} * 1024, '\0');
  ASSERT_EQ(std::filesystem::file_size(inside("filler")), 448 * 1024u);

  // Each run is stored with its suggestion, so 60 KB ones (under the 64 KiB limit) fill the rest
  // of the 1 MiB in a few runs.
  auto suggestion_of = [](int i) {
    return json{{"blob", std::string(60000, static_cast<char>('a' + i % 26))}};
  };
  std::vector<std::string> stored;
  std::string refused;
  for (int i = 0; i < 64 && refused.empty(); ++i) {
    const std::string run = "big" + std::to_string(i);
    const json reply =
        d_.call({{"op", "register"}, {"run", run}, {"suggestion", suggestion_of(i)}});
    if (reply["ok"] == true) {
      stored.push_back(run);
    } else {
      ASSERT_EQ(reply["error"]["code"], "internal") << reply.dump();
      refused = run;
    }
  }
  ASSERT_FALSE(refused.empty()) << "the tmpfs never filled up";
  ASSERT_FALSE(stored.empty()) << "not even one run fit: " << d_.proc().err();

  EXPECT_FALSE(d_.proc().wait_for(milliseconds(0))) << "sweepd exited: " << d_.proc().err();
  EXPECT_EQ(show(refused)["error"]["code"], "unknown_run");  // not acknowledged, not there
  for (std::size_t i = 0; i < stored.size(); ++i) {
    const json run = show(stored[i])["run"];
    EXPECT_EQ(run["state"], "initializing") << stored[i];
    EXPECT_EQ(run["suggestion"], suggestion_of(static_cast<int>(i))) << stored[i];
    // Heartbeats never touch the disk, so a full disk does not stop them.
    EXPECT_EQ(ok({{"op", "heartbeat"}, {"run", stored[i]}})["state"], "initializing");
  }
  json s = status();
  EXPECT_EQ(s["runs"]["initializing"], stored.size());
  EXPECT_EQ(s["wandb"]["pending"], stored.size());
  const std::string failure_log = "storing 1 transition(s) failed, nothing changed";
  EXPECT_THAT(d_.proc().err(), HasSubstr(failure_log));

  // What is on the disk now is what was acknowledged; checked at the end on a copy taken through
  // the daemon's namespace while it is idle (no run is due, so nothing is being written).
  const std::string copy_dir = dir_.file("copy");
  std::filesystem::create_directory(copy_dir);
  for (const char* name : {"state.db", "state.db-wal"}) {
    std::filesystem::copy_file(inside(name), copy_dir + "/" + name);
  }

  // A timeout that cannot be stored is dropped and retried, not lost, and not acknowledged early.
  // Take the last free blocks, then make a big run due (a heartbeat's timeout_s does not touch the
  // disk). Its expiry rewrites its whole record, more than the refused register could have left
  // allocated at the end of the WAL.
  {
    std::ofstream rest(inside("rest"), std::ios::binary);
    const std::string block(4096, '\0');
    for (int i = 0; i < 1024 && rest.write(block.data(), block.size()).flush(); ++i) {
    }
  }
  auto failures = [&] {
    const std::string log = d_.proc().err();
    std::size_t n = 0;
    for (auto at = log.find(failure_log); at != std::string::npos;
         at = log.find(failure_log, at + 1)) {
      ++n;
    }
    return n;
  };
  const std::size_t failures_before = failures();
  ok({{"op", "heartbeat"}, {"run", stored[0]}, {"timeout_s", 0.1}});
  const auto deadline = steady_clock::now() + seconds(10);
  while (failures() == failures_before && steady_clock::now() < deadline) {
    // A bounded poll: the failed expiry answers no request and sends no notification, and the
    // log it writes goes to a memfd, which poll() cannot wait on.
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_GT(failures(), failures_before) << "the expiry was stored on a full disk?\n"
                                         << d_.proc().err();
  EXPECT_EQ(show(stored[0])["run"]["state"], "initializing");
  EXPECT_EQ(status()["runs"]["timeout"], 0);

  // Space back: the retried expiry is stored, and so is the refused register when retried.
  std::filesystem::remove(inside("filler"));
  std::filesystem::remove(inside("rest"));
  EXPECT_EQ(d_.wait_for_state(stored[0], "timeout")["reason"], "heartbeat_timeout");
  const json retried = ok({{"op", "register"},
                           {"run", refused},
                           {"suggestion", suggestion_of(static_cast<int>(stored.size()))}});
  EXPECT_EQ(retried["state"], "initializing");
  s = status();
  EXPECT_EQ(s["runs"]["timeout"], 1);
  EXPECT_EQ(s["wandb"]["pending"], stored.size() + 1);  // stored[0]'s timeout superseded its own
  kill_sweepd();

  // The copy taken while the disk was full has every acknowledged run, and not the refused one.
  d_.set_launcher({});
  d_.set_state_path(copy_dir + "/state.db");
  d_.write_config(config_extra);
  d_.start();
  s = status();
  EXPECT_EQ(s["runs"]["initializing"], stored.size());
  EXPECT_EQ(s["wandb"]["pending"], stored.size());
  for (const std::string& run : stored) EXPECT_EQ(show(run)["run"]["state"], "initializing");
  EXPECT_EQ(show(refused)["error"]["code"], "unknown_run");
}

TEST_F(DurabilityNamespaceTest, ReadOnlyDiskAnswersInternalAndKeepsServing) {
  if (!launch_on_tmpfs()) {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    FAIL() << "namespaced sweepd did not start: " << d_.proc().err();
  }
  ok({{"op", "register"}, {"run", "before"}});
  const auto r = test::run_command({"/usr/bin/nsenter", "-t", std::to_string(d_.proc().pid()), "-m",
                                    "/usr/bin/mount", "-o", "remount,ro", mount_point()},
                                   tool_env, seconds(10));
  if (r.exit_code != 0) {
    // The kernel refuses a read-only remount while files are open for writing, and SQLite keeps
    // the database and its WAL open for writing for the daemon's whole life.
    GTEST_SKIP() << "cannot remount the state directory read-only under the daemon: " << r.err;
  }
  const json refused = d_.call({{"op", "register"}, {"run", "after"}});
  EXPECT_EQ(refused["error"]["code"], "internal") << refused.dump();
  EXPECT_FALSE(d_.proc().wait_for(milliseconds(0))) << "sweepd exited: " << d_.proc().err();
  EXPECT_EQ(status()["runs"]["initializing"], 1);
  EXPECT_EQ(show("after")["error"]["code"], "unknown_run");
}

TEST_F(DurabilityNamespaceTest, ReadOnlyStateDirectoryStopsStartup) {
  // The case that can be set up everywhere: the state directory is read-only before sweepd starts.
  if (launch_on_tmpfs("ro")) FAIL() << "sweepd started on a read-only state directory";
  if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  EXPECT_EQ(d_.proc().wait_for(milliseconds(0)), 1) << d_.proc().err();
  EXPECT_THAT(d_.proc().err(), HasSubstr(mount_point() + "/state.db"));
  EXPECT_THAT(d_.proc().err(), HasSubstr("Read-only file system"));
  EXPECT_FALSE(std::filesystem::exists(d_.socket_path()));
}

}  // namespace
}  // namespace sweepd
