#include "io/config_loader.hpp"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "io/posix.hpp"

namespace sweepd::io {

namespace {

// A config is a few KiB; anything far larger is the wrong file (or /dev/zero), not a config.
constexpr std::size_t max_config_bytes = 1 << 20;

// uid_t is 32 bits and (uid_t)-1 means "no uid" to the kernel.
constexpr std::int64_t max_uid = 4294967294;

/// Where problems go while one document is read, and where each key's value was found, so the
/// relational checks of core::validate() can be located too.
struct context {
  explicit context(std::string_view file_name) : file(file_name) {}

  std::string file;
  std::vector<std::string> errors;
  std::map<std::string, YAML::Mark, std::less<>> marks;
  std::set<std::string, std::less<>> bad_keys;

  void error(const YAML::Mark& at, std::string_view message) {
    if (at.is_null()) {
      errors.push_back(fmt::format("{}: {}", file, message));
    } else {
      // yaml-cpp counts from 0; editors and compilers count from 1.
      errors.push_back(fmt::format("{}:{}:{}: {}", file, at.line + 1, at.column + 1, message));
    }
  }
};

/// One value being read: its node, its dotted key ("socket.admin_uids[2]") and where to point
/// when it is wrong.
struct item {
  YAML::Node node;
  std::string key;
  YAML::Mark where;
};

/// yaml-cpp places a null value's mark at the next token (often the next line), so a null is
/// located at its key instead.
YAML::Mark value_mark(const YAML::Node& key, const YAML::Node& value) {
  return value.IsNull() ? key.Mark() : value.Mark();
}

/// A quoted or block scalar, or one tagged !!str: YAML says it is a string whatever its text.
bool is_string_scalar(const YAML::Node& n) {
  return n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str";
}

/// Keeps messages one line and short whatever the file holds.
std::string printable(std::string_view text, std::size_t limit = 60) {
  std::string out;
  for (char ch : text.substr(0, limit)) {
    if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      out += '?';
    } else {
      out += ch;
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}

/// What a node is, for "expected X, got Y".
std::string describe_node(const YAML::Node& n) {
  if (n.IsNull()) return "null";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  if (is_string_scalar(n)) return fmt::format("the string \"{}\"", printable(n.Scalar()));
  return fmt::format("'{}'", printable(n.Scalar()));
}

/// A problem with one value: located at it, and remembered so that core::validate() does not
/// report the same key again for the default it kept.
void bad_value(context& ctx, const item& it, std::string_view message) {
  ctx.bad_keys.insert(it.key);
  ctx.error(it.where, fmt::format("{}: {}", it.key, message));
}

void type_error(context& ctx, const item& it, std::string_view expected) {
  bad_value(ctx, it, fmt::format("expected {}, got {}", expected, describe_node(it.node)));
}

/// The text of a scalar, or an error naming what was expected instead.
std::optional<std::string> scalar_text(context& ctx, const item& it, std::string_view expected) {
  if (!it.node.IsScalar()) {
    type_error(ctx, it, expected);
    return std::nullopt;
  }
  return it.node.Scalar();
}

/// YAML 1.1 reads a leading zero as octal and YAML 1.2 as decimal, so "0300" means 192 to some
/// readers of the file and 300 to others: refuse it rather than guess.
bool has_ambiguous_leading_zero(std::string_view digits) {
  return digits.size() > 1 && digits[0] == '0' && digits[1] >= '0' && digits[1] <= '9';
}

std::string_view without_sign(std::string_view text) {
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) text.remove_prefix(1);
  return text;
}

std::optional<double> parse_double(std::string_view text) {
  // from_chars takes no '+', which YAML allows.
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty() || has_ambiguous_leading_zero(without_sign(text))) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

/// An integer as written. Past int64 it is `overflow` (and out of every key's range).
struct parsed_integer {
  std::int64_t value = 0;
  bool overflow = false;
};

std::optional<parsed_integer> parse_integer(std::string_view text) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty() || has_ambiguous_leading_zero(without_sign(text))) return std::nullopt;
  parsed_integer result;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), result.value);
  if (end != text.data() + text.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    result.overflow = true;
  } else if (ec != std::errc{}) {
    return std::nullopt;
  }
  return result;
}

