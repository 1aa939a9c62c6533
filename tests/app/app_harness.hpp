#pragma once

// sweepd's daemon in the test's own process, on a fake clock: its loop runs on a thread of its
// own, its control socket and state file live in a temp dir, and its log is captured, so that a
// test can move time, reload, break the journal and wait for what the daemon logs.
//
//   test::temp_dir dir;
//   test::daemon_in_process d(dir, "timeouts: {heartbeat: 300}\n");
//   d.start();
//   d.call({{"op", "register"}, {"run", "r1"}});
//   d.advance(std::chrono::seconds(300));  // the run's deadline passes at once
//   d.call({{"op", "show"}, {"run", "r1"}});

#include <spdlog/sinks/base_sink.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "app/daemon.hpp"
#include "fakes/fake_clock.hpp"
#include "io/client.hpp"
#include "support/daemon_support.hpp"
#include "support/process_support.hpp"

namespace sweepd::test {

/// An spdlog sink that keeps every message and lets a test wait for one.
class log_capture final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  /// Waits up to `timeout` for a message containing `text`; true when one came.
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout);
  /// Every message so far, one a line.
  std::string text() const;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override {}

 private:
  mutable std::mutex text_mutex_;
  std::condition_variable logged_;
  std::string text_;
};

/// app::daemon on a fake_clock with its loop on a thread; its config is a file in `dir`
/// (write_daemon_config), so that reload() reads a real file.
class daemon_in_process {
 public:
  explicit daemon_in_process(const temp_dir& dir, const std::string& extra = "");
  ~daemon_in_process();
  daemon_in_process(const daemon_in_process&) = delete;
  daemon_in_process& operator=(const daemon_in_process&) = delete;

  /// Loads the config, opens the daemon (journal, socket), starts its loop and connects; a test
  /// failure when any of it fails. Again after stop(): a restart on the same state file and clock.
  void start();
  /// Stops the loop, joins it and destroys the daemon.
  void stop();

  /// One request on the test's own connection; null (and a test failure) when it got no reply.
  nlohmann::json call(const nlohmann::json& request);
  /// Moves the fake clock by `d` on the loop's thread, then lets the loop run what that made due.
  void advance(std::chrono::nanoseconds d);
  /// Runs `f` on the loop's thread and waits (at most 10 s) until it has run.
  void on_loop(const std::function<void()>& f);
  /// Rewrites the config with `extra` (the whole text when `raw`) and reloads it as SIGHUP does.
  void reload(const std::string& extra, bool raw = false);
  /// Makes the journal refuse every write (SQLite's query_only), or accept them again: each
  /// commit fails as on a full or read-only disk.
  void refuse_journal_writes(bool refuse);
  /// Waits (at most 10 s) for the daemon to log a message containing `text`.
  bool wait_for_log(const std::string& text);
  /// What the daemon logged so far.
  std::string log() const { return log_->text(); }

  fake_clock& clock() { return clock_; }
  app::daemon& get() { return *daemon_; }
  const daemon_paths& paths() const { return paths_; }

 private:
  /// Sends the daemon's log (debug and up) to log_ from now on.
  void capture_log();

  daemon_paths paths_;
  fake_clock clock_;
  std::shared_ptr<log_capture> log_ = std::make_shared<log_capture>();
  std::unique_ptr<app::daemon> daemon_;
  std::thread loop_;
  io::client client_;
};

}  // namespace sweepd::test
