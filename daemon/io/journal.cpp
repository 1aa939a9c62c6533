#include "io/journal.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/delivery.hpp"
#include "core/json_limits.hpp"
#include "core/run_codec.hpp"
#include "io/posix.hpp"

namespace sweepd::io {

namespace {

// The C API with two small RAII types: libsqlite3-dev is the one SQLite package the project
// depends on, and the few statements here do not warrant a wrapper library.
using statement = std::unique_ptr<sqlite3_stmt, detail::finalize_statement>;

constexpr const char* schema_v1 = R"sql(
CREATE TABLE runs(
  id          TEXT PRIMARY KEY,
  state       TEXT NOT NULL,
  finished_ms INTEGER,           -- NULL while the run is live
  record      TEXT NOT NULL      -- core::encode_run
) WITHOUT ROWID;
CREATE TABLE transitions(
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  run        TEXT NOT NULL,
  from_state TEXT,               -- NULL for the registration that created the run
  to_state   TEXT NOT NULL,
  reason     TEXT NOT NULL,
  at_ms      INTEGER NOT NULL,
  runtime_s  REAL,
  objective  REAL,
  cost       REAL,
  error      TEXT,
  late_by_s  REAL
);
CREATE INDEX transitions_by_run ON transitions(run);
CREATE TABLE outbox(
  seq            INTEGER PRIMARY KEY AUTOINCREMENT,
  run            TEXT NOT NULL,
  transition_seq INTEGER NOT NULL,
  status         TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
  attempts       INTEGER NOT NULL DEFAULT 0,
  last_error     TEXT
);
CREATE INDEX outbox_by_status ON outbox(status, seq);
CREATE INDEX outbox_by_run ON outbox(run);
)sql";

// Version 2: when each write reached W&B, and which delivered writes are still being re-checked
// (W&B showed the run live, so its own uploads may overwrite them): those re-checks resume after
// a restart.
constexpr const char* schema_v2 = R"sql(
ALTER TABLE outbox ADD COLUMN delivered_ms INTEGER;  -- NULL: not sent itself (superseded)
ALTER TABLE outbox ADD COLUMN converging INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_converging ON outbox(seq) WHERE converging = 1;
)sql";

// Version 3: a run's identity as columns, written once at register, and the fields a transition
// changes as columns updated with it (no JSON record re-encoded per transition; a restart parses
// no JSON but suggestions). The rows are copied from version 2 by copy_runs_to_v3().
constexpr const char* schema_v3 = R"sql(
CREATE TABLE runs_v3(
  id                  TEXT PRIMARY KEY,
  sweep               TEXT NOT NULL,
  entity              TEXT NOT NULL,
  project             TEXT NOT NULL,
  suggestion          TEXT,             -- JSON text; NULL when none
  owner_uid           INTEGER NOT NULL,
  watch_peer          INTEGER NOT NULL,
  peer_pid            INTEGER NOT NULL,
  peer_start_time     INTEGER NOT NULL,
  peer_boot_id        TEXT NOT NULL,
  registered_ms       INTEGER NOT NULL,
  max_runtime_s       REAL NOT NULL,
  stall_timeout_s     REAL NOT NULL,
  heartbeat_timeout_s REAL NOT NULL,
  state               TEXT NOT NULL,
  reason              TEXT NOT NULL,
  finished_ms         INTEGER,
  objective           REAL,
  cost                REAL,
  error               TEXT,
  runtime_s           REAL,
  late_by_s           REAL,
  progress            REAL
) WITHOUT ROWID;
)sql";
constexpr const char* schema_v3_finish = "DROP TABLE runs; ALTER TABLE runs_v3 RENAME TO runs;";

// Version 4: the outbox's status check without `IN (…)`, which SQLite evaluates through a
// temporary B-tree built for every row written (a third of the CPU time of an expiry storm), and
// partial indexes that hold only the rows looked up by status: the pending rows by run (to settle
// superseded writes) and the dead ones (counted at start). Delivered rows, almost all of them,
// are no longer indexed by status. SQLite cannot change a check, so the table is copied; its
// sequence carries on from where it was, even past rows since deleted.
constexpr const char* schema_v4 = R"sql(
CREATE TABLE outbox_v4(
  seq            INTEGER PRIMARY KEY AUTOINCREMENT,
  run            TEXT NOT NULL,
  transition_seq INTEGER NOT NULL,
  status         TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status = 'pending' OR status = 'delivered' OR status = 'dead'),
  attempts       INTEGER NOT NULL DEFAULT 0,
  last_error     TEXT,
  delivered_ms   INTEGER,
  converging     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO outbox_v4(seq, run, transition_seq, status, attempts, last_error, delivered_ms,
                      converging)
  SELECT seq, run, transition_seq, status, attempts, last_error, delivered_ms, converging
  FROM outbox;
INSERT INTO sqlite_sequence(name, seq)
  SELECT 'outbox_v4', seq FROM sqlite_sequence WHERE name = 'outbox'
  AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox_v4');
UPDATE sqlite_sequence SET seq = (SELECT MAX(seq) FROM sqlite_sequence
                                  WHERE name IN ('outbox', 'outbox_v4'))
  WHERE name = 'outbox_v4';
DROP TABLE outbox;
ALTER TABLE outbox_v4 RENAME TO outbox;
CREATE INDEX outbox_by_run ON outbox(run);
CREATE INDEX outbox_pending ON outbox(run, seq) WHERE status = 'pending';
CREATE INDEX outbox_dead ON outbox(seq) WHERE status = 'dead';
CREATE INDEX outbox_converging ON outbox(seq) WHERE converging = 1;
)sql";

// Version 5: the owner of a run registered over the TLS listener is a principal (its token's
// name), not a uid; '' for a run of a local uid.
constexpr const char* schema_v5 =
    "ALTER TABLE runs ADD COLUMN owner_principal TEXT NOT NULL DEFAULT '';";

// Version 6: a run's W&B write waiting to be sent is kept in its own row (`wandb_pending`, the
// transition it carries), which every transition updates anyway, instead of an outbox row per
// transition that the next one settles: in an expiry storm that was half of the journal's work
// per timeout. The outbox keeps what was delivered or refused (and, indexed by transition, is
// found by the identity the delivery queue uses), and the pending writes of runs since pruned or
// written by an older sweepd, which are delivered as before.
constexpr const char* schema_v6 = R"sql(
ALTER TABLE runs ADD COLUMN wandb_pending INTEGER;  -- a transitions.seq; NULL: nothing owed to W&B
CREATE INDEX outbox_by_transition ON outbox(transition_seq);
)sql";

/// Schema migrations: entry i takes user_version i to i + 1.
constexpr const char* migrations[] = {schema_v1, schema_v2, schema_v3,
                                      schema_v4, schema_v5, schema_v6};