// ---- typed values ---------------------------------------------------------------------------

void read_string(context& ctx, const item& it, std::string& out) {
  // Any scalar is text here: `project: 2024` names a project, it is not a number.
  if (auto text = scalar_text(ctx, it, "a string")) out = std::move(*text);
}

enum class lower_bound { zero_allowed, positive };

void read_seconds(context& ctx, const item& it, double& out, lower_bound bound) {
  constexpr std::string_view expected = "a number of seconds";
  auto text = scalar_text(ctx, it, expected);
  if (!text) return;
  const auto value = parse_double(*text);
  if (is_string_scalar(it.node)) {
    bad_value(ctx, it,
              fmt::format("expected {}, got {}{}", expected, describe_node(it.node),
                          value ? " (remove the quotes)" : ""));
    return;
  }
  if (!value) return type_error(ctx, it, expected);
  if (!std::isfinite(*value)) {
    bad_value(ctx, it,
              fmt::format("must be a finite number of seconds, got '{}'", printable(*text)));
  } else if (bound == lower_bound::positive && *value <= 0) {
    bad_value(ctx, it, fmt::format("must be greater than 0, got {}", *text));
  } else if (*value < 0) {
    bad_value(ctx, it, fmt::format("must not be negative, got {}", *text));
  } else if (*value > 0 && *value < core::min_duration_s) {
    // Below a millisecond a duration rounds towards 0, which means "off" for a timeout.
    bad_value(ctx, it,
              fmt::format("must be 0 or at least {} seconds, got {}", core::min_duration_s, *text));
  } else if (*value > core::max_duration_s) {
    bad_value(ctx, it,
              fmt::format("must be at most {:.0f} seconds (about 31 years), got {}",
                          core::max_duration_s, *text));
  } else {
    out = *value;
  }
}

/// An integer in [lo, hi], or an error. Quoted numbers are strings, as for seconds.
std::optional<std::int64_t> integer_in_range(context& ctx, const item& it, std::int64_t lo,
                                             std::int64_t hi) {
  constexpr std::string_view expected = "an integer";
  auto text = scalar_text(ctx, it, expected);
  if (!text) return std::nullopt;
  const auto value = parse_integer(*text);
  if (!value || is_string_scalar(it.node)) {
    type_error(ctx, it, expected);
    return std::nullopt;
  }
  const bool negative = (*text)[0] == '-';
  const bool too_small = value->overflow ? negative : value->value < lo;
  const bool too_large = value->overflow ? !negative : value->value > hi;
  if (too_small || too_large) {
    // Keys without a real upper bound say only what matters: "at least 1".
    const bool unbounded = hi == std::numeric_limits<std::int64_t>::max();
    const auto range = !unbounded  ? fmt::format("between {} and {}", lo, hi)
                       : too_small ? fmt::format("at least {}", lo)
                                   : fmt::format("at most {}", hi);
    bad_value(ctx, it, fmt::format("must be {}, got {}", range, printable(*text)));
    return std::nullopt;
  }
  return value->value;
}

template <typename T>
void read_integer(context& ctx, const item& it, T& out, std::int64_t lo, std::int64_t hi) {
  if (auto v = integer_in_range(ctx, it, lo, hi)) out = static_cast<T>(*v);
}

/// The digits of an octal mode as written ("0660", "660", "0o660"), or nullopt.
std::optional<std::uint32_t> parse_octal_mode(std::string_view text) {
  if (text.rfind("0o", 0) == 0) text.remove_prefix(2);
  if (text.empty() || text.size() > 4) return std::nullopt;
  std::uint32_t mode = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '7') return std::nullopt;
    mode = mode * 8 + static_cast<std::uint32_t>(ch - '0');
  }
  return mode;
}

