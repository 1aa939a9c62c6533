#include "io/process_watch.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <charconv>
#include <string_view>

// Linux 6.5; Debian 12's headers predate it. The kernel answers ENOPROTOOPT where it lacks it.
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#include "io/posix.hpp"

namespace sweepd::io {

namespace {

constexpr auto proc_poll_interval = std::chrono::seconds(1);
constexpr auto resource_warning_every = std::chrono::seconds(60);

/// pidfd_open(2) by its syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C", so its wrapper
/// cannot be called from C++, and a libc without the wrapper still has the syscall.
int open_pidfd(std::int32_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)); }

/// Errors that say "not now" about a pidfd or a /proc read, never "the process is gone".
bool is_resource_error(int error) {
  return error == EMFILE || error == ENFILE || error == ENOMEM || error == EAGAIN;
}

/// Whether the process behind a pidfd has exited (the pidfd is then readable).
bool pidfd_exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

}  // namespace

process_probe probe_process(std::int32_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return {errno == ENOENT || errno == ESRCH ? process_probe::state::gone
                                              : process_probe::state::unknown};
  }
  char buffer[1024];
  const ssize_t n = ::read(fd, buffer, sizeof(buffer) - 1);
  const int read_error = errno;
  ::close(fd);
  if (n < 0) {
    return {read_error == ESRCH ? process_probe::state::gone : process_probe::state::unknown};
  }
  const std::string_view stat(buffer, static_cast<std::size_t>(n));
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos || close + 2 >= stat.size()) return {};
  std::string_view rest = stat.substr(close + 2);
  // Field 3 is the state: a zombie (Z) or dead (X) process has exited already.
  if (rest.front() == 'Z' || rest.front() == 'X') return {process_probe::state::gone};
  // Fields 3 … 21 precede field 22, the start time.
  for (int field = 3; field < 22; ++field) {
    const auto space = rest.find(' ');
    if (space == std::string_view::npos) return {};
    rest.remove_prefix(space + 1);
  }
  std::uint64_t start = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), start);
  if (ec != std::errc()) return {};
  return {process_probe::state::alive, start};
}

std::optional<unsigned long long> live_process_start_time(std::int32_t pid) {
  const process_probe p = probe_process(pid);
  if (p.what != process_probe::state::alive) return std::nullopt;
  return p.start_time;
}

