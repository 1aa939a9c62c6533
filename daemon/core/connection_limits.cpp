#include "core/connection_limits.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sweepd::core {

std::size_t admin_reserved_connections(std::size_t max_connections) {
  return std::min(max_admin_reserved_connections, max_connections / 8);
}

std::optional<std::string> refuse_connection(const connection_limits& limits, std::size_t open,
                                             std::size_t open_by_uid, std::uint32_t uid,
                                             bool admin) {
  if (open >= limits.max_connections) {
    return fmt::format("too many connections: {} open, the limit (socket.max_connections)", open);
  }
  if (admin) return std::nullopt;
  const std::size_t reserved = admin_reserved_connections(limits.max_connections);
  if (open >= limits.max_connections - reserved) {
    return fmt::format(
        "too many connections: {} open; the last {} of socket.max_connections = {} are kept for "
        "root and socket.admin_uids",
        open, reserved, limits.max_connections);
  }
  if (open_by_uid >= limits.max_per_uid) {
    return fmt::format(
        "uid {} has {} connections open, the limit per uid (socket.max_connections_per_uid = {})",
        uid, open_by_uid, limits.max_per_uid);
  }
  return std::nullopt;
}

std::uint32_t connections_within_fd_limit(std::uint64_t fd_limit, std::uint32_t wandb_in_flight) {
  const std::uint64_t kept = reserved_descriptors + wandb_in_flight;
  const std::uint64_t usable = fd_limit > kept ? fd_limit - kept : 0;
  const std::uint64_t connections = usable / descriptors_per_connection;
  return static_cast<std::uint32_t>(std::clamp<std::uint64_t>(connections, 1, UINT32_MAX));
}

}  // namespace sweepd::core