void read_mode(context& ctx, const item& it, std::uint32_t& out) {
  constexpr std::string_view expected = "an octal mode string like \"0660\"";
  auto text = scalar_text(ctx, it, expected);
  if (!text) return;
  // A bare 0660 is octal to YAML 1.1 and decimal to YAML 1.2; yaml-cpp keeps the text, so a
  // leading 0 (or 0o) is read as the octal everyone means. A bare 660 has no such marker.
  const bool marked_octal = !text->empty() && (*text)[0] == '0';
  if (!is_string_scalar(it.node) && !marked_octal) {
    bad_value(ctx, it,
              fmt::format("write the mode as a quoted octal string like \"0660\" "
                          "(a bare {} is ambiguous), got {}",
                          printable(*text), describe_node(it.node)));
    return;
  }
  const auto mode = parse_octal_mode(*text);
  if (!mode) return type_error(ctx, it, expected);
  if (*mode > 0777) {
    bad_value(ctx, it,
              fmt::format("must be at most 0777 (setuid, setgid and sticky bits "
                          "mean nothing on a socket), got {}",
                          describe_node(it.node)));
    return;
  }
  out = *mode;
}

/// A value from a fixed set of names, parsed by `parse` (one of core's parse_* functions).
template <typename T, typename Parse>
void read_choice(context& ctx, const item& it, T& out, Parse parse, std::string_view names) {
  const auto expected = fmt::format("one of {}", names);
  auto text = scalar_text(ctx, it, expected);
  if (!text) return;
  if (auto v = parse(*text)) {
    out = *v;
  } else {
    type_error(ctx, it, expected);
  }
}

void read_log_level(context& ctx, const item& it, std::string& out) {
  // The names core::is_valid_log_level accepts (spdlog's), spelled out for the message.
  constexpr std::string_view names = "trace, debug, info, warn, error, critical, off";
  auto text = scalar_text(ctx, it, fmt::format("one of {}", names));
  if (!text) return;
  if (core::is_valid_log_level(*text)) {
    out = std::move(*text);
  } else {
    type_error(ctx, it, fmt::format("one of {}", names));
  }
}

/// "HOST:PORT" (IPv6 hosts in brackets); the port may be 0 to let the kernel choose.
void read_listen_address(context& ctx, const item& it, std::string& out) {
  constexpr std::string_view expected = "HOST:PORT like 127.0.0.1:9464 (or \"\" for off)";
  auto text = scalar_text(ctx, it, expected);
  if (!text) return;
  if (!text->empty()) {
    const auto colon = text->rfind(':');
    const auto port =
        colon == std::string::npos ? std::string_view{} : std::string_view(*text).substr(colon + 1);
    unsigned number = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (colon == 0 || colon == std::string::npos || port.empty() || ec != std::errc{} ||
        end != port.data() + port.size() || number > 65535) {
      return type_error(ctx, it, expected);
    }
  }
  out = std::move(*text);
}

// ---- maps and lists -------------------------------------------------------------------------

/// A known key of a section and how to read its value.
struct field {
  std::string_view name;
  std::function<void(const item&)> read;
};

std::string known_names(std::initializer_list<field> fields) {
  std::vector<std::string_view> names;
  for (const auto& f : fields) names.push_back(f.name);
  std::sort(names.begin(), names.end());
  return fmt::format("{}", fmt::join(names, ", "));
}

std::string child_key(std::string_view parent, std::string_view name) {
  return parent.empty() ? std::string(name) : fmt::format("{}.{}", parent, name);
}

std::string unknown_key_message(std::string_view section, std::string_view name,
                                std::initializer_list<field> fields) {
  if (section.empty()) {
    return fmt::format("unknown top-level key '{}' (known: {})", printable(name),
                       known_names(fields));
  }
  return fmt::format("unknown key '{}' in '{}' (known: {})", printable(name), section,
                     known_names(fields));
}

/// Checks one map key: a string, not seen before in this map. Returns its name when usable.
std::optional<std::string> map_key(context& ctx, const item& map, const YAML::Node& key,
                                   std::map<std::string, int, std::less<>>& seen) {
  const auto where = map.key.empty() ? std::string("top level") : fmt::format("'{}'", map.key);
  if (!key.IsScalar()) {
    ctx.error(key.Mark(),
              fmt::format("a key in {} must be a string, got {}", where, describe_node(key)));
    return std::nullopt;
  }
  const auto [it, fresh] = seen.emplace(key.Scalar(), key.Mark().line + 1);
  if (!fresh) {
    ctx.error(key.Mark(), fmt::format("duplicate key '{}' in {} (first on line {})",
                                      printable(key.Scalar()), where, it->second));
    return std::nullopt;
  }
  return key.Scalar();
}

