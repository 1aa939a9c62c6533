#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/run.hpp"
#include "core/time.hpp"

namespace sweepd::core {

/// The durable form of a run: everything but its history (stored as transitions) and its
/// monotonic times (meaningless after a restart). Wall times are milliseconds since the epoch.
nlohmann::json encode_run(const run_record& run);

/// Rebuilds a run from encode_run()'s form. Monotonic times are rebased on `now` so that ages and
/// runtimes carry on; liveness starts afresh (see supervisor::restore). An error names the field.
struct decoded_run {
  std::optional<run_record> run;
  std::string error;
};
decoded_run decode_run(const nlohmann::json& j, instant now);

/// Sets a run's monotonic times (registration, when sweepd gave up on it) from its wall times,
/// as they lie before `now`; a wall time in the future counts as now.
void rebase_clocks(run_record& r, instant now);

std::int64_t to_unix_ms(wall_time t);
wall_time from_unix_ms(std::int64_t ms);

/// A stored wall time (Unix ms) or duration (seconds) as sweepd's clocks hold it; nullopt when it
/// is none that sweepd wrote (before 1970, past the clock's end in 2262, a duration out of
/// [0, max_duration_s]): converting those would overflow, which is undefined behaviour.
std::optional<wall_time> stored_wall_time(std::int64_t ms);
std::optional<mono_clock::duration> stored_duration(double seconds);

}  // namespace sweepd::core
