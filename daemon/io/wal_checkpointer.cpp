#include "io/wal_checkpointer.hpp"

#include <sqlite3.h>

#include <utility>

namespace sweepd::io {

core::result<std::unique_ptr<wal_checkpointer>> wal_checkpointer::start(const std::string& path) {
  sqlite3* db = nullptr;
  // FULLMUTEX is not needed: this connection is only ever used by the checkpointer's thread.
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    core::failure why{db ? sqlite3_errmsg(db) : "out of memory"};
    sqlite3_close_v2(db);
    return why;
  }
  // Its own automatic checkpoints would be pointless: it never writes.
  sqlite3_wal_autocheckpoint(db, 0);
  // A connection finds the database in WAL mode on its first read; until then a checkpoint
  // through it does nothing (and says so with -1 frames).
  if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    core::failure why{sqlite3_errmsg(db)};
    sqlite3_close_v2(db);
    return why;
  }
  return std::unique_ptr<wal_checkpointer>(new wal_checkpointer(db));
}

wal_checkpointer::wal_checkpointer(sqlite3* db) : db_(db), thread_([this] { run(); }) {}

wal_checkpointer::~wal_checkpointer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
  sqlite3_close_v2(db_);
}

void wal_checkpointer::request() {
  {
    std::lock_guard lock(mutex_);
    requested_ = true;
  }
  wake_.notify_one();
}

std::size_t wal_checkpointer::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

void wal_checkpointer::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return !requested_ && !running_; });
}

std::optional<std::string> wal_checkpointer::take_failure() {
  std::lock_guard lock(mutex_);
  return std::exchange(failure_, std::nullopt);
}

void wal_checkpointer::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return requested_ || stopping_; });
    if (stopping_) return;
    requested_ = false;
    running_ = true;
    lock.unlock();
    int log_frames = 0;
    int copied_frames = 0;
    const int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                             &copied_frames);
    // BUSY: another checkpoint (the daemon's own, when it reclaims space) is running; the next
    // request tries again. Anything else is worth a line: the log grows until one succeeds.
    const bool failed = rc != SQLITE_OK && rc != SQLITE_BUSY;
    std::string why = failed ? sqlite3_errmsg(db_) : "";
    lock.lock();
    ++done_;
    if (failed && !failing_) failure_ = std::move(why);
    failing_ = failed;
    running_ = false;
    if (!requested_) idle_.notify_all();
  }
}

}  // namespace sweepd::io
