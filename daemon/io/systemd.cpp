#include "io/systemd.hpp"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdint>
#include <string>

namespace sweepd::io {

void notify_ready() { sd_notify(0, "READY=1"); }

void notify_reloading() {
  // systemd ≥ 253 wants the monotonic time with RELOADING=1 (Type=notify-reload).
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long usec = static_cast<long long>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%lld", usec);
}

void notify_stopping() { sd_notify(0, "STOPPING=1"); }

void notify_status(std::string_view status) {
  const std::string line = "STATUS=" + std::string(status);
  sd_notify(0, line.c_str());
}

void notify_watchdog() { sd_notify(0, "WATCHDOG=1"); }

std::optional<std::chrono::microseconds> watchdog_interval() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec);
}

}  // namespace sweepd::io
