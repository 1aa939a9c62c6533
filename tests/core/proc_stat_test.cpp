#include "core/proc_stat.hpp"

#include <gtest/gtest.h>

namespace sweepd::core {
namespace {

// A real line from Linux 6.1 (sweepd itself), with the command name's parentheses stressed.
constexpr std::string_view sample =
    "4242 (sw (ee) pd) S 1 4242 4242 0 -1 4194560 1234 0 0 0 157 42 0 0 20 0 1 0 987654 "
    "123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17640 0 0 0 17 1 0 0 0 0 0\n";

TEST(ParseProcStat, ReadsCpuStartVsizeAndRss) {
  const auto s = parse_proc_stat(sample);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->utime_ticks, 157u);
  EXPECT_EQ(s->stime_ticks, 42u);
  EXPECT_EQ(s->start_ticks, 987654u);
  EXPECT_EQ(s->vsize_bytes, 123456789u);
  EXPECT_EQ(s->rss_pages, 2048u);
}

TEST(ParseProcStat, RefusesWhatIsNotAStatLine) {
  EXPECT_FALSE(parse_proc_stat(""));
  EXPECT_FALSE(parse_proc_stat("4242 sweepd S 1"));
  EXPECT_FALSE(parse_proc_stat("4242 (sweepd) S 1 2 3"));  // cut short
  std::string bad(sample);
  bad.replace(bad.find(" 157 "), 5, " 1x7 ");
  EXPECT_FALSE(parse_proc_stat(bad));
}

}  // namespace
}  // namespace sweepd::core
