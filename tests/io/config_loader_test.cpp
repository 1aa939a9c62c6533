#include "io/config_loader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace sweepd::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

/// A fresh directory under /tmp, removed with everything in it at the end of the test.
class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sweepd-cfg-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  std::string file(const std::string& name, const std::string& contents) const {
    const auto p = path_ / name;
    std::ofstream(p) << contents;
    return p.string();
  }
  std::filesystem::path path() const { return path_; }

 private:
  std::filesystem::path path_;
};

config_load_result parse(std::string_view text) { return parse_config_text(text, "t.yaml"); }

/// The errors of a text that must not load.
std::vector<std::string> errors_of(std::string_view text) {
  auto r = parse(text);
  EXPECT_FALSE(r.has_value()) << text;
  return r.error().messages;
}

/// The config of a text that must load.
core::config config_of(std::string_view text) {
  auto r = parse(text);
  EXPECT_THAT(r.error().messages, IsEmpty()) << text;
  return r ? *r : core::config{};
}

const std::string default_description = core::describe(core::config{});

TEST(ConfigLoader, EmptyTextGivesDefaults) {
  auto r = parse("");
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r.error().messages, IsEmpty());
  EXPECT_EQ(core::describe(*r), default_description);
}

TEST(ConfigLoader, EmptyDocumentGivesDefaults) {
  for (const auto* text : {"# only a comment\n", "---\n", "---\n...\n", "\n\n", "~\n"}) {
    EXPECT_EQ(core::describe(config_of(text)), default_description) << text;
  }
}

TEST(ConfigLoader, ReadsEverySection) {
  const auto c = config_of(R"(
socket:
  path: /tmp/s.sock
  mode: "0640"
  group: sweep
  max_connections: 10
  max_connections_per_uid: 3
  max_line_bytes: 2048
  admin_uids: [0, 1000]
timeouts: {heartbeat: 12.5, max_runtime: 86400, stall: 0.25}
state:
  path: /tmp/state.db
  retention: 60
  max_runs: 5
wandb:
  mode: online
  base_url: http://127.0.0.1:8080
  entity: team
  project: 2024
  api_key_file: /etc/sweepd/key
  summary_prefix: "p."
  state_names: {failed: failure, timeout: failure}
  max_in_flight: 8
  request_timeout: 2
  run_not_found_grace: 0
reconcile:
  sweeps:
    - {entity: e1, project: p1, sweep_id: s1}
    - entity: e2
      project: p2
      sweep_id: s2
  interval: 30
  stale_after: 0
metrics: {listen: "127.0.0.1:9464"}
log: {level: debug, format: json}
)");
  EXPECT_EQ(c.socket.path, "/tmp/s.sock");
  EXPECT_EQ(c.socket.mode, 0640u);
  EXPECT_EQ(c.socket.group, "sweep");
  EXPECT_EQ(c.socket.max_connections, 10u);
  EXPECT_EQ(c.socket.max_connections_per_uid, 3u);
  EXPECT_EQ(c.socket.max_line_bytes, 2048u);
  EXPECT_THAT(c.socket.admin_uids, ElementsAre(0u, 1000u));
  EXPECT_EQ(c.timeouts.heartbeat, 12.5);
  EXPECT_EQ(c.timeouts.max_runtime, 86400);
  EXPECT_EQ(c.timeouts.stall, 0.25);
  EXPECT_EQ(c.state.path, "/tmp/state.db");
  EXPECT_EQ(c.state.retention, 60);
  EXPECT_EQ(c.state.max_runs, 5u);
  EXPECT_EQ(c.wandb.mode, core::config::wandb_mode::online);
  EXPECT_EQ(c.wandb.base_url, "http://127.0.0.1:8080");
  EXPECT_EQ(c.wandb.entity, "team");
  EXPECT_EQ(c.wandb.project, "2024");  // a plain number is still a name where a string is due
  EXPECT_EQ(c.wandb.api_key_file, "/etc/sweepd/key");
  EXPECT_EQ(c.wandb.summary_prefix, "p.");
  EXPECT_EQ(c.wandb.state_names,
            (std::map<std::string, std::string>{{"failed", "failure"}, {"timeout", "failure"}}));
  EXPECT_EQ(c.wandb.max_in_flight, 8u);
  EXPECT_EQ(c.wandb.request_timeout, 2);
  EXPECT_EQ(c.wandb.run_not_found_grace, 0);
  ASSERT_EQ(c.reconcile.sweeps.size(), 2u);
  EXPECT_EQ(c.reconcile.sweeps[0].entity, "e1");
  EXPECT_EQ(c.reconcile.sweeps[0].project, "p1");
  EXPECT_EQ(c.reconcile.sweeps[0].sweep_id, "s1");
  EXPECT_EQ(c.reconcile.sweeps[1].entity, "e2");
  EXPECT_EQ(c.reconcile.sweeps[1].sweep_id, "s2");
  EXPECT_EQ(c.reconcile.interval, 30);
  EXPECT_EQ(c.reconcile.stale_after, 0);
  EXPECT_EQ(c.metrics.listen, "127.0.0.1:9464");
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.format, core::config::log_format::json);
}

