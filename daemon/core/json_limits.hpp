#pragma once

#include <cstddef>
#include <string_view>

namespace sweepd::core {

/// Deepest nesting of arrays and objects accepted in JSON from a client (a request line, a
/// result file). Real requests nest a few levels; the bound keeps every recursive walk of the
/// parsed value (dump, compare, destroy) far from the stack's end.
inline constexpr std::size_t max_request_json_depth = 64;
/// Deepest nesting accepted in JSON from W&B (a run summary is user-writable) and the journal.
inline constexpr std::size_t max_stored_json_depth = 256;

/// True when arrays/objects in `text` nest deeper than `max_depth` (strings are skipped, escapes
/// included). A linear scan that stops at the first level too deep, meant to run before a parser
/// builds anything: it needs no valid JSON and allocates nothing.
bool json_nests_deeper_than(std::string_view text, std::size_t max_depth);

}  // namespace sweepd::core
