// What several benchmarks share: starting the sweepd under test, or a W&B sink in-process.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>

#include "app/wandb_sink.hpp"
#include "core/config.hpp"

namespace sweepd::bench {

/// Forks and execs `binary --config config`, its stdout and stderr to `log`; the child's pid.
pid_t spawn_sweepd(const std::string& binary, const std::string& config, const std::string& log);

/// Prints `why` to stderr and exits 1: a benchmark that cannot set up has nothing to measure.
[[noreturn]] void exit_with(std::string_view why) noexcept;

/// A benchmark's main: runs `body` and returns its status; what it throws ends the program
/// through exit_with, with the benchmark's name, rather than in std::terminate.
int run_or_exit(std::string_view name, const std::function<int()>& body) noexcept;

/// CPU time of the calling thread, in µs: on shared cores it says more than wall time about code
/// that does not wait.
double thread_cpu_us();

/// Starts `sink` on `cfg` with `key` as WANDB_API_KEY; prints why and exits 1 if it cannot.
void start_sink_or_exit(app::wandb_sink& sink, const core::config& cfg, const std::string& key);

}  // namespace sweepd::bench
