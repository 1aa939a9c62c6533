// The report spool's functions (docs/spool.md) on a real directory, with a scripted sweepd: where
// the directory is, how files are written and listed, and every delivery rule.

#include "cli/spool.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "support/process_support.hpp"

namespace sweepd::cli {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

const uid_t me = ::getuid();

env_lookup env_of(const std::map<std::string, std::string>& vars) {
  return [vars](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

spool_record record_for(const std::string& run, const std::string& socket, json report = {}) {
  if (report.is_null()) report = {{"op", "complete"}, {"run", run}, {"objective", 0.93}};
  return {socket,
          run,
          {{"op", "register"}, {"run", run}, {"sweep", "s1"}, {"suggestion", {{"lr", 0.01}}}},
          std::move(report),
          "2026-11-30T12:00:00.000Z",
          "sweepctl exec"};
}

/// A sweepd that answers from a script and records what it was asked. An unscripted request, or
/// an empty script entry, gets no reply.
class scripted_link : public spool_link {
 public:
  void then(json reply) { replies_.push_back(std::move(reply)); }
  void then_silence() { replies_.push_back(json()); }

  std::optional<json> call(const json& request, std::string& why) override {
    requests.push_back(request);
    if (replies_.empty() || replies_.front().is_null()) {
      if (!replies_.empty()) replies_.pop_front();
      why = "no reply from sweepd at /s.sock in time";
      return std::nullopt;
    }
    json reply = replies_.front();
    replies_.pop_front();
    return reply;
  }

  std::vector<json> requests;

 private:
  std::deque<json> replies_;
};

json ok_state(const std::string& run, const std::string& state) {
  return {{"ok", true}, {"run", run}, {"state", state}};
}

json error_reply(const std::string& code, const std::string& message) {
  return {{"ok", false}, {"error", {{"code", code}, {"message", message}}}};
}

// ---- where ---------------------------------------------------------------------------------

TEST(SpoolDir, FirstThatAppliesWins) {
  const std::map<std::string, std::string> all = {
      {"SWEEPD_SPOOL_DIR", "/env/spool"}, {"XDG_STATE_HOME", "/xdg"}, {"HOME", "/home/u"}};
  EXPECT_EQ(spool_dir_for("/explicit", env_of(all), "/run/s.sock", 1000), "/explicit");
  EXPECT_EQ(spool_dir_for(std::nullopt, env_of(all), "/run/s.sock", 1000), "/env/spool");
  auto without = [&](std::initializer_list<const char*> names) {
    auto vars = all;
    for (const char* n : names) vars.erase(n);
    return env_of(vars);
  };
  EXPECT_EQ(spool_dir_for(std::nullopt, without({"SWEEPD_SPOOL_DIR"}), "/run/s.sock", 1000),
            "/xdg/sweepd/spool");
  EXPECT_EQ(spool_dir_for(std::nullopt, without({"SWEEPD_SPOOL_DIR", "XDG_STATE_HOME"}),
                          "/run/s.sock", 1000),
            "/home/u/.local/state/sweepd/spool");
  EXPECT_EQ(spool_dir_for(std::nullopt, without({"SWEEPD_SPOOL_DIR", "XDG_STATE_HOME", "HOME"}),
                          "/run/sweepd/s.sock", 1000),
            "/run/sweepd/spool-1000");
}

TEST(SpoolDir, EmptyOrRelativeVariablesAreSkipped) {
  const auto env =
      env_of({{"SWEEPD_SPOOL_DIR", ""}, {"XDG_STATE_HOME", "rel/state"}, {"HOME", ""}});
  EXPECT_EQ(spool_dir_for(std::nullopt, env, "/run/s.sock", 7), "/run/spool-7");
  // A socket named without a directory has its spool in the current one.
  EXPECT_EQ(spool_dir_for(std::nullopt, env, "s.sock", 7), "./spool-7");
}

TEST(SpoolDir, IsCreatedPrivateWithItsParents) {
  test::temp_dir tmp;
  const fs::path dir = tmp.path() / "a" / "b" / "spool";
  const mode_t old_umask = ::umask(0777);  // even a umask that takes every bit
  const std::string problem = make_spool_dir(dir, me);
  ::umask(old_umask);
  EXPECT_EQ(problem, "");
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(tmp.path() / "a"), 0700u);
  EXPECT_EQ(make_spool_dir(dir, me), "");  // there already: fine
}

TEST(SpoolDir, UnsafeDirectoriesAreRefused) {
  test::temp_dir tmp;
  const fs::path open_dir = tmp.path() / "open";
  fs::create_directory(open_dir);
  ::chmod(open_dir.c_str(), 0770);
  EXPECT_THAT(make_spool_dir(open_dir, me), HasSubstr("may be written by its group (mode 0770"));
  ::chmod(open_dir.c_str(), 0757);
  EXPECT_THAT(make_spool_dir(open_dir, me), HasSubstr("may be written by others"));
  ::chmod(open_dir.c_str(), 0755);  // readable by others is fine
  EXPECT_EQ(make_spool_dir(open_dir, me), "");
  EXPECT_THAT(make_spool_dir(open_dir, me + 1), HasSubstr("belongs to uid"));
  const fs::path file = tmp.path() / "file";
  std::ofstream(file) << "x";
  EXPECT_THAT(make_spool_dir(file, me), HasSubstr("is not a directory"));

  std::string why;
  EXPECT_FALSE(write_spool_file(open_dir, record_for("r1", "/s.sock"), me + 1, why));
  EXPECT_THAT(why, HasSubstr("belongs to uid"));
}

// ---- what ----------------------------------------------------------------------------------

TEST(SpoolWrite, WritesOnePrivateFilePerRunAsTheDocSays) {
  test::temp_dir tmp;
  const fs::path dir = tmp.path() / "spool";
  std::string problem;
  const auto path =
      write_spool_file(dir, record_for("ab12cd34", "/run/sweepd/sweepd.sock"), me, problem);
  ASSERT_TRUE(path) << problem;
  EXPECT_EQ(*path, dir / "ab12cd34.json");
  EXPECT_EQ(mode_of(*path), 0600u);
  const json j = json::parse(read_text(*path));
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["socket"], "/run/sweepd/sweepd.sock");
  EXPECT_EQ(j["run"], "ab12cd34");
  EXPECT_EQ(j["register"]["op"], "register");
  EXPECT_EQ(j["register"]["suggestion"]["lr"], 0.01);
  EXPECT_EQ(j["report"], json({{"op", "complete"}, {"run", "ab12cd34"}, {"objective", 0.93}}));
  EXPECT_EQ(j["spooled_at"], "2026-11-30T12:00:00.000Z");
  EXPECT_EQ(j["client"], "sweepctl exec");
  // Nothing else is left in the directory (no temporary file).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST(SpoolWrite, ANewerReportReplacesTheOlder) {
  test::temp_dir tmp;
  std::string problem;
  ASSERT_TRUE(write_spool_file(tmp.path(), record_for("r1", "/s.sock"), me, problem));
  const json fail = {{"op", "fail"}, {"run", "r1"}, {"error", "exit code 1"}};
  ASSERT_TRUE(write_spool_file(tmp.path(), record_for("r1", "/s.sock", fail), me, problem));
  EXPECT_EQ(json::parse(read_text(tmp.path() / "r1.json"))["report"], fail);
}

TEST(SpoolRecord, RefusesWhatIsNotAVersionOneSpoolObject) {
  const json good = to_json(record_for("r1", "/s.sock"));
  std::string problem;
  ASSERT_TRUE(spool_record_from(good, problem)) << problem;
  auto broken = [&](auto change) {
    json j = good;
    change(j);
    std::string why;
    EXPECT_FALSE(spool_record_from(j, why)) << j.dump();
    return why;
  };
  EXPECT_EQ(broken([](json& j) { j = json::array(); }), "not a JSON object");
  EXPECT_EQ(broken([](json& j) { j["version"] = 2; }), "version 2, not 1");
  EXPECT_EQ(broken([](json& j) { j.erase("version"); }), "no \"version\"");
  EXPECT_EQ(broken([](json& j) { j.erase("socket"); }), "no \"socket\" string");
  EXPECT_EQ(broken([](json& j) { j["run"] = "bad id!"; }), "'bad id!' is not a run id");
  EXPECT_EQ(broken([](json& j) { j.erase("report"); }), "no \"report\" object");
  EXPECT_THAT(broken([](json& j) { j["report"]["op"] = "heartbeat"; }),
              HasSubstr("\"report\" is not a complete request"));
  EXPECT_THAT(broken([](json& j) { j["register"]["run"] = "r2"; }),
              HasSubstr("\"register\" is not a register request for run 'r1'"));
}

TEST(SpoolList, ShowsSpoolFilesOnlyWithTheMalformedOnesSaid) {
  test::temp_dir tmp;
  std::string problem;
  ASSERT_TRUE(write_spool_file(tmp.path(), record_for("r2", "/s.sock"), me, problem));
  ASSERT_TRUE(write_spool_file(tmp.path(), record_for("r1", "/other.sock"), me, problem));
  std::ofstream(tmp.file("r3.json")) << "{not json";
  std::ofstream(tmp.file("r4.json")) << to_json(record_for("r5", "/s.sock")).dump();
  std::ofstream(tmp.file("r6.json.bad")) << "x";         // set aside earlier
  std::ofstream(tmp.file(".r7.json.1-abc.tmp")) << "x";  // being written
  std::ofstream(tmp.file("notes.txt")) << "x";
  const auto entries = list_spool(tmp.path(), problem);
  EXPECT_EQ(problem, "");
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].run, "r1");
  EXPECT_EQ(entries[0].record->socket, "/other.sock");
  EXPECT_EQ(entries[1].run, "r2");
  EXPECT_EQ(entries[2].run, "r3");
  EXPECT_FALSE(entries[2].record);
  EXPECT_EQ(entries[2].problem, "not valid JSON");
  EXPECT_EQ(entries[3].problem, "it holds run 'r5', not the run of its name");
  // An absent directory holds nothing.
  EXPECT_TRUE(list_spool(tmp.path() / "none", problem).empty());
  EXPECT_EQ(problem, "");
}