std::string current_boot_id() {
  const int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buffer[64];
  const ssize_t n = ::read(fd, buffer, sizeof(buffer));
  ::close(fd);
  if (n <= 0) return {};
  std::string id(buffer, static_cast<std::size_t>(n));
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

peer_binding bind_connected_peer(int socket_fd, std::int32_t pid, std::uint64_t start_time) {
  peer_binding out;
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  const bool exact =
      ::getsockopt(socket_fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0;
  if (!exact) {
    if (is_resource_error(errno)) return out;  // unknown: watched by pid and start time
    pidfd = open_pidfd(pid);
    if (pidfd < 0) {
      if (errno == ESRCH) out.what = peer_binding::result::gone;
      return out;
    }
  }
  if (pidfd_exited(pidfd)) {
    ::close(pidfd);
    out.what = peer_binding::result::gone;
    return out;
  }
  // While the pidfd's process lives, its pid names it, so /proc tells its start time.
  const process_probe p = probe_process(pid);
  out.start_time = p.what == process_probe::state::alive ? p.start_time : start_time;
  if (!exact && start_time != 0 && p.what == process_probe::state::alive &&
      p.start_time != start_time) {
    // The pid that connected exited and was reused before pidfd_open: not our process.
    ::close(pidfd);
    out.what = peer_binding::result::gone;
    return out;
  }
  out.what = peer_binding::result::bound;
  out.pidfd = pidfd;
  return out;
}

process_watch::process_watch(boost::asio::io_context& io, exit_handler on_exit)
    : io_(io), on_exit_(std::move(on_exit)), poll_timer_(io) {}

process_watch::~process_watch() { stop(); }

void process_watch::stop() {
  stopped_ = true;
  poll_timer_.cancel();
  for (auto& [pid, fd] : pidfds_) {
    boost::system::error_code ec;
    fd->close(ec);
  }
  pidfds_.clear();
  polled_.clear();
}

void process_watch::report_later(std::int32_t pid) {
  boost::asio::post(io_, [this, pid] {
    if (!stopped_) on_exit_(pid);
  });
}

void process_watch::watch(std::int32_t pid, int pidfd, std::uint64_t start_time) {
  if (stopped_ || pid <= 0 || pidfds_.count(pid) != 0 || polled_.count(pid) != 0) {
    if (pidfd >= 0) ::close(pidfd);
    return;
  }
  if (pidfd >= 0) {
    watch_fd(pid, pidfd);
    return;
  }
  if (!polling_) {
    const int fd = open_pidfd(pid);
    if (fd >= 0) {
      // Opened by pid: make sure it is still the process that was meant.
      const process_probe p = probe_process(pid);
      if (start_time != 0 && p.what == process_probe::state::alive && p.start_time != start_time) {
        ::close(fd);
        report_later(pid);  // the pid now names another process: ours has exited
        return;
      }
      watch_fd(pid, fd);
      return;
    }
    if (errno == ESRCH) {
      report_later(pid);  // gone before we could look
      return;
    }
    if (is_resource_error(errno)) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_resource_warning_ >= resource_warning_every) {
        last_resource_warning_ = now;
        spdlog::warn("no pidfd for process {} ({}); checking it in /proc every {}s meanwhile", pid,
                     errno_text(errno), proc_poll_interval.count());
      }
      poll_later(pid, start_time);
      return;
    }
    spdlog::warn("pidfd_open is unavailable ({}); watching processes by checking /proc every {}s",
                 errno_text(errno), proc_poll_interval.count());
    polling_ = true;
  }
  const process_probe p = probe_process(pid);
  if (p.what == process_probe::state::gone ||
      (p.what == process_probe::state::alive && start_time != 0 && p.start_time != start_time)) {
    report_later(pid);
    return;
  }
  poll_later(pid, p.what == process_probe::state::alive ? p.start_time : start_time);
}

void process_watch::watch_fd(std::int32_t pid, int pidfd) {
  pidfds_.emplace(pid, std::make_unique<boost::asio::posix::stream_descriptor>(io_, pidfd));
  wait_for_exit(pid);
}

void process_watch::poll_later(std::int32_t pid, std::uint64_t start_time) {
  polled_.emplace(pid, start_time);
  if (!poll_armed_) poll_proc();
}

void process_watch::wait_for_exit(std::int32_t pid) {
  auto& fd = *pidfds_.at(pid);
  fd.async_wait(boost::asio::posix::descriptor_base::wait_read,
                [this, pid](boost::system::error_code ec) {
                  if (ec == boost::asio::error::operation_aborted || stopped_) return;
                  pidfds_.erase(pid);  // closes the pidfd
                  on_exit_(pid);
                });
}

void process_watch::poll_proc() {
  poll_armed_ = true;
  poll_timer_.expires_after(proc_poll_interval);
  poll_timer_.async_wait([this](boost::system::error_code ec) {
    poll_armed_ = false;
    if (ec || stopped_) return;
    for (auto it = polled_.begin(); it != polled_.end();) {
      const std::int32_t pid = it->first;
      const process_probe p = probe_process(pid);
      if (p.what == process_probe::state::unknown) {
        ++it;  // cannot tell now: never an exit
        continue;
      }
      if (p.what == process_probe::state::gone || (it->second != 0 && p.start_time != it->second)) {
        it = polled_.erase(it);
        on_exit_(pid);
        continue;
      }
      if (it->second == 0) it->second = p.start_time;
      if (!polling_) {
        // Resources may be back: trade the /proc check for a pidfd.
        const int fd = open_pidfd(pid);
        if (fd >= 0) {
          it = polled_.erase(it);
          watch_fd(pid, fd);
          continue;
        }
      }
      ++it;
    }
    if (!polled_.empty()) poll_proc();
  });
}

}  // namespace sweepd::io
