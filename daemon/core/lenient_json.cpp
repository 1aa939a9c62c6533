#include "core/lenient_json.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <limits>

namespace sweepd::core {

namespace {

using json = nlohmann::json;

/// A bare token, its value, and the string that stands in for it, as JSON text (quotes included).
struct token_stand_in {
  std::string_view token;
  double value;
  std::string_view stand_in;
};
// -Infinity before Infinity: the longer token wins where both match.
constexpr std::array<token_stand_in, 3> stand_ins = {{
    {"-Infinity", -std::numeric_limits<double>::infinity(), "\"\\u0000sweepd:-Infinity\""},
    {"Infinity", std::numeric_limits<double>::infinity(), "\"\\u0000sweepd:Infinity\""},
    {"NaN", std::numeric_limits<double>::quiet_NaN(), "\"\\u0000sweepd:NaN\""},
}};

constexpr std::string_view stand_in_mark("\0sweepd:", 8);

const token_stand_in* stand_in_of(const json& value) {
  if (!value.is_string()) return nullptr;
  const std::string_view s = value.get_ref<const std::string&>();
  if (!s.starts_with(stand_in_mark)) return nullptr;
  for (const auto& t : stand_ins) {
    if (s.substr(stand_in_mark.size()) == t.token) return &t;
  }
  return nullptr;
}

}  // namespace

lenient_parse parse_lenient_json(std::string_view text, std::size_t max_depth) {
  std::string hidden;
  hidden.reserve(text.size());
  bool in_string = false;
  std::size_t depth = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      hidden += c;
      if (c == '\\' && i + 1 < text.size()) {
        hidden += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return {json(json::value_t::discarded),
                fmt::format("nested deeper than {} levels", max_depth)};
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    } else {
      const auto t = std::find_if(stand_ins.begin(), stand_ins.end(), [&](const auto& s) {
        return text.substr(i, s.token.size()) == s.token;
      });
      if (t != stand_ins.end()) {
        hidden += t->stand_in;
        i += t->token.size() - 1;
        continue;
      }
    }
    hidden += c;
  }
  json value = json::parse(hidden, nullptr, false);
  if (value.is_discarded()) return {std::move(value), "not valid JSON"};
  return {std::move(value), {}};
}

std::optional<double> nonfinite_of(const json& value) {
  const token_stand_in* t = stand_in_of(value);
  return t == nullptr ? std::nullopt : std::optional<double>(t->value);
}

std::optional<std::string_view> nonfinite_token_of(const json& value) {
  const token_stand_in* t = stand_in_of(value);
  return t == nullptr ? std::nullopt : std::optional<std::string_view>(t->token);
}

std::string dump_lenient_json(const json& value) {
  const std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  // One pass into a new string: replacing in place moves the rest of the text once per token,
  // quadratic in a summary full of NaN (6 s for a 7 MiB summary, on the event loop).
  constexpr std::string_view common = "\"\\u0000sweepd:";  // how every stand-in begins
  std::string out;
  out.reserve(text.size());
  std::size_t copied = 0;
  for (auto pos = text.find(common); pos != std::string::npos; pos = text.find(common, pos)) {
    const std::string_view rest = std::string_view(text).substr(pos);
    const auto match = std::find_if(stand_ins.begin(), stand_ins.end(),
                                    [&](const auto& t) { return rest.starts_with(t.stand_in); });
    if (match == stand_ins.end()) {
      ++pos;
      continue;
    }
    out.append(text, copied, pos - copied);
    out += match->token;
    pos += match->stand_in.size();
    copied = pos;
  }
  out.append(text, copied, std::string::npos);
  return out;
}

}  // namespace sweepd::core
