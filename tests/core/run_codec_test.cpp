#include "core/run_codec.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "core/core_test_support.hpp"

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using json = nlohmann::json;

/// A restarted daemon: its monotonic clock starts afresh (at `mono`) while the wall clock reads
/// `wall` after the origin.
instant after_restart(mono_clock::duration mono, mono_clock::duration wall) {
  return {mono_time{} + mono, at(wall).wall};
}

/// A run with every field, optional or not, set to something other than its default.
run_record full_run() {
  run_record r;
  r.id = "ab12cd34";
  r.sweep = "s1";
  r.entity = "team";
  r.project = "proj";
  r.suggestion = json_text({{"lr", 0.01}, {"layers", {64, 32}}});
  r.owner_uid = 1000;
  r.watch_peer = true;
  r.peer_pid = 4242;
  r.state = run_state::success;
  r.reason = transition_reason::late_completed;
  r.registered_mono = at(35s).mono;
  r.registered_wall = at(35s).wall + 123ms;
  r.heartbeat_timeout = 1001ms;  // not a whole number of seconds, nor exact in binary
  r.max_runtime = 7200s + 3ms;
  r.stall_timeout = 600s + 300ms;
  r.progress = 1234.5;
  r.objective = 0.875;
  r.cost = 3.25;
  r.error = "CUDA out of memory";
  r.runtime_s = 456.789;
  r.late_by_s = 12.5;
  r.finished_wall = at(491s).wall + 789ms;
  return r;
}

/// A run as register leaves it: every optional unset.
run_record bare_run() {
  run_record r;
  r.id = "r0";
  r.state = run_state::initializing;
  r.reason = transition_reason::registered;
  r.registered_mono = at(35s).mono;
  r.registered_wall = at(35s).wall;
  r.heartbeat_timeout = 300s;
  return r;
}

/// Every field that encode_run() stores must come back as it was.
void expect_same_durable_fields(const run_record& got, const run_record& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.sweep, want.sweep);
  EXPECT_EQ(got.entity, want.entity);
  EXPECT_EQ(got.project, want.project);
  EXPECT_EQ(got.suggestion, want.suggestion);
  EXPECT_EQ(got.owner_uid, want.owner_uid);
  EXPECT_EQ(got.watch_peer, want.watch_peer);
  EXPECT_EQ(got.peer_pid, want.peer_pid);
  EXPECT_EQ(got.state, want.state);
  EXPECT_EQ(got.reason, want.reason);
  EXPECT_EQ(got.registered_wall, want.registered_wall);
  EXPECT_EQ(got.heartbeat_timeout, want.heartbeat_timeout);
  EXPECT_EQ(got.max_runtime, want.max_runtime);
  EXPECT_EQ(got.stall_timeout, want.stall_timeout);
  EXPECT_EQ(got.progress, want.progress);
  EXPECT_EQ(got.objective, want.objective);
  EXPECT_EQ(got.cost, want.cost);
  EXPECT_EQ(got.error, want.error);
  EXPECT_EQ(got.runtime_s, want.runtime_s);
  EXPECT_EQ(got.late_by_s, want.late_by_s);
  EXPECT_EQ(got.finished_wall, want.finished_wall);
}

/// Encodes, serialises to text as the journal does, parses and decodes.
decoded_run round_trip(const run_record& r, instant now) {
  return decode_run(json::parse(encode_run(r).dump()), now);
}

// ---------------------------------------------------------------------------------------------
// runs

TEST(RunCodec, FullRunRoundTripsEveryField) {
  const run_record want = full_run();
  const decoded_run got = round_trip(want, at(1000s));
  ASSERT_TRUE(got.run) << got.error;
  EXPECT_EQ(got.error, "");
  expect_same_durable_fields(*got.run, want);
  EXPECT_TRUE(got.run->history.empty());  // stored as transitions, not in the record
}

