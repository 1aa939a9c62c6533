// What several benchmarks share: starting the sweepd under test.
#pragma once

#include <sys/types.h>

#include <string>

namespace sweepd::bench {

/// Forks and execs `binary --config config`, its stdout and stderr to `log`; the child's pid.
pid_t spawn_sweepd(const std::string& binary, const std::string& config, const std::string& log);

}  // namespace sweepd::bench
