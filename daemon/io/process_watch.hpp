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

/// Tells the event loop at once when a watched process exits (DESIGN §2, process watch). Uses a
/// pidfd (`pidfd_open`) with an Asio descriptor wait: the kernel makes it readable when the
/// process ends. Where pidfd_open is unavailable (kernels before 5.3), falls back to checking
/// /proc/PID every second, comparing the process start time so that a reused pid is not taken
/// for the watched process; that fallback is logged once.
class process_watch {
 public:
  /// Called on the loop's thread with the pid of a watched process that exited.
  using exit_handler = std::function<void(std::int32_t pid)>;

  process_watch(boost::asio::io_context& io, exit_handler on_exit);
  ~process_watch();
  process_watch(const process_watch&) = delete;
  process_watch& operator=(const process_watch&) = delete;

  /// Starts watching `pid` (a second call for the same pid does nothing). A process that is
  /// already gone is reported as exited, from the loop, right away.
  void watch(std::int32_t pid);
  /// Stops watching everything (shutdown).
  void stop();
  std::size_t watched() const { return pidfds_.size() + polled_.size(); }
  /// True when the /proc fallback is in use.
  bool polling() const { return polling_; }

 private:
  void wait_for_exit(std::int32_t pid);
  void report_later(std::int32_t pid);
  void poll_proc();

  boost::asio::io_context& io_;
  exit_handler on_exit_;
  std::map<std::int32_t, std::unique_ptr<boost::asio::posix::stream_descriptor>> pidfds_;
  std::map<std::int32_t, unsigned long long> polled_;  // pid → start time (clock ticks)
  boost::asio::steady_timer poll_timer_;
  bool polling_ = false;
  bool stopped_ = false;
};

/// The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or
/// nullopt when it does not exist or has exited (a zombie).
std::optional<unsigned long long> live_process_start_time(std::int32_t pid);

}  // namespace sweepd::io