/// The run columns of schema 3, in the order run_insert binds them (?1 … ?23), then `{1}` (more
/// columns, with their parameters in `{2}`), into table `{0}`.
constexpr const char* run_insert_sql =
    "INSERT OR REPLACE INTO {0}(id, sweep, entity, project, suggestion, owner_uid, watch_peer, "
    "peer_pid, peer_start_time, peer_boot_id, registered_ms, max_runtime_s, stall_timeout_s, "
    "heartbeat_timeout_s, state, reason, finished_ms, objective, cost, error, runtime_s, "
    "late_by_s, progress{1}) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
    "?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23{2})";
static_assert(std::size(migrations) == journal::schema_version);

/// Takes the lock file beside the database: its descriptor, or why not (another process holds it).
core::result<int> take_lock(const std::string& db_path) {
  const std::string lock_path = db_path + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return core::failure{
        fmt::format("cannot open the lock file {}: {}", lock_path, errno_text(errno))};
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char pid[32] = {};
    const ssize_t n = ::pread(fd, pid, sizeof(pid) - 1, 0);
    ::close(fd);
    return core::failure{
        err == EWOULDBLOCK
            ? fmt::format("another sweepd (pid {}) is using the state file {}; stop it first "
                          "or give this one another state.path",
                          n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "?", db_path)
            : fmt::format("cannot lock {}: {}", lock_path, errno_text(err))};
  }
  const std::string me = std::to_string(::getpid());
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    // The pid is only a hint for people; the flock is what protects the file.
  }
  return fd;
}

bool bind_text(sqlite3_stmt* s, int index, std::string_view text) {
  return sqlite3_bind_text(s, index, text.data(), static_cast<int>(text.size()),
                           SQLITE_TRANSIENT) == SQLITE_OK;
}

/// Binds text SQLite need not copy: it outlives the statement's next step (state and reason
/// names, or a string the caller keeps until then). Saves an allocation per bind on the write
/// path.
bool bind_static_text(sqlite3_stmt* s, int index, std::string_view text) {
  return sqlite3_bind_text(s, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC) ==
         SQLITE_OK;
}

/// The text of a column, valid until the statement steps on; empty for NULL.
std::string_view column_view(sqlite3_stmt* s, int column) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, column));
  return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(s, column)))
           : std::string_view();
}

std::string column_text(sqlite3_stmt* s, int column) { return std::string(column_view(s, column)); }

void bind_optional(sqlite3_stmt* s, int index, const std::optional<double>& v) {
  if (v) {
    sqlite3_bind_double(s, index, *v);
  } else {
    sqlite3_bind_null(s, index);
  }
}