// ---- delivering one file -------------------------------------------------------------------

class SpoolDeliver : public ::testing::Test {
 protected:
  fs::path spool(const std::string& run, const std::string& socket = "/s.sock", json report = {}) {
    std::string problem;
    auto path =
        write_spool_file(tmp_.path(), record_for(run, socket, std::move(report)), me, problem);
    EXPECT_TRUE(path) << problem;
    return path.value_or(fs::path());
  }

  test::temp_dir tmp_;
  scripted_link link_;
};

TEST_F(SpoolDeliver, AnOkReplyRemovesTheFile) {
  const fs::path file = spool("r1");
  link_.then(ok_state("r1", "success"));
  const delivery d = deliver_spool_file(file, "/s.sock", &link_);
  EXPECT_EQ(d.what, delivery::outcome::delivered);
  EXPECT_EQ(d.state, "success");
  EXPECT_EQ(describe(d), "delivered success");
  EXPECT_FALSE(fs::exists(file));
  ASSERT_EQ(link_.requests.size(), 1u);
  EXPECT_EQ(link_.requests[0], json({{"op", "complete"}, {"run", "r1"}, {"objective", 0.93}}));
}

TEST_F(SpoolDeliver, AnUnknownRunIsRegisteredStartedAndReportedOnOneLink) {
  const fs::path file = spool("r1");
  link_.then(error_reply("unknown_run", "no run 'r1'"));
  link_.then(ok_state("r1", "initializing"));
  link_.then(ok_state("r1", "running"));
  link_.then(ok_state("r1", "success"));
  const delivery d = deliver_spool_file(file, "/s.sock", &link_);
  EXPECT_EQ(d.what, delivery::outcome::delivered);
  ASSERT_EQ(link_.requests.size(), 4u);
  EXPECT_EQ(link_.requests[1]["op"], "register");
  EXPECT_EQ(link_.requests[1]["suggestion"]["lr"], 0.01);
  EXPECT_EQ(link_.requests[2], json({{"op", "start"}, {"run", "r1"}}));
  EXPECT_EQ(link_.requests[3]["op"], "complete");
  EXPECT_FALSE(fs::exists(file));
}

