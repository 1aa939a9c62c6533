#include "core/wandb_summary.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sweepd::core {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

const wall_time wall_origin = wall_time{} + std::chrono::seconds(1795900000);
constexpr const char* origin_text = "2026-11-28T21:06:40.000Z";

const std::map<std::string, std::string> no_names;
const std::map<std::string, std::string> legacy_names = {
    {"failed", "failure"}, {"crashed", "failure"}, {"timeout", "failure"}};

transition make(run_state from, run_state to, transition_reason reason) {
  transition t;
  t.run = "ab12cd34";
  t.from = from;
  t.to = to;
  t.reason = reason;
  t.at = wall_origin;
  return t;
}

transition success(std::optional<double> objective, std::optional<double> cost,
                   std::optional<double> runtime_s = 3600.0) {
  transition t = make(run_state::running, run_state::success, transition_reason::completed);
  t.objective = objective;
  t.cost = cost;
  t.runtime_s = runtime_s;
  return t;
}

transition failure(run_state to, transition_reason reason, std::optional<double> cost,
                   std::optional<std::string> error = std::nullopt) {
  transition t = make(run_state::running, to, reason);
  t.cost = cost;
  t.runtime_s = cost;
  t.error = std::move(error);
  return t;
}

/// An independent reader for the test: parses JSON text with bare NaN/Infinity/-Infinity by
/// swapping each for a marker string, so both sides of a comparison read the same way.
json parse_tolerant(std::string_view text) {
  std::string out;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\') {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
      out += c;
    } else if (text.substr(i, 9) == "-Infinity") {
      out += "\"<bare -Infinity>\"";
      i += 8;
    } else if (text.substr(i, 8) == "Infinity") {
      out += "\"<bare Infinity>\"";
      i += 7;
    } else if (text.substr(i, 3) == "NaN") {
      out += "\"<bare NaN>\"";
      i += 2;
    } else {
      out += c;
    }
  }
  json parsed = json::parse(out, nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << text;
  return parsed;
}

/// How often `token` occurs outside strings.
int bare_count(std::string_view text, std::string_view token) {
  int count = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (text.substr(i, token.size()) == token &&
               (token != "Infinity" || i == 0 || text[i - 1] != '-')) {
      ++count;
    }
  }
  return count;
}

bool is_managed(const std::string& key, const std::string& prefix) {
  for (const char* k : managed_summary_keys) {
    if (key == prefix + k) return true;
  }
  return false;
}

/// Every key sweepd does not own comes back with the same value, the bare tokens as bare tokens,
/// and the managed keys are exactly `keys`.
void expect_merged(std::string_view before, const std::string& after, const json& keys,
                   const std::string& prefix = "protein.") {
  const json in = parse_tolerant(before);
  const json out = parse_tolerant(after);
  ASSERT_TRUE(out.is_object()) << after;
  for (const auto& [key, value] : in.items()) {
    if (is_managed(key, prefix)) continue;
    ASSERT_TRUE(out.contains(key)) << key;
    EXPECT_EQ(out[key], value) << key;
  }
  for (const auto& [key, value] : out.items()) {
    if (is_managed(key, prefix)) {
      const std::string bare = key.substr(prefix.size());
      ASSERT_TRUE(keys.contains(bare)) << "stale key " << key;
      EXPECT_EQ(value, keys[bare]) << key;
    } else {
      EXPECT_TRUE(in.contains(key)) << "new key " << key;
    }
  }
  for (const auto& [key, value] : keys.items()) {
    EXPECT_TRUE(out.contains(prefix + key)) << "missing " << prefix + key;
  }
  for (std::string_view token : {"NaN", "Infinity", "-Infinity"}) {
    EXPECT_EQ(bare_count(after, token), bare_count(before, token)) << token << " in " << after;
  }
}

// ---------------------------------------------------------------------------------------------
// summary_keys_for

TEST(WandbSummaryKeys, RunningCarriesOnlyStateReasonAndTime) {
  const json keys = summary_keys_for(
      make(run_state::initializing, run_state::running, transition_reason::started), no_names);
  EXPECT_EQ(keys,
            json({{"state", "running"}, {"state_reason", "started"}, {"updated_at", origin_text}}));
}