TEST(ConfigLoader, MissingKeysKeepDefaults) {
  const auto c = config_of("timeouts:\n  stall: 60\n");
  EXPECT_EQ(c.timeouts.stall, 60);
  EXPECT_EQ(c.timeouts.heartbeat, 300);
  EXPECT_EQ(c.socket.path, "/run/sweepd/sweepd.sock");
}

TEST(ConfigLoader, UnknownTopLevelKeyIsLocated) {
  EXPECT_THAT(errors_of("log: {level: info}\nsockets:\n  path: /tmp/x\n"),
              ElementsAre("t.yaml:2:1: unknown top-level key 'sockets' (known: log, metrics, "
                          "reconcile, remote, socket, state, timeouts, wandb)"));
}

TEST(ConfigLoader, UnknownNestedKeyNamesKeyAndSection) {
  auto r = parse_config_text("timeouts:\n  heartbeat: 5\n  heartbeet: 3\n", "sweepd.yaml");
  EXPECT_FALSE(r);
  EXPECT_THAT(r.error().messages,
              ElementsAre("sweepd.yaml:3:3: unknown key 'heartbeet' in 'timeouts' "
                          "(known: heartbeat, max_runtime, stall)"));
}

TEST(ConfigLoader, UnknownKeyInReconcileEntry) {
  EXPECT_THAT(errors_of("reconcile:\n  sweeps:\n    - {sweep_id: s, sweep: x}\n"),
              ElementsAre("t.yaml:3:21: unknown key 'sweep' in 'reconcile.sweeps[0]' (known: "
                          "entity, project, sweep_id)"));
}

TEST(ConfigLoader, WrongTypeNamesDottedKeyAndExpectedType) {
  EXPECT_THAT(errors_of("timeouts:\n  heartbeat: abc\n"),
              ElementsAre("t.yaml:2:14: timeouts.heartbeat: expected a number of seconds, "
                          "got 'abc'"));
  EXPECT_THAT(errors_of("socket:\n  max_connections: 1.5\n"),
              ElementsAre("t.yaml:2:20: socket.max_connections: expected an integer, got '1.5'"));
  EXPECT_THAT(errors_of("socket:\n  path: [a, b]\n"),
              ElementsAre("t.yaml:2:9: socket.path: expected a string, got a list"));
  EXPECT_THAT(errors_of("wandb:\n  state_names: [failed]\n"),
              ElementsAre("t.yaml:2:16: wandb.state_names: expected a map of names, got a list"));
  EXPECT_THAT(errors_of("reconcile:\n  sweeps: {sweep_id: s}\n"),
              ElementsAre("t.yaml:2:11: reconcile.sweeps: expected a list of {entity, project, "
                          "sweep_id} maps, got a map"));
  EXPECT_THAT(errors_of("timeouts:\n  stall: 300s\n"),
              ElementsAre("t.yaml:2:10: timeouts.stall: expected a number of seconds, got '300s'"));
}

TEST(ConfigLoader, NullValueIsAnErrorAtItsKey) {
  EXPECT_THAT(errors_of("timeouts:\n  heartbeat:\n  stall: 5\n"),
              ElementsAre("t.yaml:2:3: timeouts.heartbeat: expected a number of seconds, "
                          "got null"));
  EXPECT_THAT(errors_of("wandb:\n  entity: ~\n"),
              ElementsAre("t.yaml:2:3: wandb.entity: expected a string, got null"));
  EXPECT_THAT(errors_of("socket:\n  admin_uids: [1, null]\n"),
              ElementsAre("t.yaml:2:15: socket.admin_uids[1]: expected an integer, got null"));
}

