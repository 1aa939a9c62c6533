#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace sweepd::app {

/// What `sweepd` was asked to do on its command line.
struct options {
  enum class action { run, check_config, version, help };
  action what = action::run;
  std::optional<std::string> config_path;  // none: the default path if it exists, else defaults
};

/// The config read when --config is not given.
inline constexpr const char* default_config_path = "/etc/sweepd/sweepd.yaml";

/// Parses argv (without argv[0]); a failure naming the bad argument otherwise.
core::result<options> parse_options(const std::vector<std::string>& args);

/// `sweepd --help`.
std::string usage();

}  // namespace sweepd::app
