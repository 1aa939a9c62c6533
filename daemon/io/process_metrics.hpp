#pragma once

#include <cstdint>
#include <optional>

namespace sweepd::io {

/// This process's resource use, as Prometheus client libraries report it (process_* series).
struct process_sample {
  double cpu_seconds = 0;  // user + system
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double start_time_seconds = 0;   // since the Unix epoch
  std::optional<double> open_fds;  // nullopt when /proc/self/fd cannot be listed
  std::optional<double> max_fds;   // the soft RLIMIT_NOFILE
};

/// Reads /proc/self/stat and /proc/self/fd; nullopt when /proc/self/stat cannot be read.
std::optional<process_sample> sample_process();

}  // namespace sweepd::io
