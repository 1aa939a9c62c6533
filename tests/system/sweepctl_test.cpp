// System tests of sweepctl: the real binary against no daemon, bad usage, and a fake server.

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>

#include "support/process_support.hpp"

namespace sweepd::test {
namespace {

using namespace std::chrono_literals;

// The helpers other system tests build on.

TEST(SweepctlProcessSupport, CapturesExitCodeAndBothStreams) {
  auto r = run_command({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}, {}, 10s);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(SweepctlProcessSupport, ChildGetsExactlyTheGivenEnvironment) {
  auto r = run_command({"/usr/bin/env"}, {"A=1", "B=two"}, 10s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "A=1\nB=two\n");
  auto inherited = environment_with({"SWEEPD_TEST_X=1"});
  EXPECT_NE(std::find(inherited.begin(), inherited.end(), "SWEEPD_TEST_X=1"), inherited.end());
}

TEST(SweepctlProcessSupport, KillsACommandThatOutlivesItsTimeout) {
  auto r = run_command({"/bin/sh", "-c", "exec sleep 60"}, {}, 200ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
}

TEST(SweepctlProcessSupport, ReportsDeathBySignalAndWaitsAgain) {
  auto p = process::start({"/bin/sh", "-c", "exec sleep 60"});
  EXPECT_FALSE(p.wait_for(10ms).has_value());
  EXPECT_TRUE(p.send_signal(SIGTERM));
  EXPECT_EQ(p.wait_for(10s), 128 + SIGTERM);
  EXPECT_EQ(p.wait_for(0ms), 128 + SIGTERM);
  EXPECT_FALSE(p.running());
}

TEST(SweepctlProcessSupport, MissingProgramThrows) {
  EXPECT_THROW(process::start({"/nonexistent/program"}), std::system_error);
}

TEST(SweepctlProcessSupport, TempDirIsShortAndRemovedWithItsContents) {
  std::filesystem::path where;
  {
    temp_dir dir;
    where = dir.path();
    EXPECT_TRUE(std::filesystem::is_directory(where));
    EXPECT_LT(dir.file("sweepd.sock").size(), 40u);
    std::filesystem::create_directory(dir.path() / "sub");
    std::FILE* f = std::fopen(dir.file("sub/x").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  EXPECT_FALSE(std::filesystem::exists(where));
}

}  // namespace
}  // namespace sweepd::test
