#include "core/wandb_summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string>

#include "core/json_limits.hpp"

namespace sweepd::core {

namespace {

using json = nlohmann::json;

/// The non-JSON number tokens of W&B summaries, and the strings that stand in for them while
/// nlohmann holds the document. The NUL byte keeps them apart from any real summary string.
struct token_stand_in {
  std::string_view token;
  std::string_view stand_in;  // as JSON text, quotes included
};
constexpr std::array<token_stand_in, 3> stand_ins = {{
    {"-Infinity", "\"\\u0000sweepd:-Infinity\""},
    {"Infinity", "\"\\u0000sweepd:Infinity\""},
    {"NaN", "\"\\u0000sweepd:NaN\""},
}};

/// Replaces the bare tokens outside strings with their stand-ins.
std::string hide_tokens(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (const auto& s : stand_ins) {
      if (text.substr(i, s.token.size()) == s.token) {
        out += s.stand_in;
        i += s.token.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

/// Puts the bare tokens back where their stand-ins are (nlohmann writes them back unchanged).
/// One pass into a new string: replacing in place moved the rest of the text once per token,
/// quadratic in a summary full of NaN (seconds for 1 MiB, on the event loop).
std::string restore_tokens(const std::string& text) {
  constexpr std::string_view common = "\"\\u0000sweepd:";  // how every stand-in begins
  std::string out;
  out.reserve(text.size());
  std::size_t copied = 0;
  for (auto pos = text.find(common); pos != std::string::npos; pos = text.find(common, pos)) {
    const std::string_view rest = std::string_view(text).substr(pos);
    const auto match = std::find_if(
        stand_ins.begin(), stand_ins.end(),
        [&](const token_stand_in& t) { return rest.substr(0, t.stand_in.size()) == t.stand_in; });
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

/// True for a string that stands in for a bare token (it is a number, not a string).
bool is_stand_in(const json& value) {
  if (!value.is_string()) return false;
  constexpr std::string_view mark("\0sweepd:", 8);
  const std::string_view s = value.get_ref<const std::string&>();
  if (s.substr(0, mark.size()) != mark) return false;
  return std::any_of(stand_ins.begin(), stand_ins.end(),
                     [&](const token_stand_in& t) { return s.substr(mark.size()) == t.token; });
}

/// A summary as a value, or why it cannot be one.
struct parsed_summary {
  json value;
  std::string error;  // set for a summary sweepd refuses to hold
};

parsed_summary parse_summary(std::string_view text) {
  // Anyone who can write to the run can nest its summary as deep as they like; nlohmann parses
  // iteratively but dumps, compares and destroys recursively, so the depth is bounded up front.
  if (json_nests_deeper_than(text, max_stored_json_depth)) {
    return {json(json::value_t::discarded),
            fmt::format("the run's W&B summary nests deeper than {} levels; sweepd will not "
                        "rewrite it",
                        max_stored_json_depth)};
  }
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {json::object(), {}};
  json summary = json::parse(hide_tokens(text), nullptr, false);
  // `null` with any whitespace around it: W&B's way of saying "no summary yet".
  if (summary.is_null()) return {json::object(), {}};
  return {std::move(summary), {}};
}

}  // namespace

json summary_keys_for(const transition& t, const std::map<std::string, std::string>& state_names) {
  const std::string state(to_string(t.to));
  const auto mapped = state_names.find(state);
  json keys = {{"state", mapped == state_names.end() ? state : mapped->second},
               {"state_reason", to_string(t.reason)},
               {"updated_at", format_utc(t.at)}};
  if (!is_terminal(t.to)) return keys;
  // observation_cost's floor: a Protein loader takes log(cost).
  keys["cost"] = std::max(t.cost.value_or(t.runtime_s.value_or(0.0)), 0.001);
  if (t.to == run_state::success) {
    if (t.objective) keys["objective"] = *t.objective;
    keys["completion_time"] = format_utc(t.at);
  } else {
    keys["is_failure"] = true;
    keys["failure_time"] = format_utc(t.at);
    keys["error"] = t.error ? *t.error : std::string(to_string(t.reason));
  }
  if (t.late_by_s) {
    keys["late"] = true;
    keys["late_by_s"] = *t.late_by_s;
  }
  return keys;
}

summary_merge merge_summary(std::string_view summary_text, const json& keys,
                            const std::string& prefix) {
  parsed_summary parsed = parse_summary(summary_text);
  if (!parsed.error.empty()) return {std::nullopt, std::move(parsed.error)};
  json& summary = parsed.value;
  if (summary.is_discarded() || !summary.is_object()) {
    return {std::nullopt, "the run's summary is not a JSON object"};
  }
  for (const char* key : managed_summary_keys) {
    auto value = keys.find(key);
    if (value == keys.end()) {
      summary.erase(prefix + key);
    } else {
      summary[prefix + key] = *value;
    }
  }
  return {restore_tokens(summary.dump(-1, ' ', false, json::error_handler_t::replace)), {}};
}

std::optional<std::string> summary_state(std::string_view summary_text, const std::string& prefix) {
  const json summary = parse_summary(summary_text).value;
  if (!summary.is_object()) return std::nullopt;
  auto it = summary.find(prefix + "state");
  if (it == summary.end() || !it->is_string() || is_stand_in(*it)) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace sweepd::core
