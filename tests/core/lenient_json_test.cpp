#include "core/lenient_json.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace sweepd::core {
namespace {

using json = nlohmann::json;

TEST(LenientJson, BareTokensBecomeNonFiniteNumbers) {
  const lenient_parse p =
      parse_lenient_json(R"({"a": NaN, "b": Infinity, "c": -Infinity, "d": [1, NaN]})", 8);
  ASSERT_EQ(p.problem, "");
  ASSERT_TRUE(p.value.is_object());
  EXPECT_TRUE(std::isnan(nonfinite_of(p.value["a"]).value()));
  EXPECT_EQ(nonfinite_of(p.value["b"]), INFINITY);
  EXPECT_EQ(nonfinite_of(p.value["c"]), -INFINITY);
  EXPECT_EQ(nonfinite_token_of(p.value["c"]), "-Infinity");
  EXPECT_EQ(nonfinite_token_of(p.value["d"][1]), "NaN");
  EXPECT_EQ(nonfinite_of(p.value["d"][0]), std::nullopt);  // a real number is not a stand-in
}

TEST(LenientJson, TokensInsideStringsAndKeysStayText) {
  const lenient_parse p =
      parse_lenient_json(R"({"NaN": "NaN and \"Infinity\"", "x\\": "-Infinity"})", 8);
  ASSERT_EQ(p.problem, "");
  EXPECT_EQ(p.value["NaN"], "NaN and \"Infinity\"");
  EXPECT_EQ(p.value["x\\"], "-Infinity");
  EXPECT_EQ(nonfinite_of(p.value["NaN"]), std::nullopt);
  EXPECT_EQ(nonfinite_of(p.value["x\\"]), std::nullopt);
}

TEST(LenientJson, TextSpellingAStandInReadsAsItsToken) {
  // JSON text can spell a stand-in with \u0000; it then reads as the token it stands for, which
  // is no worse than the bare token itself (both are judged non-finite).
  const lenient_parse p = parse_lenient_json(R"({"a": "\u0000sweepd:NaN"})", 8);
  ASSERT_EQ(p.problem, "");
  EXPECT_EQ(nonfinite_token_of(p.value["a"]), "NaN");
}

TEST(LenientJson, DumpWritesTheBareTokensBack) {
  const std::string text = R"({"a":NaN,"b":[Infinity,-Infinity],"c":"NaN"})";
  const lenient_parse p = parse_lenient_json(text, 8);
  ASSERT_EQ(p.problem, "");
  EXPECT_EQ(dump_lenient_json(p.value), text);
}

TEST(LenientJson, InvalidTextSaysSo) {
  for (const char* text :
       {"", "objective=0.9", "{\"a\": NaNa}", "{\"a\": 1", "{\"a\": nan}", "{\"a\": - Infinity}"}) {
    const lenient_parse p = parse_lenient_json(text, 8);
    EXPECT_EQ(p.problem, "not valid JSON") << text;
    EXPECT_TRUE(p.value.is_discarded()) << text;
  }
}

TEST(LenientJson, NestingDeeperThanTheBoundIsRefused) {
  EXPECT_EQ(parse_lenient_json("[[[1]]]", 3).problem, "");
  EXPECT_EQ(parse_lenient_json("[[[[1]]]]", 3).problem, "nested deeper than 3 levels");
  EXPECT_EQ(parse_lenient_json(R"({"a":{"b":{"c":{}}}})", 3).problem,
            "nested deeper than 3 levels");
  // Brackets inside strings do not count; closed ones free their level.
  EXPECT_EQ(parse_lenient_json(R"(["[[[[", [1], [2], [3]])", 2).problem, "");
  // A million levels neither overflow the stack nor get parsed.
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  EXPECT_EQ(parse_lenient_json(deep, 64).problem, "nested deeper than 64 levels");
}

TEST(LenientJson, TopLevelScalarsParse) {
  EXPECT_EQ(parse_lenient_json("  0.93 ", 1).value, 0.93);
  EXPECT_EQ(nonfinite_token_of(parse_lenient_json("NaN", 1).value), "NaN");
  EXPECT_TRUE(parse_lenient_json("null", 1).value.is_null());
}

}  // namespace
}  // namespace sweepd::core