TEST(RunCodec, BareRunRoundTripsWithOptionalsUnset) {
  const run_record want = bare_run();
  const json j = encode_run(want);
  for (const char* key :
       {"progress", "objective", "cost", "error", "runtime_s", "late_by_s", "finished_ms"}) {
    EXPECT_FALSE(j.contains(key)) << key;
  }
  const decoded_run got = round_trip(want, at(1000s));
  ASSERT_TRUE(got.run) << got.error;
  expect_same_durable_fields(*got.run, want);
  EXPECT_TRUE(got.run->suggestion.is_null());
  EXPECT_FALSE(got.run->finished_wall.has_value());
}

TEST(RunCodec, EachOptionalRoundTripsAlone) {
  // One optional set at a time, so that no field is read back from another's key.
  auto with = [](auto set) {
    run_record r = bare_run();
    set(r);
    return r;
  };
  const std::vector<run_record> cases = {
      with([](run_record& r) { r.progress = -2.5; }),
      with([](run_record& r) { r.objective = 0.0; }),
      with([](run_record& r) { r.cost = 1e-3; }),
      with([](run_record& r) { r.error = ""; }),
      with([](run_record& r) { r.runtime_s = 0.001; }),
      with([](run_record& r) { r.late_by_s = 1e6; }),
      with([](run_record& r) { r.finished_wall = at(40s).wall; }),
      with([](run_record& r) {
        r.suggestion = json_text(json::array({1, "two"}));
      }),
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    const decoded_run got = round_trip(cases[i], at(1000s));
    ASSERT_TRUE(got.run) << got.error;
    expect_same_durable_fields(*got.run, cases[i]);
  }
}

TEST(RunCodec, EveryStateAndReasonRoundTrips) {
  for (run_state state : all_run_states) {
    run_record r = bare_run();
    r.state = state;
    r.reason = transition_reason::stalled;
    const decoded_run got = round_trip(r, at(1000s));
    ASSERT_TRUE(got.run) << got.error;
    EXPECT_EQ(got.run->state, state);
    EXPECT_EQ(got.run->reason, transition_reason::stalled);
  }
}

TEST(RunCodec, DurationsSurviveManyRestartsExactly) {
  // A daemon restarted every day for years must not shave a nanosecond off a limit each time.
  run_record r = full_run();
  for (int restart = 0; restart < 100; ++restart) {
    const decoded_run got = round_trip(r, at(1000s));
    ASSERT_TRUE(got.run) << got.error;
    r = *got.run;
  }
  EXPECT_EQ(r.heartbeat_timeout, 1001ms);
  EXPECT_EQ(r.max_runtime, 7200s + 3ms);
  EXPECT_EQ(r.stall_timeout, 600s + 300ms);
}

TEST(RunCodec, WallTimesAreStoredInMilliseconds) {
  run_record r = bare_run();
  r.registered_wall = at(35s).wall + 5ms + 999us;
  const json j = encode_run(r);
  EXPECT_EQ(j.at("registered_ms").get<std::int64_t>(), (1795900000LL + 35) * 1000 + 5);
  EXPECT_EQ(from_unix_ms(to_unix_ms(r.registered_wall)), at(35s).wall + 5ms);
}

TEST(RunCodec, MonotonicTimesAreRebasedToTheWallAge) {
  // Registered at wall 35 s; the daemon restarts and its monotonic clock reads only 7 s when the
  // wall clock reads 1000 s. The run must still be 965 s old.
  run_record r = bare_run();
  r.registered_mono = mono_time{} + 12345s;  // the old daemon's clock: meaningless now
  const instant now = after_restart(7s, 1000s);
  const decoded_run got = round_trip(r, now);
  ASSERT_TRUE(got.run) << got.error;
  EXPECT_EQ(now.mono - got.run->registered_mono, now.wall - r.registered_wall);
  EXPECT_EQ(got.run->registered_mono, mono_time{} + 7s - 965s);
}

TEST(RunCodec, TimeoutKeepsWhenItTimedOutRebased) {
  run_record r = bare_run();
  r.state = run_state::timeout;
  r.reason = transition_reason::heartbeat_timeout;
  r.finished_wall = at(335s).wall;
  const instant now = after_restart(7s, 1000s);
  const decoded_run got = round_trip(r, now);
  ASSERT_TRUE(got.run) << got.error;
  EXPECT_EQ(now.mono - got.run->given_up_at, 665s);
  EXPECT_EQ(now.mono - got.run->registered_mono, 965s);
}

