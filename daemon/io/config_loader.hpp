#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "core/result.hpp"

namespace sweepd::io {

/// Every problem found in a config (never none), each as "file:line:col: message": one run of
/// --check-config shows them all, so a single core::failure would not do.
struct config_problems {
  std::vector<std::string> messages;

  /// One problem a line; lets gtest print a result.
  friend std::ostream& operator<<(std::ostream& os, const config_problems& p) {
    for (const auto& m : p.messages) os << m << '\n';
    return os;
  }
};

/// Called by result::value() on problems: reading a config that is not there is a bug.
[[noreturn]] void throw_exception_from_error(const config_problems& p,
                                             const boost::source_location& where);

/// A config, or every problem found.
using config_load_result = core::result<core::config, config_problems>;

/// Reads and validates a YAML config file (DESIGN §6). Unknown keys and ill-typed or out-of-range
/// values are errors located at their line and column; a missing key keeps its default.
config_load_result load_config_file(const std::string& path);

/// The same for text already in memory; `file_name` is used in the error locations.
config_load_result parse_config_text(std::string_view text, std::string_view file_name);

}  // namespace sweepd::io
