#pragma once

// The real sweepd for system tests, started on a temp config with its systemd notifications
// (READY=1, RELOADING=1, STOPPING=1) sent to a socket the test owns, so that "ready" and
// "reloaded" are events to wait for rather than states to poll.
//
//   test::temp_dir dir;
//   test::sweepd_under_test d(dir, "timeouts: {heartbeat: 5}\n");
//   d.start();                               // waits for READY=1
//   auto reply = d.call({{"op", "status"}});
//   d.reload("timeouts: {heartbeat: 9}\n");  // rewrites the config, SIGHUP, waits for READY=1

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/client.hpp"
#include "support/process_support.hpp"

namespace sweepd::test {

/// A datagram socket in the role of systemd's $NOTIFY_SOCKET.
class notify_listener {
 public:
  explicit notify_listener(std::string path);
  ~notify_listener();
  notify_listener(const notify_listener&) = delete;
  notify_listener& operator=(const notify_listener&) = delete;

  const std::string& path() const { return path_; }
  /// Waits up to `timeout` for a message that has `field` (e.g. "READY=1") as one of its lines;
  /// messages before it are consumed. True when it came; false at the timeout, or as soon as
  /// `give_up_fd` (when not -1, e.g. a process's exit_fd()) is readable with no message pending.
  bool wait_for(const std::string& field, std::chrono::milliseconds timeout, int give_up_fd = -1);
  /// Every message received so far by wait_for, in order.
  const std::vector<std::string>& received() const { return received_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> received_;
};

/// Where a test's daemon keeps its socket, state file and config.
struct daemon_paths {
  std::string socket;
  std::string state;
  std::string config;
  /// sweepd.sock, state.db and sweepd.yaml in `dir`.
  static daemon_paths in(const temp_dir& dir);
};

/// Writes the config file at `paths.config` (atomically): `extra` (YAML) with the socket and
/// state paths put in, W&B offline and debug logging unless `extra` says otherwise; `extra` alone
/// when `raw` (for invalid files).
void write_daemon_config(const daemon_paths& paths, const std::string& extra, bool raw = false);

/// sweepd on a config written into `dir` (socket, state file, W&B offline unless `extra` says
/// otherwise; `extra` is YAML appended to the base keys).
class sweepd_under_test {
 public:
  sweepd_under_test(const temp_dir& dir, const std::string& extra = "",
                    std::vector<std::string> env = {});

  /// Starts sweepd and waits (at most 10 s) for READY=1; a test failure if it does not come.
  void start();
  /// Starts sweepd and waits (at most 10 s) for READY=1 or its exit, whichever comes first: true
  /// (and connected) when READY=1 came; false when sweepd exited first (proc() has its exit code
  /// and stderr); a test failure, and false, when neither happened in time.
  bool try_start();
  /// Keeps the state file at `path` in the configs written from now on (the next write_config()).
  void set_state_path(std::string path) { state_ = std::move(path); }
  /// Runs sweepd through `launcher` (a program that execs the rest of its arguments, e.g.
  /// {"/usr/bin/prlimit", "--nofile=128:128", "--"}) from the next start().
  void set_launcher(std::vector<std::string> launcher) { launcher_ = std::move(launcher); }
  /// Rewrites the config with `extra` (the whole text when `raw`), sends SIGHUP and waits for the
  /// READY=1 after RELOADING=1.
  bool reload(const std::string& extra, bool raw = false);
  /// Writes the config file with `extra`; the raw text when `raw` (for invalid files).
  void write_config(const std::string& extra, bool raw = false);
  /// SIGTERM and wait (10 s); the exit code.
  std::optional<int> stop();

  /// One request on the test's own connection (connected at start()).
  nlohmann::json call(const nlohmann::json& request);
  /// Polls `show` until the run is in `state`, for at most 10 s; the run record.
  nlohmann::json wait_for_state(const std::string& run, const std::string& state);

  const std::string& socket_path() const { return socket_; }
  const std::string& state_path() const { return state_; }
  const std::string& config_path() const { return config_; }
  process& proc() { return *process_; }
  notify_listener& notify() { return notify_; }

 private:
  std::string socket_;
  std::string state_;
  std::string config_;
  std::vector<std::string> env_;
  std::vector<std::string> launcher_;
  notify_listener notify_;
  std::optional<process> process_;
  io::client client_;
};

}  // namespace sweepd::test
