#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace sweepd::core {

/// Connection slots kept for root and socket.admin_uids, so that an operator can always connect:
/// at most this many of the last slots of max_connections (an eighth of them when fewer).
inline constexpr std::size_t max_admin_reserved_connections = 8;
/// Descriptors kept for everything but connections: the journal (database, WAL, shared memory,
/// lock), logs, the event loop, the reserve descriptor, metrics, with room to spare. (Connections
/// being refused take their descriptor briefly; most connections leave their pidfd share unused.)
inline constexpr std::uint64_t reserved_descriptors = 64;
/// What one connection may cost: its socket, and the pidfd of a worker registered with watch_peer.
inline constexpr std::uint64_t descriptors_per_connection = 2;

/// The connection limits in force (config socket.*, max_connections already fitted to the
/// open-files limit).
struct connection_limits {
  std::size_t max_connections = 4096;
  std::size_t max_per_uid = 1024;
};

/// The slots of `max_connections` that only admins may take.
std::size_t admin_reserved_connections(std::size_t max_connections);

/// Why a new connection from `uid` must be answered `busy`, or nullopt to serve it. `open` counts
/// the connections being served, `open_by_uid` those of the same uid. Admins (root and
/// socket.admin_uids) are held to max_connections only: they may use the reserved slots and are not
/// counted against max_connections_per_uid, which protects users from each other.
std::optional<std::string> refuse_connection(const connection_limits& limits, std::size_t open,
                                             std::size_t open_by_uid, std::uint32_t uid,
                                             bool admin);

/// The most connections sweepd can hold with `fd_limit` open files (RLIMIT_NOFILE) while keeping
/// descriptors for W&B requests (`wandb_in_flight`) and itself; at least 1.
std::uint32_t connections_within_fd_limit(std::uint64_t fd_limit, std::uint32_t wandb_in_flight);

}  // namespace sweepd::core
