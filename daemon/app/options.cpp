#include "app/options.hpp"

#include <fmt/format.h>

namespace sweepd::app {

namespace {

/// Splits "--name=value" into its parts; value is nullopt without '='.
std::pair<std::string, std::optional<std::string>> split_flag(const std::string& arg) {
  const auto eq = arg.find('=');
  if (arg.rfind("--", 0) != 0 || eq == std::string::npos) return {arg, std::nullopt};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

}  // namespace

core::result<options> parse_options(const std::vector<std::string>& args) {
  options opts;
  for (std::size_t i = 0; i < args.size(); ++i) {
    // Named references, not a structured binding: clang before 16 cannot capture a binding.
    const auto split = split_flag(args[i]);
    const std::string& flag = split.first;
    const std::optional<std::string>& inline_value = split.second;
    auto value = [&]() -> std::optional<std::string> {
      if (inline_value) return inline_value;
      if (i + 1 < args.size()) return args[++i];
      return std::nullopt;
    };
    if (flag == "--help" || flag == "-h") {
      opts.what = options::action::help;
    } else if (flag == "--version") {
      opts.what = options::action::version;
    } else if (flag == "--config" || flag == "-c" || flag == "--check-config") {
      auto path = value();
      if (!path || path->empty()) return core::failure{fmt::format("{} needs a file path", flag)};
      opts.config_path = *path;
      if (flag == "--check-config") opts.what = options::action::check_config;
    } else {
      return core::failure{fmt::format("unknown argument '{}' (see sweepd --help)", args[i])};
    }
  }
  return opts;
}

std::string usage() {
  return fmt::format(
      "Usage: sweepd [--config FILE]\n"
      "       sweepd --check-config FILE\n"
      "       sweepd --version | --help\n"
      "\n"
      "Supervises hyperparameter-sweep runs: workers report "
      "register/start/heartbeat/complete/fail\n"
      "over a Unix socket; silent or dead runs become timeout/crashed; every transition is queued\n"
      "for the run's W&B summary. Runs in the foreground and logs to stderr.\n"
      "\n"
      "Options:\n"
      "  -c, --config FILE     YAML config (default {} if it exists, else built-in defaults)\n"
      "  --check-config FILE   validate FILE, print the effective config, exit 0 (valid) or 1\n"
      "  --version             print the version\n"
      "  -h, --help            print this help\n"
      "\n"
      "Signals: SIGTERM/SIGINT stop cleanly (exit 0); SIGHUP reloads the config.\n"
      "Config reference: config/sweepd.yaml. Client: sweepctl --help.\n",
      default_config_path);
}

}  // namespace sweepd::app
