#pragma once

// Small POSIX helpers shared by the adapters, the daemon and sweepctl: one home each, so that
// each is fixed (EINTR, O_CLOEXEC, the size bound) in one place.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace sweepd::io {

/// Reads one environment variable; nullopt when unset. Injected, so that tests need not set
/// the process's own environment.
using env_lookup = std::function<std::optional<std::string>(std::string_view name)>;

/// This process's environment (getenv). Both programs read it on their one thread and never set
/// it, which is what makes getenv safe here.
env_lookup process_environment();

/// The text of an errno value, e.g. "No such file or directory" (thread-safe, unlike strerror).
std::string errno_text(int err);

/// Why read_file_bounded refused a file.
struct file_error {
  enum class kind {
    missing,      ///< the path does not exist (ENOENT)
    unreadable,   ///< open, stat or read failed for another reason (the reason says which)
    too_large,    ///< larger than the bound
    not_regular,  ///< a directory, device or FIFO where a regular file was required
  };
  kind what = kind::unreadable;
  std::string path;
  /// Why, without the path: "Permission denied", "larger than 65536 bytes".
  std::string reason;

  /// "cannot read <path>: <reason>".
  std::string message() const;
};

/// Which files read_file_bounded accepts.
enum class file_type {
  any,           ///< whatever open() and read() take (a FIFO, /dev/stdin); a directory fails
  regular_only,  ///< refuse anything but a regular file before reading a byte
};

/// The whole content of `path`, at most `max_bytes` of it: a larger file is refused, never
/// truncated, and no more than `max_bytes` + one read's worth is held in memory on the way.
core::result<std::string, file_error> read_file_bounded(const std::string& path,
                                                        std::size_t max_bytes,
                                                        file_type accept = file_type::any);

/// How connect_unix opens its socket.
struct unix_connect_options {
  /// O_NONBLOCK on the returned descriptor. A Unix socket connects at once or not at all either
  /// way; non-blocking, a full backlog fails at once (EAGAIN) instead of waiting.
  bool non_blocking = false;
  /// How errors name the socket ("cannot connect to sweepd at <name>"); the path when empty.
  std::string name;
};

/// A connected AF_UNIX stream socket (close-on-exec) to `path`; the caller owns the descriptor.
/// The peer is sweepd's control socket, the only Unix socket our programs connect to, and the
/// errors say so: "socket path '<path>' is too long (...)", "cannot create a socket: ...",
/// "cannot connect to sweepd at <name>: ...".
core::result<int> connect_unix(const std::string& path, const unix_connect_options& options = {});

}  // namespace sweepd::io
