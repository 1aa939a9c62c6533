#pragma once

#include <string_view>

namespace sweepd::io {

/// sd_notify wrappers; each is a no-op when not started by systemd (no $NOTIFY_SOCKET).
void notify_ready();
void notify_reloading();
void notify_stopping();
void notify_status(std::string_view status);

}  // namespace sweepd::io
