#pragma once

#include <chrono>
#include <cstddef>
#include <string_view>

#include "core/config.hpp"

namespace sweepd::io {

/// Sends spdlog's default logger to stderr (journald adds its own timestamps) with the configured
/// level and format: `text` for people, `json` (one object per line) for log shippers.
void setup_logging(const core::config::log_section& log);

/// Lets a repeated error through at most once per `every`, counting what it held back, so that a
/// failing disk under load logs a line a second rather than one per request.
class log_limiter {
 public:
  explicit log_limiter(std::chrono::steady_clock::duration every = std::chrono::seconds(1))
      : every_(every) {}

  /// True when the next line may be logged; `suppressed` then says how many were held back since
  /// the last one.
  bool allow(std::chrono::steady_clock::time_point now, std::size_t& suppressed) {
    if (now - last_ < every_ && last_ != std::chrono::steady_clock::time_point{}) {
      ++held_;
      return false;
    }
    last_ = now;
    suppressed = held_;
    held_ = 0;
    return true;
  }

 private:
  std::chrono::steady_clock::duration every_;
  std::chrono::steady_clock::time_point last_{};
  std::size_t held_ = 0;
};

}  // namespace sweepd::io
