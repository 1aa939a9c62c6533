#include "io/process_watch.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <optional>
#include <vector>

#include "support/process_support.hpp"

namespace sweepd::io {
namespace {

using namespace std::chrono_literals;

/// Runs the loop until the handler saw `pid` or a bounded time passed.
std::optional<std::int32_t> run_until_exit(boost::asio::io_context& io,
                                           std::optional<std::int32_t>& seen) {
  boost::asio::steady_timer bound(io, 10s);
  bound.async_wait([&](boost::system::error_code) { io.stop(); });
  while (!seen && !io.stopped()) io.run_one();
  return seen;
}

TEST(ProcessWatch, ReportsAKilledProcessAtOnce) {
  boost::asio::io_context io;
  std::optional<std::int32_t> seen;
  process_watch watch(io, [&](std::int32_t pid) { seen = pid; });
  auto child = test::process::start({"/bin/sleep", "30"});
  watch.watch(child.pid());
  EXPECT_EQ(watch.watched(), 1u);
  EXPECT_FALSE(watch.polling());  // this kernel has pidfd_open
  ASSERT_TRUE(child.send_signal(SIGKILL));
  EXPECT_EQ(run_until_exit(io, seen), child.pid());
  EXPECT_EQ(watch.watched(), 0u);
}

TEST(ProcessWatch, AProcessAlreadyGoneIsReportedToo) {
  boost::asio::io_context io;
  std::optional<std::int32_t> seen;
  process_watch watch(io, [&](std::int32_t pid) { seen = pid; });
  auto child = test::process::start({"/bin/true"});
  ASSERT_EQ(child.wait_for(10s), 0);  // exited and reaped: the pid no longer exists
  watch.watch(child.pid());
  EXPECT_EQ(run_until_exit(io, seen), child.pid());
}

TEST(ProcessWatch, WatchingTwiceWatchesOnce) {
  boost::asio::io_context io;
  int reports = 0;
  process_watch watch(io, [&](std::int32_t) { ++reports; });
  auto child = test::process::start({"/bin/sleep", "30"});
  watch.watch(child.pid());
  watch.watch(child.pid());
  EXPECT_EQ(watch.watched(), 1u);
  child.kill();
  std::optional<std::int32_t> seen;
  process_watch other(io, [&](std::int32_t pid) { seen = pid; });
  // Drain the loop: the first watch reports exactly once.
  boost::asio::steady_timer bound(io, 10s);
  bound.async_wait([&](boost::system::error_code) { io.stop(); });
  while (reports == 0 && !io.stopped()) io.run_one();
  io.poll();
  EXPECT_EQ(reports, 1);
}

TEST(ProcessWatch, StartTimeOfALiveProcessAndNoneForAMissingOne) {
  EXPECT_TRUE(live_process_start_time(::getpid()).has_value());
  auto child = test::process::start({"/bin/true"});
  ASSERT_EQ(child.wait_for(10s), 0);
  EXPECT_FALSE(live_process_start_time(child.pid()).has_value());
}

TEST(ProcessWatch, ProbeTellsAliveFromGone) {
  const process_probe self = probe_process(::getpid());
  EXPECT_EQ(self.what, process_probe::state::alive);
  EXPECT_GT(self.start_time, 0u);
  auto child = test::process::start({"/bin/true"});
  ASSERT_EQ(child.wait_for(10s), 0);
  EXPECT_EQ(probe_process(child.pid()).what, process_probe::state::gone);
  EXPECT_FALSE(current_boot_id().empty());
}

TEST(ProcessWatch, APidNowNamingAnotherProcessIsReportedAsAnExit) {
  // The stored start time is not the live process's: its pid was reused.
  boost::asio::io_context io;
  std::optional<std::int32_t> seen;
  process_watch watch(io, [&](std::int32_t pid) { seen = pid; });
  auto child = test::process::start({"/bin/sleep", "30"});
  const auto start = live_process_start_time(child.pid());
  ASSERT_TRUE(start);
  watch.watch(child.pid(), -1, *start + 1);
  EXPECT_EQ(run_until_exit(io, seen), child.pid());
  EXPECT_TRUE(child.running());  // the unrelated process is left alone
}

TEST(ProcessWatch, TheRightStartTimeIsWatched) {
  boost::asio::io_context io;
  std::optional<std::int32_t> seen;
  process_watch watch(io, [&](std::int32_t pid) { seen = pid; });
  auto child = test::process::start({"/bin/sleep", "30"});
  watch.watch(child.pid(), -1, live_process_start_time(child.pid()).value_or(0));
  io.poll();
  EXPECT_FALSE(seen);
  EXPECT_EQ(watch.watched(), 1u);
  ASSERT_TRUE(child.send_signal(SIGKILL));
  EXPECT_EQ(run_until_exit(io, seen), child.pid());
}

/// Uses up the process's file descriptors (under a lowered soft limit) while alive.
class fd_exhaustion {
 public:
  fd_exhaustion() {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit low = saved_;
    low.rlim_cur = 64;
    ::setrlimit(RLIMIT_NOFILE, &low);
    for (;;) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      fds_.push_back(fd);
    }
  }
  ~fd_exhaustion() { release(); }
  void release() {
    for (int fd : fds_) ::close(fd);
    fds_.clear();
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }

 private:
  rlimit saved_{};
  std::vector<int> fds_;
};

TEST(ProcessWatch, NoFileDescriptorLeftIsNeverTakenForAnExit) {
  boost::asio::io_context io;
  std::optional<std::int32_t> seen;
  process_watch watch(io, [&](std::int32_t pid) { seen = pid; });
  auto child = test::process::start({"/bin/sleep", "30"});
  const auto start = live_process_start_time(child.pid());
  ASSERT_TRUE(start);
  {
    fd_exhaustion no_fds;
    watch.watch(child.pid(), -1, *start);  // pidfd_open fails with EMFILE
    EXPECT_EQ(watch.polled(), 1u);
    EXPECT_FALSE(watch.polling());  // only this process, not every one for good
    // The /proc check cannot open its file either: still not an exit.
    boost::asio::steady_timer wait(io, 1500ms);
    wait.async_wait([&](boost::system::error_code) {});
    while (!seen && io.run_one() > 0 && wait.expiry() > std::chrono::steady_clock::now()) {
    }
    EXPECT_FALSE(seen);
  }
  // Descriptors are back: the next check trades /proc for a pidfd, and the exit is seen.
  ASSERT_TRUE(child.send_signal(SIGKILL));
  EXPECT_EQ(run_until_exit(io, seen), child.pid());
}

}  // namespace
}  // namespace sweepd::io