TEST(ConfigLoader, QuotedNumberIsAString) {
  EXPECT_THAT(errors_of("timeouts:\n  heartbeat: \"300\"\n"),
              ElementsAre("t.yaml:2:14: timeouts.heartbeat: expected a number of seconds, got "
                          "the string \"300\" (remove the quotes)"));
  EXPECT_THAT(errors_of("state:\n  max_runs: '5'\n"),
              ElementsAre("t.yaml:2:13: state.max_runs: expected an integer, got the string "
                          "\"5\""));
}

TEST(ConfigLoader, SectionThatIsNotAMapIsAnError) {
  EXPECT_THAT(errors_of("timeouts: 5\n"),
              ElementsAre("t.yaml:1:11: timeouts: expected a map, got '5'"));
  EXPECT_THAT(errors_of("log:\nmetrics: {}\n"),
              ElementsAre("t.yaml:1:1: log: expected a map, got null"));
  EXPECT_THAT(errors_of("- socket\n"),
              ElementsAre("t.yaml:1:1: the config must be a map of sections (log, metrics, "
                          "reconcile, remote, socket, state, timeouts, wandb), got a list"));
}

TEST(ConfigLoader, UnterminatedQuoteIsASyntaxError) {
  // yaml-cpp alone takes the value to run to the end of the file.
  EXPECT_THAT(errors_of("socket:\n  path: \"/tmp/x.sock\n"),
              ElementsAre("t.yaml:2:9: YAML syntax error: a quoted string is never closed"));
  EXPECT_THAT(errors_of("socket:\n  path: '/tmp/x.sock\nstate:\n  path: /tmp/s.db\n"),
              ElementsAre("t.yaml:2:9: YAML syntax error: a quoted string is never closed"));
  // Escaped and doubled quotes, and quotes inside other scalars, are fine.
  EXPECT_EQ(config_of("socket: {path: \"/tmp/a\\\"b.sock\"}\n").socket.path, "/tmp/a\"b.sock");
  EXPECT_EQ(config_of("socket: {path: '/tmp/it''s.sock'}\n").socket.path, "/tmp/it's.sock");
  EXPECT_EQ(config_of("socket: {path: /tmp/it's.sock}\n").socket.path, "/tmp/it's.sock");
  EXPECT_EQ(config_of("wandb: {entity: \"multi\n  line\"}\n").wandb.entity, "multi line");
}

// Found by review while writing fuzz/config_target.cpp and confirmed with its fuzzer: 26 lines of
// aliases, each a list of two of the one before, kept the quote check busy for minutes (2^26
// visits) in --check-config and in the daemon's SIGHUP reload. Each collection is walked once.
TEST(ConfigLoader, AliasesOfAliasesAreWalkedOnce) {
  std::string text = "a0: &a0 [\"x\", 'y']\n";
  for (int i = 1; i <= 60; ++i) {
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) +
            ", *a" + std::to_string(i - 1) + "]\n";
  }
  const auto r = parse(text);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().messages.front(), HasSubstr("unknown top-level key 'a0'"));
  // The walk goes on past the lists it skips: a quote left open after them is still found.
  EXPECT_THAT(errors_of("a: &a [x]\nb: [*a, *a]\nc: \"z\n"),
              ElementsAre("t.yaml:3:4: YAML syntax error: a quoted string is never closed"));
}

