// raise_open_files_limit on this process: from a lowered soft limit up to the hard one.
#include "io/resource_limits.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace sweepd::io {
namespace {

/// Sets the soft open-files limit for one test and puts it back whatever the test does.
class soft_open_files_limit {
 public:
  explicit soft_open_files_limit(rlim_t soft) {
    ok_ = ::getrlimit(RLIMIT_NOFILE, &saved_) == 0;
    rlimit changed = saved_;
    changed.rlim_cur = soft;
    ok_ = ok_ && ::setrlimit(RLIMIT_NOFILE, &changed) == 0;
  }
  ~soft_open_files_limit() { (void)::setrlimit(RLIMIT_NOFILE, &saved_); }
  soft_open_files_limit(const soft_open_files_limit&) = delete;
  soft_open_files_limit& operator=(const soft_open_files_limit&) = delete;

  bool ok() const { return ok_; }
  const rlimit& saved() const { return saved_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

TEST(OpenFilesLimit, RaisesTheSoftLimitToTheHardOne) {
  constexpr rlim_t low = 64;
  soft_open_files_limit squeeze(low);
  ASSERT_TRUE(squeeze.ok());
  const rlim_t hard = squeeze.saved().rlim_max;
  if (hard != RLIM_INFINITY && hard <= low) GTEST_SKIP() << "hard limit " << hard << " is too low";

  const auto raised = raise_open_files_limit();
  ASSERT_TRUE(raised) << raised.error().reason;
  EXPECT_EQ(raised->before, low);
  EXPECT_EQ(raised->hard, hard);
  // The kernel refuses an unlimited RLIMIT_NOFILE: the daemon asks for fs.nr_open's default.
  EXPECT_EQ(raised->soft, hard == RLIM_INFINITY ? 1048576u : hard);
  rlimit now{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, raised->soft);
}

TEST(OpenFilesLimit, AtTheHardLimitAlreadyLeavesItAlone) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max == RLIM_INFINITY) GTEST_SKIP() << "no finite hard limit to sit at";
  soft_open_files_limit at_hard(saved.rlim_max);
  ASSERT_TRUE(at_hard.ok());

  const auto raised = raise_open_files_limit();
  ASSERT_TRUE(raised) << raised.error().reason;
  EXPECT_EQ(raised->before, saved.rlim_max);
  EXPECT_EQ(raised->soft, saved.rlim_max);
}

}  // namespace
}  // namespace sweepd::io