std::optional<double> column_optional(sqlite3_stmt* s, int column) {
  if (sqlite3_column_type(s, column) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_double(s, column);
}

/// Binds ?1..?10 of the transitions insert (`t.run` without a copy: keep `t` until the step).
/// Columns, not JSON: a restart reads every transition, and reading columns is several times
/// cheaper than parsing a JSON text each.
void bind_transition(sqlite3_stmt* s, const core::transition& t) {
  bind_static_text(s, 1, t.run);
  if (t.from) {
    bind_static_text(s, 2, core::to_string(*t.from));
  } else {
    sqlite3_bind_null(s, 2);
  }
  bind_static_text(s, 3, core::to_string(t.to));
  bind_static_text(s, 4, core::to_string(t.reason));
  sqlite3_bind_int64(s, 5, core::to_unix_ms(t.at));
  bind_optional(s, 6, t.runtime_s);
  bind_optional(s, 7, t.objective);
  bind_optional(s, 8, t.cost);
  if (t.error) {
    bind_text(s, 9, *t.error);
  } else {
    sqlite3_bind_null(s, 9);
  }
  bind_optional(s, 10, t.late_by_s);
}

void bind_optional_text(sqlite3_stmt* s, int index, const std::optional<std::string>& v) {
  if (v) {
    bind_text(s, index, *v);
  } else {
    sqlite3_bind_null(s, index);
  }
}

double seconds_of(core::mono_clock::duration d) {
  return std::chrono::duration_cast<core::seconds_d>(d).count();
}

/// Binds ?15 … ?23, the fields a transition changes, and ?14, the heartbeat timeout.
void bind_state_fields(sqlite3_stmt* s, const core::run_state_fields& f) {
  sqlite3_bind_double(s, 14, seconds_of(f.heartbeat_timeout));
  bind_static_text(s, 15, core::to_string(f.state));
  bind_static_text(s, 16, core::to_string(f.reason));
  if (f.finished_wall) {
    sqlite3_bind_int64(s, 17, core::to_unix_ms(*f.finished_wall));
  } else {
    sqlite3_bind_null(s, 17);
  }
  bind_optional(s, 18, f.objective);
  bind_optional(s, 19, f.cost);
  bind_optional_text(s, 20, f.error);
  bind_optional(s, 21, f.runtime_s);
  bind_optional(s, 22, f.late_by_s);
  bind_optional(s, 23, f.progress);
}

/// Binds `index` to the transition a run owes W&B the write of, or NULL when it owes none.
void bind_transition_seq(sqlite3_stmt* s, int index, bool owed, std::int64_t transition_seq) {
  if (owed) {
    sqlite3_bind_int64(s, index, transition_seq);
  } else {
    sqlite3_bind_null(s, index);
  }
}

/// Binds a whole run row (run_insert_sql): its identity and `f`.
void bind_run_row(sqlite3_stmt* s, const core::run_record& r, const core::run_state_fields& f) {
  bind_text(s, 1, r.id);
  bind_text(s, 2, r.sweep.str());
  bind_text(s, 3, r.entity.str());
  bind_text(s, 4, r.project.str());
  if (r.suggestion.is_null()) {
    sqlite3_bind_null(s, 5);
  } else {
    bind_text(s, 5, r.suggestion.text());
  }
  sqlite3_bind_int64(s, 6, r.owner_uid);
  sqlite3_bind_int(s, 7, r.watch_peer ? 1 : 0);
  sqlite3_bind_int64(s, 8, r.peer_pid);
  sqlite3_bind_int64(s, 9, static_cast<sqlite3_int64>(r.peer_start_time));
  bind_text(s, 10, r.peer_boot_id.str());
  sqlite3_bind_int64(s, 11, core::to_unix_ms(r.registered_wall));
  sqlite3_bind_double(s, 12, seconds_of(r.max_runtime));
  sqlite3_bind_double(s, 13, seconds_of(r.stall_timeout));
  bind_state_fields(s, f);
}

/// The fields a run has now, as a change would leave them if it changed nothing.
core::run_state_fields fields_of(const core::run_record& r) {
  return {r.state, r.reason,    r.finished_wall, r.objective, r.cost,
          r.error, r.runtime_s, r.late_by_s,     r.progress,  r.heartbeat_timeout};
}

/// Reads (from_state, to_state, reason, at_ms, runtime_s, objective, cost, error, late_by_s)
/// starting at column `first + 1` (column `first` holds the run); nullopt when a state or reason
/// is unknown or the time is none sweepd wrote.
std::optional<core::transition> read_transition_at(sqlite3_stmt* s, int first,
                                                   const std::string& run) {
  core::transition t;
  t.run = run;
  if (sqlite3_column_type(s, first + 1) != SQLITE_NULL) {
    t.from = core::parse_run_state(column_view(s, first + 1));
    if (!t.from) return std::nullopt;
  }
  const auto to = core::parse_run_state(column_view(s, first + 2));
  const auto reason = core::parse_transition_reason(column_view(s, first + 3));
  if (!to || !reason) return std::nullopt;
  t.to = *to;
  t.reason = *reason;
  const auto at = core::stored_wall_time(sqlite3_column_int64(s, first + 4));
  if (!at) return std::nullopt;
  t.at = *at;
  t.runtime_s = column_optional(s, first + 5);
  t.objective = column_optional(s, first + 6);
  t.cost = column_optional(s, first + 7);
  if (sqlite3_column_type(s, first + 8) != SQLITE_NULL) t.error = column_text(s, first + 8);
  t.late_by_s = column_optional(s, first + 9);
  return t;
}

/// A transitions row selected as (run, from_state, …, late_by_s).
std::optional<core::transition> read_transition(sqlite3_stmt* s, const std::string& run) {
  return read_transition_at(s, 0, run);
}

/// A run read from a row of schema 3's runs table (the columns of journal::load's query), or
/// why it cannot be.
core::result<core::run_record> read_run_row(sqlite3_stmt* s, core::instant now,
                                            core::name_pool& names,
                                            std::vector<std::string>& warnings) {
  core::run_record r;
  r.id = column_text(s, 0);
  r.sweep = names.intern(column_view(s, 1));
  r.entity = names.intern(column_view(s, 2));
  r.project = names.intern(column_view(s, 3));
  if (sqlite3_column_type(s, 4) != SQLITE_NULL) {
    std::string text = column_text(s, 4);
    // nlohmann parses (and destroys) without recursion, but writing a value back out recurses
    // once per level: a suggestion stored before requests were bounded in depth is dropped here
    // rather than crash the first `show` of its run.
    if (core::json_nests_deeper_than(text, core::max_stored_json_depth)) {
      warnings.push_back(
          fmt::format("run '{}': its suggestion nests deeper than {} levels and was dropped", r.id,
                      core::max_stored_json_depth));
    } else if (!core::json_text::accepts(text)) {
      // Checked, not parsed: the text is kept as it is and parsed only for a reply that shows it.
      return core::failure{"its suggestion is not JSON"};
    } else {
      r.suggestion = core::json_text::from_text(std::move(text));
    }
  }
  r.owner_uid = static_cast<std::uint32_t>(sqlite3_column_int64(s, 5));
  r.watch_peer = sqlite3_column_int(s, 6) != 0;
  r.peer_pid = static_cast<std::int32_t>(sqlite3_column_int64(s, 7));
  r.peer_start_time = static_cast<std::uint64_t>(sqlite3_column_int64(s, 8));
  r.peer_boot_id = names.intern(column_view(s, 9));
  // Times and durations are checked before they are converted: out of the clocks' range (a
  // damaged or hand-edited file) the conversion would overflow. The first bad column is named.
  const char* out_of_range = nullptr;
  const auto wall = [&](int column, const char* name) {
    const auto t = core::stored_wall_time(sqlite3_column_int64(s, column));
    if (!t && out_of_range == nullptr) out_of_range = name;
    return t.value_or(core::wall_time{});
  };
  const auto duration = [&](int column, const char* name) {
    const auto d = core::stored_duration(sqlite3_column_double(s, column));
    if (!d && out_of_range == nullptr) out_of_range = name;
    return d.value_or(core::mono_clock::duration{});
  };
  r.registered_wall = wall(10, "registered_ms");
  r.max_runtime = duration(11, "max_runtime_s");
  r.stall_timeout = duration(12, "stall_timeout_s");
  r.heartbeat_timeout = duration(13, "heartbeat_timeout_s");
  const auto state = core::parse_run_state(column_view(s, 14));
  const auto reason = core::parse_transition_reason(column_view(s, 15));
  if (!state || !reason) {
    return core::failure{
        fmt::format("unknown state or reason '{}'/'{}'", column_text(s, 14), column_text(s, 15))};
  }
  r.state = *state;
  r.reason = *reason;
  if (sqlite3_column_type(s, 16) != SQLITE_NULL) r.finished_wall = wall(16, "finished_ms");
  if (out_of_range != nullptr) {
    return core::failure{fmt::format("its {} is out of range", out_of_range)};
  }
  r.objective = column_optional(s, 17);
  r.cost = column_optional(s, 18);
  if (sqlite3_column_type(s, 19) != SQLITE_NULL) r.error = column_text(s, 19);
  r.runtime_s = column_optional(s, 20);
  r.late_by_s = column_optional(s, 21);
  r.progress = column_optional(s, 22);
  r.owner_principal = column_text(s, 23);
  core::rebase_clocks(r, now);
  return r;
}

/// Rolls back an open transaction unless dismissed; keeps every early return all-or-nothing.
class transaction_guard {
 public:
  explicit transaction_guard(sqlite3* db) : db_(db) {}
  ~transaction_guard() {
    if (db_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void dismiss() { db_ = nullptr; }

 private:
  sqlite3* db_;
};

}  // namespace

void detail::finalize_statement::operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }

journal::journal(std::string path, sqlite3* db, int lock_fd)
    : path_(std::move(path)), db_(db), lock_fd_(lock_fd) {}

journal::~journal() {
  writes_.reset();        // statements before the connection
  checkpointer_.reset();  // its checkpoint finished before the last connection closes
  if (db_) sqlite3_close_v2(db_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string journal::describe_error(const char* what) const {
  return fmt::format("{} {}: {}", what, path_, sqlite3_errmsg(db_));
}

core::result<void> journal::exec(const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) == SQLITE_OK) return {};
  core::failure error{fmt::format("{}: {}", path_, message ? message : sqlite3_errmsg(db_))};
  sqlite3_free(message);
  return error;
}

core::result<std::unique_ptr<journal>> journal::open(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path file(path);
  std::error_code ec;
  if (file.has_parent_path()) {
    fs::create_directories(file.parent_path(), ec);
    if (ec) {
      return core::failure{fmt::format("cannot create the state directory {}: {}",
                                       file.parent_path().string(), ec.message())};
    }
  }
  const auto lock_fd = take_lock(path);
  if (!lock_fd) return lock_fd.error();
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<journal> j(new journal(path, db, *lock_fd));
  if (rc != SQLITE_OK) return core::failure{j->describe_error("cannot open the state file")};
  if (auto done = j->prepare_schema(); !done) return done.error();
  if (auto done = j->count_pending_rows(); !done) return done.error();
  if (auto done = j->start_checkpointer(); !done) return done.error();
  return j;
}

core::result<void> journal::count_pending_rows() {
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db_, "SELECT COUNT(*) FROM outbox WHERE status = 'pending'", -1, &raw,
                     nullptr);
  statement count(raw);
  if (sqlite3_step(count.get()) != SQLITE_ROW) {
    return core::failure{describe_error("cannot count the outbox of")};
  }
  pending_rows_ = static_cast<std::size_t>(sqlite3_column_int64(count.get(), 0));
  return {};
}

