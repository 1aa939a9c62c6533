#pragma once

#include <string>
#include <string_view>

#include "core/enum_print.hpp"

namespace sweepd::core {

/// Error codes of protocol v1 (DESIGN §3). `ok` is not an error and is never sent as a code.
enum class error_code {
  ok,
  bad_json,
  bad_request,
  unknown_op,
  unknown_run,
  conflict,
  forbidden,
  too_large,
  busy,
  unavailable,  // a dependency (W&B) is off or unreachable for this op
  internal,
};

/// Every code a reply can carry (all but `ok`).
inline constexpr error_code all_error_codes[] = {error_code::bad_json,    error_code::bad_request,
                                                 error_code::unknown_op,  error_code::unknown_run,
                                                 error_code::conflict,    error_code::forbidden,
                                                 error_code::too_large,   error_code::busy,
                                                 error_code::unavailable, error_code::internal};

/// The wire name of a code, e.g. "bad_request".
std::string_view to_string(error_code code);

/// An error as a value: what went wrong and a message that names the field or the limit.
struct error {
  error_code code = error_code::ok;
  std::string message;
};

}  // namespace sweepd::core