TEST(WandbSummaryKeys, RegisteredAndRevivedCarryOnlyStateReasonAndTime) {
  transition registered =
      make(run_state::initializing, run_state::initializing, transition_reason::registered);
  registered.from.reset();
  EXPECT_EQ(summary_keys_for(registered, no_names), json({{"state", "initializing"},
                                                          {"state_reason", "registered"},
                                                          {"updated_at", origin_text}}));

  // A revived run was a timeout: its cost/runtime must not leak into a live state.
  transition revived = make(run_state::timeout, run_state::running, transition_reason::revived);
  revived.runtime_s = 700;
  revived.cost = 700;
  EXPECT_EQ(summary_keys_for(revived, legacy_names),
            json({{"state", "running"}, {"state_reason", "revived"}, {"updated_at", origin_text}}));
}

TEST(WandbSummaryKeys, SuccessCarriesObjectiveCostAndCompletionTime) {
  const json keys = summary_keys_for(success(0.93, 3600.5), no_names);
  EXPECT_EQ(keys, json({{"state", "success"},
                        {"state_reason", "completed"},
                        {"updated_at", origin_text},
                        {"objective", 0.93},
                        {"cost", 3600.5},
                        {"completion_time", origin_text}}));
}

TEST(WandbSummaryKeys, SuccessWithoutObjectiveOrCostUsesRuntime) {
  const json keys = summary_keys_for(success(std::nullopt, std::nullopt, 1234.5), no_names);
  EXPECT_FALSE(keys.contains("objective"));
  EXPECT_EQ(keys["cost"], 1234.5);
  EXPECT_EQ(keys["completion_time"], origin_text);
  EXPECT_FALSE(keys.contains("is_failure"));
  EXPECT_FALSE(keys.contains("late"));
}

TEST(WandbSummaryKeys, SuccessCostIsPositiveEvenWhenZero) {
  EXPECT_EQ(summary_keys_for(success(0.5, 0.0), no_names)["cost"], 0.001);
  EXPECT_EQ(summary_keys_for(success(0.5, std::nullopt, std::nullopt), no_names)["cost"], 0.001);
  EXPECT_EQ(summary_keys_for(success(0.5, std::nullopt, 0.0), no_names)["cost"], 0.001);
}

TEST(WandbSummaryKeys, FailureStatesCarryIsFailureErrorTimeAndCost) {
  struct tcase {
    run_state to;
    transition_reason reason;
    std::optional<std::string> error;
    std::string expected_error;
  };
  const std::vector<tcase> cases = {
      {run_state::failed, transition_reason::worker_failed, "CUDA out of memory",
       "CUDA out of memory"},
      {run_state::crashed, transition_reason::process_exited, std::nullopt, "process_exited"},
      {run_state::timeout, transition_reason::heartbeat_timeout, std::nullopt, "heartbeat_timeout"},
      {run_state::timeout, transition_reason::max_runtime, std::nullopt, "max_runtime"},
      {run_state::timeout, transition_reason::stalled, std::nullopt, "stalled"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(to_string(c.reason)));
    const json keys = summary_keys_for(failure(c.to, c.reason, 42.25, c.error), no_names);
    EXPECT_EQ(keys, json({{"state", std::string(to_string(c.to))},
                          {"state_reason", std::string(to_string(c.reason))},
                          {"updated_at", origin_text},
                          {"is_failure", true},
                          {"error", c.expected_error},
                          {"failure_time", origin_text},
                          {"cost", 42.25}}));
  }
}

TEST(WandbSummaryKeys, FailureCostIsPositiveEvenWhenZeroOrMissing) {
  for (run_state to : {run_state::failed, run_state::crashed, run_state::timeout}) {
    SCOPED_TRACE(std::string(to_string(to)));
    const json zero =
        summary_keys_for(failure(to, transition_reason::worker_failed, 0.0), no_names);
    EXPECT_EQ(zero["cost"], 0.001);
    const json missing =
        summary_keys_for(failure(to, transition_reason::worker_failed, std::nullopt), no_names);
    ASSERT_TRUE(missing.contains("cost"));
    EXPECT_EQ(missing["cost"], 0.001);
    EXPECT_GT(missing["cost"].get<double>(), 0.0);
  }
}

