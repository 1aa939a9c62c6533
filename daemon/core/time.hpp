#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sweepd::core {

/// The daemon's monotonic clock: every deadline is measured on it.
using mono_clock = std::chrono::steady_clock;
using mono_time = mono_clock::time_point;
/// Wall-clock time, only for what people and W&B read (transition timestamps).
using wall_time = std::chrono::system_clock::time_point;
/// Durations are seconds with fractions, as in the config and the protocol.
using seconds_d = std::chrono::duration<double>;

/// "Now" as the core sees it: injected by the caller, never read from a clock here.
struct instant {
  mono_time mono;
  wall_time wall;
};

/// Converts fractional seconds to the monotonic clock's duration (rounded to nanoseconds).
inline mono_clock::duration to_duration(double seconds) {
  // Rounded, not truncated: 1.001 s is not exact in binary and would lose a nanosecond (and one
  // more on each journal round trip).
  return std::chrono::round<mono_clock::duration>(seconds_d(seconds));
}

/// Seconds between two monotonic points as a double.
inline double seconds_between(mono_time from, mono_time to) {
  return std::chrono::duration_cast<seconds_d>(to - from).count();
}

/// ISO-8601 UTC with milliseconds, e.g. "2026-11-28T21:05:53.120Z".
std::string format_utc(wall_time t);

/// Reads W&B's `createdAt`/`heartbeatAt`: "YYYY-MM-DDTHH:MM:SS", an optional fraction (any number
/// of digits, kept to the nanosecond), then "Z", "±HH:MM" or nothing (UTC). Nullopt for any other
/// text, an impossible date or time, or one the clock cannot hold.
std::optional<wall_time> parse_iso8601_utc(std::string_view text);

}  // namespace sweepd::core
