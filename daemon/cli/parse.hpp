#pragma once

// sweepctl's command-line values: numbers and durations, and the typed protocol request each
// daemon command builds from its arguments. Nothing here sends anything: a value is refused with a
// message naming its option before any request leaves sweepctl.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "cli/commands.hpp"
#include "core/json_text.hpp"
#include "core/protocol.hpp"

namespace sweepd::cli {

/// A number parsed from the command line, or the reason it was refused (naming the option).
struct parsed_number {
  std::optional<double> value;
  std::string problem;
};

/// A finite number ("0.93", "-1e-3"); never inf or nan.
parsed_number parse_finite(std::string_view option, std::string_view text);
/// A duration in seconds, with an optional unit: "90", "1.5", "90s", "15m", "2h", "1d".
parsed_number parse_duration(std::string_view option, std::string_view text);

/// Reads a command's typed values from its arguments, checking each against what sweepd accepts;
/// keeps the first problem, which names the option.
class option_reader {
 public:
  explicit option_reader(const arguments& args) : args_(args) {}

  bool ok() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }
  /// Records `problem` unless an earlier one is kept.
  void fail(std::string problem);

  /// The first operand as a run id; the argument parser has checked that it is there.
  std::string run_operand();
  /// The option's text as given.
  std::optional<std::string> text(std::string_view option) const;
  /// True when the flag was given.
  bool flag(std::string_view option) const { return args_.has(option); }
  /// One of the run states by name.
  std::optional<core::run_state> state(std::string_view option);
  /// A whole number in [lo, hi].
  std::optional<std::size_t> count(std::string_view option, std::size_t lo, std::size_t hi);
  /// A finite number, at least `min` when given.
  std::optional<double> number(std::string_view option, std::optional<double> min = {});
  /// Seconds (units allowed), up to a year; `positive` refuses zero.
  std::optional<double> duration(std::string_view option, bool positive);
  /// A JSON object of at most `max_bytes` (compact); null when the option is absent.
  core::json_text json_object(std::string_view option, std::size_t max_bytes);
  /// A cursor from the "next" of an earlier page in `order`.
  std::optional<core::page_cursor> cursor(std::string_view option, core::page_order order);

 private:
  const arguments& args_;
  std::string problem_;
};

/// A request built from a command line, or the usage problem (naming the option) that stops it.
struct parsed_request {
  std::optional<core::request> req;
  std::string problem;
};

/// The request that the daemon command `command` ("list", "register", …) sends for `args`; a
/// problem for a command that sends none.
parsed_request request_from(std::string_view command, const arguments& args);

}  // namespace sweepd::cli
