#include "core/run_codec.hpp"

#include <fmt/format.h>

#include <type_traits>
#include <utility>

#include "core/config.hpp"

namespace sweepd::core {

namespace {

using json = nlohmann::json;

/// An integer field as T, or an error when it is not an integer T can hold. nlohmann's own
/// conversion is a plain cast: from a float too large for T (1e300) that is undefined behaviour,
/// from a negative or wider integer a silently different number. sweepd writes these fields as
/// integers, so nothing else is a record it wrote.
template <typename T>
T convert_integer(const json& value, const char* key) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (std::in_range<T>(v)) return static_cast<T>(v);
  } else if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (std::in_range<T>(v)) return static_cast<T>(v);
  } else {
    throw std::invalid_argument(
        fmt::format("field '{}': expected an integer, got {}", key, value.type_name()));
  }
  throw std::invalid_argument(fmt::format("field '{}': {} is out of range", key, value.dump()));
}

/// Reads `key` as T; the error names the key (nlohmann's own type errors do not).
template <typename T>
T convert(const json& value, const char* key) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return convert_integer<T>(value, key);
  } else {
    try {
      return value.get<T>();
    } catch (const json::exception& e) {
      throw std::invalid_argument(fmt::format("field '{}': {}", key, e.what()));
    }
  }
}

template <typename T>
T get_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) throw std::invalid_argument(fmt::format("field '{}' is missing", key));
  return convert<T>(*it, key);
}

template <typename T>
std::optional<T> get_optional(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return convert<T>(*it, key);
}

/// The monotonic point that lies as far before `now` as `then` lies before now's wall time.
/// A wall clock that jumped back must not put the point in the future.
mono_time rebase(wall_time then, instant now) {
  const auto age = now.wall - then;
  if (age <= wall_time::duration::zero()) return now.mono;
  return now.mono - std::chrono::duration_cast<mono_clock::duration>(age);
}

/// A stored duration in seconds as the monotonic clock's duration. Out of [0, max_duration_s] it
/// is no duration sweepd wrote, and past the clock's range converting it is undefined behaviour.
mono_clock::duration duration_field(const json& j, const char* key) {
  const auto seconds = get_field<double>(j, key);
  const auto d = stored_duration(seconds);
  if (!d) {
    throw std::invalid_argument(fmt::format("field '{}': {} s is out of range (0 to {:.0f})", key,
                                            seconds, max_duration_s));
  }
  return *d;
}

wall_time wall_field(const json& j, const char* key) {
  const auto ms = get_field<std::int64_t>(j, key);
  const auto t = stored_wall_time(ms);
  if (!t) {
    throw std::invalid_argument(
        fmt::format("field '{}': {} ms is not a time sweepd wrote", key, ms));
  }
  return *t;
}

run_state state_field(const json& j, const char* key) {
  const auto name = get_field<std::string>(j, key);
  auto s = parse_run_state(name);
  if (!s) throw std::invalid_argument(fmt::format("field '{}': '{}' is not a state", key, name));
  return *s;
}

transition_reason reason_field(const json& j, const char* key) {
  const auto name = get_field<std::string>(j, key);
  auto r = parse_transition_reason(name);
  if (!r) throw std::invalid_argument(fmt::format("field '{}': '{}' is not a reason", key, name));
  return *r;
}

}  // namespace

std::int64_t to_unix_ms(wall_time t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

wall_time from_unix_ms(std::int64_t ms) {
  return wall_time(std::chrono::duration_cast<wall_time::duration>(std::chrono::milliseconds(ms)));
}

std::optional<wall_time> stored_wall_time(std::int64_t ms) {
  // The last millisecond the wall clock's int64 nanoseconds can hold (2262-04-11). (No clock
  // sweepd read said a time before 1970 either.)
  constexpr std::int64_t max_wall_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(wall_time::duration::max()).count();
  if (ms < 0 || ms > max_wall_ms) return std::nullopt;
  return from_unix_ms(ms);
}

std::optional<mono_clock::duration> stored_duration(double seconds) {
  if (!(seconds >= 0 && seconds <= max_duration_s)) return std::nullopt;
  return to_duration(seconds);
}

json encode_run(const run_record& r) {
  json j = json::object();
  put_run_fields(j, r);
  j["id"] = r.id;
  j["peer_pid"] = r.peer_pid;
  j["registered_ms"] = to_unix_ms(r.registered_wall);
  // Stored whatever the state; the `show` reply gives it only for a run that ended.
  if (r.runtime_s) j["runtime_s"] = *r.runtime_s;
  if (r.finished_wall) j["finished_ms"] = to_unix_ms(*r.finished_wall);
  if (r.peer_start_time != 0) j["peer_start_time"] = r.peer_start_time;
  if (!r.peer_boot_id.empty()) j["peer_boot_id"] = r.peer_boot_id.str();
  return j;
}

decoded_run decode_run(const json& j, instant now) {
  decoded_run out;
  if (!j.is_object()) {
    out.error = fmt::format("not a JSON object but {}", j.type_name());
    return out;
  }
  try {
    run_record r;
    r.id = get_field<std::string>(j, "id");
    r.sweep = get_field<std::string>(j, "sweep");
    r.entity = get_field<std::string>(j, "entity");
    r.project = get_field<std::string>(j, "project");
    r.suggestion = json_text(get_field<json>(j, "suggestion"));
    r.owner_uid = get_field<std::uint32_t>(j, "owner_uid");
    r.watch_peer = get_field<bool>(j, "watch_peer");
    r.peer_pid = get_field<std::int32_t>(j, "peer_pid");
    // Absent in records written before sweepd stored which process a pid was.
    r.peer_start_time = get_optional<std::uint64_t>(j, "peer_start_time").value_or(0);
    r.peer_boot_id = get_optional<std::string>(j, "peer_boot_id").value_or("");
    r.state = state_field(j, "state");
    r.reason = reason_field(j, "reason");
    r.registered_wall = wall_field(j, "registered_ms");
    r.heartbeat_timeout = duration_field(j, "heartbeat_timeout_s");
    r.max_runtime = duration_field(j, "max_runtime_s");
    r.stall_timeout = duration_field(j, "stall_timeout_s");
    r.progress = get_optional<double>(j, "progress");
    r.objective = get_optional<double>(j, "objective");
    r.cost = get_optional<double>(j, "cost");
    r.error = get_optional<std::string>(j, "error");
    r.runtime_s = get_optional<double>(j, "runtime_s");
    r.late_by_s = get_optional<double>(j, "late_by_s");
    if (auto it = j.find("finished_ms"); it != j.end() && !it->is_null()) {
      r.finished_wall = wall_field(j, "finished_ms");
    }
    rebase_clocks(r, now);
    out.run = std::move(r);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

void rebase_clocks(run_record& r, instant now) {
  r.registered_mono = rebase(r.registered_wall, now);
  if (r.finished_wall && is_correctable(r)) r.given_up_at = rebase(*r.finished_wall, now);
}

}  // namespace sweepd::core