TEST(RunCodec, CrashKeepsWhenItCrashedRebased) {
  // A late report after a restart is measured from the crash, as it is from a timeout.
  run_record r = bare_run();
  r.state = run_state::crashed;
  r.reason = transition_reason::process_exited;
  r.finished_wall = at(400s).wall;
  const instant now = after_restart(7s, 1000s);
  const decoded_run got = round_trip(r, now);
  ASSERT_TRUE(got.run) << got.error;
  EXPECT_EQ(now.mono - got.run->given_up_at, 600s);
}

TEST(RunCodec, WallClockInTheFutureGivesNoFutureMonotonicTime) {
  // The wall clock went back (or the record came from a machine whose clock ran ahead).
  run_record r = bare_run();
  r.state = run_state::timeout;
  r.reason = transition_reason::heartbeat_timeout;
  r.registered_wall = at(5000s).wall;
  r.finished_wall = at(6000s).wall;
  const instant now = after_restart(7s, 1000s);
  const decoded_run got = round_trip(r, now);
  ASSERT_TRUE(got.run) << got.error;
  EXPECT_EQ(got.run->registered_mono, now.mono);
  EXPECT_EQ(got.run->given_up_at, now.mono);
  EXPECT_EQ(got.run->registered_wall, r.registered_wall);  // what people read stays as stored
}

// ---------------------------------------------------------------------------------------------
// run decode errors

TEST(RunCodec, MissingRequiredFieldIsNamed) {
  const json full = encode_run(full_run());
  for (const char* key : {"id", "sweep", "entity", "project", "suggestion", "owner_uid",
                          "watch_peer", "peer_pid", "state", "reason", "registered_ms",
                          "heartbeat_timeout_s", "max_runtime_s", "stall_timeout_s"}) {
    SCOPED_TRACE(key);
    json j = full;
    ASSERT_EQ(j.erase(key), 1u);
    decoded_run got;
    ASSERT_NO_THROW(got = decode_run(j, at(1000s)));
    EXPECT_FALSE(got.run.has_value());
    EXPECT_THAT(got.error, HasSubstr(std::string("'") + key + "'"));
  }
}

TEST(RunCodec, BadStateOrReasonNameIsNamed) {
  json j = encode_run(full_run());
  j["state"] = "finished";
  decoded_run got = decode_run(j, at(1000s));
  EXPECT_FALSE(got.run.has_value());
  EXPECT_THAT(got.error, HasSubstr("'finished' is not a state"));

  j = encode_run(full_run());
  j["reason"] = "because";
  got = decode_run(j, at(1000s));
  EXPECT_FALSE(got.run.has_value());
  EXPECT_THAT(got.error, HasSubstr("'because' is not a reason"));
}

TEST(RunCodec, WrongTypeNamesTheField) {
  const json full = encode_run(full_run());
  const std::vector<std::pair<const char*, json>> cases = {
      {"id", 5},
      {"owner_uid", "root"},
      {"watch_peer", "yes"},
      {"state", 3},
      {"registered_ms", "yesterday"},
      {"heartbeat_timeout_s", json::array()},
      {"objective", "high"},
      {"error", 42},
      {"finished_ms", json::object()},
  };
  for (const auto& [key, value] : cases) {
    SCOPED_TRACE(key);
    json j = full;
    j[key] = value;
    decoded_run got;
    ASSERT_NO_THROW(got = decode_run(j, at(1000s)));
    EXPECT_FALSE(got.run.has_value());
    EXPECT_THAT(got.error, HasSubstr(std::string("'") + key + "'"));
  }
}

/// A record that differs from a good one in `key` alone is refused, and the error names the key.
void expect_refused_with(const char* key, const json& value) {
  SCOPED_TRACE(fmt::format("{} = {}", key, value.dump()));
  json j = encode_run(full_run());
  j[key] = value;
  decoded_run got;
  ASSERT_NO_THROW(got = decode_run(j, at(1000s)));
  EXPECT_FALSE(got.run.has_value());
  EXPECT_THAT(got.error, HasSubstr(std::string("'") + key + "'"));
}