TEST(ConfigLoader, DurationRanges) {
  EXPECT_THAT(errors_of("timeouts: {heartbeat: 0}\n"),
              ElementsAre("t.yaml:1:23: timeouts.heartbeat: must be greater than 0, got 0"));
  EXPECT_THAT(errors_of("timeouts: {stall: -1}\n"),
              ElementsAre("t.yaml:1:19: timeouts.stall: must not be negative, got -1"));
  // Below a millisecond a timeout would round to 0, which means off.
  EXPECT_THAT(errors_of("timeouts: {heartbeat: 1e-10}\n"),
              ElementsAre("t.yaml:1:23: timeouts.heartbeat: must be 0 or at least 0.001 seconds, "
                          "got 1e-10"));
  EXPECT_THAT(errors_of("timeouts: {stall: 0.0005}\n"),
              ElementsAre("t.yaml:1:19: timeouts.stall: must be 0 or at least 0.001 seconds, "
                          "got 0.0005"));
  EXPECT_EQ(config_of("timeouts: {heartbeat: 0.001, stall: 0}\n").timeouts.heartbeat, 0.001);
  EXPECT_THAT(errors_of("wandb: {request_timeout: 0}\n"),
              ElementsAre("t.yaml:1:26: wandb.request_timeout: must be greater than 0, got 0"));
  EXPECT_THAT(errors_of("reconcile: {interval: 0.0}\n"),
              ElementsAre("t.yaml:1:23: reconcile.interval: must be greater than 0, got 0.0"));
  EXPECT_THAT(errors_of("state: {retention: nan}\n"),
              ElementsAre("t.yaml:1:20: state.retention: must be a finite number of seconds, "
                          "got 'nan'"));
  EXPECT_THAT(errors_of("timeouts: {max_runtime: .inf}\n"),
              ElementsAre("t.yaml:1:25: timeouts.max_runtime: expected a number of seconds, "
                          "got '.inf'"));
  EXPECT_THAT(errors_of("timeouts: {max_runtime: 1e12}\n"),
              ElementsAre("t.yaml:1:25: timeouts.max_runtime: must be at most 1000000000 "
                          "seconds (about 31 years), got 1e12"));
  EXPECT_EQ(config_of("timeouts: {heartbeat: 0.001, stall: +1e3}\n").timeouts.stall, 1000);
}

TEST(ConfigLoader, IntegerRanges) {
  EXPECT_THAT(errors_of("socket:\n  max_connections: 0\n"),
              ElementsAre("t.yaml:2:20: socket.max_connections: must be between 1 and 1000000, "
                          "got 0"));
  EXPECT_THAT(errors_of("socket: {max_connections: 1000001}\n"),
              ElementsAre("t.yaml:1:27: socket.max_connections: must be between 1 and 1000000, "
                          "got 1000001"));
  EXPECT_THAT(errors_of("socket: {max_connections_per_uid: 0}\n"),
              ElementsAre("t.yaml:1:35: socket.max_connections_per_uid: must be between 1 and "
                          "1000000, got 0"));
  EXPECT_THAT(errors_of("socket: {max_line_bytes: 1023}\n"),
              ElementsAre("t.yaml:1:26: socket.max_line_bytes: must be between 1024 and "
                          "16777216, got 1023"));
  EXPECT_THAT(errors_of("state: {max_runs: 0}\n"),
              ElementsAre("t.yaml:1:19: state.max_runs: must be at least 1, got 0"));
  EXPECT_THAT(errors_of("wandb: {max_in_flight: 65}\n"),
              ElementsAre("t.yaml:1:24: wandb.max_in_flight: must be between 1 and 64, got 65"));
  EXPECT_THAT(errors_of("state: {max_runs: 99999999999999999999999}\n"),
              ElementsAre("t.yaml:1:19: state.max_runs: must be at most 9223372036854775807, "
                          "got 99999999999999999999999"));
  EXPECT_EQ(config_of("socket: {max_connections: 1000000, max_line_bytes: 16777216}\n")
                .socket.max_line_bytes,
            16777216u);
}

TEST(ConfigLoader, IntegerWithLeadingZeroIsAmbiguous) {
  EXPECT_THAT(errors_of("socket: {max_connections: 0100}\n"),
              ElementsAre("t.yaml:1:27: socket.max_connections: expected an integer, got '0100'"));
}

TEST(ConfigLoader, AdminUidsAreNonNegativeIntegers) {
  EXPECT_THAT(config_of("socket: {admin_uids: []}\n").socket.admin_uids, IsEmpty());
  EXPECT_THAT(config_of("socket: {admin_uids: [4294967294]}\n").socket.admin_uids,
              ElementsAre(4294967294u));
  EXPECT_THAT(errors_of("socket:\n  admin_uids: [0, -1, 4294967295]\n"),
              ElementsAre("t.yaml:2:19: socket.admin_uids[1]: must be between 0 and 4294967294, "
                          "got -1",
                          "t.yaml:2:23: socket.admin_uids[2]: must be between 0 and 4294967294, "
                          "got 4294967295"));
  EXPECT_THAT(errors_of("socket:\n  admin_uids: 1000\n"),
              ElementsAre("t.yaml:2:15: socket.admin_uids: expected a list of uids, got '1000'"));
}

