#include "io/logging.hpp"

#include <gtest/gtest.h>

namespace sweepd::io {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

TEST(LogLimiter, LetsOneLineASecondThroughAndCountsTheRest) {
  log_limiter limit(1s);
  const clock::time_point t0 = clock::time_point{} + 100s;
  std::size_t held = 99;
  ASSERT_TRUE(limit.allow(t0, held));
  EXPECT_EQ(held, 0u);
  for (int i = 0; i < 59; ++i) EXPECT_FALSE(limit.allow(t0 + 10ms * i, held));
  ASSERT_TRUE(limit.allow(t0 + 1s, held));
  EXPECT_EQ(held, 59u);
  ASSERT_TRUE(limit.allow(t0 + 5s, held));
  EXPECT_EQ(held, 0u);
}

}  // namespace
}  // namespace sweepd::io
