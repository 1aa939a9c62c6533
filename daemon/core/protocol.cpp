#include "core/protocol.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "core/config.hpp"
#include "core/json_limits.hpp"

namespace sweepd::core {

namespace {

using json = nlohmann::json;

std::string_view type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::binary:
      return "binary";
    case json::value_t::discarded:
      return "invalid";
    default:
      return "number";
  }
}

bool is_printable_name(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '/';
  });
}

/// Reads typed, bounded fields of one request object; keeps the first problem.
class field_reader {
 public:
  field_reader(const json& obj, std::string_view op) : obj_(obj), op_(op) {}

  bool failed() const { return err_.code != error_code::ok; }
  const error& err() const { return err_; }

  /// Refuses any field not in `allowed` (and not "op").
  void only(std::initializer_list<std::string_view> allowed) {
    for (const auto& [key, value] : obj_.items()) {
      if (key == "op") continue;
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        fail(fmt::format("unknown field '{}' for op '{}'", key, op_));
        return;
      }
    }
  }

  std::string run_id() {
    const json* v = required("run");
    if (v == nullptr || !expect(*v, "run", json::value_t::string)) return {};
    const auto& s = v->get_ref<const std::string&>();
    if (!is_valid_run_id(s)) {
      fail(fmt::format("field 'run': must be 1-{} characters of [A-Za-z0-9._-]", max_run_id_chars));
    }
    return s;
  }

  std::optional<std::string> name(std::string_view key) {
    const json* v = optional(key);
    if (v == nullptr || !expect(*v, key, json::value_t::string)) return std::nullopt;
    const auto& s = v->get_ref<const std::string&>();
    if (s.empty() || s.size() > max_name_chars || !is_printable_name(s)) {
      fail(fmt::format("field '{}': must be 1-{} bytes without control characters or '/'", key,
                       max_name_chars));
      return std::nullopt;
    }
    return s;
  }

  /// A name that must be given.
  std::string required_name(std::string_view key) {
    if (required(key) == nullptr) return {};
    return name(key).value_or("");
  }

  std::optional<run_state> state(std::string_view key) {
    auto s = name(key);
    if (!s) return std::nullopt;
    auto parsed = parse_run_state(*s);
    if (!parsed) {
      fail(
          fmt::format("field '{}': '{}' is not a state (initializing, running, success, failed, "
                      "crashed, timeout)",
                      key, *s));
    }
    return parsed;
  }

  /// A finite number in [lo, hi]; `lo_open` makes the lower bound exclusive.
  std::optional<double> number(std::string_view key, double lo, double hi, bool lo_open = false) {
    const json* v = optional(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) {
      fail(fmt::format("field '{}': expected a number, got {}", key, type_name(*v)));
      return std::nullopt;
    }
    const double d = v->get<double>();
    const bool below = lo_open ? d <= lo : d < lo;
    if (!std::isfinite(d) || below || d > hi) {
      fail(fmt::format("field '{}': {} is out of range ({} {} and <= {})", key, v->dump(),
                       lo_open ? ">" : ">=", lo, hi));
      return std::nullopt;
    }
    return d;
  }

  /// A timeout in seconds: at least min_duration_s (0 only where `zero_is_off`) and at most a
  /// year. A tiny value would round to 0 and switch the timeout off.
  std::optional<double> timeout(std::string_view key, bool zero_is_off) {
    auto d = number(key, 0, max_timeout_s, !zero_is_off);
    if (d && *d != 0 && *d < min_duration_s) {
      fail(fmt::format("field '{}': {} is shorter than {} s", key, *d, min_duration_s));
      return std::nullopt;
    }
    return d;
  }

  /// Any finite number.
  std::optional<double> finite(std::string_view key) {
    return number(key, -std::numeric_limits<double>::max(), std::numeric_limits<double>::max());
  }

  bool boolean(std::string_view key) {
    const json* v = optional(key);
    if (v == nullptr || !expect(*v, key, json::value_t::boolean)) return false;
    return v->get<bool>();
  }

  /// An object, as its compact text: the dump that measures it is what is kept.
  json_text object(std::string_view key, std::size_t max_bytes) {
    const json* v = optional(key);
    if (v == nullptr || !expect(*v, key, json::value_t::object)) return {};
    std::string text = v->dump();
    if (text.size() > max_bytes) {
      fail(fmt::format("field '{}': {} bytes, more than the {} allowed", key, text.size(),
                       max_bytes));
      return {};
    }
    return json_text::from_text(std::move(text));
  }

  /// A cursor from an earlier reply of the same op.
  std::optional<page_cursor> cursor(std::string_view key, page_order order) {
    const json* v = optional(key);
    if (v == nullptr || !expect(*v, key, json::value_t::string)) return std::nullopt;
    auto c = decode_cursor(order, v->get_ref<const std::string&>());
    if (!c) {
      fail(fmt::format("field '{}': not a cursor from the \"next\" of an earlier '{}' reply", key,
                       op_));
    }
    return c;
  }

  /// A secret string of 1..max_bytes: its value never appears in a message.
  std::optional<std::string> secret(std::string_view key, std::size_t max_bytes) {
    const json* v = optional(key);
    if (v == nullptr || !expect(*v, key, json::value_t::string)) return std::nullopt;
    const auto& s = v->get_ref<const std::string&>();
    if (s.empty() || s.size() > max_bytes) {
      fail(fmt::format("field '{}': must be 1-{} bytes", key, max_bytes));
      return std::nullopt;
    }
    return s;
  }

  std::string text(std::string_view key, std::size_t max_bytes) {
    const json* v = required(key);
    if (v == nullptr || !expect(*v, key, json::value_t::string)) return {};
    return truncate_utf8(v->get<std::string>(), max_bytes);
  }

 private:
  /// The field's value, or nullptr when it is absent or null (null means "not given").
  const json* optional(std::string_view key) {
    if (failed()) return nullptr;
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  const json* required(std::string_view key) {
    if (failed()) return nullptr;
    const json* v = optional(key);
    if (v == nullptr) fail(fmt::format("missing field '{}' for op '{}'", key, op_));
    return v;
  }

  bool expect(const json& v, std::string_view key, json::value_t type) {
    if (v.type() == type) return true;
    fail(fmt::format("field '{}': expected {}, got {}", key, type_name(json(type)), type_name(v)));
    return false;
  }

  void fail(std::string message) {
    if (!failed()) err_ = {error_code::bad_request, std::move(message)};
  }

  const json& obj_;
  std::string_view op_;
  error err_;
};

