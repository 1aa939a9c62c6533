// sweepd's command line: what each argument asks for, and the failure that names a bad one.
#include "app/options.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sweepd::app {
namespace {

TEST(Options, NoArgumentsRunWithTheDefaultConfig) {
  const auto parsed = parse_options({});
  ASSERT_TRUE(parsed) << parsed.error();
  EXPECT_EQ(parsed->what, options::action::run);
  EXPECT_EQ(parsed->config_path, std::nullopt);
}

TEST(Options, ConfigPathInEitherSpelling) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--config", "/etc/s.yaml"}, {"--config=/etc/s.yaml"}, {"-c", "/etc/s.yaml"}}) {
    const auto parsed = parse_options(args);
    ASSERT_TRUE(parsed) << parsed.error();
    EXPECT_EQ(parsed->what, options::action::run) << args[0];
    EXPECT_EQ(parsed->config_path, "/etc/s.yaml") << args[0];
  }
}

TEST(Options, CheckConfigVersionAndHelp) {
  const auto check = parse_options({"--check-config", "s.yaml"});
  ASSERT_TRUE(check) << check.error();
  EXPECT_EQ(check->what, options::action::check_config);
  EXPECT_EQ(check->config_path, "s.yaml");
  EXPECT_EQ(parse_options({"--version"})->what, options::action::version);
  EXPECT_EQ(parse_options({"-h"})->what, options::action::help);
}

TEST(Options, AFailureNamesTheBadArgument) {
  EXPECT_EQ(parse_options({"--verbose"}).error().message,
            "unknown argument '--verbose' (see sweepd --help)");
  EXPECT_EQ(parse_options({"--config"}).error().message, "--config needs a file path");
  EXPECT_EQ(parse_options({"--check-config="}).error().message, "--check-config needs a file path");
}

}  // namespace
}  // namespace sweepd::app
