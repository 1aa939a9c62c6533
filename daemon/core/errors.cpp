#include "core/errors.hpp"

namespace sweepd::core {

std::string_view to_string(error_code code) {
  switch (code) {
    case error_code::ok:
      return "ok";
    case error_code::bad_json:
      return "bad_json";
    case error_code::bad_request:
      return "bad_request";
    case error_code::unknown_op:
      return "unknown_op";
    case error_code::unknown_run:
      return "unknown_run";
    case error_code::conflict:
      return "conflict";
    case error_code::forbidden:
      return "forbidden";
    case error_code::too_large:
      return "too_large";
    case error_code::busy:
      return "busy";
    case error_code::unavailable:
      return "unavailable";
    case error_code::internal:
      return "internal";
  }
  return "internal";
}

}  // namespace sweepd::core
