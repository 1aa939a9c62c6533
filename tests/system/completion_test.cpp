// The bash completion for sweepctl, sourced into a real bash: commands, options, states, and run
// ids asked of a running sweepd.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

/// What completing `words` (the last one being completed) offers, with sweepctl as the build's.
std::vector<std::string> complete(const std::vector<std::string>& words,
                                  const std::string& socket = "/nonexistent/sweepd.sock") {
  std::string array;
  for (const std::string& w : words) array += " '" + w + "'";
  const std::string script = "source '" SWEEPD_SOURCE_DIR
                             "/contrib/bash-completion/sweepctl'\n"
                             "COMP_WORDS=(\"$0\"" +
                             array +
                             ")\n"
                             "COMP_CWORD=" +
                             std::to_string(words.size()) +
                             "\n"
                             "_sweepctl\n"
                             "printf '%s\\n' \"${COMPREPLY[@]}\"\n";
  const auto r = test::run_command({"/bin/bash", "--norc", "-c", script, SWEEPCTL_BINARY},
                                   test::environment_with({"SWEEPD_SOCKET=" + socket}),
                                   std::chrono::seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> offered;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) offered.push_back(line);
  }
  return offered;
}

TEST(BashCompletion, CommandsOptionsAndStates) {
  EXPECT_THAT(complete({"st"}), UnorderedElementsAre("status", "start"));
  EXPECT_THAT(complete({"re"}), UnorderedElementsAre("register", "reconcile", "resync"));
  EXPECT_THAT(complete({"--j"}), UnorderedElementsAre("--json"));
  EXPECT_THAT(complete({"list", "--s"}), UnorderedElementsAre("--sweep", "--state", "--socket"));
  EXPECT_THAT(complete({"list", "--state", "ti"}), UnorderedElementsAre("timeout"));
  EXPECT_THAT(complete({"exec", "--on-timeout", ""}), UnorderedElementsAre("kill", "keep"));
  EXPECT_THAT(complete({"complete", "run1", "--o"}), UnorderedElementsAre("--objective"));
  EXPECT_THAT(complete({"spool", ""}), UnorderedElementsAre("flush", "list"));
  // No sweepd to ask: no run ids, and no error.
  EXPECT_THAT(complete({"show", ""}), IsEmpty());
}

TEST(BashCompletion, RunIdsComeFromSweepd) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir);
  d.start();
  for (const char* run : {"ab12", "ab34", "cd56"}) {
    ASSERT_EQ(d.call({{"op", "register"}, {"run", run}})["ok"], true);
  }
  EXPECT_THAT(complete({"show", ""}, d.socket_path()),
              UnorderedElementsAre("ab12", "ab34", "cd56"));
  EXPECT_THAT(complete({"complete", "ab"}, d.socket_path()), UnorderedElementsAre("ab12", "ab34"));
  EXPECT_THAT(complete({"exec", "--run", "c"}, d.socket_path()), UnorderedElementsAre("cd56"));
  // --socket on the line wins over $SWEEPD_SOCKET.
  EXPECT_THAT(complete({"--socket", d.socket_path(), "resync", "cd"}),
              UnorderedElementsAre("cd56"));
}

}  // namespace
}  // namespace sweepd