TEST(WandbSummaryKeys, FailureCostFallsBackToRuntime) {
  transition t = failure(run_state::crashed, transition_reason::process_exited, std::nullopt);
  t.runtime_s = 77.5;
  EXPECT_EQ(summary_keys_for(t, no_names)["cost"], 77.5);
}

TEST(WandbSummaryKeys, LateCompletionIsMarkedLate) {
  transition t = success(0.8, 100.0);
  t.from = run_state::timeout;
  t.reason = transition_reason::late_completed;
  t.late_by_s = 42.5;
  const json keys = summary_keys_for(t, no_names);
  EXPECT_EQ(keys["late"], true);
  EXPECT_EQ(keys["late_by_s"], 42.5);
  EXPECT_EQ(keys["state"], "success");
  EXPECT_EQ(keys["state_reason"], "late_completed");
  EXPECT_FALSE(keys.contains("is_failure"));

  transition f = failure(run_state::failed, transition_reason::late_failed, 5.0, "boom");
  f.from = run_state::timeout;
  f.late_by_s = 0.0;  // late by nothing is still late
  const json fkeys = summary_keys_for(f, no_names);
  EXPECT_EQ(fkeys["late"], true);
  EXPECT_EQ(fkeys["late_by_s"], 0.0);
  EXPECT_EQ(fkeys["is_failure"], true);
  EXPECT_EQ(fkeys["error"], "boom");
}

TEST(WandbSummaryKeys, OnTimeTerminalStatesAreNotLate) {
  EXPECT_FALSE(summary_keys_for(success(0.8, 1.0), no_names).contains("late"));
  EXPECT_FALSE(summary_keys_for(success(0.8, 1.0), no_names).contains("late_by_s"));
  const json f =
      summary_keys_for(failure(run_state::timeout, transition_reason::stalled, 1.0), no_names);
  EXPECT_FALSE(f.contains("late"));
  EXPECT_FALSE(f.contains("late_by_s"));
}

TEST(WandbSummaryKeys, StateNamesMapOnlyTheStateKey) {
  const std::map<std::string, std::string> names = {{"failed", "failure"}};
  const json keys = summary_keys_for(
      failure(run_state::failed, transition_reason::worker_failed, 3.0, "failed to converge"),
      names);
  EXPECT_EQ(keys["state"], "failure");
  EXPECT_EQ(keys["state_reason"], "worker_failed");
  EXPECT_EQ(keys["error"], "failed to converge");
  EXPECT_EQ(keys["is_failure"], true);

  // Unmapped states keep their names.
  EXPECT_EQ(summary_keys_for(failure(run_state::crashed, transition_reason::process_exited, 3.0),
                             names)["state"],
            "crashed");
  EXPECT_EQ(summary_keys_for(success(1.0, 1.0), legacy_names)["state"], "success");
}

TEST(WandbSummaryKeys, LegacyNamesMapEveryFailureState) {
  for (run_state to : {run_state::failed, run_state::crashed, run_state::timeout}) {
    const json keys =
        summary_keys_for(failure(to, transition_reason::heartbeat_timeout, 1.0), legacy_names);
    EXPECT_EQ(keys["state"], "failure") << to_string(to);
    EXPECT_EQ(keys["state_reason"], "heartbeat_timeout");
  }
  const json running = summary_keys_for(
      make(run_state::initializing, run_state::running, transition_reason::started),
      {{"running", "live"}});
  EXPECT_EQ(running["state"], "live");
}

// ---------------------------------------------------------------------------------------------
// merge_summary (golden texts)