core::result<void> journal::prepare_schema() {
  sqlite3_busy_timeout(db_, 1000);
  // The first statement reads the header: a file that is not a database fails here, loudly.
  if (auto done = exec("PRAGMA journal_mode=WAL"); !done) {
    return core::failure{fmt::format("the state file is unreadable or not a sweepd database: {}",
                                     done.error().message)};
  }
  // FULL: a committed transition survives power loss too, not only a killed process.
  if (auto done = exec("PRAGMA synchronous=FULL"); !done) return done;
  // A small WAL: checkpointed every 100 pages (400 KiB) rather than SQLite's 1 000, and cut back
  // to 1 MiB after each checkpoint, so that on a small volume the log does not eat the space the
  // database needs (a 2 MiB volume filled after 23 runs with the defaults).
  if (auto done = exec("PRAGMA wal_autocheckpoint=100"); !done) return done;
  if (auto done = exec("PRAGMA journal_size_limit=1048576"); !done) return done;
  statement check;
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, "PRAGMA quick_check", -1, &raw, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot check the state file")};
  }
  check.reset(raw);
  const bool has_row = sqlite3_step(check.get()) == SQLITE_ROW;
  if (!has_row || column_text(check.get(), 0) != "ok") {
    // The check's own first finding says what is wrong; sqlite3_errmsg would only say "another
    // row available" then.
    return core::failure{fmt::format(
        "the state file {} is corrupt ({}); move it away to start afresh or "
        "restore a backup",
        path_, has_row ? column_text(check.get(), 0) : std::string(sqlite3_errmsg(db_)))};
  }
  check.reset();
  if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &raw, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot read the schema version of")};
  }
  check.reset(raw);
  if (sqlite3_step(check.get()) != SQLITE_ROW) return core::failure{describe_error("cannot read")};
  const int version = sqlite3_column_int(check.get(), 0);
  check.reset();
  if (version > schema_version) {
    return core::failure{
        fmt::format("the state file {} has schema {}, newer than this sweepd knows ({})", path_,
                    version, schema_version)};
  }
  for (int v = version; v < schema_version; ++v) {
    if (auto done = migrate(v); !done) {
      exec("ROLLBACK");
      return core::failure{fmt::format("cannot migrate the state file to schema {}: {}", v + 1,
                                       done.error().message)};
    }
  }
  return {};
}

core::result<void> journal::migrate(int from) {
  if (auto done = exec("BEGIN IMMEDIATE"); !done) return done;
  if (auto done = exec(migrations[from]); !done) return done;
  if (from + 1 == 3) {
    if (auto done = copy_runs_to_v3(); !done) return done;
    if (auto done = exec(schema_v3_finish); !done) return done;
  }
  const std::string version = fmt::format("PRAGMA user_version={}", from + 1);
  if (auto done = exec(version.c_str()); !done) return done;
  return exec("COMMIT");
}

core::result<void> journal::copy_runs_to_v3() {
  // Each version-2 record (JSON) becomes a row of columns, read by the same decoder that loaded
  // it before, so a record that would not load stops the migration as it would have stopped
  // startup.
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT id, record FROM runs", -1, &raw, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot read the runs of")};
  }
  statement rows(raw);
  const std::string insert_sql = fmt::format(run_insert_sql, "runs_v3", "", "");
  if (sqlite3_prepare_v2(db_, insert_sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot prepare a write to")};
  }
  statement insert(raw);
  const core::instant any{};  // the monotonic times are not stored
  int rc;
  while ((rc = sqlite3_step(rows.get())) == SQLITE_ROW) {
    const std::string id = column_text(rows.get(), 0);
    const std::string text = column_text(rows.get(), 1);
    nlohmann::json record = nlohmann::json::parse(text, nullptr, false);
    if (core::json_nests_deeper_than(text, core::max_stored_json_depth) && record.is_object()) {
      record["suggestion"] = nullptr;
    }
    auto decoded = core::decode_run(record, any);
    if (!decoded.run) {
      return core::failure{fmt::format("run '{}' cannot be read: {}", id, decoded.error)};
    }
    sqlite3_reset(insert.get());
    bind_run_row(insert.get(), *decoded.run, fields_of(*decoded.run));
    if (sqlite3_step(insert.get()) != SQLITE_DONE)
      return core::failure{describe_error("cannot copy a run in")};
  }
  if (rc != SQLITE_DONE) return core::failure{describe_error("cannot read the runs of")};
  return {};
}

