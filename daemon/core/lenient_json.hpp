#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace sweepd::core {

// JSON as Python's json.dump and W&B summaries write it: numbers may be the bare tokens NaN,
// Infinity and -Infinity, which are not JSON, so nlohmann cannot read them as they are. Parsed
// here, each token becomes a string stand-in (a NUL byte keeps it apart from any real string)
// that nonfinite_of() recognises and dump_lenient_json() writes back as the bare token.

/// A parsed document, or why the text is not one.
struct lenient_parse {
  nlohmann::json value;  // discarded when `problem` is set
  std::string problem;   // "not valid JSON", "nested deeper than N levels"; empty when parsed
};

/// Parses `text` with its bare tokens outside strings as stand-ins. Refuses arrays and objects
/// nested deeper than `max_depth` (writing one back out recurses once per level).
lenient_parse parse_lenient_json(std::string_view text, std::size_t max_depth);

/// The number a stand-in stands for (NaN, +inf or -inf); nullopt for any other value.
std::optional<double> nonfinite_of(const nlohmann::json& value);

/// The token a stand-in stands for ("NaN", "Infinity", "-Infinity"); nullopt for other values.
std::optional<std::string_view> nonfinite_token_of(const nlohmann::json& value);

/// `value` as compact JSON text with every stand-in written back as its bare token.
std::string dump_lenient_json(const nlohmann::json& value);

}  // namespace sweepd::core
