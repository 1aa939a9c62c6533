#include "io/process_watch.hpp"

#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sweepd::io {

namespace {

constexpr auto proc_poll_interval = std::chrono::seconds(1);

/// pidfd_open(2) by its syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C", so its wrapper
/// cannot be called from C++, and a libc without the wrapper still has the syscall.
int open_pidfd(std::int32_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)); }

}  // namespace

std::optional<unsigned long long> live_process_start_time(std::int32_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  // After ')' come field 3 (state) … field 22 (starttime). A zombie has exited already.
  if (!(fields >> field) || field == "Z" || field == "X") return std::nullopt;
  for (int i = 4; i < 22 && (fields >> field); ++i) {
  }
  unsigned long long start = 0;
  if (!(fields >> start)) return std::nullopt;
  return start;
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

void process_watch::watch(std::int32_t pid) {
  if (stopped_ || pid <= 0 || pidfds_.count(pid) != 0 || polled_.count(pid) != 0) return;
  if (!polling_) {
    const int fd = open_pidfd(pid);
    if (fd >= 0) {
      pidfds_.emplace(pid, std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd));
      wait_for_exit(pid);
      return;
    }
    if (errno == ESRCH) {
      report_later(pid);  // gone before we could look
      return;
    }
    spdlog::warn("pidfd_open is unavailable ({}); watching processes by checking /proc every {}s",
                 std::strerror(errno), proc_poll_interval.count());
    polling_ = true;
  }
  const auto start = live_process_start_time(pid);
  if (!start) {
    report_later(pid);
    return;
  }
  const bool first = polled_.empty();
  polled_.emplace(pid, *start);
  if (first) poll_proc();
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
  poll_timer_.expires_after(proc_poll_interval);
  poll_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopped_) return;
    for (auto it = polled_.begin(); it != polled_.end();) {
      const auto start = live_process_start_time(it->first);
      if (!start || *start != it->second) {
        const std::int32_t pid = it->first;
        it = polled_.erase(it);
        on_exit_(pid);
      } else {
        ++it;
      }
    }
    if (!polled_.empty()) poll_proc();
  });
}

}  // namespace sweepd::io