core::result<journal::contents> journal::load(core::instant now) {
  contents out;
  // Each sweep, entity, project and boot id read once, not once per run.
  core::name_pool names;
  sqlite3_stmt* raw = nullptr;
  // In id order, which costs nothing (the table is kept in that order): the transitions below
  // find their run by a binary search, with no index to build.
  sqlite3_prepare_v2(db_,
                     "SELECT id, sweep, entity, project, suggestion, owner_uid, watch_peer, "
                     "peer_pid, peer_start_time, peer_boot_id, registered_ms, max_runtime_s, "
                     "stall_timeout_s, heartbeat_timeout_s, state, reason, finished_ms, objective, "
                     "cost, error, runtime_s, late_by_s, progress, owner_principal, "
                     "wandb_pending IS NOT NULL FROM runs ORDER BY id",
                     -1, &raw, nullptr);
  statement runs(raw);
  std::size_t runs_owing = 0;  // W&B writes owed by runs (the outbox's are pending_rows_)
  int rc;
  while ((rc = sqlite3_step(runs.get())) == SQLITE_ROW) {
    runs_owing += static_cast<std::size_t>(sqlite3_column_int(runs.get(), 24));
    auto read = read_run_row(runs.get(), now, names, out.warnings);
    if (!read) {
      return core::failure{fmt::format("{}: run '{}' cannot be read back: {}", path_,
                                       column_text(runs.get(), 0), read.error().message)};
    }
    out.runs.push_back(std::move(*read));
  }
  if (rc != SQLITE_DONE) {
    return core::failure{describe_error("cannot read the runs of")};
  }
  const auto id_less = [](const core::run_record& a, const core::run_record& b) {
    return a.id < b.id;
  };
  // SQLite's order is memcmp's, std::string's the same for the ids sweepd accepts; checking
  // costs one pass, and a state file written otherwise still loads.
  if (!std::is_sorted(out.runs.begin(), out.runs.end(), id_less)) {
    std::sort(out.runs.begin(), out.runs.end(), id_less);
  }
  const auto by_id = [](const core::run_record& r, std::string_view id) { return r.id < id; };
  sqlite3_prepare_v2(db_,
                     "SELECT run, from_state, to_state, reason, at_ms, runtime_s, objective, cost, "
                     "error, late_by_s FROM transitions ORDER BY seq",
                     -1, &raw, nullptr);
  statement history(raw);
  while ((rc = sqlite3_step(history.get())) == SQLITE_ROW) {
    const std::string_view id = column_view(history.get(), 0);
    const auto it = std::lower_bound(out.runs.begin(), out.runs.end(), id, by_id);
    // Not found: kept only for a pending W&B write of a pruned run.
    if (it == out.runs.end() || it->id != id) continue;
    auto t = read_transition(history.get(), it->id);
    if (!t) {
      return core::failure{
          fmt::format("{}: a transition of run '{}' cannot be read back", path_, it->id)};
    }
    auto& run_history = it->history;
    // A registration begins a run: rows before it are those of a pruned run of the same id, kept
    // for their pending W&B writes, not this run's history.
    if (!t->from) run_history.clear();
    run_history.push_back(std::move(*t));
  }
  if (rc != SQLITE_DONE) {
    return core::failure{describe_error("cannot read the transitions of")};
  }
  for (const auto& r : out.runs) {
    if (r.history.empty()) {
      return core::failure{fmt::format("{}: run '{}' has no transitions", path_, r.id)};
    }
  }
  out.outbox_pending = runs_owing + pending_rows_;
  outbox_pending_ = out.outbox_pending;
  sqlite3_prepare_v2(db_, "SELECT COUNT(*) FROM outbox WHERE status = 'dead'", -1, &raw, nullptr);
  statement dead(raw);
  if (sqlite3_step(dead.get()) == SQLITE_ROW) {
    outbox_dead_ = static_cast<std::size_t>(sqlite3_column_int64(dead.get(), 0));
  }
  return out;
}

core::result<void> journal::prepare_writes() {
  if (writes_) return {};
  auto w = std::make_unique<write_statements>();
  const auto prepare = [&](statement& into, const std::string& sql) {
    sqlite3_stmt* raw = nullptr;
    sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    into.reset(raw);
    return raw != nullptr;
  };
  constexpr const char* update_run_sql =
      "UPDATE runs SET heartbeat_timeout_s = ?14, state = ?15, reason = ?16, finished_ms = ?17, "
      "objective = ?18, cost = ?19, error = ?20, runtime_s = ?21, late_by_s = ?22, progress = ?23";
  const bool ok =
      prepare(w->insert_run, fmt::format(run_insert_sql, "runs", ", wandb_pending", ", ?24")) &&
      prepare(w->update_run, fmt::format("{} WHERE id = ?1", update_run_sql)) &&
      prepare(w->update_run_owing,
              fmt::format("{}, wandb_pending = ?24 WHERE id = ?1", update_run_sql)) &&
      prepare(w->owing_of_run, "SELECT wandb_pending FROM runs WHERE id = ?1") &&
      prepare(
          w->append,
          "INSERT INTO transitions(run, from_state, to_state, reason, at_ms, runtime_s, "
          "objective, cost, error, late_by_s) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)") &&
      prepare(w->set_owner_principal, "UPDATE runs SET owner_principal = ?2 WHERE id = ?1") &&
      // Each W&B write carries the run's whole state, so a newer one settles the older pending
      // ones (superseded), here rather than later: offline, nothing else would. A run's own row
      // holds one, replaced in place; outbox rows pending (a pruned run's, or an older sweepd's)
      // are found first, then settled one by one: an UPDATE that searched the index it changes
      // would copy its rows to a temporary table first.
      prepare(w->pending_of_run, "SELECT seq FROM outbox WHERE run = ?1 AND status = 'pending'") &&
      prepare(w->supersede, "UPDATE outbox SET status = 'delivered' WHERE seq = ?1") &&
      // The history a run keeps (core::max_history): its registration and the newest
      // transitions, but never one a pending W&B write still carries.
      prepare(w->trim,
              "DELETE FROM transitions WHERE run = ?1 AND from_state IS NOT NULL AND seq <= "
              "(SELECT seq FROM transitions WHERE run = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2) "
              "AND seq NOT IN (SELECT transition_seq FROM outbox WHERE run = ?1 AND "
              "status = 'pending') AND seq IS NOT (SELECT wandb_pending FROM runs WHERE id = ?1)");
  if (!ok) return core::failure{describe_error("cannot prepare a write to")};
  writes_ = std::move(w);
  return {};
}

