#pragma once

// Beside the enums rather than in a test header: every test file that sees an enum then prints
// it the same way (a printer some test files include and others not would be an ODR violation,
// and a failing EXPECT_EQ would show "4-byte object <02-00 00-00>" wherever it was left out).

#include <concepts>
#include <ostream>
#include <string_view>
#include <type_traits>

namespace sweepd::core {

/// An enum of ours with a to_string() naming its values.
template <class E>
concept named_enum = std::is_enum_v<E> && requires(E e) {
  { to_string(e) } -> std::convertible_to<std::string_view>;
};

/// GoogleTest's printer hook (found by argument-dependent lookup): a failing assertion on a run
/// state, reason, error code or mode shows its name, e.g. "running", instead of its bytes.
template <named_enum E>
void PrintTo(const E& value, std::ostream* os) {
  *os << to_string(value);
}

}  // namespace sweepd::core