request read_register(field_reader& f) {
  f.only({"run", "sweep", "entity", "project", "suggestion", "watch_peer", "heartbeat_timeout_s",
          "max_runtime_s"});
  register_params p;
  p.run = f.run_id();
  p.sweep = f.name("sweep");
  p.entity = f.name("entity");
  p.project = f.name("project");
  p.suggestion = f.object("suggestion", max_suggestion_bytes);
  p.watch_peer = f.boolean("watch_peer");
  p.heartbeat_timeout_s = f.timeout("heartbeat_timeout_s", false);
  p.max_runtime_s = f.timeout("max_runtime_s", true);
  return p;
}

request read_heartbeat(field_reader& f) {
  f.only({"run", "progress", "timeout_s"});
  heartbeat_params p;
  p.run = f.run_id();
  p.progress = f.finite("progress");
  p.timeout_s = f.timeout("timeout_s", false);
  return p;
}

request read_complete(field_reader& f) {
  f.only({"run", "objective", "cost"});
  complete_params p;
  p.run = f.run_id();
  p.objective = f.finite("objective");
  p.cost = f.number("cost", 0, std::numeric_limits<double>::max());
  return p;
}

request read_fail(field_reader& f) {
  f.only({"run", "error"});
  fail_params p;
  p.run = f.run_id();
  p.error = f.text("error", max_error_bytes);
  return p;
}

std::optional<std::size_t> read_limit(field_reader& f) {
  auto limit = f.number("limit", 1, static_cast<double>(max_list_limit));
  if (!limit) return std::nullopt;
  return static_cast<std::size_t>(*limit);
}

request read_reconcile(field_reader& f) {
  f.only({"sweep", "entity", "project", "apply", "stale_after_s"});
  reconcile_request r;
  r.sweep = f.required_name("sweep");
  r.entity = f.name("entity");
  r.project = f.name("project");
  r.apply = f.boolean("apply");
  r.stale_after_s = f.timeout("stale_after_s", true);
  return r;
}

request read_list(field_reader& f) {
  f.only({"sweep", "state", "limit", "after"});
  list_request r;
  r.sweep = f.name("sweep");
  r.state = f.state("state");
  r.limit = read_limit(f).value_or(default_list_limit);
  r.after = f.cursor("after", page_order::registered);
  return r;
}

request read_observations(field_reader& f) {
  f.only({"sweep", "limit", "after"});
  observations_request r;
  r.sweep = f.name("sweep");
  r.limit = read_limit(f);
  r.after = f.cursor("after", page_order::finished);
  return r;
}

/// The first characters of a cursor: which order it belongs to (and a version, should the form
/// ever change).
std::string_view cursor_prefix(page_order order) {
  return order == page_order::registered ? "r1:" : "f1:";
}

