// sweepd: parse the command line, load the config, run the daemon. Everything else is in app/.
#include <spdlog/spdlog.h>

#include <csignal>
#include <filesystem>
#include <iostream>

#include "app/daemon.hpp"
#include "app/options.hpp"
#include "app/wandb_sink.hpp"
#include "core/config.hpp"
#include "core/version.hpp"
#include "io/config_loader.hpp"
#include "io/credentials.hpp"
#include "io/logging.hpp"

namespace {

using sweepd::app::options;

/// Loads the config named on the command line, the default file, or the built-in defaults.
sweepd::io::config_load_result load(const options& opts, std::string& used_path) {
  if (opts.config_path) {
    used_path = *opts.config_path;
  } else if (std::filesystem::exists(sweepd::app::default_config_path)) {
    used_path = sweepd::app::default_config_path;
  } else {
    return sweepd::core::config{};
  }
  return sweepd::io::load_config_file(used_path);
}

}  // namespace

int main(int argc, char** argv) {
  const auto parsed = sweepd::app::parse_options({argv + 1, argv + argc});
  if (!parsed) {
    std::cerr << "sweepd: " << parsed.error().message << "\n";
    return 2;
  }
  const options& opts = *parsed;
  if (opts.what == options::action::help) {
    std::cout << sweepd::app::usage();
    return 0;
  }
  if (opts.what == options::action::version) {
    std::cout << "sweepd " << sweepd::core::version << "\n";
    return 0;
  }
  std::string config_path;
  auto loaded = load(opts, config_path);
  if (!loaded) {
    for (const auto& e : loaded.error().messages) std::cerr << e << "\n";
    return 1;
  }
  if (opts.what == options::action::check_config) {
    // Every check start makes that needs neither the socket nor the state file, with the same
    // message: a config that passes here does not then fail to start for these reasons.
    const auto resolved = sweepd::app::resolve_wandb(*loaded, sweepd::io::process_environment());
    if (!resolved) {
      std::cerr << config_path << ": " << resolved.error().message << "\n";
      return 1;
    }
    const sweepd::app::wandb_setup& wandb = *resolved;
    std::cout << sweepd::core::describe(*loaded) << "\n";
    std::cout << "# wandb: " << sweepd::core::to_string(wandb.mode);
    if (!wandb.key_source.empty()) std::cout << " (key from " << wandb.key_source << ")";
    std::cout << "\n";
    return 0;
  }
  sweepd::io::setup_logging(loaded->log);
  // Over a file-size limit, a write should fail (and be answered `internal`), not kill sweepd.
  if (std::signal(SIGXFSZ, SIG_IGN) == SIG_ERR) {
    spdlog::warn("cannot ignore SIGXFSZ: a write over a file-size limit will stop sweepd");
  }
  try {
    sweepd::app::daemon d(std::move(*loaded), config_path);
    if (auto opened = d.open(); !opened) {
      spdlog::critical("{}", opened.error().message);
      return 1;
    }
    return d.run();
  } catch (const std::exception& e) {
    spdlog::critical("sweepd failed: {}", e.what());
    return 1;
  }
}
