#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"

namespace sweepd::io {

/// A config, or every problem found, each as "file:line:col: message".
struct config_load_result {
  std::optional<core::config> cfg;
  std::vector<std::string> errors;
};

/// Reads and validates a YAML config file (DESIGN §6). Unknown keys and ill-typed or out-of-range
/// values are errors located at their line and column; a missing key keeps its default.
config_load_result load_config_file(const std::string& path);

/// The same for text already in memory; `file_name` is used in the error locations.
config_load_result parse_config_text(std::string_view text, std::string_view file_name);

}  // namespace sweepd::io
