// sweepctl, the command-line client of sweepd (DESIGN §7): parses argv and runs one command.
//
// The argv parser below is hand-written on purpose. Debian does package CLI11 and cxxopts, but
// sweepctl's grammar is small (a dozen commands, a few long options each) and its contract is
// specific: usage errors exit 2 and name the option, global options may stand before or after the
// command, after the command name a command's own option (heartbeat --timeout) shadows the global
// one of the same name, and --help is worded and laid out by us. Getting all of that from a
// library means working against its defaults, for one more build dependency on every machine;
// a hundred lines of plain code are the simpler right thing.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "cli/commands.hpp"
#include "cli/parse.hpp"
#include "cli/spool.hpp"
#include "core/version.hpp"

namespace {

using namespace sweepd::cli;

/// The whole command line after parsing.
struct command_line {
  global_options global;
  const command* cmd = nullptr;
  arguments args;
  bool help = false;
  bool version = false;
  bool unknown_command = false;
  std::string problem;                    // the first usage error, if any
  std::optional<std::string> address;     // --address or --socket, in the order given
  std::optional<std::string> token_file;  // --token-file
};

std::string environment(const char* name) { return process_environment()(name).value_or(""); }

/// --address/--socket, else $SWEEPD_ADDRESS, else $SWEEPD_SOCKET, else the packaged socket.
std::string default_address() {
  if (auto a = environment("SWEEPD_ADDRESS"); !a.empty()) return a;
  if (auto s = environment("SWEEPD_SOCKET"); !s.empty()) return s;
  return std::string(default_socket_path);
}

const option_spec* find_global_option(std::string_view name) {
  for (const option_spec& o : global_option_specs()) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

void fail(command_line& line, std::string problem) {
  if (line.problem.empty()) line.problem = std::move(problem);
}

/// The token file's first line, without surrounding blanks; a usage problem otherwise.
std::optional<std::string> read_token_file(const std::string& path, std::string& problem) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) {
    problem = fmt::format("option '--token-file': cannot read {}", path);
    return std::nullopt;
  }
  const auto first = token.find_first_not_of(" \t\r");
  const auto last = token.find_last_not_of(" \t\r");
  if (first == std::string::npos) {
    problem = fmt::format("option '--token-file': {} starts with an empty line", path);
    return std::nullopt;
  }
  return token.substr(first, last - first + 1);
}

/// Where to reach sweepd and, for the TLS listener, with which token.
void resolve_address(command_line& line) {
  const std::string text = line.address.value_or(default_address());
  auto address = sweepd::io::parse_daemon_address(text);
  if (!address) return fail(line, address.error().message);
  line.global.address = std::move(*address);
  line.global.socket = text.starts_with("unix:") ? text.substr(5) : text;
  if (!line.global.address.remote) return;
  if (line.global.tls.ca_file.empty()) line.global.tls.ca_file = environment("SWEEPD_CA_FILE");
  if (line.token_file) {
    std::string problem;
    auto token = read_token_file(*line.token_file, problem);
    if (!token) return fail(line, problem);
    line.global.token = std::move(*token);
  } else {
    line.global.token = environment("SWEEPD_TOKEN");
  }
  if (line.global.token.empty()) {
    fail(line, fmt::format("{} is a remote address: give its token in $SWEEPD_TOKEN or with "
                           "--token-file FILE",
                           text));
  }
}

void apply_global_option(command_line& line, std::string_view name, const std::string& value) {
  if (name == "--json") {
    line.global.json = true;
  } else if (name == "--socket" || name == "--address") {
    if (value.empty()) return fail(line, fmt::format("option '{}': it is empty", name));
    line.address = name == "--socket" ? "unix:" + value : value;
  } else if (name == "--token-file") {
    line.token_file = value;
  } else if (name == "--ca-file") {
    line.global.tls.ca_file = value;
  } else if (name == "--timeout") {
    const parsed_number seconds = parse_duration(name, value);
    if (!seconds.value) return fail(line, seconds.problem);
    if (*seconds.value <= 0 || *seconds.value > max_timeout_s) {
      return fail(line, fmt::format("option '--timeout': expected more than 0 and at most {} "
                                    "seconds, got '{}'",
                                    max_timeout_s, value));
    }
    using ms = std::chrono::milliseconds;
    line.global.timeout = std::max(ms(1), ms(static_cast<ms::rep>(*seconds.value * 1000)));
    line.global.timeout_given = true;
  }
}