// Found by fuzz/run_codec_target.cpp: a finished_ms of 9715900100123 (year 2277) overflowed the
// conversion to the wall clock's int64 nanoseconds (undefined behaviour; UBSan stopped on it).
// The fuzzer's input is kept in fuzz/corpus/run_codec/regression-finished-ms-overflow.
TEST(RunCodec, WallTimeOutsideTheClockIsRefused) {
  expect_refused_with("finished_ms", 9715900100123);
  expect_refused_with("finished_ms", std::numeric_limits<std::int64_t>::max());
  expect_refused_with("registered_ms", std::numeric_limits<std::int64_t>::min());
  expect_refused_with("registered_ms", -1);
  expect_refused_with("registered_ms", 9223372036855);  // one past the clock's end (2262-04-11)
  json last = encode_run(full_run());
  last["finished_ms"] = 9223372036854;  // the clock's last millisecond
  EXPECT_TRUE(decode_run(last, at(1000s)).run.has_value());
}

// The same kind of input for the durations (a double past int64 nanoseconds) and the integer
// fields (nlohmann casts a float to the integer type: 1e300 is undefined behaviour there).
TEST(RunCodec, DurationOutOfRangeIsRefused) {
  for (const char* key : {"heartbeat_timeout_s", "max_runtime_s", "stall_timeout_s"}) {
    for (const double seconds : {1e300, 1e9 + 1, -1.0, -1e300}) expect_refused_with(key, seconds);
  }
  json longest = encode_run(full_run());
  longest["max_runtime_s"] = 1e9;  // the config's own limit
  const decoded_run got = decode_run(longest, at(1000s));
  ASSERT_TRUE(got.run.has_value()) << got.error;
  EXPECT_EQ(got.run->max_runtime, std::chrono::seconds(1000000000));
}

TEST(RunCodec, IntegerFieldThatDoesNotFitIsRefused) {
  expect_refused_with("owner_uid", 1e300);
  expect_refused_with("owner_uid", 1000.0);  // sweepd writes integers: a float it did not write
  expect_refused_with("owner_uid", -1);
  expect_refused_with("owner_uid", 4294967296);
  expect_refused_with("peer_pid", 2147483648);
  expect_refused_with("peer_pid", -1e300);
  expect_refused_with("peer_start_time", -5);
  expect_refused_with("registered_ms", 1e300);
  expect_refused_with("registered_ms", 18446744073709551615U);
  expect_refused_with("finished_ms", 1.5e12);
}

TEST(RunCodec, NullOptionalReadsAsUnset) {
  json j = encode_run(bare_run());
  j["objective"] = nullptr;
  j["finished_ms"] = nullptr;
  const decoded_run got = decode_run(j, at(1000s));
  ASSERT_TRUE(got.run) << got.error;
  EXPECT_FALSE(got.run->objective.has_value());
  EXPECT_FALSE(got.run->finished_wall.has_value());
}

TEST(RunCodec, NonObjectNeverThrows) {
  for (const json& j : {json(), json::array({1, 2}), json("run"), json(3.5),
                        json::parse("{not json", nullptr, false)}) {
    SCOPED_TRACE(j.dump());
    decoded_run got;
    ASSERT_NO_THROW(got = decode_run(j, at(1000s)));
    EXPECT_FALSE(got.run.has_value());
    EXPECT_NE(got.error, "");
  }
}

// ---------------------------------------------------------------------------------------------
// one encoder, two forms: the journal's record and the `show` reply share put_run_fields, and
// neither form's bytes may change (stored records must load; clients parse the reply).

