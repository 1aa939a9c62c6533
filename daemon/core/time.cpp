#include "core/time.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <ctime>

namespace sweepd::core {

namespace {

/// The number written by the `count` characters at the start of `text`; nullopt unless all are
/// ASCII digits (by hand: std::isdigit and from_chars would accept more, or depend on the locale).
std::optional<int> digits(std::string_view text, std::size_t count) {
  if (text.size() < count) return std::nullopt;
  int value = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

}  // namespace

std::string format_utc(wall_time t) {
  const auto since_epoch = t.time_since_epoch();
  const auto secs = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs);
  const std::time_t tt = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis.count());
}

std::optional<wall_time> parse_iso8601_utc(std::string_view text) {
  using namespace std::chrono;
  if (text.size() < 19 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':') {
    return std::nullopt;
  }
  const auto y = digits(text, 4);
  const auto mo = digits(text.substr(5), 2);
  const auto d = digits(text.substr(8), 2);
  const auto h = digits(text.substr(11), 2);
  const auto mi = digits(text.substr(14), 2);
  const auto s = digits(text.substr(17), 2);
  if (!y || !mo || !d || !h || !mi || !s) return std::nullopt;
  const year_month_day date{year(*y), month(static_cast<unsigned>(*mo)),
                            day(static_cast<unsigned>(*d))};
  // No leap second: the clock has no room for one and W&B's server clock does not emit them.
  if (!date.ok() || *h > 23 || *mi > 59 || *s > 59) return std::nullopt;
  text.remove_prefix(19);

  std::int64_t fraction_ns = 0;
  if (!text.empty() && text.front() == '.') {
    text.remove_prefix(1);
    std::size_t n = 0;
    for (; n < text.size() && text[n] >= '0' && text[n] <= '9'; ++n) {
      if (n < 9) fraction_ns = fraction_ns * 10 + (text[n] - '0');
    }
    if (n == 0) return std::nullopt;
    for (std::size_t i = n; i < 9; ++i) fraction_ns *= 10;
    text.remove_prefix(n);
  }

  minutes offset{0};
  if (!text.empty() && text != "Z") {
    if (text.size() != 6 || (text[0] != '+' && text[0] != '-') || text[3] != ':') {
      return std::nullopt;
    }
    const auto oh = digits(text.substr(1), 2);
    const auto om = digits(text.substr(4), 2);
    if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
    offset = hours(*oh) + minutes(*om);
    if (text[0] == '-') offset = -offset;
  }

  // The local time minus its offset is UTC.
  const seconds since_epoch =
      sys_days(date).time_since_epoch() + hours(*h) + minutes(*mi) + seconds(*s) - offset;
  // wall_time counts nanoseconds in 64 bits (about the years 1678 to 2261); keep a second clear
  // of either end for the fraction.
  constexpr seconds limit = floor<seconds>(wall_time::duration::max()) - seconds(1);
  if (since_epoch >= limit || since_epoch <= -limit) return std::nullopt;
  return wall_time{} + duration_cast<wall_time::duration>(since_epoch) +
         duration_cast<wall_time::duration>(nanoseconds(fraction_ns));
}

}  // namespace sweepd::core
