// sweepctl's command-line values and the typed requests built from them: what is accepted goes on
// the wire as the protocol's request, and every refusal names its option before anything is sent.

#include "cli/parse.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sweepd::cli {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

arguments args_of(std::vector<std::string> operands,
                  const std::vector<std::pair<std::string, std::string>>& options = {}) {
  arguments a;
  a.operands = std::move(operands);
  for (const auto& [name, value] : options) a.options[name] = value;
  return a;
}

/// The wire object of the request `command` builds, or a failure naming the problem.
json wire_of(std::string_view command, const arguments& args) {
  const parsed_request parsed = request_from(command, args);
  if (!parsed.req) {
    ADD_FAILURE() << command << ": " << parsed.problem;
    return nullptr;
  }
  EXPECT_EQ(parsed.problem, "");
  return core::request_json(*parsed.req);
}

std::string problem_of(std::string_view command, const arguments& args) {
  const parsed_request parsed = request_from(command, args);
  EXPECT_FALSE(parsed.req.has_value()) << command;
  return parsed.problem;
}

TEST(RequestFrom, BuildsEveryDaemonCommandsRequest) {
  EXPECT_EQ(wire_of("status", {}), json({{"op", "status"}}));
  EXPECT_EQ(wire_of("hello", {}), json({{"op", "hello"}}));
  EXPECT_EQ(wire_of("ping", {}), json({{"op", "hello"}}));
  EXPECT_EQ(wire_of("show", args_of({"r1"})), json({{"op", "show"}, {"run", "r1"}}));
  EXPECT_EQ(wire_of("start", args_of({"r1"})), json({{"op", "start"}, {"run", "r1"}}));
  EXPECT_EQ(wire_of("resync", args_of({"r1"})), json({{"op", "resync"}, {"run", "r1"}}));
  EXPECT_EQ(wire_of("list", args_of({}, {{"--sweep", "s1"},
                                         {"--state", "running"},
                                         {"--limit", "5"},
                                         {"--after", "r1:5:r1"}})),
            json({{"op", "list"},
                  {"sweep", "s1"},
                  {"state", "running"},
                  {"limit", 5},
                  {"after", "r1:5:r1"}}));
  EXPECT_EQ(wire_of("observations", args_of({}, {{"--limit", "20"}, {"--after", "f1:5:r1"}})),
            json({{"op", "observations"}, {"limit", 20}, {"after", "f1:5:r1"}}));
  EXPECT_EQ(wire_of("register", args_of({"ab12.cd_34-x"},
                                        {{"--sweep", "s1"},
                                         {"--entity", "e"},
                                         {"--project", "p"},
                                         {"--suggestion", R"({"lr": 0.01, "layers": [1, 2]})"},
                                         {"--watch-peer", ""},
                                         {"--heartbeat-timeout", "600"},
                                         {"--max-runtime", "1d"}})),
            json({{"op", "register"},
                  {"run", "ab12.cd_34-x"},
                  {"sweep", "s1"},
                  {"entity", "e"},
                  {"project", "p"},
                  {"suggestion", {{"lr", 0.01}, {"layers", {1, 2}}}},
                  {"watch_peer", true},
                  {"heartbeat_timeout_s", 600},
                  {"max_runtime_s", 86400}}));
  EXPECT_EQ(wire_of("heartbeat", args_of({"r1"}, {{"--progress", "1200"}, {"--timeout", "15m"}})),
            json({{"op", "heartbeat"}, {"run", "r1"}, {"progress", 1200}, {"timeout_s", 900}}));
  EXPECT_EQ(wire_of("complete", args_of({"r1"}, {{"--objective", "+2"}, {"--cost", "0.25"}})),
            json({{"op", "complete"}, {"run", "r1"}, {"objective", 2}, {"cost", 0.25}}));
  EXPECT_EQ(wire_of("reconcile",
                    args_of({}, {{"--sweep", "sw"}, {"--stale-after", "2h"}, {"--apply", ""}})),
            json({{"op", "reconcile"}, {"sweep", "sw"}, {"apply", true}, {"stale_after_s", 7200}}));
}

TEST(RequestFrom, FailTakesTheMessageOneWayOnly) {
  EXPECT_EQ(wire_of("fail", args_of({"r1", "oom"})),
            json({{"op", "fail"}, {"run", "r1"}, {"error", "oom"}}));
  EXPECT_EQ(wire_of("fail", args_of({"r1"}, {{"--error", "oom"}})),
            json({{"op", "fail"}, {"run", "r1"}, {"error", "oom"}}));
  EXPECT_THAT(problem_of("fail", args_of({"r1", "a"}, {{"--error", "b"}})), HasSubstr("not both"));
  EXPECT_THAT(problem_of("fail", args_of({"r1"})), HasSubstr("missing the error"));
}

