#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace sweepd::io {

/// What /proc says of a pid right now.
struct process_probe {
  enum class state {
    alive,    // running (or stopped), with `start_time`
    gone,     // no such process, or a zombie: it has exited
    unknown,  // /proc could not be read (EMFILE, ENOMEM, …): never taken for an exit
  };
  state what = state::unknown;
  std::uint64_t start_time = 0;  // clock ticks since boot (field 22 of /proc/PID/stat)
};
process_probe probe_process(std::int32_t pid);

/// The start time of a live process, or nullopt when it is gone or cannot be read.
std::optional<unsigned long long> live_process_start_time(std::int32_t pid);

/// This boot's id (/proc/sys/kernel/random/boot_id); empty when it cannot be read.
std::string current_boot_id();

/// The process at the other end of a connection, for binding a watch_peer run to it.
struct peer_binding {
  enum class result {
    bound,    // `pidfd` refers to it (owned by the caller, who hands it to process_watch)
    gone,     // the process that connected has exited (or its pid now names another one)
    unknown,  // no pidfd could be had (a resource limit): watch it by pid and start time
  };
  result what = result::unknown;
  int pidfd = -1;
  std::uint64_t start_time = 0;
};

/// Binds to the process that connected on `socket_fd`: its pidfd from SO_PEERPIDFD where the
/// kernel has it (exact even if the pid has been reused since), else pidfd_open(pid) checked
/// against `start_time` (read when the connection was accepted; 0 when unknown).
peer_binding bind_connected_peer(int socket_fd, std::int32_t pid, std::uint64_t start_time);

/// Tells the event loop at once when a watched process exits (process watch). Uses a pidfd with
/// an Asio descriptor wait: the kernel makes it readable when the process ends. A resource error
/// (EMFILE, ENFILE, ENOMEM) is never taken for an exit: that process is then checked in /proc
/// every second, by pid and start time, until a pidfd can be had. Where pidfd_open does not exist
/// (kernels before 5.3) every process is checked that way; that fallback is logged once.
class process_watch {
 public:
  /// Called on the loop's thread with the pid of a watched process that exited.
  using exit_handler = std::function<void(std::int32_t pid)>;

  process_watch(boost::asio::io_context& io, exit_handler on_exit);
  ~process_watch();
  process_watch(const process_watch&) = delete;
  process_watch& operator=(const process_watch&) = delete;

  /// Starts watching `pid`; `pidfd` (taken over) when the caller has one, and the process's
  /// `start_time` when known, so that a pid reused by another process is reported as an exit. A
  /// second call for the same pid does nothing. A process already gone is reported right away.
  void watch(std::int32_t pid, int pidfd = -1, std::uint64_t start_time = 0);
  /// Stops watching everything (shutdown).
  void stop();
  std::size_t watched() const { return pidfds_.size() + polled_.size(); }
  /// True when pidfd_open does not exist here and every process is checked in /proc.
  bool polling() const { return polling_; }
  /// Processes checked in /proc for want of a pidfd.
  std::size_t polled() const { return polled_.size(); }

 private:
  void watch_fd(std::int32_t pid, int pidfd);
  void poll_later(std::int32_t pid, std::uint64_t start_time);
  void wait_for_exit(std::int32_t pid);
  void report_later(std::int32_t pid);
  void poll_proc();

  boost::asio::io_context& io_;
  exit_handler on_exit_;
  std::map<std::int32_t, std::unique_ptr<boost::asio::posix::stream_descriptor>> pidfds_;
  std::map<std::int32_t, std::uint64_t> polled_;  // pid → start time (0: take the first seen)
  boost::asio::steady_timer poll_timer_;
  bool polling_ = false;
  bool poll_armed_ = false;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point last_resource_warning_{};
};

}  // namespace sweepd::io