/// Reads a section whose keys are fixed: every key must be one of `fields`.
void read_fields(context& ctx, const item& section, std::initializer_list<field> fields) {
  if (!section.node.IsMap()) {
    if (section.key.empty()) {
      ctx.error(section.where, fmt::format("the config must be a map of sections ({}), got {}",
                                           known_names(fields), describe_node(section.node)));
    } else {
      type_error(ctx, section, "a map");
    }
    return;
  }
  std::map<std::string, int, std::less<>> seen;
  for (const auto& entry : section.node) {
    auto name = map_key(ctx, section, entry.first, seen);
    if (!name) continue;
    const auto f = std::find_if(fields.begin(), fields.end(),
                                [&](const field& candidate) { return candidate.name == *name; });
    if (f == fields.end()) {
      ctx.error(entry.first.Mark(), unknown_key_message(section.key, *name, fields));
      continue;
    }
    const item child{entry.second, child_key(section.key, *name),
                     value_mark(entry.first, entry.second)};
    ctx.marks[child.key] = child.where;
    f->read(child);
  }
}

/// The items of a list, each named "key[i]"; an error when the node is not a list.
std::vector<item> list_items(context& ctx, const item& it, std::string_view expected) {
  std::vector<item> items;
  if (!it.node.IsSequence()) {
    type_error(ctx, it, expected);
    return items;
  }
  for (const auto& element : it.node) {
    item child{element, fmt::format("{}[{}]", it.key, items.size()),
               element.IsNull() ? it.where : element.Mark()};
    ctx.marks[child.key] = child.where;
    items.push_back(std::move(child));
  }
  return items;
}

void read_uid_list(context& ctx, const item& it, std::vector<std::uint32_t>& out) {
  std::vector<std::uint32_t> uids;
  for (const auto& element : list_items(ctx, it, "a list of uids")) {
    if (auto v = integer_in_range(ctx, element, 0, max_uid)) {
      uids.push_back(static_cast<std::uint32_t>(*v));
    }
  }
  out = std::move(uids);
}

void read_string_map(context& ctx, const item& it, std::map<std::string, std::string>& out) {
  if (!it.node.IsMap()) return type_error(ctx, it, "a map of names");
  std::map<std::string, std::string> result;
  std::map<std::string, int, std::less<>> seen;
  for (const auto& entry : it.node) {
    auto name = map_key(ctx, it, entry.first, seen);
    if (!name) continue;
    const item value{entry.second, child_key(it.key, *name), value_mark(entry.first, entry.second)};
    // A bad name is left out, so validate() does not also call it empty.
    if (auto text = scalar_text(ctx, value, "a string")) result[*name] = std::move(*text);
  }
  out = std::move(result);
}

// ---- sections -------------------------------------------------------------------------------

void read_socket(context& ctx, const item& it, core::config::socket_section& s) {
  read_fields(
      ctx, it,
      {{"path", [&](const item& v) { read_string(ctx, v, s.path); }},
       {"mode", [&](const item& v) { read_mode(ctx, v, s.mode); }},
       {"group", [&](const item& v) { read_string(ctx, v, s.group); }},
       {"max_connections",
        [&](const item& v) { read_integer(ctx, v, s.max_connections, 1, 1000000); }},
       {"max_connections_per_uid",
        [&](const item& v) { read_integer(ctx, v, s.max_connections_per_uid, 1, 1000000); }},
       {"max_line_bytes",
        [&](const item& v) { read_integer(ctx, v, s.max_line_bytes, 1024, 16777216); }},
       {"admin_uids", [&](const item& v) { read_uid_list(ctx, v, s.admin_uids); }}});
}

void read_timeouts(context& ctx, const item& it, core::config::timeouts_section& t) {
  read_fields(
      ctx, it,
      {{"heartbeat",
        [&](const item& v) { read_seconds(ctx, v, t.heartbeat, lower_bound::positive); }},
       {"max_runtime",
        [&](const item& v) { read_seconds(ctx, v, t.max_runtime, lower_bound::zero_allowed); }},
       {"stall",
        [&](const item& v) { read_seconds(ctx, v, t.stall, lower_bound::zero_allowed); }}});
}