using op_reader = request (*)(field_reader&);

struct op_entry {
  std::string_view name;
  op_reader read;
};

const std::array<op_entry, 12> ops = {{
    {"hello",
     [](field_reader& f) -> request {
       f.only({"token"});
       return hello_request{f.secret("token", max_token_bytes)};
     }},
    {"register", read_register},
    {"start",
     [](field_reader& f) -> request {
       f.only({"run"});
       return start_request{f.run_id()};
     }},
    {"heartbeat", read_heartbeat},
    {"complete", read_complete},
    {"fail", read_fail},
    {"status",
     [](field_reader& f) -> request {
       f.only({});
       return status_request{};
     }},
    {"show",
     [](field_reader& f) -> request {
       f.only({"run"});
       return show_request{f.run_id()};
     }},
    {"list", read_list},
    {"observations", read_observations},
    {"resync",
     [](field_reader& f) -> request {
       f.only({"run"});
       return resync_request{f.run_id()};
     }},
    {"reconcile", read_reconcile},
}};

std::string known_ops() {
  std::string names;
  for (const auto& op : ops) {
    if (!names.empty()) names += ", ";
    names += op.name;
  }
  return names;
}

// ---------------------------------------------------------------------------------------------
// Encoding: each writer is the inverse of its reader above.

/// Integral values go on the wire as integers ("progress":1200, not 1200.0), as people write them.
json number_json(double v) {
  constexpr double exact_integer_limit = 9007199254740992.0;  // 2^53
  if (std::trunc(v) == v && std::fabs(v) < exact_integer_limit) {
    return static_cast<std::int64_t>(v);
  }
  return v;
}

void put(json& j, const char* key, const std::optional<std::string>& v) {
  if (v) j[key] = *v;
}

void put(json& j, const char* key, const std::optional<double>& v) {
  if (v) j[key] = number_json(*v);
}

void put_flag(json& j, const char* key, bool v) {
  if (v) j[key] = true;
}

void put_cursor(json& j, page_order order, const std::optional<page_cursor>& c) {
  if (c) j["after"] = encode_cursor(order, *c);
}

/// Each request type as its op's name and fields.
struct request_writer {
  json& j;

  void operator()(const hello_request& r) const {
    j["op"] = "hello";
    put(j, "token", r.token);
  }
  void operator()(const register_params& r) const {
    run_op("register", r.run);
    put(j, "sweep", r.sweep);
    put_wandb_project(r.entity, r.project);
    if (!r.suggestion.is_null()) j["suggestion"] = r.suggestion.value();
    put_flag(j, "watch_peer", r.watch_peer);
    put(j, "heartbeat_timeout_s", r.heartbeat_timeout_s);
    put(j, "max_runtime_s", r.max_runtime_s);
  }
  void operator()(const start_request& r) const { run_op("start", r.run); }
  void operator()(const heartbeat_params& r) const {
    run_op("heartbeat", r.run);
    put(j, "progress", r.progress);
    put(j, "timeout_s", r.timeout_s);
  }
  void operator()(const complete_params& r) const {
    run_op("complete", r.run);
    put(j, "objective", r.objective);
    put(j, "cost", r.cost);
  }
  void operator()(const fail_params& r) const {
    run_op("fail", r.run);
    j["error"] = r.error;
  }
  void operator()(const status_request&) const { j["op"] = "status"; }
  void operator()(const show_request& r) const { run_op("show", r.run); }
  void operator()(const list_request& r) const {
    j["op"] = "list";
    put(j, "sweep", r.sweep);
    if (r.state) j["state"] = to_string(*r.state);
    if (r.limit != default_list_limit) j["limit"] = r.limit;
    put_cursor(j, page_order::registered, r.after);
  }
  void operator()(const observations_request& r) const {
    j["op"] = "observations";
    put(j, "sweep", r.sweep);
    if (r.limit) j["limit"] = *r.limit;
    put_cursor(j, page_order::finished, r.after);
  }
  void operator()(const resync_request& r) const { run_op("resync", r.run); }
  void operator()(const reconcile_request& r) const {
    j["op"] = "reconcile";
    j["sweep"] = r.sweep;
    put_wandb_project(r.entity, r.project);
    put_flag(j, "apply", r.apply);
    put(j, "stale_after_s", r.stale_after_s);
  }

 private:
  void run_op(const char* op, const std::string& run) const {
    j["op"] = op;
    j["run"] = run;
  }
  void put_wandb_project(const std::optional<std::string>& entity,
                         const std::optional<std::string>& project) const {
    put(j, "entity", entity);
    put(j, "project", project);
  }
};