TEST(ConfigLoader, BadEnumValuesListTheChoices) {
  EXPECT_THAT(errors_of("wandb:\n  mode: onlin\n"),
              ElementsAre("t.yaml:2:9: wandb.mode: expected one of auto, online, offline, "
                          "disabled, got 'onlin'"));
  EXPECT_THAT(errors_of("log: {format: xml}\n"),
              ElementsAre("t.yaml:1:15: log.format: expected one of text, json, got 'xml'"));
  EXPECT_THAT(errors_of("log: {level: verbose}\n"),
              ElementsAre("t.yaml:1:14: log.level: expected one of trace, debug, info, warn, "
                          "error, critical, off, got 'verbose'"));
  // YAML 1.1 would read a bare off as false; here it is the text spdlog knows.
  EXPECT_EQ(config_of("log: {level: off}\n").log.level, "off");
  EXPECT_EQ(config_of("wandb: {mode: \"disabled\"}\n").wandb.mode,
            core::config::wandb_mode::disabled);
}

TEST(ConfigLoader, SocketModeIsOctal) {
  EXPECT_EQ(config_of("socket: {mode: \"0600\"}\n").socket.mode, 0600u);
  EXPECT_EQ(config_of("socket: {mode: '640'}\n").socket.mode, 0640u);
  // A bare 0660 is unambiguous in intent: the leading zero says octal.
  EXPECT_EQ(config_of("socket: {mode: 0660}\n").socket.mode, 0660u);
  EXPECT_EQ(config_of("socket: {mode: 0o644}\n").socket.mode, 0644u);
}

TEST(ConfigLoader, BadSocketModeSaysHowToWriteIt) {
  EXPECT_THAT(errors_of("socket:\n  mode: 660\n"),
              ElementsAre("t.yaml:2:9: socket.mode: write the mode as a quoted octal string like "
                          "\"0660\" (a bare 660 is ambiguous), got '660'"));
  EXPECT_THAT(errors_of("socket:\n  mode: \"0689\"\n"),
              ElementsAre("t.yaml:2:9: socket.mode: expected an octal mode string like \"0660\", "
                          "got the string \"0689\""));
  EXPECT_THAT(errors_of("socket: {mode: rw-rw----}\n"), ElementsAre(HasSubstr("socket.mode:")));
  EXPECT_THAT(errors_of("socket: {mode: \"4770\"}\n"),
              ElementsAre("t.yaml:1:16: socket.mode: must be at most 0777 (setuid, setgid and "
                          "sticky bits mean nothing on a socket), got the string \"4770\""));
}

TEST(ConfigLoader, StateNamesAreAMapOfStrings) {
  EXPECT_THAT(errors_of("wandb:\n  state_names:\n    failed:\n"),
              ElementsAre("t.yaml:3:5: wandb.state_names.failed: expected a string, got null"));
  EXPECT_THAT(errors_of("wandb:\n  state_names: {failed: [a]}\n"),
              ElementsAre("t.yaml:2:25: wandb.state_names.failed: expected a string, got a list"));
}

TEST(ConfigLoader, ValidationProblemsAreLocatedAtTheirKey) {
  EXPECT_THAT(errors_of("socket:\n  path: \"\"\n"),
              ElementsAre("t.yaml:2:9: socket.path: must not be empty"));
  EXPECT_THAT(errors_of("wandb: {base_url: ftp://x}\n"),
              ElementsAre("t.yaml:1:19: wandb.base_url: must start with https:// or http://"));
  EXPECT_THAT(errors_of("wandb:\n  state_names: {bogus: failure}\n"),
              ElementsAre(HasSubstr("t.yaml:2:16: wandb.state_names: 'bogus' is not a run state")));
  // The missing key has no location of its own: its list entry stands in.
  EXPECT_THAT(errors_of("reconcile:\n  sweeps:\n    - {entity: e}\n"),
              ElementsAre("t.yaml:3:7: reconcile.sweeps[0].sweep_id: must not be empty"));
}

TEST(ConfigLoader, RefusedValueIsNotReportedTwice) {
  EXPECT_THAT(errors_of("reconcile:\n  sweeps:\n    - {sweep_id: [s]}\n"),
              ElementsAre("t.yaml:3:18: reconcile.sweeps[0].sweep_id: expected a string, got a "
                          "list"));
  EXPECT_THAT(errors_of("state: {max_runs: -99999999999999999999999}\n"),
              ElementsAre("t.yaml:1:19: state.max_runs: must be at least 1, got "
                          "-99999999999999999999999"));
}