void read_state(context& ctx, const item& it, core::config::state_section& s) {
  read_fields(
      ctx, it,
      {{"path", [&](const item& v) { read_string(ctx, v, s.path); }},
       {"retention",
        [&](const item& v) { read_seconds(ctx, v, s.retention, lower_bound::zero_allowed); }},
       {"max_runs", [&](const item& v) {
          read_integer(ctx, v, s.max_runs, 1, std::numeric_limits<std::int64_t>::max());
        }}});
}

void read_wandb(context& ctx, const item& it, core::config::wandb_section& w) {
  read_fields(
      ctx, it,
      {{"mode",
        [&](const item& v) {
          read_choice(ctx, v, w.mode, core::parse_wandb_mode, "auto, online, offline, disabled");
        }},
       {"base_url", [&](const item& v) { read_string(ctx, v, w.base_url); }},
       {"entity", [&](const item& v) { read_string(ctx, v, w.entity); }},
       {"project", [&](const item& v) { read_string(ctx, v, w.project); }},
       {"api_key_file", [&](const item& v) { read_string(ctx, v, w.api_key_file); }},
       {"summary_prefix", [&](const item& v) { read_string(ctx, v, w.summary_prefix); }},
       {"state_names", [&](const item& v) { read_string_map(ctx, v, w.state_names); }},
       {"max_in_flight", [&](const item& v) { read_integer(ctx, v, w.max_in_flight, 1, 64); }},
       {"request_timeout",
        [&](const item& v) { read_seconds(ctx, v, w.request_timeout, lower_bound::positive); }},
       {"run_not_found_grace", [&](const item& v) {
          read_seconds(ctx, v, w.run_not_found_grace, lower_bound::zero_allowed);
        }}});
}

void read_reconcile_sweeps(context& ctx, const item& it,
                           std::vector<core::config::reconcile_entry>& out) {
  std::vector<core::config::reconcile_entry> sweeps;
  for (const auto& element : list_items(ctx, it, "a list of {entity, project, sweep_id} maps")) {
    auto& e = sweeps.emplace_back();
    read_fields(ctx, element,
                {{"entity", [&](const item& v) { read_string(ctx, v, e.entity); }},
                 {"project", [&](const item& v) { read_string(ctx, v, e.project); }},
                 {"sweep_id", [&](const item& v) { read_string(ctx, v, e.sweep_id); }}});
  }
  out = std::move(sweeps);
}

void read_reconcile(context& ctx, const item& it, core::config::reconcile_section& r) {
  read_fields(ctx, it,
              {{"sweeps", [&](const item& v) { read_reconcile_sweeps(ctx, v, r.sweeps); }},
               {"interval",
                [&](const item& v) { read_seconds(ctx, v, r.interval, lower_bound::positive); }},
               {"stale_after", [&](const item& v) {
                  read_seconds(ctx, v, r.stale_after, lower_bound::zero_allowed);
                }}});
}

void read_metrics(context& ctx, const item& it, core::config::metrics_section& m) {
  read_fields(ctx, it, {{"listen", [&](const item& v) { read_listen_address(ctx, v, m.listen); }}});
}

void read_string_list(context& ctx, const item& it, std::vector<std::string>& out) {
  std::vector<std::string> values;
  for (const auto& element : list_items(ctx, it, "a list of strings")) {
    if (auto text = scalar_text(ctx, element, "a string")) values.push_back(std::move(*text));
  }
  out = std::move(values);
}

void read_remote(context& ctx, const item& it, core::config::remote_section& r) {
  read_fields(
      ctx, it,
      {{"listen", [&](const item& v) { read_listen_address(ctx, v, r.listen); }},
       {"cert_file", [&](const item& v) { read_string(ctx, v, r.cert_file); }},
       {"key_file", [&](const item& v) { read_string(ctx, v, r.key_file); }},
       {"tokens_file", [&](const item& v) { read_string(ctx, v, r.tokens_file); }},
       {"handshake_timeout",
        [&](const item& v) { read_seconds(ctx, v, r.handshake_timeout, lower_bound::positive); }},
       {"max_connections",
        [&](const item& v) { read_integer(ctx, v, r.max_connections, 1, 1000000); }},
       {"admin_principals", [&](const item& v) { read_string_list(ctx, v, r.admin_principals); }}});
}

