#include "core/line_buffer.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace sweepd::core {
namespace {

/// Feeds `text` in as one read.
void feed(line_buffer& b, std::string_view text) {
  std::span<char> room = b.writable(text.size());
  ASSERT_GE(room.size(), text.size());
  std::memcpy(room.data(), text.data(), text.size());
  b.commit(text.size());
}

std::vector<std::string> drain(line_buffer& b) {
  std::vector<std::string> lines;
  while (auto line = b.next_line()) lines.emplace_back(*line);
  return lines;
}

TEST(LineBuffer, SplitsLinesAndKeepsThePartialOne) {
  line_buffer b;
  feed(b, "one\ntwo\nthr");
  EXPECT_EQ(drain(b), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(b.pending(), 3u);
  feed(b, "ee\n");
  EXPECT_EQ(drain(b), (std::vector<std::string>{"three"}));
  EXPECT_EQ(b.pending(), 0u);
}

TEST(LineBuffer, DropsTheCarriageReturnOfCrlfAndKeepsEmptyLines) {
  line_buffer b;
  feed(b, "a\r\n\n\r\nb\r");
  EXPECT_EQ(drain(b), (std::vector<std::string>{"a", "", ""}));
  EXPECT_EQ(b.pending(), 2u);  // "b\r": not a line yet
}

TEST(LineBuffer, EmptyBufferHasNoLine) {
  line_buffer b;
  EXPECT_FALSE(b.next_line());
  EXPECT_EQ(b.pending(), 0u);
}

TEST(LineBuffer, ReusesConsumedRoomBeforeGrowing) {
  line_buffer b;
  const std::string line(1000, 'x');
  for (int i = 0; i < 100; ++i) {
    feed(b, line + "\n");
    ASSERT_EQ(drain(b).size(), 1u);
  }
  EXPECT_LE(b.capacity(), 2048u) << "a buffer that grows with every line read leaks";
}

TEST(LineBuffer, GrowsForALongLineKeepingItsStart) {
  line_buffer b;
  std::string line;
  for (int i = 0; i < 50; ++i) {
    const std::string piece(997, static_cast<char>('a' + i % 26));
    feed(b, piece);
    line += piece;
    EXPECT_FALSE(b.next_line());
  }
  feed(b, "\n");
  auto got = b.next_line();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, line);
}

TEST(LineBuffer, RescansOnlyWhatArrivedSinceTheLastLook) {
  // Correctness of the scan offset across compaction: a partial line moved to the front is still
  // found complete when its end arrives.
  line_buffer b;
  feed(b, std::string(100, 'a') + "\n" + std::string(50, 'b'));
  ASSERT_EQ(drain(b).size(), 1u);
  const std::size_t more = b.capacity();  // more than fits: compaction, then growth
  feed(b, std::string(more, 'c'));
  feed(b, "\n");
  auto got = b.next_line();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), 50 + more);
  EXPECT_EQ(got->substr(0, 50), std::string(50, 'b'));
  EXPECT_EQ(got->find_first_not_of('c', 50), std::string_view::npos);
}

TEST(LineBuffer, ShrinkGivesBackAGrownBufferOnlyWhenTheRestFits) {
  line_buffer b;
  feed(b, std::string(100000, 'x'));
  b.shrink(16384);
  EXPECT_GE(b.capacity(), 100000u) << "the unconsumed bytes must be kept";
  feed(b, "\n");
  ASSERT_TRUE(b.next_line());
  feed(b, "par");
  b.shrink(16384);
  EXPECT_EQ(b.capacity(), 16384u);
  feed(b, "tial\n");
  EXPECT_EQ(drain(b), (std::vector<std::string>{"partial"}));
}

TEST(LineBuffer, CommitNeverPassesTheRoomGiven) {
  line_buffer b;
  std::span<char> room = b.writable(8);
  b.commit(room.size() + 100);
  EXPECT_EQ(b.pending(), room.size());
}

}  // namespace
}  // namespace sweepd::core
