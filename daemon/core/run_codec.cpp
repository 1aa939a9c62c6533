#include "core/run_codec.hpp"

#include <fmt/format.h>

namespace sweepd::core {

namespace {

using json = nlohmann::json;

template <typename T>
void put(json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}

template <typename T>
std::optional<T> get_optional(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<T>();
}

double seconds_of(mono_clock::duration d) {
  return std::chrono::duration_cast<seconds_d>(d).count();
}

/// The monotonic point that lies as far before `now` as `then` lies before now's wall time.
/// A wall clock that jumped back must not put the point in the future.
mono_time rebase(wall_time then, instant now) {
  const auto age = now.wall - then;
  if (age <= wall_time::duration::zero()) return now.mono;
  return now.mono - std::chrono::duration_cast<mono_clock::duration>(age);
}

run_state state_field(const json& j, const char* key) {
  const auto name = j.at(key).get<std::string>();
  auto s = parse_run_state(name);
  if (!s) throw std::invalid_argument(fmt::format("'{}' is not a state", name));
  return *s;
}

transition_reason reason_field(const json& j, const char* key) {
  const auto name = j.at(key).get<std::string>();
  auto r = parse_transition_reason(name);
  if (!r) throw std::invalid_argument(fmt::format("'{}' is not a reason", name));
  return *r;
}

}  // namespace

std::int64_t to_unix_ms(wall_time t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

wall_time from_unix_ms(std::int64_t ms) {
  return wall_time(std::chrono::duration_cast<wall_time::duration>(std::chrono::milliseconds(ms)));
}

json encode_run(const run_record& r) {
  json j = {{"id", r.id},
            {"sweep", r.sweep},
            {"entity", r.entity},
            {"project", r.project},
            {"suggestion", r.suggestion},
            {"owner_uid", r.owner_uid},
            {"watch_peer", r.watch_peer},
            {"peer_pid", r.peer_pid},
            {"state", to_string(r.state)},
            {"reason", to_string(r.reason)},
            {"registered_ms", to_unix_ms(r.registered_wall)},
            {"heartbeat_timeout_s", seconds_of(r.heartbeat_timeout)},
            {"max_runtime_s", seconds_of(r.max_runtime)},
            {"stall_timeout_s", seconds_of(r.stall_timeout)}};
  put(j, "progress", r.progress);
  put(j, "objective", r.objective);
  put(j, "cost", r.cost);
  put(j, "error", r.error);
  put(j, "runtime_s", r.runtime_s);
  put(j, "late_by_s", r.late_by_s);
  if (r.finished_wall) j["finished_ms"] = to_unix_ms(*r.finished_wall);
  return j;
}

decoded_run decode_run(const json& j, instant now) {
  decoded_run out;
  try {
    run_record r;
    r.id = j.at("id").get<std::string>();
    r.sweep = j.at("sweep").get<std::string>();
    r.entity = j.at("entity").get<std::string>();
    r.project = j.at("project").get<std::string>();
    r.suggestion = j.at("suggestion");
    r.owner_uid = j.at("owner_uid").get<std::uint32_t>();
    r.watch_peer = j.at("watch_peer").get<bool>();
    r.peer_pid = j.at("peer_pid").get<std::int32_t>();
    r.state = state_field(j, "state");
    r.reason = reason_field(j, "reason");
    r.registered_wall = from_unix_ms(j.at("registered_ms").get<std::int64_t>());
    r.registered_mono = rebase(r.registered_wall, now);
    r.heartbeat_timeout = to_duration(j.at("heartbeat_timeout_s").get<double>());
    r.max_runtime = to_duration(j.at("max_runtime_s").get<double>());
    r.stall_timeout = to_duration(j.at("stall_timeout_s").get<double>());
    r.progress = get_optional<double>(j, "progress");
    r.objective = get_optional<double>(j, "objective");
    r.cost = get_optional<double>(j, "cost");
    r.error = get_optional<std::string>(j, "error");
    r.runtime_s = get_optional<double>(j, "runtime_s");
    r.late_by_s = get_optional<double>(j, "late_by_s");
    if (auto ms = get_optional<std::int64_t>(j, "finished_ms")) {
      r.finished_wall = from_unix_ms(*ms);
      if (r.state == run_state::timeout) r.timed_out_at = rebase(*r.finished_wall, now);
    }
    out.run = std::move(r);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

json encode_transition(const transition& t) {
  json j = {{"run", t.run},
            {"to", to_string(t.to)},
            {"reason", to_string(t.reason)},
            {"at_ms", to_unix_ms(t.at)}};
  if (t.from) j["from"] = to_string(*t.from);
  put(j, "runtime_s", t.runtime_s);
  put(j, "objective", t.objective);
  put(j, "cost", t.cost);
  put(j, "error", t.error);
  put(j, "late_by_s", t.late_by_s);
  return j;
}

decoded_transition decode_transition(const json& j) {
  decoded_transition out;
  try {
    transition t;
    t.run = j.at("run").get<std::string>();
    if (j.contains("from")) t.from = state_field(j, "from");
    t.to = state_field(j, "to");
    t.reason = reason_field(j, "reason");
    t.at = from_unix_ms(j.at("at_ms").get<std::int64_t>());
    t.runtime_s = get_optional<double>(j, "runtime_s");
    t.objective = get_optional<double>(j, "objective");
    t.cost = get_optional<double>(j, "cost");
    t.error = get_optional<std::string>(j, "error");
    t.late_by_s = get_optional<double>(j, "late_by_s");
    out.value = std::move(t);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

}  // namespace sweepd::core
