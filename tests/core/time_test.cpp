#include "core/time.hpp"

#include <gtest/gtest.h>

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;

TEST(FormatUtc, PrintsIso8601WithMilliseconds) {
  const wall_time t =
      wall_time{} + std::chrono::seconds(1795900000) + std::chrono::milliseconds(42);
  EXPECT_EQ(format_utc(t), "2026-11-28T21:06:40.042Z");
}

TEST(FormatUtc, EpochIsMidnight) { EXPECT_EQ(format_utc(wall_time{}), "1970-01-01T00:00:00.000Z"); }

// 2023-11-05T17:46:35Z, the W&B SDK fixture's time, worked out independently.
const wall_time fixture = wall_time{} + 1699206395s;

TEST(ParseIso8601Utc, NoZoneIsUtc) {
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35"), fixture);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35Z"), fixture);
  EXPECT_EQ(parse_iso8601_utc("1970-01-01T00:00:00"), wall_time{});
  EXPECT_EQ(parse_iso8601_utc("1969-12-31T23:59:59Z"), wall_time{} - 1s);
}

TEST(ParseIso8601Utc, FractionOfAnyLengthIsKeptToTheNanosecond) {
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35.5"), fixture + 500ms);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35.120Z"), fixture + 120ms);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35.123456"), fixture + 123456us);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35.123456789987654321Z"), fixture + 123456789ns);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35.000"), fixture);
  EXPECT_EQ(parse_iso8601_utc("1969-12-31T23:59:59.25Z"), wall_time{} - 750ms);
}

TEST(ParseIso8601Utc, OffsetIsSubtractedToGetUtc) {
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T19:46:35+02:00"), fixture);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T12:16:35-05:30"), fixture);
  EXPECT_EQ(parse_iso8601_utc("2023-11-06T01:46:35.250+08:00"), fixture + 250ms);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35+00:00"), fixture);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35-00:00"), fixture);
}

TEST(ParseIso8601Utc, RoundTripsFormatUtc) {
  const wall_time t = wall_time{} + 1795900000s + 42ms;
  EXPECT_EQ(parse_iso8601_utc(format_utc(t)), t);
}

TEST(ParseIso8601Utc, CalendarIsChecked) {
  EXPECT_EQ(parse_iso8601_utc("2024-02-29T00:00:00"), wall_time{} + 1709164800s);
  EXPECT_EQ(parse_iso8601_utc("2023-02-29T00:00:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("1900-02-29T00:00:00"), std::nullopt);
  EXPECT_TRUE(parse_iso8601_utc("2000-02-29T00:00:00"));
  EXPECT_EQ(parse_iso8601_utc("2023-04-31T00:00:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("2023-13-01T00:00:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("2023-00-01T00:00:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("2023-01-00T00:00:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T24:00:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:60:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("2023-12-31T23:59:60Z"), std::nullopt);  // no leap seconds
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35+24:00"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("2023-11-05T17:46:35+02:60"), std::nullopt);
}

TEST(ParseIso8601Utc, TimesTheClockCannotHoldAreRefused) {
  EXPECT_TRUE(parse_iso8601_utc("2261-12-31T23:59:59.999999999Z"));
  EXPECT_TRUE(parse_iso8601_utc("1678-01-01T00:00:00Z"));
  EXPECT_EQ(parse_iso8601_utc("2263-01-01T00:00:00Z"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("9999-12-31T23:59:59Z"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("1677-01-01T00:00:00Z"), std::nullopt);
  EXPECT_EQ(parse_iso8601_utc("0000-01-01T00:00:00Z"), std::nullopt);
}

TEST(ParseIso8601Utc, AnythingElseIsNullopt) {
  for (const char* text : {
           "",
           "2023-11-05",
           "2023-11-05T17:46",
           "2023-11-05 17:46:35",   // RFC 3339 allows the space; W&B does not send it
           "2023-11-05t17:46:35",   // nor a lower-case t or z
           "2023-11-05T17:46:35z",  //
           "2023-11-05T17:46:35.",  // a point needs digits
           "2023-11-05T17:46:35,5",
           "2023-11-05T17:46:35ZZ",
           "2023-11-05T17:46:35Z ",
           " 2023-11-05T17:46:35",
           "2023-11-05T17:46:35+02",
           "2023-11-05T17:46:35+0200",
           "2023-11-05T17:46:35+02:00:00",
           "2023-11-05T17:46:35 +02:00",
           "2023-11-05T17:46:35UTC",
           "2023-1-05T17:46:35",
           "+2023-11-05T17:46:35",
           "-023-11-05T17:46:35",
           "2023-+1-05T17:46:35",
           "2023-11-05T17:4 :35",
           "20231105T174635Z",
           "1699206395",
           "2023-11-05T17:46:35.5x",
       }) {
    EXPECT_EQ(parse_iso8601_utc(text), std::nullopt) << '"' << text << '"';
  }
  // An embedded NUL is not the end of the text.
  EXPECT_EQ(parse_iso8601_utc(std::string_view("2023-11-05T17:46:35\0Z", 21)), std::nullopt);
}

}  // namespace
}  // namespace sweepd::core