core::result<void> journal::commit(std::span<const core::run_change> changes,
                                   const core::supervisor& runs, bool to_outbox,
                                   std::vector<core::outbox_entry>* queued_entries) {
  if (auto done = prepare_writes(); !done) return done;
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot write to")};
  }
  transaction_guard guard(db_);
  write_statements& w = *writes_;
  // Reset on every way out, so that no statement keeps the database busy.
  struct resetter {
    write_statements& w;
    ~resetter() {
      for (statement* s :
           {&w.insert_run, &w.update_run, &w.update_run_owing, &w.owing_of_run, &w.append,
            &w.pending_of_run, &w.supersede, &w.trim, &w.set_owner_principal}) {
        sqlite3_reset(s->get());
        sqlite3_clear_bindings(s->get());
      }
    }
  } reset_all{w};
  const auto run = [](const statement& s) {
    const bool done = sqlite3_step(s.get()) == SQLITE_DONE;
    sqlite3_reset(s.get());
    return done;
  };
  std::size_t queued = 0;
  std::size_t superseded = 0;       // writes runs owed
  std::size_t superseded_rows = 0;  // pending outbox rows
  std::vector<core::outbox_entry> entries;
  for (const core::run_change& c : changes) {
    const core::run_record* current = c.created ? &*c.created : runs.target_of(c);
    if (current == nullptr)
      return core::failure{fmt::format("{}: no run '{}' to store a change of", path_, c.run)};
    const core::run_state_fields after = core::fields_after(*current, c);
    bind_transition(w.append.get(), c);
    if (!run(w.append)) return core::failure{describe_error("cannot store a transition in")};
    const std::int64_t transition_seq = sqlite3_last_insert_rowid(db_);
    // With W&B on, the run owes it this transition's write, which replaces (supersedes) the one
    // it owed before, if any.
    if (c.created) {
      // The run's identity is written once, here; later transitions only update its fields.
      bind_run_row(w.insert_run.get(), *current, after);
      bind_transition_seq(w.insert_run.get(), 24, to_outbox, transition_seq);
      if (!run(w.insert_run)) return core::failure{describe_error("cannot store a run in")};
      if (!current->owner_principal.empty()) {
        // Schema 3's row has no such column; only remote runs need the second statement.
        bind_text(w.set_owner_principal.get(), 1, current->id);
        bind_text(w.set_owner_principal.get(), 2, current->owner_principal);
        if (!run(w.set_owner_principal))
          return core::failure{describe_error("cannot store a run in")};
      }
    } else {
      if (to_outbox) {
        auto owed = owing_of(c.run);
        if (!owed) return owed.error();
        if (*owed) ++superseded;
      }
      const statement& update = to_outbox ? w.update_run_owing : w.update_run;
      bind_static_text(update.get(), 1, c.run);
      bind_state_fields(update.get(), after);
      if (to_outbox) sqlite3_bind_int64(update.get(), 24, transition_seq);
      if (!run(update)) return core::failure{describe_error("cannot store a run in")};
    }
    if (to_outbox) {
      // Outbox rows are rarely pending (a pruned run's, an older sweepd's): looked for only if any
      // are.
      if (pending_rows_ > superseded_rows) {
        if (auto done = supersede_pending(c.run, superseded_rows); !done) return done;
      }
      ++queued;
      if (queued_entries != nullptr) {
        entries.push_back({transition_seq, c.run, current->entity, current->project, c});
      }
    }
    if (!c.created && current->history.size() + 1 >= core::max_history) {
      bind_text(w.trim.get(), 1, c.run);
      sqlite3_bind_int(w.trim.get(), 2, static_cast<int>(core::max_history) - 1);
      if (!run(w.trim)) return core::failure{describe_error("cannot trim the history of a run in")};
    }
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot commit to")};
  }
  guard.dismiss();
  checkpoint_if_due();
  superseded += superseded_rows;
  pending_rows_ -= std::min(pending_rows_, superseded_rows);
  outbox_pending_ = outbox_pending_ + queued - std::min(outbox_pending_ + queued, superseded);
  if (queued_entries != nullptr) *queued_entries = std::move(entries);
  return {};
}

core::result<std::optional<std::int64_t>> journal::owing_of(std::string_view run) {
  if (auto done = prepare_writes(); !done) return done.error();
  sqlite3_stmt* s = writes_->owing_of_run.get();
  bind_static_text(s, 1, run);
  const int rc = sqlite3_step(s);
  std::optional<std::int64_t> owed;
  if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
    owed = sqlite3_column_int64(s, 0);
  }
  sqlite3_reset(s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    return core::failure{describe_error("cannot read pending W&B writes in")};
  }
  return owed;
}

core::result<void> journal::supersede_pending(std::string_view run, std::size_t& superseded) {
  write_statements& w = *writes_;
  superseded_seqs_.clear();
  bind_static_text(w.pending_of_run.get(), 1, run);
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(w.pending_of_run.get())) == SQLITE_ROW) {
    superseded_seqs_.push_back(sqlite3_column_int64(w.pending_of_run.get(), 0));
  }
  sqlite3_reset(w.pending_of_run.get());
  if (rc != SQLITE_DONE) return core::failure{describe_error("cannot read pending W&B writes in")};
  for (const std::int64_t seq : superseded_seqs_) {
    sqlite3_bind_int64(w.supersede.get(), 1, seq);
    rc = sqlite3_step(w.supersede.get());
    sqlite3_reset(w.supersede.get());
    if (rc != SQLITE_DONE)
      return core::failure{describe_error("cannot settle superseded W&B writes in")};
  }
  superseded += superseded_seqs_.size();
  return {};
}

namespace {
// The log is handed to the checkpointer at 100 pages (400 KiB), as SQLite's own automatic
// checkpoint was set to. A log is only restarted once a checkpoint has caught up with it, which a
// thread racing a stream of commits rarely does: a commit that finds the log past 1 024 pages
// (4 MiB, about SQLite's default) checkpoints the rest itself, usually only what the thread has
// not copied yet, and the next commit starts the log afresh, cut back to journal_size_limit.
constexpr int checkpoint_pages = 100;
constexpr int checkpoint_here_pages = 1024;
}  // namespace

core::result<void> journal::start_checkpointer() {
  auto started = wal_checkpointer::start(path_);
  if (!started) {
    return core::failure{fmt::format("cannot open {} a second time to checkpoint its log: {}",
                                     path_, started.error().message)};
  }
  checkpointer_ = std::move(*started);
  sqlite3_wal_hook(db_, &journal::on_log_written, this);  // replaces the automatic checkpoint
  return {};
}

int journal::on_log_written(void* self, sqlite3*, const char*, int log_pages) {
  // Only noted: this runs inside the commit, while this connection still reads the snapshot before
  // it, which would keep a checkpoint started now from copying the last frames.
  static_cast<journal*>(self)->log_pages_ = log_pages;
  return SQLITE_OK;
}

void journal::checkpoint_if_due() {
  const int pages = std::exchange(log_pages_, 0);
  if (pages >= checkpoint_here_pages) {
    // A checkpoint the thread is running holds SQLite's checkpoint lock, and this one would give
    // up at once: wait for it, so that the bound holds however slowly the thread is scheduled.
    if (checkpointer_) checkpointer_->wait_idle();
    sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  } else if (pages >= checkpoint_pages && checkpointer_) {
    checkpointer_->request();
  }
}

std::optional<std::string> journal::checkpoint_failure() {
  if (!checkpointer_) return std::nullopt;
  auto why = checkpointer_->take_failure();
  if (!why) return std::nullopt;
  return fmt::format("cannot checkpoint the log of {}: {}", path_, *why);
}

void journal::reclaim_space() {
  sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
}

std::vector<journal::outbox_row> journal::outbox_rows(const char* where) {
  // A write is known by the transition it carries (outbox_entry::seq), wherever it is kept.
  const std::string sql = fmt::format(
      "SELECT o.transition_seq, t.run, t.from_state, t.to_state, t.reason, t.at_ms, t.runtime_s, "
      "t.objective, t.cost, t.error, t.late_by_s, r.entity, r.project, o.delivered_ms "
      "FROM outbox o "
      "JOIN transitions t ON t.seq = o.transition_seq "
      "LEFT JOIN runs r ON r.id = o.run WHERE {} ORDER BY o.seq",
      where);
  return read_outbox_rows(sql.c_str());
}

