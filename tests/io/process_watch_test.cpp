#include "io/process_watch.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <optional>

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

}  // namespace
}  // namespace sweepd::io
