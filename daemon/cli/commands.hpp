#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/tls_client.hpp"

namespace sweepd::cli {

/// sweepctl's exit statuses, as --help lists them.
inline constexpr int exit_ok = 0;
inline constexpr int exit_daemon_error = 1;  // sweepd answered with an error (or nonsense)
inline constexpr int exit_usage = 2;         // bad command line; nothing was sent
inline constexpr int exit_unreachable = 3;   // sweepd could not be reached or did not answer
/// sweepd's TLS listener refused the hello: the token is not (or no longer) accepted, or too many
/// failed attempts came from this address. Apart from 3 because waiting for sweepd will not help.
inline constexpr int exit_refused = 4;

inline constexpr std::string_view default_socket_path = "/run/sweepd/sweepd.sock";
inline constexpr std::chrono::seconds default_timeout{10};
/// How long `reconcile` waits by default: it reads every page of a sweep from W&B.
inline constexpr std::chrono::minutes default_reconcile_timeout{10};
/// Longest --timeout accepted: a day (poll() takes milliseconds as an int).
inline constexpr double max_timeout_s = 86400;

/// Options that apply to every command; they may stand before or after the command name.
struct global_options {
  /// Where sweepd is, as people read it: the socket path or "tls://HOST:PORT".
  std::string socket;
  io::daemon_address address;  // `socket` parsed
  io::tls_client_options tls;  // --ca-file
  std::string token;           // remote only: $SWEEPD_TOKEN or --token-file
  bool json = false;
  std::chrono::milliseconds timeout = default_timeout;
  bool timeout_given = false;  // --timeout was on the command line
};

/// A command's own arguments after parsing: operands in order, option values by name.
struct arguments {
  std::vector<std::string> operands;
  std::map<std::string, std::string, std::less<>> options;  // "--sweep" → "s1"; flags → ""

  bool has(std::string_view option) const { return options.find(option) != options.end(); }
  /// The option's value, or nullptr when it was not given.
  const std::string* value(std::string_view option) const;
};

/// One option as the parser knows it and --help shows it.
struct option_spec {
  std::string_view name;        // "--sweep"
  std::string_view value_name;  // "S"; empty for a flag
  std::string_view help;
};

struct command;

/// Everything a command needs to run: its parsed arguments and where to write.
struct invocation {
  const command& cmd;
  const global_options& global;
  const arguments& args;
  std::ostream& out;
  std::ostream& err;
};

/// One sweepctl command: what the parser accepts, what --help says, and the function to run.
struct command {
  std::string_view name;
  std::string_view operands;  // for the usage line, e.g. "RUN [MESSAGE]"
  std::string_view summary;   // one line in `sweepctl --help`
  std::string_view details;   // more lines for `sweepctl NAME --help`; may be empty
  std::vector<option_spec> options;
  std::size_t min_operands = 0;
  std::size_t max_operands = 0;
  int (*run)(const invocation&) = nullptr;

  const option_spec* find_option(std::string_view option) const;
};

/// Every command, in the order `sweepctl --help` lists them.
const std::vector<command>& all_commands();
/// The command called `name`, or nullptr.
const command* find_command(std::string_view name);
/// The options every command accepts (--socket, --json, --timeout, --help, --version).
const std::vector<option_spec>& global_option_specs();

/// `sweepctl --help`.
std::string program_usage();
/// `sweepctl NAME --help`: the usage line, what it does, and every option it takes.
std::string command_usage(const command& cmd);

}  // namespace sweepd::cli