std::vector<journal::outbox_row> journal::read_outbox_rows(const char* sql) {
  std::vector<outbox_row> out;
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr);
  statement rows(raw);
  while (sqlite3_step(rows.get()) == SQLITE_ROW) {
    outbox_row row;
    core::outbox_entry& e = row.entry;
    e.seq = sqlite3_column_int64(rows.get(), 0);
    e.run = column_text(rows.get(), 1);
    // read_transition reads columns 1..9 as (run, from, to, …); shift by one via a view.
    auto t = read_transition_at(rows.get(), 1, e.run);
    if (!t) continue;
    e.change = std::move(*t);
    // The run's entity/project; a run pruned meanwhile has none and is dead-lettered.
    e.entity = column_text(rows.get(), 11);
    e.project = column_text(rows.get(), 12);
    if (sqlite3_column_type(rows.get(), 13) != SQLITE_NULL) {
      row.delivered_at = core::from_unix_ms(sqlite3_column_int64(rows.get(), 13));
    }
    out.push_back(std::move(row));
  }
  return out;
}

std::vector<core::outbox_entry> journal::pending_outbox() {
  // The writes runs owe, then the outbox's pending rows; merged by transition, which is the
  // order they were made in, so that the delivery queue sees each run's writes oldest first.
  std::vector<outbox_row> rows = read_outbox_rows(
      "SELECT t.seq, t.run, t.from_state, t.to_state, t.reason, t.at_ms, t.runtime_s, "
      "t.objective, t.cost, t.error, t.late_by_s, r.entity, r.project, NULL "
      "FROM runs r JOIN transitions t ON t.seq = r.wandb_pending");
  std::vector<outbox_row> legacy = outbox_rows("o.status = 'pending'");
  std::vector<core::outbox_entry> out;
  out.reserve(rows.size() + legacy.size());
  for (outbox_row& row : rows) out.push_back(std::move(row.entry));
  for (outbox_row& row : legacy) out.push_back(std::move(row.entry));
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

std::vector<journal::outbox_row> journal::converging_outbox() {
  // A write sent twice (a resync) has a row per delivery: its newest is the one re-checked.
  return outbox_rows(
      "o.converging = 1 AND o.status = 'delivered' AND o.seq = "
      "(SELECT MAX(seq) FROM outbox WHERE transition_seq = o.transition_seq)");
}

core::result<void> journal::settle(const core::delivery_queue::settled_rows& rows,
                                   const std::vector<std::int64_t>& superseded,
                                   core::wall_time now) {
  if (rows.delivered.empty() && rows.dead.empty() && rows.converging.empty() &&
      rows.converged.empty() && superseded.empty()) {
    return {};
  }
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot record W&B deliveries in")};
  }
  transaction_guard guard(db_);
  sqlite3_stmt* raw = nullptr;
  auto prepare = [&](const char* sql) {
    raw = nullptr;
    sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr);
    return statement(raw);
  };
  // A write is known by its transition (?1). One a run owes is settled in the run's row and
  // recorded as an outbox row; one in an outbox row (a pruned run's, an older sweepd's) is
  // settled in that row. A write no longer pending (a newer one superseded it) is left alone.
  statement deliver = prepare(
      "UPDATE outbox SET status = 'delivered', attempts = ?2, delivered_ms = ?3 "
      "WHERE transition_seq = ?1 AND status = 'pending'");
  statement bury = prepare(
      "UPDATE outbox SET status = 'dead', last_error = ?2, attempts = ?3 "
      "WHERE transition_seq = ?1 AND status = 'pending'");
  statement supersede = prepare(
      "UPDATE outbox SET status = 'delivered' WHERE transition_seq = ?1 AND status = 'pending'");
  statement clear_owed = prepare(
      "UPDATE runs SET wandb_pending = NULL "
      "WHERE id = (SELECT run FROM transitions WHERE seq = ?1) AND wandb_pending = ?1");
  statement record_delivered = prepare(
      "INSERT INTO outbox(run, transition_seq, status, attempts, delivered_ms) "
      "SELECT run, seq, 'delivered', ?2, ?3 FROM transitions WHERE seq = ?1");
  statement record_dead = prepare(
      "INSERT INTO outbox(run, transition_seq, status, last_error, attempts) "
      "SELECT run, seq, 'dead', ?2, ?3 FROM transitions WHERE seq = ?1");
  statement converge = prepare(
      "UPDATE outbox SET converging = ?2 "
      "WHERE seq = (SELECT MAX(seq) FROM outbox WHERE transition_seq = ?1)");
  if (!deliver || !bury || !supersede || !clear_owed || !record_delivered || !record_dead ||
      !converge) {
    return core::failure{describe_error("cannot prepare a write to")};
  }
  auto attempts_of = [&](std::int64_t seq) {
    const auto it = rows.attempts.find(seq);
    return it == rows.attempts.end() ? 1 : it->second;
  };
  auto run = [&](sqlite3_stmt* s) {
    const bool ok = sqlite3_step(s) == SQLITE_DONE;
    sqlite3_reset(s);
    return ok;
  };
  auto changed = [&] { return static_cast<std::size_t>(sqlite3_changes(db_)); };
  // Settles write `seq` with `in_outbox` (its outbox row's update, bound from ?1), else in its
  // run's row with `record` (the row recording it, bound likewise): how many were pending.
  std::size_t rows_settled = 0;  // of them, pending outbox rows
  auto settle_write = [&](std::int64_t seq, sqlite3_stmt* in_outbox,
                          sqlite3_stmt* record) -> core::result<std::size_t> {
    if (!run(in_outbox)) return core::failure{describe_error("cannot update")};
    if (const std::size_t n = changed(); n > 0) {
      rows_settled += n;
      return n;
    }
    sqlite3_bind_int64(clear_owed.get(), 1, seq);
    if (!run(clear_owed.get())) return core::failure{describe_error("cannot update")};
    if (changed() == 0) return 0;
    if (!run(record)) return core::failure{describe_error("cannot update")};
    return 1;
  };
  std::size_t settled = 0;
  for (std::int64_t seq : rows.delivered) {
    for (sqlite3_stmt* s : {deliver.get(), record_delivered.get()}) {
      sqlite3_bind_int64(s, 1, seq);
      sqlite3_bind_int(s, 2, attempts_of(seq));
      sqlite3_bind_int64(s, 3, core::to_unix_ms(now));
    }
    auto n = settle_write(seq, deliver.get(), record_delivered.get());
    if (!n) return n.error();
    settled += *n;
  }
  for (std::int64_t seq : superseded) {
    // Only outbox rows: a run's own pending write is replaced, never superseded in place (and
    // a write queued again by a resync supersedes itself in the queue).
    sqlite3_bind_int64(supersede.get(), 1, seq);
    if (!run(supersede.get())) return core::failure{describe_error("cannot update")};
    settled += changed();
    rows_settled += changed();
  }
  std::size_t buried = 0;
  for (const core::dead_letter& d : rows.dead) {
    for (sqlite3_stmt* s : {bury.get(), record_dead.get()}) {
      sqlite3_bind_int64(s, 1, d.seq);
      bind_text(s, 2, d.reason);
      sqlite3_bind_int(s, 3, attempts_of(d.seq));
    }
    auto n = settle_write(d.seq, bury.get(), record_dead.get());
    if (!n) return n.error();
    buried += *n;
  }
  // Converging before converged: a row that started and ended in the same batch ends at 0.
  for (const auto& [seqs, flag] : {std::pair{&rows.converging, 1}, std::pair{&rows.converged, 0}}) {
    for (std::int64_t seq : *seqs) {
      sqlite3_bind_int64(converge.get(), 1, seq);
      sqlite3_bind_int(converge.get(), 2, flag);
      if (!run(converge.get())) return core::failure{describe_error("cannot update")};
    }
  }
  for (statement* s :
       {&deliver, &bury, &supersede, &clear_owed, &record_delivered, &record_dead, &converge}) {
    s->reset();
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot commit W&B deliveries to")};
  }
  guard.dismiss();
  checkpoint_if_due();
  outbox_pending_ -= std::min(outbox_pending_, settled + buried);
  pending_rows_ -= std::min(pending_rows_, rows_settled);
  outbox_dead_ += buried;
  return {};
}

