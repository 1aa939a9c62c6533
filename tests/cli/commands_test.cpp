// sweepctl's command table and help: every command can be found and run, its help shows every
// option it takes, and every command that talks to sweepd has a request builder.

#include "cli/commands.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "cli/parse.hpp"

namespace sweepd::cli {
namespace {

using ::testing::HasSubstr;

/// Commands that run without sending a request of their own making.
const std::set<std::string, std::less<>> local_commands = {"exec", "spool", "token"};

TEST(Commands, EveryCommandIsFoundByItsNameAndRuns) {
  std::set<std::string_view> names;
  for (const command& c : all_commands()) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(names.insert(c.name).second) << "listed twice";
    EXPECT_EQ(find_command(c.name), &c);
    EXPECT_NE(c.run, nullptr);
    EXPECT_FALSE(c.summary.empty());
    EXPECT_LE(c.min_operands, c.max_operands);
  }
  EXPECT_EQ(find_command("nope"), nullptr);
  EXPECT_EQ(find_command(""), nullptr);
}

TEST(Commands, EveryDaemonCommandBuildsItsRequest) {
  for (const command& c : all_commands()) {
    if (local_commands.contains(c.name)) continue;
    SCOPED_TRACE(c.name);
    arguments args;
    args.operands.assign(c.min_operands, "r1");
    if (c.find_option("--sweep") != nullptr) args.options["--sweep"] = "s1";
    if (c.name == "fail") args.options["--error"] = "oom";
    const parsed_request parsed = request_from(c.name, args);
    EXPECT_TRUE(parsed.req.has_value()) << parsed.problem;
  }
}

TEST(Commands, HelpShowsEveryOptionAndCommand) {
  const std::string program = program_usage();
  for (const command& c : all_commands()) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(program, HasSubstr("  " + std::string(c.name) + " "));
    const std::string usage = command_usage(c);
    EXPECT_THAT(usage, HasSubstr("Usage: sweepctl [GLOBAL OPTIONS] " + std::string(c.name)));
    for (const option_spec& o : c.options) EXPECT_THAT(usage, HasSubstr(std::string(o.name)));
    for (const option_spec& o : global_option_specs()) {
      EXPECT_THAT(usage, HasSubstr(std::string(o.name)));
    }
  }
  EXPECT_THAT(program, HasSubstr("Exit status: 0 done"));
}

TEST(Commands, HelpLinesFitTheTerminal) {
  for (const command& c : all_commands()) {
    const std::string usage = command_usage(c);
    std::size_t start = 0;
    for (std::size_t nl = usage.find('\n'); nl != std::string::npos;
         start = nl + 1, nl = usage.find('\n', start)) {
      const std::string line = usage.substr(start, nl - start);
      // The usage line of exec and the details text are written by hand; options are wrapped.
      if (line.starts_with("  -")) {
        EXPECT_LE(line.size(), 100u) << c.name << ": " << line;
      }
    }
  }
}

TEST(Commands, FindOptionKnowsOnlyTheCommandsOwn) {
  const command* list = find_command("list");
  ASSERT_NE(list, nullptr);
  ASSERT_NE(list->find_option("--limit"), nullptr);
  EXPECT_EQ(list->find_option("--limit")->value_name, "N");
  EXPECT_EQ(list->find_option("--apply"), nullptr);
}

TEST(Arguments, ValueAndHas) {
  arguments a;
  a.options["--sweep"] = "s1";
  a.options["--apply"] = "";
  ASSERT_NE(a.value("--sweep"), nullptr);
  EXPECT_EQ(*a.value("--sweep"), "s1");
  EXPECT_TRUE(a.has("--apply"));
  EXPECT_EQ(a.value("--state"), nullptr);
  EXPECT_FALSE(a.has("--state"));
}

}  // namespace
}  // namespace sweepd::cli