// A summary as a live W&B run leaves it: internal keys, the bare tokens at every depth, and a
// string holding the text NaN, escaped quotes and backslashes.
constexpr std::string_view live_summary =
    R"json({"_wandb":{"runtime":3605,"stats":{"peak":Infinity}},"_step":1200,"_runtime":3605.25,)json"
    R"json("_timestamp":1795896395.5,"loss":NaN,"best":-Infinity,"worst":Infinity,)json"
    R"json("note":"NaN said \"hi\" in C:\\tmp\\","history":[1,NaN,-Infinity,3],)json"
    R"json("NaN":"key named NaN","protein.suggestion":{"lr":0.001,"NaN":null},)json"
    R"json("protein.state":"running","protein.state_reason":"started",)json"
    R"json("protein.updated_at":"2026-11-28T20:06:40.000Z"})json";

TEST(WandbSummaryMerge, GoldenSuccessOverLiveSummary) {
  const json keys = summary_keys_for(success(0.93, 3600.5), no_names);
  const summary_merge m = merge_summary(live_summary, keys, "protein.");
  ASSERT_TRUE(m.text) << m.error;
  EXPECT_EQ(m.error, "");
  EXPECT_EQ(
      *m.text,
      R"json({"NaN":"key named NaN","_runtime":3605.25,"_step":1200,"_timestamp":1795896395.5,)json"
      R"json("_wandb":{"runtime":3605,"stats":{"peak":Infinity}},"best":-Infinity,)json"
      R"json("history":[1,NaN,-Infinity,3],"loss":NaN,"note":"NaN said \"hi\" in C:\\tmp\\",)json"
      R"json("protein.completion_time":"2026-11-28T21:06:40.000Z","protein.cost":3600.5,)json"
      R"json("protein.objective":0.93,"protein.state":"success",)json"
      R"json("protein.state_reason":"completed","protein.suggestion":{"NaN":null,"lr":0.001},)json"
      R"json("protein.updated_at":"2026-11-28T21:06:40.000Z","worst":Infinity})json");
  expect_merged(live_summary, *m.text, keys);
  EXPECT_THAT(*m.text, HasSubstr(R"("loss":NaN)"));
  EXPECT_THAT(*m.text, HasSubstr(R"("best":-Infinity)"));
  EXPECT_THAT(*m.text, HasSubstr(R"("worst":Infinity)"));
  EXPECT_THAT(*m.text, HasSubstr(R"("peak":Infinity)"));
  EXPECT_THAT(*m.text, HasSubstr(R"([1,NaN,-Infinity,3])"));
  EXPECT_THAT(*m.text, HasSubstr(R"("note":"NaN said \"hi\" in C:\\tmp\\")"));
  EXPECT_THAT(*m.text, Not(HasSubstr("sweepd:")));
}

TEST(WandbSummaryMerge, GoldenFailureWithLegacyNames) {
  const json keys = summary_keys_for(
      failure(run_state::crashed, transition_reason::process_exited, 12.5), legacy_names);
  const summary_merge m = merge_summary(live_summary, keys, "protein.");
  ASSERT_TRUE(m.text) << m.error;
  EXPECT_EQ(
      *m.text,
      R"json({"NaN":"key named NaN","_runtime":3605.25,"_step":1200,"_timestamp":1795896395.5,)json"
      R"json("_wandb":{"runtime":3605,"stats":{"peak":Infinity}},"best":-Infinity,)json"
      R"json("history":[1,NaN,-Infinity,3],"loss":NaN,"note":"NaN said \"hi\" in C:\\tmp\\",)json"
      R"json("protein.cost":12.5,"protein.error":"process_exited",)json"
      R"json("protein.failure_time":"2026-11-28T21:06:40.000Z","protein.is_failure":true,)json"
      R"json("protein.state":"failure","protein.state_reason":"process_exited",)json"
      R"json("protein.suggestion":{"NaN":null,"lr":0.001},)json"
      R"json("protein.updated_at":"2026-11-28T21:06:40.000Z","worst":Infinity})json");
  expect_merged(live_summary, *m.text, keys);
}

