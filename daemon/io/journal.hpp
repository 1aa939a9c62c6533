#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/delivery.hpp"
#include "core/run.hpp"
#include "core/supervisor.hpp"
#include "core/time.hpp"

struct sqlite3;

namespace sweepd::io {

/// The durable state (DESIGN §5): a SQLite database in WAL mode with the runs, their append-only
/// transition history and the W&B outbox. One sweepd at a time: a lock file beside the database
/// (`<path>.lock`, flock) refuses a second one. Errors are values naming the file.
class journal {
 public:
  /// The schema this build writes (PRAGMA user_version); older ones are migrated on open.
  static constexpr int schema_version = 1;

  struct open_result {
    std::unique_ptr<journal> value;
    std::string error;
  };
  /// Opens (creating the directory and the database if missing), locks, checks integrity and
  /// migrates. Never starts afresh over a file it cannot read.
  static open_result open(const std::string& path);

  ~journal();
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  /// Everything stored, for the supervisor to restore at startup.
  struct contents {
    std::vector<core::run_record> runs;  // each with its history, oldest transition first
    std::size_t outbox_pending = 0;
    std::string error;  // set when the stored data cannot be read back
  };
  contents load(core::instant now);

  /// Stores the transitions of `changes` (outcomes with a change) and their runs' current records
  /// in one transaction, plus one outbox row per transition when `to_outbox`. All or nothing: an
  /// error message means none of it was stored.
  /// `queued`, when given, receives the outbox rows made (for the W&B sink).
  std::optional<std::string> commit(std::span<const core::outcome> changes, bool to_outbox,
                                    std::vector<core::outbox_entry>* queued = nullptr);

  /// The outbox rows not yet delivered, oldest first, with their runs' entity/project.
  std::vector<core::outbox_entry> pending_outbox();
  /// Marks rows delivered (or superseded: a newer write of the run carries their state) and
  /// dead-lettered (with the reason). Rows already settled are left as they are.
  std::optional<std::string> settle(const std::vector<std::int64_t>& done,
                                    const std::vector<core::dead_letter>& dead);
  /// Outbox rows W&B refused for good.
  std::size_t outbox_dead() const { return outbox_dead_; }

  /// Deletes pruned runs with their history and delivered outbox rows (pending W&B writes and the
  /// transitions they carry are kept until delivered).
  std::optional<std::string> prune(const std::vector<std::string>& run_ids);

  /// Outbox rows not yet delivered.
  std::size_t outbox_pending() const { return outbox_pending_; }
  const std::string& path() const { return path_; }
  /// The connection, for tests that inject storage failures.
  sqlite3* handle() const { return db_; }

 private:
  journal(std::string path, sqlite3* db, int lock_fd);
  std::optional<std::string> prepare_schema();
  std::optional<std::string> exec(const char* sql);
  std::string describe_error(const char* what) const;

  std::string path_;
  sqlite3* db_ = nullptr;
  int lock_fd_ = -1;
  std::size_t outbox_pending_ = 0;
  std::size_t outbox_dead_ = 0;
};

}  // namespace sweepd::io