void read_log(context& ctx, const item& it, core::config::log_section& l) {
  read_fields(ctx, it,
              {{"level", [&](const item& v) { read_log_level(ctx, v, l.level); }},
               {"format", [&](const item& v) {
                  read_choice(ctx, v, l.format, core::parse_log_format, "text, json");
                }}});
}

void read_document(context& ctx, const YAML::Node& root, core::config& c) {
  // A file with only comments, or only "---", is an empty config: every default applies.
  if (root.IsNull()) return;
  read_fields(ctx, item{root, "", root.Mark()},
              {{"socket", [&](const item& v) { read_socket(ctx, v, c.socket); }},
               {"timeouts", [&](const item& v) { read_timeouts(ctx, v, c.timeouts); }},
               {"state", [&](const item& v) { read_state(ctx, v, c.state); }},
               {"wandb", [&](const item& v) { read_wandb(ctx, v, c.wandb); }},
               {"reconcile", [&](const item& v) { read_reconcile(ctx, v, c.reconcile); }},
               {"metrics", [&](const item& v) { read_metrics(ctx, v, c.metrics); }},
               {"remote", [&](const item& v) { read_remote(ctx, v, c.remote); }},
               {"log", [&](const item& v) { read_log(ctx, v, c.log); }}});
}

/// The value's location for a problem core::validate() names by dotted key; a missing
/// "reconcile.sweeps[1].sweep_id" is located at its list entry.
std::optional<YAML::Mark> find_mark(const context& ctx, std::string_view key) {
  if (auto it = ctx.marks.find(key); it != ctx.marks.end()) return it->second;
  if (const auto bracket = key.rfind(']'); bracket != std::string_view::npos) {
    if (auto it = ctx.marks.find(key.substr(0, bracket + 1)); it != ctx.marks.end()) {
      return it->second;
    }
  }
  return std::nullopt;
}

void report_validation(context& ctx, const core::config& c) {
  for (const auto& p : core::validate(c)) {
    // The key's value was already refused; validate() only saw the default it kept.
    if (ctx.bad_keys.contains(p.key)) continue;
    const auto message = fmt::format("{}: {}", p.key, p.message);
    ctx.error(find_mark(ctx, p.key).value_or(YAML::Mark::null_mark()), message);
  }
}

/// Where the quoted scalar starting at `open` (a ' or ") ends, or npos when it never does.
std::size_t closing_quote(std::string_view text, std::size_t open) {
  const char quote = text[open];
  for (std::size_t i = open + 1; i < text.size(); ++i) {
    if (quote == '"' && text[i] == '\\') {
      ++i;  // an escaped character, \" included
    } else if (text[i] == quote) {
      if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' is a quote inside a single-quoted scalar
        continue;
      }
      return i;
    }
  }
  return std::string_view::npos;
}

/// The collections check_quotes_closed has walked, by where each starts and what it is. An alias
/// is the node it names, so without this a few lines of aliases of aliases (each a list of two of
/// the one before) make a walk of 2^N nodes: a config that kept SIGHUP from returning. (A flow
/// map used as a key starts where the map holding it does; such a key is refused anyway.)
using walked_collections = std::set<std::pair<int, bool>>;

/// yaml-cpp takes a quoted scalar that is never closed to run to the end of the file (gluing the
/// lines after it into the value) instead of failing. Finds such scalars from their source marks.
void check_quotes_closed(context& ctx, const YAML::Node& node, std::string_view text,
                         walked_collections& walked, int depth = 0) {
  if (depth > 64) return;  // a config nests a few levels; yaml-cpp bounds nesting itself too
  if (node.IsScalar()) {
    const auto pos = static_cast<std::size_t>(node.Mark().pos);
    if (node.Mark().pos >= 0 && pos < text.size() && (text[pos] == '"' || text[pos] == '\'') &&
        closing_quote(text, pos) == std::string_view::npos) {
      ctx.error(node.Mark(), "YAML syntax error: a quoted string is never closed");
    }
    return;
  }
  if (!node.IsSequence() && !node.IsMap()) return;
  if (!walked.emplace(node.Mark().pos, node.IsMap()).second) return;
  if (node.IsSequence()) {
    for (const auto& child : node) check_quotes_closed(ctx, child, text, walked, depth + 1);
  } else {
    for (const auto& kv : node) {
      check_quotes_closed(ctx, kv.first, text, walked, depth + 1);
      check_quotes_closed(ctx, kv.second, text, walked, depth + 1);
    }
  }
}