TEST(ConfigLoader, DuplicateKeyIsAnError) {
  EXPECT_THAT(errors_of("timeouts:\n  stall: 1\n  stall: 2\n"),
              ElementsAre("t.yaml:3:3: duplicate key 'stall' in 'timeouts' (first on line 2)"));
  EXPECT_THAT(errors_of("log: {}\nlog: {}\n"),
              ElementsAre("t.yaml:2:1: duplicate key 'log' in top level (first on line 1)"));
}

TEST(ConfigLoader, SyntaxErrorIsLocated) {
  EXPECT_THAT(errors_of("timeouts: [1, 2\n"),
              ElementsAre("t.yaml:2:1: YAML syntax error: end of sequence flow not found"));
  EXPECT_THAT(errors_of("log:\n  level: info: debug\n"),
              ElementsAre("t.yaml:2:14: YAML syntax error: illegal map value"));
}

// Found by fuzz/config_target.cpp: yaml-cpp quotes the character it stumbled on as it is, here a
// newline (the NUL makes it read the bytes as UTF-16), so one problem printed as two lines.
TEST(ConfigLoader, SyntaxErrorMessageIsOneLine) {
  EXPECT_THAT(errors_of(std::string_view("0\x01\x00\n", 4)),
              ElementsAre("t.yaml:2:1: YAML syntax error: unknown escape character: \\n"));
}

// Found by fuzz/config_target.cpp (a timeout): yaml-cpp 0.7's LoadAll never returns on a stray
// ',' (yaml-cpp issue 1040), collecting empty documents until memory runs out.
TEST(ConfigLoader, StrayCommaIsASyntaxError) {
  EXPECT_THAT(errors_of(","), ElementsAre("t.yaml:1:1: YAML syntax error: unexpected ','"));
  EXPECT_THAT(errors_of("log: {level: info}\n---\n,\n"),
              ElementsAre("t.yaml:3:1: YAML syntax error: unexpected ','"));
}

TEST(ConfigLoader, SecondDocumentIsAnError) {
  EXPECT_THAT(errors_of("log: {level: info}\n---\nlog: {level: debug}\n"),
              ElementsAre("t.yaml:3:1: a config file holds one YAML document; this is a second "
                          "one"));
}

TEST(ConfigLoader, MetricsListenIsHostAndPort) {
  EXPECT_EQ(config_of("metrics: {listen: \"[::1]:0\"}\n").metrics.listen, "[::1]:0");
  EXPECT_THAT(errors_of("metrics: {listen: localhost}\n"),
              ElementsAre("t.yaml:1:19: metrics.listen: expected HOST:PORT like 127.0.0.1:9464 "
                          "(or \"\" for off), got 'localhost'"));
  EXPECT_THAT(errors_of("metrics: {listen: \"localhost:99999\"}\n"),
              ElementsAre(HasSubstr("metrics.listen: expected HOST:PORT")));
}

TEST(ConfigLoader, ReportsEveryProblem) {
  auto r = parse(R"(socket:
  mode: 660
  max_line_bytes: 10
timeouts:
  heartbeet: 5
wandb:
  mode: sometimes
  base_url: gopher://x
colour: blue
)");
  EXPECT_FALSE(r);
  EXPECT_THAT(r.error().messages,
              ElementsAre(HasSubstr("t.yaml:2:9: socket.mode:"),
                          HasSubstr("t.yaml:3:19: socket.max_line_bytes: must be between"),
                          HasSubstr("t.yaml:5:3: unknown key 'heartbeet' in 'timeouts'"),
                          HasSubstr("t.yaml:7:9: wandb.mode: expected one of"),
                          HasSubstr("t.yaml:9:1: unknown top-level key 'colour'"),
                          "t.yaml:8:13: wandb.base_url: must start with https:// or http://"));
}

TEST(ConfigLoader, LoadsAFileAndLocatesErrorsInIt) {
  temp_dir dir;
  const auto good = dir.file("good.yaml", "log:\n  level: warn\n");
  auto r = load_config_file(good);
  ASSERT_TRUE(r) << ::testing::PrintToString(r.error().messages);
  EXPECT_EQ(r->log.level, "warn");

  const auto bad = dir.file("bad.yaml", "log:\n  level: loud\n");
  r = load_config_file(bad);
  EXPECT_FALSE(r);
  EXPECT_THAT(r.error().messages,
              ElementsAre(bad + ":2:10: log.level: expected one of trace, debug, info, "
                                "warn, error, critical, off, got 'loud'"));
}

