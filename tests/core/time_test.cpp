#include "core/time.hpp"

#include <gtest/gtest.h>

namespace sweepd::core {
namespace {

TEST(FormatUtc, PrintsIso8601WithMilliseconds) {
  const wall_time t =
      wall_time{} + std::chrono::seconds(1795900000) + std::chrono::milliseconds(42);
  EXPECT_EQ(format_utc(t), "2026-11-28T21:06:40.042Z");
}

TEST(FormatUtc, EpochIsMidnight) { EXPECT_EQ(format_utc(wall_time{}), "1970-01-01T00:00:00.000Z"); }

}  // namespace
}  // namespace sweepd::core