TEST_F(SpoolDeliver, AnErrorReplyIsTheFinalWordAndRemovesTheFile) {
  for (const char* code : {"conflict", "forbidden", "bad_request"}) {
    const fs::path file = spool("r1");
    link_.then(error_reply(code, "run 'r1' is already failed"));
    const delivery d = deliver_spool_file(file, "/s.sock", &link_);
    EXPECT_EQ(d.what, delivery::outcome::refused) << code;
    EXPECT_EQ(describe(d), std::string("refused ") + code + ": run 'r1' is already failed");
    EXPECT_FALSE(fs::exists(file)) << code;
  }
}

TEST_F(SpoolDeliver, ARefusedRegisterIsTheFinalWordForAnUnknownRun) {
  const fs::path file = spool("r1");
  link_.then(error_reply("unknown_run", "no run 'r1'"));
  link_.then(error_reply("forbidden", "uid 5 may not register"));
  link_.then(error_reply("unknown_run", "no run 'r1'"));
  link_.then(error_reply("unknown_run", "no run 'r1'"));
  const delivery d = deliver_spool_file(file, "/s.sock", &link_);
  EXPECT_EQ(d.what, delivery::outcome::refused);
  EXPECT_EQ(d.code, "forbidden");
  EXPECT_FALSE(fs::exists(file));
}

