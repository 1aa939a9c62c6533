#include "io/process_metrics.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "core/proc_stat.hpp"

namespace sweepd::io {

namespace {

std::optional<std::string> read_self_stat() {
  const int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buffer[2048];
  const ssize_t n = ::read(fd, buffer, sizeof(buffer));
  ::close(fd);
  if (n <= 0) return std::nullopt;
  return std::string(buffer, static_cast<std::size_t>(n));
}

double seconds_of(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::optional<double> count_open_fds() {
  // std::filesystem rather than readdir(), which clang-tidy cannot tell is safe on a private DIR.
  namespace fs = std::filesystem;
  std::error_code ec;
  double n = 0;
  for (fs::directory_iterator it("/proc/self/fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  if (ec) return std::nullopt;
  return n - 1;  // the iterator's own descriptor
}

}  // namespace

std::optional<process_sample> sample_process() {
  const auto text = read_self_stat();
  if (!text) return std::nullopt;
  const auto stat = core::parse_proc_stat(*text);
  if (!stat) return std::nullopt;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  process_sample s;
  s.cpu_seconds = static_cast<double>(stat->utime_ticks + stat->stime_ticks) / ticks;
  s.resident_bytes = static_cast<double>(stat->rss_pages) * page;
  s.virtual_bytes = static_cast<double>(stat->vsize_bytes);
  // The start time is in ticks since boot; the boot's wall time comes from the clocks rather than
  // /proc/stat, which a hardened unit may hide.
  const double boot_wall = seconds_of(CLOCK_REALTIME) - seconds_of(CLOCK_BOOTTIME);
  s.start_time_seconds = boot_wall + static_cast<double>(stat->start_ticks) / ticks;
  s.open_fds = count_open_fds();
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    s.max_fds = static_cast<double>(lim.rlim_cur);
  }
  return s;
}

}  // namespace sweepd::io