TEST(RequestFrom, ACommandWithoutARequestIsAProblem) {
  EXPECT_THAT(problem_of("token", args_of({"new", "x"})), HasSubstr("sends no request"));
}

struct refused_option {
  std::string command;
  std::string option;
  std::string value;
};

TEST(RequestFrom, EveryRefusedOptionIsNamed) {
  const std::vector<refused_option> cases = {
      {"list", "--state", "sleeping"},
      {"list", "--limit", "0"},
      {"list", "--limit", "100001"},
      {"list", "--limit", "5x"},
      {"list", "--after", "f1:5:r1"},  // an observations cursor
      {"list", "--after", "garbage"},
      {"observations", "--limit", "-1"},
      {"observations", "--after", "r1:5:r1"},
      {"register", "--suggestion", "[1, 2]"},
      {"register", "--suggestion", "{not json"},
      {"register", "--heartbeat-timeout", "0"},
      {"register", "--heartbeat-timeout", "soon"},
      {"register", "--max-runtime", "-5"},
      {"register", "--max-runtime", "400d"},
      {"heartbeat", "--progress", "nan"},
      {"heartbeat", "--progress", "inf"},
      {"heartbeat", "--timeout", "0"},
      {"complete", "--objective", "0x10"},
      {"complete", "--cost", "-0.5"},
      {"reconcile", "--stale-after", "1w"},
  };
  for (const refused_option& c : cases) {
    SCOPED_TRACE(c.command + " " + c.option + " " + c.value);
    const bool needs_run =
        c.command != "list" && c.command != "observations" && c.command != "reconcile";
    arguments args =
        args_of(needs_run ? std::vector<std::string>{"r1"} : std::vector<std::string>{},
                {{c.option, c.value}});
    if (c.command == "reconcile") args.options["--sweep"] = "sw";
    EXPECT_THAT(problem_of(c.command, args), HasSubstr("'" + c.option + "'"));
  }
}

TEST(RequestFrom, TheRunAndMissingSweepAreNamed) {
  EXPECT_THAT(problem_of("show", args_of({"no/slash"})), HasSubstr("RUN 'no/slash'"));
  EXPECT_THAT(problem_of("start", args_of({std::string(129, 'a')})), HasSubstr("RUN"));
  EXPECT_THAT(problem_of("reconcile", args_of({})), HasSubstr("missing --sweep"));
}

TEST(RequestFrom, TheFirstProblemIsKept) {
  const std::string problem =
      problem_of("complete", args_of({"r1"}, {{"--objective", "bad"}, {"--cost", "-1"}}));
  EXPECT_THAT(problem, HasSubstr("--objective"));
  EXPECT_THAT(problem, ::testing::Not(HasSubstr("--cost")));
}

TEST(RequestFrom, AnOversizedSuggestionIsRefusedWithItsSize) {
  const std::string big = R"({"k":")" + std::string(core::max_suggestion_bytes, 'x') + R"("})";
  EXPECT_THAT(problem_of("register", args_of({"r1"}, {{"--suggestion", big}})),
              HasSubstr("more than the 65536 allowed"));
}

TEST(RequestFrom, ControlCharactersInEchoedValuesAreMadePrintable) {
  const std::string problem = problem_of("list", args_of({}, {{"--state", "\x1b[31mred"}}));
  EXPECT_EQ(problem.find('\x1b'), std::string::npos) << problem;
}

TEST(ParseDuration, TakesUnitsAndRefusesTheRest) {
  EXPECT_EQ(parse_duration("--x", "90").value, 90.0);
  EXPECT_EQ(parse_duration("--x", "1.5").value, 1.5);
  EXPECT_EQ(parse_duration("--x", "15m").value, 900.0);
  EXPECT_EQ(parse_duration("--x", "2h").value, 7200.0);
  EXPECT_EQ(parse_duration("--x", "1d").value, 86400.0);
  EXPECT_EQ(parse_duration("--x", "+3s").value, 3.0);
  for (const char* bad : {"", "m", "-1", "1e400", "1w", "nan", "1.5.2", " 5"}) {
    const parsed_number p = parse_duration("--x", bad);
    EXPECT_FALSE(p.value.has_value()) << bad;
    EXPECT_THAT(p.problem, HasSubstr("option '--x'")) << bad;
  }
}

TEST(ParseFinite, RefusesNonFiniteAndJunk) {
  EXPECT_EQ(parse_finite("--y", "-1e-3").value, -0.001);
  for (const char* bad : {"inf", "nan", "0x1p3", "1,5", "+-1", "", "2 "}) {
    const parsed_number p = parse_finite("--y", bad);
    EXPECT_FALSE(p.value.has_value()) << bad;
    EXPECT_THAT(p.problem, HasSubstr("option '--y'")) << bad;
  }
}

}  // namespace
}  // namespace sweepd::cli