TEST(WandbSummaryMerge, GoldenLateSuccessRemovesStaleFailureKeys) {
  constexpr std::string_view timed_out =
      R"json({"_step":10,"acc":NaN,"protein.cost":300.0,"protein.error":"heartbeat_timeout",)json"
      R"json("protein.failure_time":"2026-11-28T21:00:00.000Z","protein.is_failure":true,)json"
      R"json("protein.state":"failure","protein.state_reason":"heartbeat_timeout",)json"
      R"json("protein.updated_at":"2026-11-28T21:00:00.000Z"})json";
  transition t = success(0.5, 350.25);
  t.from = run_state::timeout;
  t.reason = transition_reason::late_completed;
  t.late_by_s = 400.5;
  const json keys = summary_keys_for(t, legacy_names);
  const summary_merge m = merge_summary(timed_out, keys, "protein.");
  ASSERT_TRUE(m.text) << m.error;
  EXPECT_EQ(*m.text,
            R"json({"_step":10,"acc":NaN,"protein.completion_time":"2026-11-28T21:06:40.000Z",)json"
            R"json("protein.cost":350.25,"protein.late":true,"protein.late_by_s":400.5,)json"
            R"json("protein.objective":0.5,"protein.state":"success",)json"
            R"json("protein.state_reason":"late_completed",)json"
            R"json("protein.updated_at":"2026-11-28T21:06:40.000Z"})json");
  EXPECT_THAT(*m.text, Not(HasSubstr("is_failure")));
  EXPECT_THAT(*m.text, Not(HasSubstr("protein.error")));
  EXPECT_THAT(*m.text, Not(HasSubstr("failure_time")));
  expect_merged(timed_out, *m.text, keys);
}

TEST(WandbSummaryMerge, RevivedRunDropsEveryTerminalKey) {
  constexpr std::string_view timed_out =
      R"json({"protein.cost":300,"protein.error":"heartbeat_timeout","protein.is_failure":true,)json"
      R"json("protein.failure_time":"x","protein.late":true,"protein.late_by_s":1,)json"
      R"json("protein.objective":1,"protein.completion_time":"y","protein.state":"timeout"})json";
  const json keys = summary_keys_for(
      make(run_state::timeout, run_state::running, transition_reason::revived), no_names);
  const summary_merge m = merge_summary(timed_out, keys, "protein.");
  ASSERT_TRUE(m.text) << m.error;
  EXPECT_EQ(*m.text, R"json({"protein.state":"running","protein.state_reason":"revived",)json"
                     R"json("protein.updated_at":"2026-11-28T21:06:40.000Z"})json");
}

TEST(WandbSummaryMerge, GoldenPrettyInputWithSpacesAroundTokens) {
  constexpr std::string_view pretty =
      "{\n  \"loss\" : NaN ,\n  \"x\": [ -Infinity , 2.5e-7, Infinity ],\r\n"
      "\t\"s\": \"\\u00e9 \\\\NaN\\\\ \\/\"\n}\n";
  const json keys = summary_keys_for(
      make(run_state::initializing, run_state::running, transition_reason::started), no_names);
  const summary_merge m = merge_summary(pretty, keys, "protein.");
  ASSERT_TRUE(m.text) << m.error;
  EXPECT_EQ(*m.text,
            "{\"loss\":NaN,\"protein.state\":\"running\",\"protein.state_reason\":\"started\","
            "\"protein.updated_at\":\"2026-11-28T21:06:40.000Z\",\"s\":\"\xc3\xa9 \\\\NaN\\\\ /\","
            "\"x\":[-Infinity,2.5e-07,Infinity]}");
  expect_merged(pretty, *m.text, keys);
}

TEST(WandbSummaryMerge, StringsThatLookLikeTokensStayStrings) {
  // Strings equal to the tokens, and one equal to the text the implementation might use
  // internally: none of them may turn into a bare token.
  constexpr std::string_view tricky =
      R"json({"a":"NaN","b":"-Infinity","c":"Infinity","d":"sweepd:NaN","e":"\"NaN\"",)json"
      R"json("f":["NaN",NaN],"g":"\\","h":"\\\"Infinity\\\""})json";
  const json keys = summary_keys_for(success(1.0, 1.0), no_names);
  const summary_merge m = merge_summary(tricky, keys, "protein.");
  ASSERT_TRUE(m.text) << m.error;
  expect_merged(tricky, *m.text, keys);
  EXPECT_THAT(*m.text, HasSubstr(R"("a":"NaN","b":"-Infinity","c":"Infinity","d":"sweepd:NaN")"));
  EXPECT_THAT(*m.text, HasSubstr(R"("f":["NaN",NaN])"));
  EXPECT_THAT(*m.text, HasSubstr(R"("h":"\\\"Infinity\\\"")"));
  EXPECT_EQ(bare_count(*m.text, "NaN"), 1);
  EXPECT_EQ(bare_count(*m.text, "Infinity"), 0);
  EXPECT_EQ(bare_count(*m.text, "-Infinity"), 0);
}

