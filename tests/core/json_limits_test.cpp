#include "core/json_limits.hpp"

#include <gtest/gtest.h>

#include <string>

namespace sweepd::core {
namespace {

std::string nested(std::size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(JsonDepth, CountsArraysAndObjectsTogether) {
  EXPECT_FALSE(json_nests_deeper_than("{}", 1));
  EXPECT_TRUE(json_nests_deeper_than("{}", 0));
  EXPECT_FALSE(json_nests_deeper_than(R"({"a":[{"b":[1]}]})", 4));
  EXPECT_TRUE(json_nests_deeper_than(R"({"a":[{"b":[1]}]})", 3));
}

TEST(JsonDepth, SiblingsDoNotAddUp) {
  EXPECT_FALSE(json_nests_deeper_than("[[1],[2],[3],{\"a\":{}}]", 3));
  EXPECT_TRUE(json_nests_deeper_than("[[1],[2],[3],{\"a\":{}}]", 2));
}

TEST(JsonDepth, ExactlyTheLimitIsAccepted) {
  EXPECT_FALSE(json_nests_deeper_than(nested(64), 64));
  EXPECT_TRUE(json_nests_deeper_than(nested(65), 64));
}

TEST(JsonDepth, BracketsInsideStringsDoNotCount) {
  const std::string text = R"({"a":"[[[[[[[[{{{{{{","b":"\"[[[[[[\\"})";
  EXPECT_FALSE(json_nests_deeper_than(text, 1));
}

TEST(JsonDepth, EscapedQuoteDoesNotEndAString) {
  EXPECT_FALSE(json_nests_deeper_than(R"(["a\"[[[[", 1])", 1));
  // An escaped backslash before the quote does end it.
  EXPECT_TRUE(json_nests_deeper_than(R"(["a\\", [[1]]])", 2));
}

TEST(JsonDepth, HugeNestingStopsEarlyWithoutAllocating) {
  EXPECT_TRUE(json_nests_deeper_than(nested(1000000, '{', '}'), 256));
}

TEST(JsonDepth, InvalidJsonIsScannedAllTheSame) {
  EXPECT_TRUE(json_nests_deeper_than("[[[[[[", 5));
  EXPECT_FALSE(json_nests_deeper_than("]]]]][[", 2));
}

}  // namespace
}  // namespace sweepd::core
