#pragma once

// Boost.System's result rather than a hand-written one: it is in the Boost we already build
// against (1.81), has value/error access, result<void, E> and monadic `&` chaining, and a wrong
// access is a located exception instead of undefined behaviour. Header-only: core stays free of
// I/O and of any compiled Boost library.
#include <boost/system/result.hpp>
#include <ostream>
#include <stdexcept>
#include <string>

namespace sweepd::core {

/// Why an operation on the outside world (a file, a socket, the journal, W&B) failed: one line
/// for the log or the operator that names what failed (the path, the host) and never a secret.
/// Protocol errors, which carry a wire code, are core::error (errors.hpp).
struct failure {
  std::string message;

  friend bool operator==(const failure&, const failure&) = default;
  /// The message; lets gtest (and result's own operator<<) print a result.
  friend std::ostream& operator<<(std::ostream& os, const failure& f) { return os << f.message; }
};

/// A T, or why there is none: `if (!r) log(r.error().message); use(*r);`. The error type is
/// `failure` unless a caller needs more (say, to tell a missing file from an unreadable one).
template <class T, class E = failure>
using result = boost::system::result<T, E>;

// In an inline namespace because GCC's -Wshadow takes the scoped enumerator run_state::success
// for a shadow of a namespace-scope `success` whenever run.hpp is read after this header.
inline namespace results {
/// A result<void> that succeeded, for tests: EXPECT_EQ(j.commit(...), core::success) prints the
/// failure's message when there is one.
inline const result<void> success{};
}  // namespace results

/// Called by result::value() on an error: reading a value that is not there is a bug, so it
/// throws (and names the failure) rather than carry on.
[[noreturn]] inline void throw_exception_from_error(const failure& f,
                                                    const boost::source_location&) {
  throw std::logic_error("result holds a failure: " + f.message);
}

}  // namespace sweepd::core