TEST(WandbSummaryMerge, EveryTransitionKeepsForeignKeys) {
  const std::vector<transition> changes = {
      make(run_state::initializing, run_state::running, transition_reason::started),
      success(0.1, 2.0),
      failure(run_state::failed, transition_reason::worker_failed, 0.0, "x"),
      failure(run_state::crashed, transition_reason::process_exited, std::nullopt),
      failure(run_state::timeout, transition_reason::stalled, 9.0),
  };
  for (const auto& t : changes) {
    SCOPED_TRACE(std::string(to_string(t.to)));
    const json keys = summary_keys_for(t, legacy_names);
    const summary_merge m = merge_summary(live_summary, keys, "protein.");
    ASSERT_TRUE(m.text) << m.error;
    expect_merged(live_summary, *m.text, keys);
    // Merging twice changes nothing more.
    const summary_merge again = merge_summary(*m.text, keys, "protein.");
    ASSERT_TRUE(again.text) << again.error;
    EXPECT_EQ(*again.text, *m.text);
  }
}

TEST(WandbSummaryMerge, KeysOfOtherPrefixesAreUntouched) {
  constexpr std::string_view summary =
      R"json({"protein.suggestion":{"lr":1},"protein.extra":"keep","proteinstate":"x",)json"
      R"json("protein.state.sub":"y","other.state":"z","protein.cost_model":"w"})json";
  const json keys = summary_keys_for(
      make(run_state::initializing, run_state::running, transition_reason::started), no_names);
  const summary_merge m = merge_summary(summary, keys, "protein.");
  ASSERT_TRUE(m.text) << m.error;
  EXPECT_EQ(*m.text,
            R"json({"other.state":"z","protein.cost_model":"w","protein.extra":"keep",)json"
            R"json("protein.state":"running","protein.state.sub":"y",)json"
            R"json("protein.state_reason":"started","protein.suggestion":{"lr":1},)json"
            R"json("protein.updated_at":"2026-11-28T21:06:40.000Z","proteinstate":"x"})json");
}

TEST(WandbSummaryMerge, EmptyWhitespaceAndNullAreEmptySummaries) {
  const json keys = summary_keys_for(
      make(run_state::initializing, run_state::running, transition_reason::started), no_names);
  const std::string expected =
      R"json({"protein.state":"running","protein.state_reason":"started",)json"
      R"json("protein.updated_at":"2026-11-28T21:06:40.000Z"})json";
  for (std::string_view text : {"", " ", " \t\r\n ", "null", " null\n", "{}", " { } "}) {
    SCOPED_TRACE(std::string(text));
    const summary_merge m = merge_summary(text, keys, "protein.");
    ASSERT_TRUE(m.text) << m.error;
    EXPECT_EQ(*m.text, expected);
    EXPECT_EQ(m.error, "");
  }
}

TEST(WandbSummaryMerge, NonObjectSummaryIsAnError) {
  const json keys = summary_keys_for(success(1.0, 1.0), no_names);
  for (std::string_view text : {"[1,2]", "garbage", "42", "\"text\"", "true", "NaN",
                                "{\"a\":", "{\"a\":1}}", "{\"a\":1} x", "{\"a\":nan}", "{'a':1}"}) {
    SCOPED_TRACE(std::string(text));
    const summary_merge m = merge_summary(text, keys, "protein.");
    EXPECT_FALSE(m.text.has_value());
    EXPECT_THAT(m.error, HasSubstr("not a JSON object"));
  }
}