// The bytes each form had before the two encoders became one.
constexpr std::string_view journal_full =
    R"({"cost":3.25,"entity":"team","error":"CUDA out of memory","finished_ms":1795900491789,"heartbeat_timeout_s":1.001,"id":"ab12cd34","late_by_s":12.5,"max_runtime_s":7200.003,"objective":0.875,"owner_uid":1000,"peer_pid":4242,"progress":1234.5,"project":"proj","reason":"late_completed","registered_ms":1795900035123,"runtime_s":456.789,"stall_timeout_s":600.3,"state":"success","suggestion":{"layers":[64,32],"lr":0.01},"sweep":"s1","watch_peer":true})";
constexpr std::string_view journal_bare =
    R"({"entity":"","heartbeat_timeout_s":300.0,"id":"r0","max_runtime_s":0.0,"owner_uid":0,"peer_pid":0,"project":"","reason":"registered","registered_ms":1795900035000,"stall_timeout_s":0.0,"state":"initializing","suggestion":null,"sweep":"","watch_peer":false})";
constexpr std::string_view detail_full =
    R"({"cost":3.25,"entity":"team","error":"CUDA out of memory","finished_at":"2026-11-28T21:14:51.789Z","heartbeat_timeout_s":1.001,"late_by_s":12.5,"max_runtime_s":7200.003,"objective":0.875,"owner":"uid 1000","owner_uid":1000,"peer_pid":4242,"progress":1234.5,"project":"proj","reason":"late_completed","registered_at":"2026-11-28T21:07:15.123Z","run":"ab12cd34","runtime_s":456.789,"stall_timeout_s":600.3,"state":"success","suggestion":{"layers":[64,32],"lr":0.01},"sweep":"s1","transitions":[{"at":"2026-11-28T21:14:51.789Z","cost":3.25,"from":"running","late_by_s":12.5,"objective":0.875,"reason":"late_completed","run":"ab12cd34","runtime_s":456.789,"to":"success"}],"updated_at":"2026-11-28T21:14:51.789Z","watch_peer":true})";
constexpr std::string_view detail_bare =
    R"({"age_s":65.0,"deadline_in_s":235.0,"entity":"","heartbeat_timeout_s":300.0,"last_seen_s":100.0,"max_runtime_s":0.0,"owner":"uid 0","owner_uid":0,"project":"","reason":"registered","registered_at":"2026-11-28T21:07:15.000Z","run":"r0","stall_timeout_s":0.0,"state":"initializing","suggestion":null,"sweep":"","transitions":[{"at":"2026-11-28T21:07:15.000Z","from":null,"reason":"registered","run":"r0","to":"initializing"}],"updated_at":"2026-11-28T21:07:15.000Z","watch_peer":false})";

/// full_run() with the one transition a `show` needs (its updated_at).
run_record full_run_with_history() {
  run_record r = full_run();
  r.history.push_back({r.id, run_state::running, run_state::success,
                       transition_reason::late_completed, *r.finished_wall, 456.789, 0.875, 3.25,
                       std::nullopt, 12.5});
  return r;
}

TEST(RunForms, JournalRecordBytesAreUnchanged) {
  EXPECT_EQ(encode_run(full_run()).dump(), journal_full);
  EXPECT_EQ(encode_run(bare_run()).dump(), journal_bare);
}

TEST(RunForms, ShowReplyBytesAreUnchanged) {
  EXPECT_EQ(run_detail_json(full_run_with_history(), at(1000s)).dump(), detail_full);
  run_record live = bare_run();
  transition registered;
  registered.run = live.id;
  registered.at = live.registered_wall;
  live.history.push_back(registered);
  live.deadline = at(335s).mono;
  EXPECT_EQ(run_detail_json(live, at(100s)).dump(), detail_bare);
}

TEST(RunForms, SharedFieldsAreWrittenAlikeInBothForms) {
  const run_record r = full_run_with_history();
  const json stored = encode_run(r);
  const json shown = run_detail_json(r, at(1000s));
  json shared;
  put_run_fields(shared, r);
  for (const auto& [key, value] : shared.items()) {
    EXPECT_EQ(stored.at(key), value) << key;
    EXPECT_EQ(shown.at(key), value) << key;
  }
}

// ---------------------------------------------------------------------------------------------
// transitions

}  // namespace
}  // namespace sweepd::core