TEST_F(SpoolDeliver, NoReplyLeavesTheFileAndStops) {
  const fs::path file = spool("r1");
  link_.then_silence();
  const delivery d = deliver_spool_file(file, "/s.sock", &link_);
  EXPECT_EQ(d.what, delivery::outcome::left);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(describe(d), "left: no reply from sweepd at /s.sock in time");
  EXPECT_TRUE(fs::exists(file));

  // Silence in the middle of the unknown_run exchange leaves it too.
  link_.then(error_reply("unknown_run", "no run 'r1'"));
  link_.then(ok_state("r1", "initializing"));
  link_.then_silence();
  EXPECT_EQ(deliver_spool_file(file, "/s.sock", &link_).what, delivery::outcome::left);
  EXPECT_TRUE(fs::exists(file));
}

TEST_F(SpoolDeliver, BusyOrInternalLeavesTheFileForLater) {
  const fs::path file = spool("r1");
  for (const char* code : {"busy", "internal"}) {
    link_.then(error_reply(code, "try again"));
    const delivery d = deliver_spool_file(file, "/s.sock", &link_);
    EXPECT_EQ(d.what, delivery::outcome::left) << code;
    EXPECT_TRUE(d.stop);
    EXPECT_EQ(d.code, code);
    EXPECT_TRUE(fs::exists(file));
  }
}

TEST_F(SpoolDeliver, AFileForAnotherSocketIsLeftAlone) {
  const fs::path file = spool("r1", "/other/sweepd.sock");
  const delivery d = deliver_spool_file(file, "/s.sock", &link_);
  EXPECT_EQ(d.what, delivery::outcome::foreign);
  EXPECT_EQ(describe(d), "left: spooled for the sweepd at /other/sweepd.sock");
  EXPECT_TRUE(link_.requests.empty());
  EXPECT_TRUE(fs::exists(file));
}

TEST_F(SpoolDeliver, SocketPathsCompareAbsoluteAndNormal) {
  const fs::path file = spool("r1", "/run//sweepd/./sweepd.sock");
  link_.then(ok_state("r1", "success"));
  EXPECT_EQ(deliver_spool_file(file, "/run/sweepd/sweepd.sock", &link_).what,
            delivery::outcome::delivered);
  EXPECT_EQ(normal_socket_path("s.sock"), (fs::current_path() / "s.sock").string());
}

TEST_F(SpoolDeliver, AMalformedFileIsRenamedBad) {
  const fs::path file = tmp_.path() / "r1.json";
  std::ofstream(file) << R"({"version": 1, "run": "r1"})";
  const delivery d = deliver_spool_file(file, "/s.sock", &link_);
  EXPECT_EQ(d.what, delivery::outcome::malformed);
  EXPECT_EQ(describe(d), "malformed: no \"socket\" string; renamed to " + file.string() + ".bad");
  EXPECT_FALSE(fs::exists(file));
  EXPECT_TRUE(fs::exists(file.string() + ".bad"));
  EXPECT_TRUE(link_.requests.empty());
}