// A run summary is user-writable: one nested 80 000 deep crashed the merge (its dump recursed
// off the end of the stack).
TEST(WandbSummaryMerge, SummaryNestedDeeperThanTheBoundIsRefusedUnparsed) {
  const json keys = summary_keys_for(success(1.0, 1.0), no_names);
  for (std::size_t depth : {257u, 80000u}) {
    SCOPED_TRACE(depth);
    const std::string arrays(depth - 1, '[');
    const std::string text = R"({"a":)" + arrays + std::string(depth - 1, ']') + "}";
    const summary_merge m = merge_summary(text, keys, "protein.");
    EXPECT_FALSE(m.text.has_value());
    EXPECT_EQ(m.error,
              "the run's W&B summary nests deeper than 256 levels; sweepd will not rewrite it");
    EXPECT_EQ(summary_state(text, "protein."), std::nullopt);
  }
  // Not valid JSON either: the bound is checked first, before anything is parsed.
  const summary_merge unclosed = merge_summary(std::string(100000, '{'), keys, "protein.");
  EXPECT_THAT(unclosed.error, HasSubstr("nests deeper than 256 levels"));
}

TEST(WandbSummaryMerge, SummaryNestedExactlyToTheBoundIsMerged) {
  const json keys = summary_keys_for(success(1.0, 1.0), no_names);
  const std::string deep = std::string(255, '[') + "NaN" + std::string(255, ']');
  const std::string text = R"({"protein.state":"running","a":)" + deep + "}";
  const summary_merge m = merge_summary(text, keys, "protein.");
  ASSERT_TRUE(m.text) << m.error;
  EXPECT_THAT(*m.text, HasSubstr(R"("a":)" + deep));
  EXPECT_EQ(summary_state(text, "protein."), "running");
}

TEST(WandbSummaryMerge, CustomPrefix) {
  constexpr std::string_view summary =
      R"json({"loss":NaN,"protein.state":"running","sweepd/is_failure":true})json";
  const json keys = summary_keys_for(success(0.25, 10.0), no_names);
  const summary_merge m = merge_summary(summary, keys, "sweepd/");
  ASSERT_TRUE(m.text) << m.error;
  EXPECT_EQ(*m.text,
            R"json({"loss":NaN,"protein.state":"running",)json"
            R"json("sweepd/completion_time":"2026-11-28T21:06:40.000Z","sweepd/cost":10.0,)json"
            R"json("sweepd/objective":0.25,"sweepd/state":"success",)json"
            R"json("sweepd/state_reason":"completed",)json"
            R"json("sweepd/updated_at":"2026-11-28T21:06:40.000Z"})json");
  expect_merged(summary, *m.text, keys, "sweepd/");
}

// ---------------------------------------------------------------------------------------------
// summary_state

TEST(WandbSummaryState, ReadsPrefixedState) {
  EXPECT_EQ(summary_state(live_summary, "protein."), "running");
  EXPECT_EQ(summary_state(R"({"x":-Infinity,"sweepd/state":"failure","protein.state":"running"})",
                          "sweepd/"),
            "failure");
}

TEST(WandbSummaryState, AbsentOrUnreadableIsNullopt) {
  EXPECT_EQ(summary_state("", "protein."), std::nullopt);
  EXPECT_EQ(summary_state("null", "protein."), std::nullopt);
  EXPECT_EQ(summary_state(R"({"state":"running"})", "protein."), std::nullopt);
  EXPECT_EQ(summary_state(R"({"protein.state":1})", "protein."), std::nullopt);
  EXPECT_EQ(summary_state(R"({"protein.state":null})", "protein."), std::nullopt);
  EXPECT_EQ(summary_state(R"({"protein.state":NaN})", "protein."), std::nullopt);
  EXPECT_EQ(summary_state(R"(["protein.state","running"])", "protein."), std::nullopt);
  EXPECT_EQ(summary_state("garbage", "protein."), std::nullopt);
  EXPECT_EQ(summary_state(R"({"protein.state":"running")", "protein."), std::nullopt);
}

}  // namespace
}  // namespace sweepd::core
