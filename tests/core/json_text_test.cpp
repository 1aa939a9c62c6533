#include "core/json_text.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace sweepd::core {
namespace {

using json = nlohmann::json;

TEST(JsonText, NullHoldsNoText) {
  EXPECT_TRUE(json_text().is_null());
  EXPECT_TRUE(json_text(json()).is_null());
  EXPECT_EQ(json_text().text(), "");
  EXPECT_TRUE(json_text().value().is_null());
  // Stored "null" is the same null, so that equal values compare equal.
  EXPECT_EQ(json_text::from_text("null"), json_text());
}

TEST(JsonText, KeepsTheCompactDumpAndGivesTheSameValueBack) {
  const json v = json::parse(R"({"lr": 1e-5, "layers": [64, 32.5, -1], "opt": {"name": "sgd",
      "nesterov": true, "decay": null}, "tag": "caf\u00e9 \"q\" \\ \n"})");
  const json_text t(v);
  EXPECT_EQ(t.text(), v.dump());
  EXPECT_EQ(t.value(), v);
  // What a reply dumps is byte for byte what dumping the original gave.
  EXPECT_EQ(t.value().dump(), v.dump());
  // And a text read back as it was stored is the same value again.
  EXPECT_EQ(json_text::from_text(t.text()), t);
  EXPECT_EQ(json_text::from_text(t.text()).value().dump(), v.dump());
}

TEST(JsonText, NumbersSurviveTheRoundTripExactly) {
  for (double d : {0.1, 1.0 / 3.0, 2.5e-300, 1.7976931348623157e308, -0.0, 123456789.125}) {
    const json v = {{"x", d}};
    EXPECT_EQ(json_text(v).value(), v) << d;
    EXPECT_EQ(json_text(v).value().dump(), v.dump()) << d;
  }
  const json big = {{"n", 18446744073709551615u}, {"i", -9223372036854775807LL - 1}};
  EXPECT_EQ(json_text(big).value().dump(), big.dump());
}

TEST(JsonText, AcceptsOnlyJson) {
  EXPECT_TRUE(json_text::accepts(R"({"a":[1,2]})"));
  EXPECT_FALSE(json_text::accepts(R"({"a":[1,2})"));
  EXPECT_FALSE(json_text::accepts("lr=0.1"));
  EXPECT_FALSE(json_text::accepts(""));
}

TEST(JsonText, PrintsItsText) {
  std::ostringstream out;
  out << json_text(json{{"a", 1}}) << ' ' << json_text();
  EXPECT_EQ(out.str(), R"({"a":1} null)");
}

}  // namespace
}  // namespace sweepd::core