TEST(ConfigLoader, UnreadableFileNamesFileAndReason) {
  temp_dir dir;
  const auto missing = (dir.path() / "missing.yaml").string();
  auto r = load_config_file(missing);
  EXPECT_FALSE(r);
  EXPECT_THAT(r.error().messages,
              ElementsAre(missing + ": cannot read config: No such file or directory"));

  r = load_config_file(dir.path().string());
  EXPECT_THAT(r.error().messages,
              ElementsAre(dir.path().string() + ": cannot read config: Is a directory"));
}

TEST(ConfigLoader, HugeFileIsRefused) {
  temp_dir dir;
  const auto big = dir.file("big.yaml", std::string((1 << 20) + 1, '#'));
  auto r = load_config_file(big);
  EXPECT_FALSE(r);
  EXPECT_THAT(r.error().messages, ElementsAre(HasSubstr("not a config file")));
}

TEST(ConfigLoader, ReferenceConfigEqualsDefaults) {
  auto r = load_config_file(SWEEPD_SOURCE_DIR "/config/sweepd.yaml");
  ASSERT_TRUE(r) << ::testing::PrintToString(r.error().messages);
  EXPECT_EQ(core::describe(*r), default_description);
}

TEST(ConfigLoader, LocalConfigIsOfflineUnderVar) {
  auto r = load_config_file(SWEEPD_SOURCE_DIR "/config/local.yaml");
  ASSERT_TRUE(r) << ::testing::PrintToString(r.error().messages);
  EXPECT_EQ(r->wandb.mode, core::config::wandb_mode::offline);
  EXPECT_EQ(r->socket.path, "./var/sweepd.sock");
  EXPECT_EQ(r->socket.mode, 0600u);
  EXPECT_EQ(r->state.path, "./var/state.db");
  EXPECT_EQ(r->log.level, "info");
}

}  // namespace
}  // namespace sweepd::io

namespace sweepd::io {
namespace {

TEST(ConfigLoaderRemote, ReadsEveryRemoteKey) {
  const core::config c = config_of(
      "remote: {listen: \"0.0.0.0:7443\", cert_file: /etc/sweepd/tls.crt, key_file: "
      "/etc/sweepd/tls.key, tokens_file: /etc/sweepd/tokens, handshake_timeout: 2.5, "
      "max_connections: 500, admin_principals: [ops, \"lab@gpu\"]}\n");
  EXPECT_EQ(c.remote.listen, "0.0.0.0:7443");
  EXPECT_EQ(c.remote.cert_file, "/etc/sweepd/tls.crt");
  EXPECT_EQ(c.remote.key_file, "/etc/sweepd/tls.key");
  EXPECT_EQ(c.remote.tokens_file, "/etc/sweepd/tokens");
  EXPECT_EQ(c.remote.handshake_timeout, 2.5);
  EXPECT_EQ(c.remote.max_connections, 500u);
  EXPECT_THAT(c.remote.admin_principals, ElementsAre("ops", "lab@gpu"));
  EXPECT_EQ(core::config{}.remote.listen, "");  // off by default
}

TEST(ConfigLoaderRemote, ProblemsNameTheKey) {
  EXPECT_THAT(errors_of("remote: {listen: \"0.0.0.0:7443\", cert_file: /c}\n"),
              ElementsAre(HasSubstr("remote.key_file: must be set when remote.listen is set"),
                          HasSubstr("remote.tokens_file: must be set when remote.listen is set")));
  EXPECT_THAT(errors_of("remote: {listen: \"7443\"}\n"), ElementsAre(HasSubstr("HOST:PORT")));
  EXPECT_THAT(errors_of("remote: {handshake_timeout: 0}\n"),
              ElementsAre(HasSubstr("greater than 0")));
  EXPECT_THAT(errors_of("remote: {admin_principals: [\"has space\"]}\n"),
              ElementsAre(HasSubstr("remote.admin_principals[0]")));
  EXPECT_THAT(errors_of("remote: {token_file: x}\n"), ElementsAre(HasSubstr("unknown key")));
}

}  // namespace
}  // namespace sweepd::io
