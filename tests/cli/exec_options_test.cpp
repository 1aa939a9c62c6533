// sweepctl exec's command line: the register request it builds, and each refusal naming its option.

#include "cli/exec_options.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/protocol.hpp"

namespace sweepd::cli {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using ::testing::HasSubstr;

exec_options parse(const std::vector<std::pair<std::string, std::string>>& options,
                   std::vector<std::string> command = {"true"}) {
  arguments a;
  a.operands = std::move(command);
  a.options["--run"] = "r1";
  for (const auto& [name, value] : options) a.options[name] = value;
  return parse_exec_options(a);
}

TEST(ExecOptions, BuildsTheRegisterRequestBoundToThisProcess) {
  const exec_options o = parse({{"--sweep", "s1"},
                                {"--suggestion", R"({"lr": 0.01})"},
                                {"--heartbeat-timeout", "10m"},
                                {"--max-runtime", "0"},
                                {"--interval", "20"}});
  ASSERT_EQ(o.problem, "");
  EXPECT_EQ(core::request_json(o.register_request), json({{"op", "register"},
                                                          {"run", "r1"},
                                                          {"sweep", "s1"},
                                                          {"suggestion", {{"lr", 0.01}}},
                                                          {"watch_peer", true},
                                                          {"heartbeat_timeout_s", 600},
                                                          {"max_runtime_s", 0}}));
  EXPECT_EQ(o.interval, 20s);
  EXPECT_EQ(o.argv, std::vector<std::string>{"true"});
}

TEST(ExecOptions, FractionalSecondsAreRoundedNotTruncated) {
  // 1.001 s is 1000999999.99… ns in binary: truncating lost a nanosecond.
  const exec_options o = parse({{"--interval", "1.001"}, {"--kill-grace", "1.001"}});
  ASSERT_EQ(o.problem, "");
  EXPECT_EQ(o.interval, 1001ms);
  EXPECT_EQ(o.kill_grace, 1001ms);
}

TEST(ExecOptions, DefaultsApply) {
  const exec_options o = parse({});
  ASSERT_EQ(o.problem, "");
  EXPECT_EQ(o.interval, 30s);
  EXPECT_EQ(o.kill_grace, default_kill_grace);
  EXPECT_EQ(o.on_timeout, timeout_action::kill);
}

TEST(ExecOptions, EveryRefusalNamesItsOption) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"--suggestion", "[1]"},   {"--heartbeat-timeout", "0"}, {"--max-runtime", "-1"},
      {"--interval", "0.05"},    {"--interval", "x"},          {"--result-file", ""},
      {"--on-timeout", "pause"}, {"--kill-grace", "soon"},     {"--spool-dir", ""},
      {"--run", "not a run id"},
  };
  for (const auto& [option, value] : refused) {
    SCOPED_TRACE(fmt::format("{} {}", option, value));
    EXPECT_THAT(parse({{option, value}}).problem, HasSubstr(fmt::format("'{}'", option)));
  }
}

TEST(ExecOptions, ConflictsAndMissingPartsAreRefused) {
  EXPECT_THAT(parse({{"--heartbeat-timeout", "10"}, {"--interval", "10"}}).problem,
              HasSubstr("would come too late"));
  EXPECT_THAT(parse({{"--on-timeout", "keep"}, {"--kill-grace", "5"}}).problem,
              HasSubstr("only with --on-timeout kill"));
  EXPECT_THAT(parse({}, {}).problem, HasSubstr("missing the command"));
  EXPECT_THAT(parse({}, {""}).problem, HasSubstr("empty string"));
  arguments no_run;
  no_run.operands = {"true"};
  EXPECT_THAT(parse_exec_options(no_run).problem, HasSubstr("missing --run"));
}

}  // namespace
}  // namespace sweepd::cli
