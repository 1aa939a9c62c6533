#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sweepd::core {

/// The fields of /proc/PID/stat that process metrics need (proc(5) numbering in comments).
struct proc_stat {
  std::uint64_t utime_ticks = 0;  // 14: user CPU, clock ticks
  std::uint64_t stime_ticks = 0;  // 15: system CPU, clock ticks
  std::uint64_t start_ticks = 0;  // 22: start time, clock ticks since boot
  std::uint64_t vsize_bytes = 0;  // 23: virtual memory size
  std::uint64_t rss_pages = 0;    // 24: resident set size, pages
};

/// Parses the text of /proc/PID/stat; nullopt when it is not of that form. The command name
/// (field 2) may hold spaces and parentheses: the fields resume after its last ')'.
std::optional<proc_stat> parse_proc_stat(std::string_view text);

}  // namespace sweepd::core