TEST_F(SpoolDeliver, AFileLockedByAnotherClientIsSkipped) {
  const fs::path file = spool("r1");
  const int other = ::open(file.c_str(), O_RDONLY);
  ASSERT_GE(other, 0);
  ASSERT_EQ(::flock(other, LOCK_EX | LOCK_NB), 0);
  const delivery d = deliver_spool_file(file, "/s.sock", &link_);
  EXPECT_EQ(d.what, delivery::outcome::left);
  EXPECT_FALSE(d.stop);
  EXPECT_THAT(d.message, HasSubstr("another client holds its lock"));
  EXPECT_TRUE(link_.requests.empty());
  ::close(other);
  link_.then(ok_state("r1", "success"));
  EXPECT_EQ(deliver_spool_file(file, "/s.sock", &link_).what, delivery::outcome::delivered);
}

TEST_F(SpoolDeliver, AFileGoneBeforeItsTurnIsGone) {
  const delivery d = deliver_spool_file(tmp_.path() / "r1.json", "/s.sock", &link_);
  EXPECT_EQ(d.what, delivery::outcome::gone);
  EXPECT_TRUE(link_.requests.empty());
}

TEST_F(SpoolDeliver, ANewerReportRenamedOverTheClaimedFileIsNotRemoved) {
  const fs::path file = spool("r1");
  spool_claim claim(file);
  ASSERT_EQ(claim.state(), spool_claim::status::claimed);
  const json fail = {{"op", "fail"}, {"run", "r1"}, {"error", "exit code 1"}};
  spool("r1", "/s.sock", fail);  // renamed over it while we hold the lock on the old one
  std::string problem;
  EXPECT_TRUE(claim.remove(problem)) << problem;
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(json::parse(read_text(file))["report"], fail);
}

// ---- flushing a directory ------------------------------------------------------------------

TEST_F(SpoolDeliver, FlushDeliversInNameOrderAndStopsSendingAtSilence) {
  spool("a");
  spool("b", "/other.sock");
  spool("c");
  spool("d");
  link_.then(ok_state("a", "success"));
  link_.then_silence();  // for c
  const flush_result r = flush_spool(tmp_.path(), "/s.sock", me, link_);
  EXPECT_EQ(r.problem, "");
  EXPECT_TRUE(r.stopped);
  ASSERT_EQ(r.files.size(), 4u);
  EXPECT_EQ(r.files[0].what, delivery::outcome::delivered);
  EXPECT_EQ(r.files[1].what, delivery::outcome::foreign);
  EXPECT_EQ(r.files[2].what, delivery::outcome::left);
  EXPECT_EQ(r.files[3].what, delivery::outcome::left);
  EXPECT_THAT(r.files[3].message, HasSubstr("not sent"));
  EXPECT_EQ(link_.requests.size(), 2u);  // nothing was sent for d
  EXPECT_FALSE(fs::exists(tmp_.path() / "a.json"));
  EXPECT_TRUE(fs::exists(tmp_.path() / "d.json"));
}

TEST_F(SpoolDeliver, FlushOfAMissingDirectoryFindsNothingAndCreatesNothing) {
  const fs::path none = tmp_.path() / "none";
  const flush_result r = flush_spool(none, "/s.sock", me, link_);
  EXPECT_EQ(r.problem, "");
  EXPECT_TRUE(r.files.empty());
  EXPECT_FALSE(fs::exists(none));
}

TEST_F(SpoolDeliver, FlushRefusesAnUnsafeDirectory) {
  spool("a");
  ::chmod(tmp_.path().c_str(), 0777);
  const flush_result r = flush_spool(tmp_.path(), "/s.sock", me, link_);
  ::chmod(tmp_.path().c_str(), 0700);
  EXPECT_THAT(r.problem, HasSubstr("may be written by others"));
  EXPECT_TRUE(r.files.empty());
  EXPECT_TRUE(link_.requests.empty());
}

}  // namespace
}  // namespace sweepd::cli
