#pragma once

#include <string_view>

#include "core/config.hpp"

namespace sweepd::io {

/// Sends spdlog's default logger to stderr (journald adds its own timestamps) with the configured
/// level and format: `text` for people, `json` (one object per line) for log shippers.
void setup_logging(const core::config::log_section& log);

}  // namespace sweepd::io
