#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace sweepd::io {

/// sd_notify wrappers; each is a no-op when not started by systemd (no $NOTIFY_SOCKET).
void notify_ready();
void notify_reloading();
void notify_stopping();
void notify_status(std::string_view status);
/// WATCHDOG=1: the service is alive (systemd restarts it when these stop for WatchdogSec=).
void notify_watchdog();
/// The watchdog interval systemd expects pings within ($WATCHDOG_USEC, for this process when
/// $WATCHDOG_PID is set); nullopt when the watchdog is off.
std::optional<std::chrono::microseconds> watchdog_interval();

}  // namespace sweepd::io
