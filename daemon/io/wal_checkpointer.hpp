#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/result.hpp"

struct sqlite3;

namespace sweepd::io {

/// Copies a WAL-mode database's log back into the database file on a thread of its own, so that
/// the event loop's commits pay for their own log write and sync only. SQLite's automatic
/// checkpoint runs inside the commit that crosses its threshold: with a small log that was most
/// commits, each adding a sync of the database file and the copying to the loop's time.
///
/// The checkpoints are PASSIVE, through a second connection: they never take the write lock, so a
/// commit never waits for one. The log restarts from its beginning (and is cut back to the
/// journal_size_limit) at the first commit after a checkpoint that caught up with it.
class wal_checkpointer {
 public:
  /// Opens its own connection to `path` (which must already be in WAL mode) and starts the thread;
  /// SQLite's reason when the database cannot be opened.
  static core::result<std::unique_ptr<wal_checkpointer>> start(const std::string& path);
  /// Stops the thread after the checkpoint under way, if any.
  ~wal_checkpointer();
  wal_checkpointer(const wal_checkpointer&) = delete;
  wal_checkpointer& operator=(const wal_checkpointer&) = delete;

  /// Asks for a checkpoint soon; cheap (a lock and a notify), called after a commit.
  void request();
  /// Checkpoints done so far (tests and benchmarks).
  std::size_t done() const;
  /// Waits until no checkpoint is asked for or running.
  void wait_idle();
  /// Why checkpoints started failing, once per run of failures (the thread does not log: the
  /// logger belongs to the event loop's thread).
  std::optional<std::string> take_failure();

 private:
  explicit wal_checkpointer(sqlite3* db);
  void run();

  sqlite3* db_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool requested_ = false;
  bool running_ = false;
  std::condition_variable idle_;
  bool stopping_ = false;
  std::size_t done_ = 0;
  bool failing_ = false;
  std::optional<std::string> failure_;  // not yet taken
  std::thread thread_;
};

}  // namespace sweepd::io
