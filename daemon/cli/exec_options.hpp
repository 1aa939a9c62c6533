#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "core/supervisor.hpp"

namespace sweepd::cli {

/// What exec does when sweepd reports the run `timeout` for good (max_runtime or stall).
enum class timeout_action { kill, keep };

/// How often exec sends a heartbeat unless --interval says otherwise.
inline constexpr double default_exec_interval_s = 30;
/// How long a command that sweepd timed out gets between SIGTERM and SIGKILL, by default.
inline constexpr std::chrono::seconds default_kill_grace{30};

/// `sweepctl exec`'s command line, checked.
struct exec_options {
  std::string run;
  core::register_params register_request;  // bound to this process (watch_peer)
  std::optional<std::string> result_file;
  std::chrono::steady_clock::duration interval{};
  timeout_action on_timeout = timeout_action::kill;
  std::chrono::steady_clock::duration kill_grace = default_kill_grace;
  std::optional<std::string> spool_dir;
  std::vector<std::string> argv;
  std::string problem;  // the first usage error, naming the option
};

/// Reads exec's options and operands (the command to run); `problem` is set on the first usage
/// error, and nothing is started then.
exec_options parse_exec_options(const arguments& args);

}  // namespace sweepd::cli