journal::run_delivery journal::delivery_of(const std::string& run) {
  run_delivery out;
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db_,
                     "SELECT status, attempts, last_error, converging FROM outbox "
                     "WHERE run = ?1 ORDER BY seq DESC LIMIT 1",
                     -1, &raw, nullptr);
  statement latest(raw);
  bind_text(latest.get(), 1, run);
  if (sqlite3_step(latest.get()) == SQLITE_ROW) {
    out.latest_status = column_text(latest.get(), 0);
    out.attempts = sqlite3_column_int(latest.get(), 1);
    if (sqlite3_column_type(latest.get(), 2) != SQLITE_NULL) {
      out.last_error = column_text(latest.get(), 2);
    }
    out.converging = sqlite3_column_int(latest.get(), 3) != 0;
  }
  latest.reset();
  sqlite3_prepare_v2(db_,
                     "SELECT COUNT(*) FILTER (WHERE status = 'pending'), "
                     "COUNT(*) FILTER (WHERE status = 'dead'), MAX(delivered_ms) "
                     "FROM outbox WHERE run = ?1",
                     -1, &raw, nullptr);
  statement totals(raw);
  bind_text(totals.get(), 1, run);
  if (sqlite3_step(totals.get()) == SQLITE_ROW) {
    out.pending = static_cast<std::size_t>(sqlite3_column_int64(totals.get(), 0));
    out.dead = static_cast<std::size_t>(sqlite3_column_int64(totals.get(), 1));
    if (sqlite3_column_type(totals.get(), 2) != SQLITE_NULL) {
      out.last_delivered_at = core::from_unix_ms(sqlite3_column_int64(totals.get(), 2));
    }
  }
  totals.reset();
  // The write the run owes is its newest: nothing of it is settled yet.
  if (auto owed = owing_of(run); owed && *owed) {
    out.latest_status = "pending";
    out.attempts = 0;
    out.last_error.reset();
    out.converging = false;
    ++out.pending;
  }
  return out;
}

core::result<core::outbox_entry> journal::requeue_latest(const core::run_record& r) {
  auto owed = owing_of(r.id);
  if (!owed) return owed.error();
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot write to")};
  }
  transaction_guard guard(db_);
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db_,
                     "SELECT run, from_state, to_state, reason, at_ms, runtime_s, objective, cost, "
                     "error, late_by_s, seq FROM transitions WHERE run = ?1 "
                     "ORDER BY seq DESC LIMIT 1",
                     -1, &raw, nullptr);
  statement latest(raw);
  bind_text(latest.get(), 1, r.id);
  if (sqlite3_step(latest.get()) != SQLITE_ROW) {
    return core::failure{fmt::format("{}: run '{}' has no stored transition", path_, r.id)};
  }
  auto t = read_transition(latest.get(), r.id);
  const std::int64_t transition_seq = sqlite3_column_int64(latest.get(), 10);
  latest.reset();
  if (!t)
    return core::failure{
        fmt::format("{}: the last transition of run '{}' cannot be read", path_, r.id)};
  sqlite3_prepare_v2(db_, "UPDATE runs SET wandb_pending = ?2 WHERE id = ?1", -1, &raw, nullptr);
  statement owe(raw);
  bind_text(owe.get(), 1, r.id);
  sqlite3_bind_int64(owe.get(), 2, transition_seq);
  if (sqlite3_step(owe.get()) != SQLITE_DONE) {
    return core::failure{describe_error("cannot queue a W&B write in")};
  }
  owe.reset();
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot commit to")};
  }
  guard.dismiss();
  checkpoint_if_due();
  if (!*owed) ++outbox_pending_;  // else the write owed before is replaced
  return core::outbox_entry{transition_seq, r.id, r.entity, r.project, std::move(*t)};
}

core::result<void> journal::prune(const std::vector<std::string>& run_ids) {
  if (run_ids.empty()) return {};
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot prune")};
  }
  transaction_guard guard(db_);
  const char* sql[] = {
      // A write the run still owes W&B outlives it, as an outbox row.
      "INSERT INTO outbox(run, transition_seq) "
      "SELECT id, wandb_pending FROM runs WHERE id = ?1 AND wandb_pending IS NOT NULL",
      "DELETE FROM runs WHERE id = ?1",
      "DELETE FROM outbox WHERE run = ?1 AND status <> 'pending'",
      "DELETE FROM transitions WHERE run = ?1 AND seq NOT IN "
      "(SELECT transition_seq FROM outbox WHERE run = ?1)",
  };
  std::size_t rows_made = 0;  // by the first statement: owed writes become pending rows
  for (const char* text : sql) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_, text, -1, &raw, nullptr) != SQLITE_OK) {
      return core::failure{describe_error("cannot prune")};
    }
    statement s(raw);
    for (const std::string& id : run_ids) {
      sqlite3_reset(s.get());
      bind_text(s.get(), 1, id);
      if (sqlite3_step(s.get()) != SQLITE_DONE)
        return core::failure{describe_error("cannot prune")};
      if (text == sql[0]) rows_made += static_cast<std::size_t>(sqlite3_changes(db_));
    }
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return core::failure{describe_error("cannot commit pruning to")};
  }
  guard.dismiss();
  checkpoint_if_due();
  pending_rows_ += rows_made;
  return {};
}

}  // namespace sweepd::io