/// A string member of `error`, cut to what an error message may hold; empty when it is not one.
std::string error_part(const json& error, std::string_view key) {
  const auto it = error.find(key);
  if (it == error.end() || !it->is_string()) return {};
  return truncate_utf8(it->get<std::string>(), max_error_bytes);
}

}  // namespace

bool is_valid_run_id(std::string_view id) {
  if (id.empty() || id.size() > max_run_id_chars) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

std::string encode_cursor(page_order order, const page_cursor& c) {
  return fmt::format("{}{}:{}", cursor_prefix(order), c.at_ms, c.run);
}

std::optional<page_cursor> decode_cursor(page_order order, std::string_view text) {
  const std::string_view prefix = cursor_prefix(order);
  if (text.substr(0, prefix.size()) != prefix) return std::nullopt;
  text.remove_prefix(prefix.size());
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  page_cursor c;
  const char* end = text.data() + colon;
  const auto [ptr, ec] = std::from_chars(text.data(), end, c.at_ms);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  const std::string_view run = text.substr(colon + 1);
  if (!is_valid_run_id(run)) return std::nullopt;
  c.run = run;
  return c;
}

std::string truncate_utf8(std::string s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  std::size_t cut = max_bytes;
  // Step back over continuation bytes (10xxxxxx) so the cut lands on a character boundary.
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  s.resize(cut);
  return s;
}

parse_result parse_request(std::string_view line) {
  parse_result out;
  // Before parsing: every later walk of the value (size checks, dumps, destruction) recurses.
  if (json_nests_deeper_than(line, max_request_json_depth)) {
    out.err = {error_code::bad_request,
               fmt::format("the request nests arrays/objects more than {} levels deep",
                           max_request_json_depth)};
    return out;
  }
  json obj = json::parse(line.begin(), line.end(), nullptr, false);
  if (obj.is_discarded()) {
    out.err = {error_code::bad_json, "the line is not valid JSON (UTF-8, one object per line)"};
    return out;
  }
  if (!obj.is_object()) {
    out.err = {error_code::bad_request,
               fmt::format("a request is a JSON object, got {}", type_name(obj))};
    return out;
  }
  auto op_it = obj.find("op");
  if (op_it == obj.end()) {
    out.err = {error_code::bad_request, "missing field 'op'"};
    return out;
  }
  if (!op_it->is_string()) {
    out.err = {error_code::bad_request,
               fmt::format("field 'op': expected string, got {}", type_name(*op_it))};
    return out;
  }
  const auto& op = op_it->get_ref<const std::string&>();
  const auto entry =
      std::find_if(ops.begin(), ops.end(), [&](const op_entry& e) { return e.name == op; });
  if (entry == ops.end()) {
    out.err = {error_code::unknown_op,
               fmt::format("unknown op '{}' (known: {})", truncate_utf8(op, 64), known_ops())};
    return out;
  }
  out.op = entry->name;
  field_reader fields(obj, entry->name);
  request req = entry->read(fields);
  if (fields.failed()) {
    out.err = fields.err();
  } else {
    out.req = std::move(req);
  }
  return out;
}

json request_json(const request& r) {
  json j = json::object();
  std::visit(request_writer{j}, r);
  return j;
}

std::string encode_request(const request& r) {
  return request_json(r).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

reply_error error_of_reply(const json& reply) {
  if (!reply.is_object()) return {};
  const auto error = reply.find("error");
  if (error == reply.end() || !error->is_object()) return {};
  return {error_part(*error, "code"), error_part(*error, "message")};
}

std::vector<std::string_view> op_names() {
  std::vector<std::string_view> names;
  names.reserve(ops.size());
  for (const auto& op : ops) names.push_back(op.name);
  return names;
}

std::string_view reply_result(std::string_view reply) {
  // error_reply() dumps its object with sorted keys: {"error":{"code":"…","message":…},"ok":false}
  constexpr std::string_view head = R"({"error":{"code":")";
  constexpr std::string_view tail = R"("ok":false})";
  while (!reply.empty() && reply.back() == '\n') reply.remove_suffix(1);
  if (reply.substr(0, head.size()) != head || reply.size() < head.size() + tail.size() ||
      reply.substr(reply.size() - tail.size()) != tail) {
    return "ok";
  }
  const std::string_view rest = reply.substr(head.size());
  const std::string_view code = rest.substr(0, rest.find('"'));
  for (error_code c : all_error_codes) {
    if (to_string(c) == code) return to_string(c);
  }
  return to_string(error_code::internal);
}

std::string error_reply(const error& e) {
  json j = {{"ok", false}, {"error", {{"code", to_string(e.code)}, {"message", e.message}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string ok_reply(json body) {
  body["ok"] = true;
  return body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace sweepd::core