/// Reads the option at args[i] ("--name", "--name=value" or "--name value", which moves i on).
/// After the command name, the command's own options come first, then the global ones.
void read_option(command_line& line, std::span<char* const> args, std::size_t& i) {
  const std::string_view arg = args[i];
  std::string_view name = arg;
  std::optional<std::string_view> inline_value;
  if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
    name = arg.substr(0, eq);
    inline_value = arg.substr(eq + 1);
  }
  if (name == "-h" || name == "--help") {
    line.help = true;
    return;
  }
  if (name == "--version") {
    line.version = true;
    return;
  }
  const option_spec* spec = line.cmd != nullptr ? line.cmd->find_option(name) : nullptr;
  const bool global = spec == nullptr;
  if (global) spec = find_global_option(name);
  if (spec == nullptr) {
    return fail(line, line.cmd != nullptr
                          ? fmt::format("unknown option '{}' for '{}'", name, line.cmd->name)
                          : fmt::format("unknown option '{}'", name));
  }
  std::string value;
  if (spec->value_name.empty()) {
    if (inline_value) return fail(line, fmt::format("option '{}' takes no value", name));
  } else if (inline_value) {
    value = *inline_value;
  } else if (i + 1 < args.size()) {
    value = args[++i];
  } else {
    return fail(line, fmt::format("option '{}' needs a value ({})", name, spec->value_name));
  }
  if (global) {
    apply_global_option(line, name, value);
  } else {
    line.args.options[std::string(name)] = std::move(value);
  }
}

/// The first operand names the command; "--" makes everything after it an operand.
command_line parse_command_line(std::span<char* const> args) {
  command_line line;
  bool operands_only = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (!operands_only && arg == "--") {
      operands_only = true;
    } else if (!operands_only && arg.size() > 1 && arg.front() == '-') {
      read_option(line, args, i);
    } else if (line.cmd == nullptr) {
      line.cmd = find_command(arg);
      if (line.cmd == nullptr) {
        line.unknown_command = true;
        line.problem = fmt::format("unknown command '{}'", arg);
        return line;
      }
    } else {
      line.args.operands.emplace_back(arg);
    }
  }
  return line;
}

void check_operands(command_line& line) {
  const command& cmd = *line.cmd;
  const auto& operands = line.args.operands;
  if (operands.size() < cmd.min_operands) {
    fail(line,
         fmt::format("missing {} (usage: sweepctl {} {})", cmd.operands, cmd.name, cmd.operands));
  } else if (operands.size() > cmd.max_operands) {
    fail(line,
         fmt::format("unexpected argument '{}' for '{}'", operands[cmd.max_operands], cmd.name));
  }
}

int usage_error(const command_line& line) {
  const std::string help =
      line.cmd != nullptr ? fmt::format("sweepctl {} --help", line.cmd->name) : "sweepctl --help";
  std::cerr << fmt::format("sweepctl: {}\nTry '{}'.\n", line.problem, help);
  return exit_usage;
}

int run(std::span<char* const> args) {
  command_line line = parse_command_line(args);
  if (line.unknown_command) return usage_error(line);
  if (line.help) {
    std::cout << (line.cmd != nullptr ? command_usage(*line.cmd) : program_usage());
    return exit_ok;
  }
  if (line.version) {
    std::cout << "sweepctl " << sweepd::core::version << '\n';
    return exit_ok;
  }
  if (line.cmd == nullptr && line.problem.empty()) {
    std::cerr << "sweepctl: no command given\n\n" << program_usage();
    return exit_usage;
  }
  if (line.cmd != nullptr) check_operands(line);
  if (line.cmd != nullptr && line.cmd->name != "token") resolve_address(line);
  if (!line.problem.empty()) return usage_error(line);
  const invocation in{*line.cmd, line.global, line.args, std::cout, std::cerr};
  const int status = line.cmd->run(in);
  if (!std::cout.flush()) {
    std::cerr << "sweepctl: cannot write to standard output\n";
    return exit_daemon_error;
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::span<char* const>(argv, static_cast<std::size_t>(argc)).subspan(1));
  } catch (const std::exception& e) {
    std::cerr << "sweepctl: internal error: " << e.what() << '\n';
    return exit_daemon_error;
  }
}
