#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/delivery.hpp"
#include "core/result.hpp"
#include "core/run.hpp"
#include "core/supervisor.hpp"
#include "core/time.hpp"
#include "io/wal_checkpointer.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace sweepd::io {

namespace detail {
/// Finalizes a prepared SQLite statement.
struct finalize_statement {
  void operator()(sqlite3_stmt* s) const;
};
}  // namespace detail

/// The durable state (DESIGN §5): a SQLite database in WAL mode with the runs, their append-only
/// transition history and the W&B outbox. One sweepd at a time: a lock file beside the database
/// (`<path>.lock`, flock) refuses a second one. Errors are values naming the file.
class journal {
 public:
  /// The schema this build writes (PRAGMA user_version); older ones are migrated on open.
  static constexpr int schema_version = 6;

  /// Opens (creating the directory and the database if missing), locks, checks integrity and
  /// migrates. Never starts afresh over a file it cannot read.
  static core::result<std::unique_ptr<journal>> open(const std::string& path);

  ~journal();
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  /// Everything stored, for the supervisor to restore at startup.
  struct contents {
    std::vector<core::run_record> runs;  // each with its history, oldest transition first
    std::size_t outbox_pending = 0;
    std::vector<std::string> warnings;  // what was read back only in part
  };
  /// Reads everything back; a failure names the file and what (which run) cannot be read.
  core::result<contents> load(core::instant now);

  /// Stores planned changes in one transaction, before they are applied: each transition, the
  /// run's fields after it (a created run's whole row, its identity written this once), and,
  /// when `to_outbox`, the W&B write of each transition as owed by its run (superseding the
  /// run's older pending write). `runs` has each changed run as it is before the change. All or
  /// nothing: a failure means none of it was stored. `queued`, when given, receives the writes
  /// made (for the sink).
  core::result<void> commit(std::span<const core::run_change> changes, const core::supervisor& runs,
                            bool to_outbox, std::vector<core::outbox_entry>* queued = nullptr);

  /// The W&B writes not yet delivered (owed by runs, or in outbox rows), oldest first, with their
  /// runs' entity/project.
  std::vector<core::outbox_entry> pending_outbox();
  /// An outbox row with when it reached W&B.
  struct outbox_row {
    core::outbox_entry entry;
    std::optional<core::wall_time> delivered_at;
  };
  /// Delivered rows whose re-checks were still due (W&B showed the run live), oldest first.
  std::vector<outbox_row> converging_outbox();
  /// Records what the delivery queue settled, in one transaction, each write known by its
  /// transition: writes delivered at `now` (with their attempts), dead-lettered (with the
  /// reason), writes whose convergence started or ended, and `superseded` ones (never sent: a
  /// newer write of the run carries their state). A write delivered or dead-lettered becomes an
  /// outbox row; one no longer pending is left as it is.
  core::result<void> settle(const core::delivery_queue::settled_rows& rows,
                            const std::vector<std::int64_t>& superseded, core::wall_time now);

  /// One run's W&B delivery as stored: its newest outbox row and counts over all of them.
  struct run_delivery {
    std::string latest_status;  // "pending", "delivered", "dead"; empty: no W&B write at all
    int attempts = 0;           // of the newest row, once settled
    std::optional<std::string> last_error;  // of the newest row, when dead-lettered
    bool converging = false;
    std::size_t pending = 0;
    std::size_t dead = 0;
    std::optional<core::wall_time> last_delivered_at;
  };
  run_delivery delivery_of(const std::string& run);
  /// Queues the run's newest transition for W&B again (`resync`): owed by the run, returned.
  core::result<core::outbox_entry> requeue_latest(const core::run_record& r);
  /// Outbox rows W&B refused for good.
  std::size_t outbox_dead() const { return outbox_dead_; }

  /// Deletes pruned runs with their history and delivered outbox rows (pending W&B writes and the
  /// transitions they carry are kept until delivered).
  core::result<void> prune(const std::vector<std::string>& run_ids);

  /// After a failed write (a full disk): checkpoints the WAL into the database and truncates it,
  /// giving back what the log held. Errors are ignored: it is only an attempt.
  void reclaim_space();
  /// Why the log's checkpoints started failing, once per run of failures; for the daemon's log.
  std::optional<std::string> checkpoint_failure();
  /// Checkpoints the background thread has run (tests and benchmarks).
  std::size_t checkpoints() const { return checkpointer_ ? checkpointer_->done() : 0; }
  /// Waits for the background checkpoint asked for, if any (tests).
  void wait_for_checkpoint() {
    if (checkpointer_) checkpointer_->wait_idle();
  }

  /// Outbox rows not yet delivered.
  std::size_t outbox_pending() const { return outbox_pending_; }
  const std::string& path() const { return path_; }
  /// The connection, for tests that inject storage failures.
  sqlite3* handle() const { return db_; }

 private:
  journal(std::string path, sqlite3* db, int lock_fd);
  core::result<void> prepare_schema();
  /// Counts the outbox rows still pending (pending_rows_), from the file as opened.
  core::result<void> count_pending_rows();
  /// Takes the schema from version `from` to `from + 1`, in one transaction.
  core::result<void> migrate(int from);
  /// Schema 3: every run's JSON record becomes a row of columns.
  core::result<void> copy_runs_to_v3();
  /// The statements every commit uses, prepared once.
  core::result<void> prepare_writes();
  /// Outbox rows joined with their transition and run, `where` being an SQL condition on `o`.
  std::vector<outbox_row> outbox_rows(const char* where);
  /// Rows of `sql`, which selects (write, run, from_state … late_by_s, entity, project,
  /// delivered_ms).
  std::vector<outbox_row> read_outbox_rows(const char* sql);
  core::result<void> exec(const char* sql);
  std::string describe_error(const char* what) const;
  /// Hands the log's checkpoints to a thread of their own (wal_checkpointer).
  core::result<void> start_checkpointer();
  /// SQLite's hook after each commit: asks for a checkpoint once the log has grown.
  static int on_log_written(void* self, sqlite3* db, const char* schema, int log_pages);
  /// After a commit: has the log checkpointed once it has grown (by the thread, or here past the
  /// bound).
  void checkpoint_if_due();
  /// The transition of `run`'s W&B write still owed, kept in its row; nullopt when none (or no
  /// such run).
  core::result<std::optional<std::int64_t>> owing_of(std::string_view run);
  /// Within commit(): settles the pending W&B outbox rows of `run` (a newer one is about to be
  /// queued), adding how many to `superseded`.
  core::result<void> supersede_pending(std::string_view run, std::size_t& superseded);

  using statement = std::unique_ptr<sqlite3_stmt, detail::finalize_statement>;
  struct write_statements {
    statement insert_run, update_run, update_run_owing, owing_of_run, append, pending_of_run,
        supersede, trim, set_owner_principal;
  };

  std::string path_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<write_statements> writes_;
  std::vector<std::int64_t> superseded_seqs_;  // supersede_pending's, kept to reuse its storage
  std::unique_ptr<wal_checkpointer> checkpointer_;
  int log_pages_ = 0;  // the log's size after the last commit, in pages
  int lock_fd_ = -1;
  std::size_t outbox_pending_ = 0;
  std::size_t outbox_dead_ = 0;
  // Outbox rows still pending (writes of pruned runs, or queued by schema 5): while there are
  // none, a commit need not look for the run's.
  std::size_t pending_rows_ = 0;
};

}  // namespace sweepd::io
