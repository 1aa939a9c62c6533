#pragma once

// Helpers for tests that run the real binaries (sweepd, sweepctl): start a process with a chosen
// environment, capture what it prints, wait for it with a deadline, and make a scratch directory.
//
//   sweepd::test::temp_dir dir;                                  // /tmp/swXXXXXX, removed at end
//   auto r = sweepd::test::run_command({SWEEPCTL_BINARY, "--socket", dir.file("s.sock"), "status"},
//                                      {}, std::chrono::seconds(10));
//   EXPECT_EQ(r.exit_code, 3) << r.err;
//
// For a long-running child (the daemon), use `process` directly:
//
//   auto daemon = sweepd::test::process::start({SWEEPD_BINARY, "--config", cfg});
//   ... talk to it ...
//   daemon.send_signal(SIGTERM);
//   auto status = daemon.wait_for(std::chrono::seconds(10));   // nullopt: still running
//   EXPECT_EQ(status, 0) << daemon.err();

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sweepd::test {

/// What a finished (or killed) command did.
struct command_result {
  /// The exit status; 128 + N when killed by signal N (as a shell reports it).
  int exit_code = -1;
  /// True when the command outlived its timeout and was killed with SIGKILL.
  bool timed_out = false;
  std::string out;  // everything it wrote to stdout
  std::string err;  // everything it wrote to stderr
};

/// A child process started with posix_spawn in its own process group, stdin from /dev/null.
/// Its stdout and stderr go to anonymous in-memory files (memfd), not pipes, so a chatty child
/// never blocks on a full pipe and its output so far can be read at any time without a reader
/// thread. Move-only; the destructor kills the whole process group (SIGKILL) if the child is
/// still running and reaps it, so a failing test never leaks processes.
class process {
 public:
  /// Starts `argv[0]` (a path; PATH is not searched) with arguments `argv` and exactly the
  /// environment `env` ("NAME=value" entries; empty means an empty environment, which keeps tests
  /// hermetic). Throws std::system_error when the program cannot be started.
  static process start(const std::vector<std::string>& argv,
                       const std::vector<std::string>& env = {});

  process(process&& other) noexcept;
  process& operator=(process&& other) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  ~process();

  pid_t pid() const { return pid_; }
  /// True until wait_for() has seen the child exit.
  bool running() const { return pid_ > 0 && !exit_code_; }
  /// Sends `signal` to the child (not its group); false if it has already been reaped.
  bool send_signal(int signal);
  /// Waits up to `timeout` for the child to exit; its exit code (128 + N for signal N), or
  /// nullopt if it is still running. Returns the same code again once the child has exited.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  /// Kills the process group with SIGKILL and reaps the child; returns its exit code.
  int kill();
  /// A descriptor that poll() reports readable once the child has exited (its pidfd), for waiting
  /// on the exit together with something else; -1 when the kernel gave none.
  int exit_fd() const { return pidfd_; }

  /// Everything the child has written to stdout / stderr so far.
  std::string out() const;
  std::string err() const;

 private:
  process() = default;
  void release();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::optional<int> exit_code_;
};

/// Runs a command to completion: starts it (see process::start), waits up to `timeout`, kills its
/// process group if it is still running then (timed_out = true), and returns what it printed.
command_result run_command(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// The current process's environment with `overrides` ("NAME=value") put in place of any entry
/// of the same name; for a child that needs PATH, HOME and the like.
std::vector<std::string> environment_with(const std::vector<std::string>& overrides);

/// A fresh directory made with mkdtemp under /tmp, with a short name (/tmp/swXXXXXX) so that Unix
/// socket paths inside it stay far below the 108-byte limit. Removed with all its contents when
/// the object goes away. Move-only.
class temp_dir {
 public:
  temp_dir();  // throws std::system_error when mkdtemp fails
  temp_dir(temp_dir&& other) noexcept;
  temp_dir& operator=(temp_dir&& other) noexcept;
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir();

  const std::filesystem::path& path() const { return path_; }
  /// The path of `name` inside the directory, as a string (the file need not exist).
  std::string file(std::string_view name) const;

 private:
  void remove();

  std::filesystem::path path_;
};

}  // namespace sweepd::test