/// Where each document of a text starts and whether it holds anything, read event by event
/// without building nodes.
class document_scan final : public YAML::EventHandler {
 public:
  YAML::Mark start;
  std::optional<YAML::Mark> content;  // where the document's first node is, unless it is empty

  void OnDocumentStart(const YAML::Mark& mark) override {
    start = mark;
    content.reset();
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { found(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    found(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    found(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    found(mark);
  }
  void OnMapEnd() override {}

 private:
  void found(const YAML::Mark& mark) {
    if (!content) content = mark;
  }
};

/// The first document of the text; a config file holds one, so later non-empty ones are errors.
/// Not YAML::LoadAll: in yaml-cpp 0.7 (Debian 12) a token no node can start with, such as a
/// stray ',' at the top level, makes an empty document without being consumed, and LoadAll
/// collects such documents forever (--check-config and the daemon's SIGHUP reload never returned,
/// growing by hundreds of MiB a second). Here each document must start past the one before.
std::optional<YAML::Node> single_document(context& ctx, std::string_view text) {
  std::istringstream stream{std::string(text)};
  YAML::Parser parser(stream);
  document_scan scan;
  std::optional<int> previous_start;
  for (int index = 0; parser.HandleNextDocument(scan); ++index) {
    if (previous_start == scan.start.pos) {
      const auto at = static_cast<std::size_t>(std::max(scan.start.pos, 0));
      ctx.error(scan.start, fmt::format("YAML syntax error: unexpected '{}'",
                                        printable(text.substr(std::min(at, text.size()), 1))));
      return std::nullopt;
    }
    previous_start = scan.start.pos;
    if (index > 0 && scan.content) {
      ctx.error(*scan.content, "a config file holds one YAML document; this is a second one");
      return std::nullopt;
    }
  }
  return YAML::Load(std::string(text));
}

}  // namespace

void throw_exception_from_error(const config_problems& p, const boost::source_location&) {
  throw std::logic_error("result holds config problems: " +
                         (p.messages.empty() ? std::string() : p.messages.front()));
}

config_load_result parse_config_text(std::string_view text, std::string_view file_name) {
  context ctx(file_name);
  core::config c;
  // yaml-cpp reports syntax errors (and its own limits, such as nesting depth) by throwing;
  // none of it may escape a loader that runs on SIGHUP inside the daemon.
  try {
    if (auto root = single_document(ctx, text)) {
      walked_collections walked;
      check_quotes_closed(ctx, *root, text, walked);
      if (ctx.errors.empty()) read_document(ctx, *root, c);
    }
  } catch (const YAML::ParserException& e) {
    // yaml-cpp's messages quote the offending character as it is ("unknown escape character: "
    // and a newline), which would break the one-problem-per-line output.
    ctx.error(e.mark, fmt::format("YAML syntax error: {}", printable(e.msg, 200)));
  } catch (const YAML::Exception& e) {
    ctx.error(e.mark, fmt::format("cannot read YAML: {}", printable(e.msg, 200)));
  } catch (const std::exception& e) {
    ctx.error(YAML::Mark::null_mark(),
              fmt::format("cannot parse config: {}", printable(e.what(), 200)));
  }
  // Relations between keys are checked even after per-key errors (a bad value kept its
  // default), so one run of --check-config shows every problem.
  report_validation(ctx, c);
  if (!ctx.errors.empty()) return config_problems{std::move(ctx.errors)};
  return c;
}

config_load_result load_config_file(const std::string& path) {
  const auto text = read_file_bounded(path, max_config_bytes);
  if (!text) {
    const auto& e = text.error();
    const bool too_large = e.what == file_error::kind::too_large;
    return config_problems{{fmt::format("{}: cannot read config: {}{}", path, e.reason,
                                        too_large ? ", not a config file" : "")}};
  }
  return parse_config_text(*text, path);
}

}  // namespace sweepd::io
