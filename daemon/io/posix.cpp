#include "io/posix.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

namespace sweepd::io {
namespace {

/// Closes a descriptor on every way out.
class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  /// Hands the descriptor to the caller.
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

file_error system_file_error(const std::string& path, int err) {
  return {err == ENOENT ? file_error::kind::missing : file_error::kind::unreadable, path,
          errno_text(err)};
}

file_error too_large(const std::string& path, std::size_t max_bytes) {
  return {file_error::kind::too_large, path, fmt::format("larger than {} bytes", max_bytes)};
}

}  // namespace

env_lookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());  // NOLINT(concurrency-mt-unsafe)
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::string errno_text(int err) { return std::generic_category().message(err); }

std::string file_error::message() const { return fmt::format("cannot read {}: {}", path, reason); }

core::result<std::string, file_error> read_file_bounded(const std::string& path,
                                                        std::size_t max_bytes, file_type accept) {
  // O_NOCTTY: a path that names a terminal must not become our controlling one.
  fd_guard file(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (file.get() < 0) return system_file_error(path, errno);
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) return system_file_error(path, errno);
  const bool regular = S_ISREG(st.st_mode);
  if (!regular && accept == file_type::regular_only) {
    return file_error{file_error::kind::not_regular, path, "not a regular file"};
  }
  // The size says it at once for a regular file; the loop below holds for the others (and for a
  // file that grows while it is read).
  if (regular && static_cast<std::size_t>(st.st_size) > max_bytes) {
    return too_large(path, max_bytes);
  }
  std::string text;
  std::array<char, 8192> chunk{};
  for (;;) {
    // A directory opens fine and fails here with EISDIR.
    const ssize_t n = ::read(file.get(), chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return system_file_error(path, errno);
    if (n == 0) return text;
    text.append(chunk.data(), static_cast<std::size_t>(n));
    if (text.size() > max_bytes) return too_large(path, max_bytes);
  }
}

core::result<int> connect_unix(const std::string& path, const unix_connect_options& options) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return core::failure{fmt::format("socket path '{}' is too long ({} bytes, at most {})", path,
                                     path.size(), sizeof(addr.sun_path) - 1)};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int flags = SOCK_STREAM | SOCK_CLOEXEC | (options.non_blocking ? SOCK_NONBLOCK : 0);
  fd_guard socket(::socket(AF_UNIX, flags, 0));
  if (socket.get() < 0) {
    return core::failure{fmt::format("cannot create a socket: {}", errno_text(errno))};
  }
  if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return core::failure{fmt::format("cannot connect to sweepd at {}: {}",
                                     options.name.empty() ? path : options.name,
                                     errno_text(errno))};
  }
  return socket.release();
}

}  // namespace sweepd::io
