#include "io/journal.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/run_codec.hpp"
#include "core/supervisor.hpp"
#include "support/process_support.hpp"

namespace sweepd::io {
namespace {

using namespace std::chrono_literals;
using core::instant;
using core::mono_clock;
using core::outcome;
using core::run_state;
using core::transition_reason;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const core::wall_time wall_origin = core::wall_time{} + std::chrono::seconds(1795900000);

/// The fake clock: `d` after an arbitrary origin, on both the monotonic and the wall clock.
instant at(mono_clock::duration d) {
  return {core::mono_time{} + d,
          wall_origin + std::chrono::duration_cast<core::wall_time::duration>(d)};
}

/// The clock of a restarted daemon when the wall clock reads `wall` after the origin.
instant restarted_at(mono_clock::duration wall) { return {core::mono_time{} + 3s, at(wall).wall}; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A second, read-only connection to the database, to see what is really stored.
class db_reader {
 public:
  explicit db_reader(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path << ": " << sqlite3_errmsg(db_);
    }
  }
  ~db_reader() { sqlite3_close_v2(db_); }
  db_reader(const db_reader&) = delete;
  db_reader& operator=(const db_reader&) = delete;

  /// The first column of the first row of `sql` as an integer; -1 when there is none.
  std::int64_t integer(const std::string& sql) {
    std::int64_t value = -1;
    query(sql, [&](sqlite3_stmt* s) { value = sqlite3_column_int64(s, 0); });
    return value;
  }

  /// The first column of the first row of `sql` as text; "" when there is none.
  std::string text(const std::string& sql) {
    std::string value;
    query(sql, [&](sqlite3_stmt* s) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      value = p ? p : "";
    });
    return value;
  }

  /// The first column of every row of `sql` as text.
  std::vector<std::string> texts(const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return rows;
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      rows.emplace_back(p ? p : "");
    }
    sqlite3_finalize(s);
    return rows;
  }

 private:
  template <typename F>
  void query(const std::string& sql, F read) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return;
    }
    if (sqlite3_step(s) == SQLITE_ROW) read(s);
    sqlite3_finalize(s);
  }

  sqlite3* db_ = nullptr;
};

/// Runs `sql` on a connection, failing the test if it does not succeed.
void exec_ok(sqlite3* db, const char* sql) {
  char* message = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &message);
  EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (message ? message : "");
  sqlite3_free(message);
}

class JournalTest : public ::testing::Test {
 protected:
  static core::supervisor_limits limits() {
    core::supervisor_limits l;
    l.default_entity = "team";
    l.default_project = "proj";
    return l;
  }

  /// Opens the journal at `path`; fails the test (and returns null) if it cannot.
  std::unique_ptr<journal> open_ok() {
    auto opened = journal::open(path);
    EXPECT_TRUE(opened) << opened.error();
    return opened ? std::move(*opened) : nullptr;
  }

  /// Writes a state file as schema 1 did: two runs ("done", finished, and "live", watched) as
  /// JSON records, each transition a pending W&B write; then `more_sql` on it.
  void write_schema_one_file(const char* more_sql = nullptr) {
    std::filesystem::create_directories(dir.file("state"));
    {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
      exec_ok(
          db,
          "PRAGMA journal_mode=WAL;"
          "CREATE TABLE runs(id TEXT PRIMARY KEY, state TEXT NOT NULL, finished_ms INTEGER,"
          "  record TEXT NOT NULL) WITHOUT ROWID;"
          "CREATE TABLE transitions(seq INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL,"
          "  from_state TEXT, to_state TEXT NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL,"
          "  runtime_s REAL, objective REAL, cost REAL, error TEXT, late_by_s REAL);"
          "CREATE INDEX transitions_by_run ON transitions(run);"
          "CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL,"
          "  transition_seq INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending' CHECK"
          "  (status IN ('pending', 'delivered', 'dead')), attempts INTEGER NOT NULL DEFAULT 0,"
          "  last_error TEXT);"
          "CREATE INDEX outbox_by_status ON outbox(status, seq);"
          "CREATE INDEX outbox_by_run ON outbox(run);"
          "PRAGMA user_version = 1;");
      // Two runs as the supervisor had them: one finished, one live and watched.
      ASSERT_TRUE(reg("done", at(0s)).ok());
      ASSERT_TRUE(sup.start("done", alice, at(10s)).ok());
      ASSERT_TRUE(sup.complete({"done", 0.5, 7.0}, alice, at(20s)).ok());
      core::register_params p;
      p.run = "live";
      p.watch_peer = true;
      ASSERT_TRUE(
          sup.register_run(p, core::caller{1000, 4242, false, 777, "boot-1"}, at(30s)).ok());
      for (const char* id : {"done", "live"}) {
        const core::run_record& r = *sup.find(id);
        sqlite3_stmt* insert = nullptr;
        sqlite3_prepare_v2(db, "INSERT INTO runs VALUES(?1, ?2, ?3, ?4)", -1, &insert, nullptr);
        const std::string record = core::encode_run(r).dump();
        sqlite3_bind_text(insert, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(insert, 2, std::string(core::to_string(r.state)).c_str(), -1,
                          SQLITE_TRANSIENT);
        if (r.finished_wall) {
          sqlite3_bind_int64(insert, 3, core::to_unix_ms(*r.finished_wall));
        }
        sqlite3_bind_text(insert, 4, record.c_str(), -1, SQLITE_TRANSIENT);
        ASSERT_EQ(sqlite3_step(insert), SQLITE_DONE);
        sqlite3_finalize(insert);
        for (const core::transition& t : r.history) {
          const std::string row = fmt::format(
              "INSERT INTO transitions(run, from_state, to_state, reason, at_ms) VALUES('{}', {}, "
              "'{}', '{}', {}); INSERT INTO outbox(run, transition_seq) VALUES('{}', "
              "last_insert_rowid());",
              id, t.from ? "'" + std::string(core::to_string(*t.from)) + "'" : "NULL",
              core::to_string(t.to), core::to_string(t.reason), core::to_unix_ms(t.at), id);
          exec_ok(db, row.c_str());
        }
      }
      if (more_sql != nullptr) exec_ok(db, more_sql);
      sqlite3_close(db);
    }
  }

  /// Opens the journal again and loads it, as the daemon does at startup.
  journal::contents reopen_and_load(instant now = restarted_at(1000s)) {
    j.reset();
    j = open_ok();
    if (!j) return {};
    auto loaded = j->load(now);
    EXPECT_TRUE(loaded) << loaded.error();
    return loaded ? std::move(*loaded) : journal::contents{};
  }

  outcome reg(const std::string& id, instant when) {
    core::register_params p;
    p.run = id;
    p.sweep = "s1";
    p.suggestion = core::json_text(nlohmann::json{{"lr", 0.01}});
    return sup.register_run(p, alice, when);
  }

  /// Stores one outcome's change. The supervisor here has applied it already (plan and apply at
  /// once); the journal stores the same either way.
  core::result<void> commit(const outcome& o, bool to_outbox = true) {
    EXPECT_TRUE(o.ok()) << o.err.message;
    EXPECT_TRUE(o.change.has_value());
    if (!o.change) return {};
    return j->commit(std::span<const core::run_change>(&*o.change, 1), sup, to_outbox);
  }

  /// Stores the changes of several outcomes in one transaction.
  core::result<void> commit_all(const std::vector<outcome>& os, bool to_outbox = true) {
    std::vector<core::run_change> changes;
    for (const outcome& o : os) {
      if (o.change) changes.push_back(*o.change);
    }
    return j->commit(changes, sup, to_outbox);
  }

  /// Registers, starts and completes `id`, committing each transition; they happen at 0, 10 and
  /// 20 s after `t0`.
  void run_to_success(const std::string& id, mono_clock::duration t0 = 0s) {
    ASSERT_EQ(commit(reg(id, at(t0))), core::success);
    ASSERT_EQ(commit(sup.start(id, alice, at(t0 + 10s))), core::success);
    ASSERT_EQ(commit(sup.complete({id, 0.5, 7.0}, alice, at(t0 + 20s))), core::success);
  }

  /// Settles W&B write `seq` (its transition) as delivered at `when`.
  core::result<void> deliver(std::int64_t seq, instant when) {
    core::delivery_queue::settled_rows rows;
    rows.delivered = {seq};
    return j->settle(rows, {}, when.wall);
  }

  /// Settles W&B write `seq` of `run` as refused for good at `when`.
  core::result<void> refuse(std::int64_t seq, const std::string& run, instant when) {
    core::delivery_queue::settled_rows rows;
    rows.dead = {{seq, run, "HTTP 403 from W&B"}};
    return j->settle(rows, {}, when.wall);
  }

  static constexpr core::caller alice{1000, 4242, false};

  test::temp_dir dir;
  const std::string path = dir.file("state/sweepd.db");
  core::supervisor sup{limits()};
  std::unique_ptr<journal> j;
};

// ---------------------------------------------------------------------------------------------
// open

TEST_F(JournalTest, OpenCreatesDirectoryAndFileInWalModeAtCurrentSchema) {
  ASSERT_FALSE(std::filesystem::exists(dir.file("state")));
  j = open_ok();
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->path(), path);
  EXPECT_TRUE(std::filesystem::is_directory(dir.file("state")));
  EXPECT_TRUE(std::filesystem::is_regular_file(path));

  db_reader db(path);
  EXPECT_EQ(db.integer("PRAGMA user_version"), journal::schema_version);
  EXPECT_EQ(db.text("PRAGMA journal_mode"), "wal");
  EXPECT_THAT(db.texts("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                       "'sqlite_%' ORDER BY name"),
              ElementsAre("outbox", "runs", "transitions"));
}

TEST_F(JournalTest, FreshJournalLoadsNothing) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  const auto loaded = j->load(at(0s));
  ASSERT_TRUE(loaded) << loaded.error();
  const auto& contents = *loaded;
  EXPECT_THAT(contents.runs, IsEmpty());
  EXPECT_EQ(contents.outbox_pending, 0u);
  EXPECT_EQ(j->outbox_pending(), 0u);
}

TEST_F(JournalTest, SecondOpenWhileFirstIsOpenIsRefused) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  auto second = journal::open(path);
  ASSERT_FALSE(second);
  EXPECT_THAT(second.error().message, HasSubstr("another sweepd"));
  EXPECT_THAT(second.error().message, HasSubstr(path));
  EXPECT_THAT(second.error().message, HasSubstr(std::to_string(::getpid())));

  // The refused open must not have broken the first one's lock or its database.
  run_to_success("r1");
  auto third = journal::open(path);
  EXPECT_THAT(third.error().message, HasSubstr("another sweepd"));

  j.reset();
  j = open_ok();
  ASSERT_NE(j, nullptr);
  const auto loaded = j->load(restarted_at(1000s));
  ASSERT_TRUE(loaded) << loaded.error();
  EXPECT_EQ(loaded->runs.size(), 1u);
}

TEST_F(JournalTest, GarbageFileIsRefusedAndLeftUntouched) {
  std::filesystem::create_directories(dir.file("state"));
  const std::string garbage(4096, 'x');
  std::ofstream(path, std::ios::binary) << garbage;

  auto opened = journal::open(path);
  ASSERT_FALSE(opened);
  EXPECT_THAT(opened.error().message, HasSubstr(path));
  EXPECT_EQ(read_bytes(path), garbage);

  // Refused for what it is, again: the failed open released its lock.
  opened = journal::open(path);
  ASSERT_FALSE(opened);
  EXPECT_THAT(opened.error().message, Not(HasSubstr("another sweepd")));
  EXPECT_THAT(opened.error().message, HasSubstr(path));
  EXPECT_EQ(read_bytes(path), garbage);
}

TEST_F(JournalTest, CorruptDatabaseIsRefusedNotStartedAfresh) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  for (int i = 0; i < 200; ++i) run_to_success("run-" + std::to_string(i));
  j.reset();  // checkpoints the WAL into the file
  std::string bytes = read_bytes(path);
  ASSERT_GT(bytes.size(), 8u * 4096);
  // Overwrite pages 3 to 6 (b-tree pages of the tables) with garbage; the header stays valid.
  for (std::size_t i = std::size_t{2} * 4096; i < std::size_t{6} * 4096; ++i) bytes[i] = 'x';
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;

  auto opened = journal::open(path);
  ASSERT_FALSE(opened);
  EXPECT_THAT(opened.error().message, HasSubstr(path));
  EXPECT_THAT(opened.error().message, HasSubstr("corrupt"));
  EXPECT_EQ(read_bytes(path), bytes);
}

TEST_F(JournalTest, NewerSchemaIsRefused) {
  std::filesystem::create_directories(dir.file("state"));
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  exec_ok(raw, "CREATE TABLE future(x); PRAGMA user_version=99;");
  sqlite3_close(raw);

  auto opened = journal::open(path);
  ASSERT_FALSE(opened);
  EXPECT_THAT(opened.error().message, HasSubstr("schema 99"));
  EXPECT_THAT(opened.error().message, HasSubstr(path));
  db_reader db(path);
  EXPECT_EQ(db.integer("PRAGMA user_version"), 99);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM sqlite_master WHERE name = 'runs'"), 0);
}

TEST_F(JournalTest, StatePathUnderARegularFileNamesTheDirectory) {
  const std::string file = dir.file("file");
  std::ofstream(file) << "not a directory";
  for (const std::string& state : {file + "/state.db", file + "/sub/state.db"}) {
    SCOPED_TRACE(state);
    auto opened = journal::open(state);
    ASSERT_FALSE(opened);
    EXPECT_THAT(opened.error().message, HasSubstr("directory"));
    EXPECT_THAT(opened.error().message,
                HasSubstr(std::filesystem::path(state).parent_path().string()));
  }
  EXPECT_EQ(read_bytes(file), "not a directory");
}

// ---------------------------------------------------------------------------------------------
// commit and load

TEST_F(JournalTest, CommittedRunComesBackWithItsHistoryInOrder) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("r1");
  // Each W&B write carries the run's whole state: the newest settles the older ones.
  EXPECT_EQ(j->outbox_pending(), 1u);

  const auto contents = reopen_and_load(restarted_at(1000s));
  EXPECT_EQ(contents.outbox_pending, 1u);
  EXPECT_EQ(j->outbox_pending(), 1u);
  ASSERT_EQ(contents.runs.size(), 1u);
  const core::run_record& r = contents.runs[0];
  EXPECT_EQ(r.id, "r1");
  EXPECT_EQ(r.sweep, "s1");
  EXPECT_EQ(r.suggestion.value(), nlohmann::json({{"lr", 0.01}}));
  EXPECT_EQ(r.owner_uid, 1000u);
  EXPECT_EQ(r.state, run_state::success);
  EXPECT_EQ(r.reason, transition_reason::completed);
  EXPECT_EQ(r.objective, 0.5);
  EXPECT_EQ(r.cost, 7.0);
  EXPECT_EQ(r.runtime_s, 20.0);
  EXPECT_EQ(r.registered_wall, at(0s).wall);
  EXPECT_EQ(r.finished_wall, at(20s).wall);

  ASSERT_EQ(r.history.size(), 3u);
  EXPECT_EQ(r.history[0].from, std::nullopt);
  EXPECT_EQ(r.history[0].to, run_state::initializing);
  EXPECT_EQ(r.history[0].reason, transition_reason::registered);
  EXPECT_EQ(r.history[0].at, at(0s).wall);
  EXPECT_EQ(r.history[1].from, run_state::initializing);
  EXPECT_EQ(r.history[1].reason, transition_reason::started);
  EXPECT_EQ(r.history[1].at, at(10s).wall);
  EXPECT_EQ(r.history[2].from, run_state::running);
  EXPECT_EQ(r.history[2].to, run_state::success);
  EXPECT_EQ(r.history[2].reason, transition_reason::completed);
  EXPECT_EQ(r.history[2].objective, 0.5);
  EXPECT_EQ(r.history[2].cost, 7.0);
  EXPECT_EQ(r.history[2].runtime_s, 20.0);
  EXPECT_EQ(r.history[2].at, at(20s).wall);

  db_reader db(path);
  EXPECT_EQ(db.text("SELECT state FROM runs WHERE id = 'r1'"), "success");
  EXPECT_EQ(db.integer("SELECT finished_ms FROM runs WHERE id = 'r1'"),
            core::to_unix_ms(at(20s).wall));
  // The run's row owes W&B its newest write; nothing was sent, so the outbox has no rows.
  EXPECT_EQ(db.text("SELECT t.reason FROM runs r JOIN transitions t ON t.seq = r.wandb_pending "
                    "WHERE r.id = 'r1'"),
            "completed");
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox"), 0);
}

TEST_F(JournalTest, LiveRunIsStoredWithoutFinishTime) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("live", at(0s))), core::success);
  db_reader db(path);
  EXPECT_EQ(db.text("SELECT state FROM runs WHERE id = 'live'"), "initializing");
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM runs WHERE finished_ms IS NULL"), 1);
}

TEST_F(JournalTest, CommitWithoutOutboxAddsNoOutboxRows) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("r1", at(0s)), false), core::success);
  ASSERT_EQ(commit(sup.start("r1", alice, at(10s)), false), core::success);
  EXPECT_EQ(j->outbox_pending(), 0u);
  {
    db_reader db(path);
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM transitions"), 2);
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox"), 0);
  }
  const auto contents = reopen_and_load();
  EXPECT_EQ(contents.outbox_pending, 0u);
  ASSERT_EQ(contents.runs.size(), 1u);
  EXPECT_EQ(contents.runs[0].history.size(), 2u);
}

TEST_F(JournalTest, OutcomesWithoutTransitionStoreNothing) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("r1", at(0s))), core::success);
  core::heartbeat_params hb;
  hb.run = "r1";
  const outcome beat = sup.heartbeat(hb, alice, at(5s));
  ASSERT_FALSE(beat.change);
  EXPECT_EQ(commit_all({beat}), core::success);
  EXPECT_EQ(j->commit({}, sup, true), core::success);
  EXPECT_EQ(j->outbox_pending(), 1u);
  db_reader db(path);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM transitions"), 1);
}

TEST_F(JournalTest, CommitRefusedByTheDatabaseStoresNothing) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("r1", at(0s))), core::success);
  ASSERT_EQ(j->outbox_pending(), 1u);

  exec_ok(j->handle(), "PRAGMA query_only=1");
  const outcome started = sup.plan_start("r1", alice, at(10s));  // planned, not applied
  const auto err = commit(started);
  ASSERT_FALSE(err);
  EXPECT_THAT(err.error().message, HasSubstr(path));
  EXPECT_EQ(j->outbox_pending(), 1u);
  EXPECT_EQ(sup.find("r1")->state, run_state::initializing);  // the daemon drops the plan

  exec_ok(j->handle(), "PRAGMA query_only=0");
  const auto contents = reopen_and_load();
  ASSERT_EQ(contents.runs.size(), 1u);
  EXPECT_EQ(contents.runs[0].state, run_state::initializing);
  EXPECT_EQ(contents.runs[0].history.size(), 1u);
  EXPECT_EQ(contents.outbox_pending, 1u);
}

TEST_F(JournalTest, JournalWritesAgainOnceTheDatabaseAcceptsWrites) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("r1", at(0s))), core::success);
  exec_ok(j->handle(), "PRAGMA query_only=1");
  const outcome refused = sup.plan_start("r1", alice, at(10s));
  ASSERT_FALSE(commit(refused));
  exec_ok(j->handle(), "PRAGMA query_only=0");

  // No transaction was left open by the failure: the retry is stored, once.
  ASSERT_EQ(commit(sup.start("r1", alice, at(11s))), core::success);
  EXPECT_EQ(j->outbox_pending(), 1u);
  const auto contents = reopen_and_load();
  ASSERT_EQ(contents.runs.size(), 1u);
  EXPECT_EQ(contents.runs[0].state, run_state::running);
  ASSERT_EQ(contents.runs[0].history.size(), 2u);
  EXPECT_EQ(contents.runs[0].history[1].at, at(11s).wall);
  EXPECT_EQ(contents.outbox_pending, 1u);
}

TEST_F(JournalTest, BatchOfTimeoutsIsAllOrNothing) {
  constexpr std::size_t batch = 2048;
  j = open_ok();
  ASSERT_NE(j, nullptr);
  std::vector<outcome> registered;
  for (std::size_t i = 0; i < batch; ++i)
    registered.push_back(reg("run-" + std::to_string(i), at(0s)));
  ASSERT_EQ(commit_all(registered), core::success);
  ASSERT_EQ(j->outbox_pending(), batch);

  auto expect_only_registrations = [&] {
    db_reader db(path);
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM transitions"), static_cast<std::int64_t>(batch));
    // Each run still owes its registration's write, not a timeout's.
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM runs r JOIN transitions t "
                         "ON t.seq = r.wandb_pending WHERE t.reason = 'registered'"),
              static_cast<std::int64_t>(batch));
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM runs WHERE state <> 'initializing'"), 0);
    EXPECT_EQ(j->outbox_pending(), batch);
  };

  // A failure late in the batch, after most of it was written inside the transaction.
  exec_ok(j->handle(),
          "CREATE TEMP TRIGGER refuse_late BEFORE INSERT ON main.transitions "
          "WHEN NEW.run = 'run-2000' BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  auto fired = sup.plan_expiry(at(300s));
  ASSERT_EQ(fired.size(), batch);
  auto err = j->commit(fired, sup, true);
  ASSERT_FALSE(err);
  EXPECT_THAT(err.error().message, HasSubstr("injected failure"));
  expect_only_registrations();

  // A database that refuses every write.
  exec_ok(j->handle(), "DROP TRIGGER temp.refuse_late");
  exec_ok(j->handle(), "PRAGMA query_only=1");
  fired = sup.plan_expiry(at(300s));
  ASSERT_EQ(fired.size(), batch);
  ASSERT_FALSE(j->commit(fired, sup, true));
  expect_only_registrations();

  // Once writes are accepted the same batch goes in whole.
  exec_ok(j->handle(), "PRAGMA query_only=0");
  fired = sup.plan_expiry(at(300s));
  ASSERT_EQ(fired.size(), batch);
  ASSERT_EQ(j->commit(fired, sup, true), core::success);
  for (core::run_change& c : fired) sup.apply(std::move(c));
  EXPECT_EQ(j->outbox_pending(), batch);  // each timeout supersedes its run's registration
  const auto contents = reopen_and_load();
  ASSERT_EQ(contents.runs.size(), batch);
  for (const core::run_record& r : contents.runs) {
    ASSERT_EQ(r.state, run_state::timeout) << r.id;
    ASSERT_EQ(r.history.size(), 2u) << r.id;
  }
  EXPECT_EQ(contents.outbox_pending, batch);
}

TEST_F(JournalTest, LoadRestoresThousandRunsWithTheirHistories) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  std::vector<outcome> batch;
  batch.reserve(1000);
  for (int i = 0; i < 1000; ++i) batch.push_back(reg("run-" + std::to_string(i), at(0s)));
  ASSERT_EQ(commit_all(batch), core::success);
  batch.clear();
  for (int i = 0; i < 1000; i += 2)
    batch.push_back(sup.start("run-" + std::to_string(i), alice, at(10s)));
  ASSERT_EQ(commit_all(batch), core::success);
  for (int i = 0; i < 1000; ++i) {
    const std::string id = "run-" + std::to_string(i);
    if (i % 4 == 0) {
      ASSERT_EQ(commit(sup.complete({id, i * 0.001, std::nullopt}, alice, at(20s))), core::success);
    } else if (i % 4 == 1) {
      ASSERT_EQ(commit(sup.fail({id, "error " + id}, alice, at(20s))), core::success);
    }
  }
  std::size_t transitions = 0;
  sup.for_each([&](const core::run_record& r) { transitions += r.history.size(); });

  const instant now = restarted_at(1000s);
  auto contents = reopen_and_load(now);
  ASSERT_EQ(contents.runs.size(), 1000u);
  EXPECT_EQ(contents.outbox_pending, 1000u);  // the newest write of each run
  EXPECT_GT(transitions, 1000u);
  core::supervisor restored{limits()};
  for (core::run_record& r : contents.runs) {
    const core::run_record* want = sup.find(r.id);
    ASSERT_NE(want, nullptr) << r.id;
    EXPECT_EQ(r.state, want->state) << r.id;
    EXPECT_EQ(r.objective, want->objective) << r.id;
    EXPECT_EQ(r.error, want->error) << r.id;
    ASSERT_EQ(r.history.size(), want->history.size()) << r.id;
    for (std::size_t k = 0; k < r.history.size(); ++k) {
      EXPECT_EQ(core::transition_json(r.history[k]), core::transition_json(want->history[k]))
          << r.id << " #" << k;
    }
    EXPECT_TRUE(restored.restore(std::move(r), now));
  }
  EXPECT_EQ(restored.size(), 1000u);
  EXPECT_EQ(restored.counts(), sup.counts());
}

TEST_F(JournalTest, UnreadableRecordIsReportedWithItsRun) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("r1");
  exec_ok(j->handle(), "UPDATE runs SET state = 'bogus' WHERE id = 'r1'");
  j.reset();
  j = open_ok();
  ASSERT_NE(j, nullptr);
  const auto loaded = j->load(restarted_at(1000s));
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("'r1'"));
  EXPECT_THAT(loaded.error().message, HasSubstr(path));
}

TEST_F(JournalTest, UnreadableTransitionIsReportedWithItsRun) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("r1");
  exec_ok(j->handle(), "UPDATE transitions SET to_state = 'finished' WHERE reason = 'completed'");
  j.reset();
  j = open_ok();
  ASSERT_NE(j, nullptr);
  const auto loaded = j->load(restarted_at(1000s));
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("'r1'"));
  EXPECT_THAT(loaded.error().message, HasSubstr(path));
}

// ---------------------------------------------------------------------------------------------
// prune

TEST_F(JournalTest, PruneKeepsPendingOutboxRowsAndTheTransitionsTheyCarry) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  // Transitions 1–3, 4–6, …: each run owes W&B the write of its newest one until settled.
  run_to_success("pending");  // its newest W&B write (the completion) still pending
  run_to_success("delivered");
  ASSERT_EQ(deliver(6, at(20s)), core::success);
  // Its registration and start delivered as they came, the completion pending.
  ASSERT_EQ(commit(reg("mixed", at(0s))), core::success);
  ASSERT_EQ(deliver(7, at(20s)), core::success);
  ASSERT_EQ(commit(sup.start("mixed", alice, at(10s))), core::success);
  ASSERT_EQ(deliver(8, at(20s)), core::success);
  ASSERT_EQ(commit(sup.complete({"mixed", 0.5, 7.0}, alice, at(20s))), core::success);
  run_to_success("dead");
  ASSERT_EQ(refuse(12, "dead", at(20s)), core::success);
  ASSERT_EQ(commit(reg("quiet", at(0s)), false), core::success);  // W&B disabled: no outbox
  ASSERT_EQ(commit(sup.start("quiet", alice, at(10s)), false), core::success);
  ASSERT_EQ(commit(sup.complete({"quiet", 1.0, std::nullopt}, alice, at(20s)), false),
            core::success);
  ASSERT_EQ(commit(reg("live", at(100s))), core::success);
  ASSERT_EQ(j->outbox_pending(), 3u);

  const auto pruned = sup.prune(at(21s).wall);
  ASSERT_EQ(pruned.size(), 5u);
  ASSERT_EQ(j->prune(pruned), core::success);

  {
    db_reader db(path);
    EXPECT_THAT(db.texts("SELECT id FROM runs"), ElementsAre("live"));
    auto count = [&](const char* table, const char* run) {
      return db.integer(std::string("SELECT COUNT(*) FROM ") + table + " WHERE run = '" + run +
                        "'");
    };
    EXPECT_EQ(count("transitions", "pending"), 1);
    EXPECT_EQ(count("outbox", "pending"), 1);
    EXPECT_EQ(count("transitions", "delivered"), 0);
    EXPECT_EQ(count("outbox", "delivered"), 0);
    EXPECT_EQ(count("transitions", "dead"), 0);
    EXPECT_EQ(count("outbox", "dead"), 0);
    EXPECT_EQ(count("transitions", "quiet"), 0);
    EXPECT_EQ(count("transitions", "mixed"), 1);
    EXPECT_EQ(count("outbox", "mixed"), 1);
    EXPECT_EQ(db.text("SELECT reason FROM transitions WHERE run = 'mixed'"), "completed");
    EXPECT_EQ(count("transitions", "live"), 1);
    EXPECT_EQ(count("outbox", "live"), 0);  // its write is owed by its row
    EXPECT_EQ(db.integer("SELECT wandb_pending FROM runs WHERE id = 'live'"), 16);
    // Every pending write still has the transition it carries.
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox o WHERE NOT EXISTS "
                         "(SELECT 1 FROM transitions t WHERE t.seq = o.transition_seq)"),
              0);
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox WHERE status <> 'pending'"), 0);
  }

  // After a restart only the live run comes back; the pending writes are still counted.
  const auto contents = reopen_and_load(restarted_at(1000s));
  ASSERT_EQ(contents.runs.size(), 1u);
  EXPECT_EQ(contents.runs[0].id, "live");
  EXPECT_EQ(contents.runs[0].history.size(), 1u);
  EXPECT_EQ(contents.outbox_pending, 1u + 1u + 1u);
}

TEST_F(JournalTest, PrunedIdRegisteredAgainComesBackWithOnlyItsNewHistory) {
  // The transitions of a pruned run stay while their W&B writes are pending; a new run that
  // reuses the id must not inherit them.
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("trial-1");
  const auto pruned = sup.prune(at(21s).wall);
  ASSERT_THAT(pruned, ElementsAre("trial-1"));
  ASSERT_EQ(j->prune(pruned), core::success);
  ASSERT_EQ(commit(reg("trial-1", at(100s))), core::success);

  const auto contents = reopen_and_load();
  ASSERT_EQ(contents.runs.size(), 1u);
  const core::run_record& r = contents.runs[0];
  EXPECT_EQ(r.state, run_state::initializing);
  ASSERT_EQ(r.history.size(), 1u);
  EXPECT_EQ(r.history[0].reason, transition_reason::registered);
  EXPECT_EQ(r.history[0].at, at(100s).wall);
  // The new run's write goes to the same W&B run and carries the whole state: it supersedes the
  // old run's last write, which was still owed to W&B.
  EXPECT_EQ(contents.outbox_pending, 1u);
}

TEST_F(JournalTest, PruneOfNothingOrUnknownRunsChangesNothing) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("r1");
  EXPECT_EQ(j->prune({}), core::success);
  EXPECT_EQ(j->prune({"nobody"}), core::success);
  db_reader db(path);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM runs"), 1);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM transitions"), 3);
  EXPECT_EQ(db.integer("SELECT wandb_pending FROM runs WHERE id = 'r1'"), 3);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox"), 0);
}

TEST_F(JournalTest, PruneRefusedByTheDatabaseKeepsEverything) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("r1");
  ASSERT_EQ(deliver(3, at(30s)), core::success);
  exec_ok(j->handle(), "PRAGMA query_only=1");
  const auto err = j->prune({"r1"});
  ASSERT_FALSE(err);
  EXPECT_THAT(err.error().message, HasSubstr(path));
  exec_ok(j->handle(), "PRAGMA query_only=0");
  db_reader db(path);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM runs"), 1);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM transitions"), 3);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox WHERE status = 'delivered'"), 1);
}

// ---------------------------------------------------------------------------------------------
// schema 2: delivery times, convergence, resync

TEST_F(JournalTest, SchemaOneFileIsMigratedToColumnsWithItsRowsIntact) {
  write_schema_one_file();
  const auto contents = reopen_and_load();
  ASSERT_EQ(contents.runs.size(), 2u);
  EXPECT_EQ(contents.outbox_pending, 4u);
  for (const core::run_record& r : contents.runs) {
    const core::run_record& was = *sup.find(r.id);
    SCOPED_TRACE(r.id);
    EXPECT_EQ(r.state, was.state);
    EXPECT_EQ(r.reason, was.reason);
    EXPECT_EQ(r.sweep, was.sweep);
    EXPECT_EQ(r.suggestion, was.suggestion);
    EXPECT_EQ(r.owner_uid, was.owner_uid);
    EXPECT_EQ(r.watch_peer, was.watch_peer);
    EXPECT_EQ(r.peer_pid, was.peer_pid);
    EXPECT_EQ(r.peer_start_time, was.peer_start_time);
    EXPECT_EQ(r.peer_boot_id, was.peer_boot_id);
    EXPECT_EQ(r.registered_wall, was.registered_wall);
    EXPECT_EQ(r.finished_wall, was.finished_wall);
    EXPECT_EQ(r.objective, was.objective);
    EXPECT_EQ(r.cost, was.cost);
    EXPECT_EQ(r.runtime_s, was.runtime_s);
    EXPECT_EQ(r.heartbeat_timeout, was.heartbeat_timeout);
    EXPECT_EQ(r.history.size(), was.history.size());
  }
  db_reader db(path);
  EXPECT_EQ(db.integer("PRAGMA user_version"), journal::schema_version);
  EXPECT_EQ(db.text("SELECT objective FROM runs WHERE id = 'done'"), "0.5");
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox WHERE converging = 0 AND delivered_ms IS NULL"),
            4);
}

TEST_F(JournalTest, SchemaFourKeepsEveryOutboxRowItsStatusAndItsSequence) {
  // Rows in all three states, and a newest row since deleted: its number is never reused.
  write_schema_one_file(
      "UPDATE outbox SET status = 'delivered' WHERE seq = 1;"
      "UPDATE outbox SET status = 'dead', last_error = 'HTTP 401', attempts = 3 WHERE seq = 2;"
      "INSERT INTO outbox(run, transition_seq) VALUES('gone', 0);"
      "DELETE FROM outbox WHERE run = 'gone';");
  const auto contents = reopen_and_load();
  EXPECT_EQ(contents.outbox_pending, 2u);
  EXPECT_EQ(j->outbox_dead(), 1u);
  {
    db_reader db(path);
    EXPECT_EQ(db.integer("PRAGMA user_version"), journal::schema_version);
    EXPECT_EQ(db.text("SELECT group_concat(status, ',') FROM (SELECT status FROM outbox "
                      "ORDER BY seq)"),
              "delivered,dead,pending,pending");
    EXPECT_EQ(db.text("SELECT last_error || ' ' || attempts FROM outbox WHERE seq = 2"),
              "HTTP 401 3");
    EXPECT_EQ(db.text("SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_schema "
                      "WHERE tbl_name = 'outbox' AND type = 'index' ORDER BY name)"),
              "outbox_by_run,outbox_by_transition,outbox_converging,outbox_dead,outbox_pending");
  }
  // The check still holds, and the next row is numbered past the deleted one.
  EXPECT_NE(sqlite3_exec(j->handle(), "UPDATE outbox SET status = 'lost' WHERE seq = 3", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  // A new write supersedes the run's pending row and is owed by its run; once delivered it is
  // recorded in a row of its own.
  ASSERT_EQ(commit(sup.fail({"live", "boom"}, alice, at(41s))), core::success);
  EXPECT_EQ(j->outbox_pending(), 2u);
  core::delivery_queue::settled_rows delivered;
  delivered.delivered = {5};  // the fail: transition 5, after done's 3 and live's registration
  ASSERT_EQ(j->settle(delivered, {}, at(42s).wall), core::success);
  EXPECT_EQ(j->outbox_pending(), 1u);
  db_reader db(path);
  EXPECT_EQ(db.integer("SELECT MAX(seq) FROM outbox"), 6);
  EXPECT_EQ(db.integer("SELECT transition_seq FROM outbox WHERE seq = 6"), 5);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"), 1);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM runs WHERE wandb_pending IS NOT NULL"), 0);
}

TEST_F(JournalTest, SettleRecordsDeliveryTimeAttemptsAndConvergence) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("r1");  // transitions 1, 2, 3: the run owes the write of 3
  core::delivery_queue::settled_rows rows;
  rows.delivered = {3};
  rows.converging = {3};
  rows.attempts = {{3, 4}};
  ASSERT_EQ(j->settle(rows, {1, 2}, at(60s).wall), core::success);
  EXPECT_EQ(j->outbox_pending(), 0u);
  {
    db_reader db(path);
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox"), 1);
    EXPECT_EQ(db.integer("SELECT attempts FROM outbox WHERE transition_seq = 3"), 4);
    EXPECT_EQ(db.integer("SELECT delivered_ms FROM outbox WHERE transition_seq = 3"),
              core::to_unix_ms(at(60s).wall));
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM runs WHERE wandb_pending IS NOT NULL"), 0);
  }
  auto converging = j->converging_outbox();
  ASSERT_EQ(converging.size(), 1u);
  EXPECT_EQ(converging[0].entry.seq, 3);
  EXPECT_EQ(converging[0].entry.change.to, run_state::success);
  EXPECT_EQ(converging[0].entry.entity, "team");
  EXPECT_EQ(converging[0].delivered_at, at(60s).wall);

  core::delivery_queue::settled_rows over;
  over.converged = {3};
  ASSERT_EQ(j->settle(over, {}, at(90s).wall), core::success);
  EXPECT_THAT(j->converging_outbox(), IsEmpty());
}

TEST_F(JournalTest, DeliveryOfARunSummarisesItsOutboxRows) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->delivery_of("nobody").latest_status, "");
  ASSERT_EQ(commit(reg("r1", at(0s))), core::success);  // outbox row 1
  auto stored = j->delivery_of("r1");
  EXPECT_EQ(stored.latest_status, "pending");
  EXPECT_EQ(stored.pending, 1u);
  EXPECT_FALSE(stored.last_delivered_at);

  ASSERT_EQ(deliver(1, at(30s)), core::success);
  ASSERT_EQ(commit(sup.start("r1", alice, at(40s))), core::success);                 // row 2
  ASSERT_EQ(commit(sup.complete({"r1", 0.5, 7.0}, alice, at(50s))), core::success);  // row 3
  core::delivery_queue::settled_rows refused;
  refused.dead = {{3, "r1", "HTTP 403 from W&B"}};
  refused.attempts = {{3, 2}};
  ASSERT_EQ(j->settle(refused, {}, at(60s).wall), core::success);
  stored = j->delivery_of("r1");
  EXPECT_EQ(stored.latest_status, "dead");
  EXPECT_EQ(stored.attempts, 2);
  EXPECT_EQ(stored.last_error, "HTTP 403 from W&B");
  EXPECT_EQ(stored.pending, 0u);
  EXPECT_EQ(stored.dead, 1u);
  EXPECT_EQ(stored.last_delivered_at, at(30s).wall);
  EXPECT_EQ(j->outbox_dead(), 1u);
}

TEST_F(JournalTest, FlappingRunKeepsABoundedHistoryOnDisk) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  core::register_params p;
  p.run = "flap";
  p.heartbeat_timeout_s = 1;
  ASSERT_EQ(commit(sup.register_run(p, alice, at(0s))), core::success);
  mono_clock::duration t = 0s;
  for (int i = 0; i < 400; ++i) {
    t += 2s;
    auto fired = sup.plan_expiry(at(t));
    ASSERT_EQ(fired.size(), 1u);
    ASSERT_EQ(j->commit(fired, sup, true), core::success);
    sup.apply(std::move(fired[0]));
    ASSERT_EQ(commit(sup.heartbeat({"flap", std::nullopt, std::nullopt}, alice, at(t))),
              core::success);
  }
  {
    db_reader db(path);
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM transitions WHERE run = 'flap'"),
              static_cast<std::int64_t>(core::max_history));
    // Only the newest write is owed; the trim kept the transition it carries.
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM runs r JOIN transitions t "
                         "ON t.seq = r.wandb_pending WHERE t.reason = 'revived'"),
              1);
    EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox"), 0);
  }
  const auto contents = reopen_and_load();
  ASSERT_EQ(contents.runs.size(), 1u);
  const auto& history = contents.runs[0].history;
  ASSERT_EQ(history.size(), core::max_history);
  EXPECT_EQ(history.front().reason, transition_reason::registered);
  EXPECT_EQ(history.back().reason, transition_reason::revived);
  EXPECT_EQ(history.back().at, at(t).wall);
}

TEST_F(JournalTest, RequeueOwesTheNewestTransitionAgain) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("r1");
  core::delivery_queue::settled_rows rows;
  rows.dead = {{3, "r1", "HTTP 401 from W&B"}};
  ASSERT_EQ(j->settle(rows, {1, 2}, at(30s).wall), core::success);
  ASSERT_EQ(j->outbox_pending(), 0u);

  auto queued = j->requeue_latest(*sup.find("r1"));
  ASSERT_TRUE(queued) << queued.error();
  const auto& entry = *queued;
  EXPECT_EQ(entry.seq, 3);
  EXPECT_EQ(entry.run, "r1");
  EXPECT_EQ(entry.entity, "team");
  EXPECT_EQ(entry.project, "proj");
  EXPECT_EQ(entry.change.to, run_state::success);
  EXPECT_EQ(entry.change.objective, 0.5);
  EXPECT_EQ(j->outbox_pending(), 1u);
  // It survives a restart like any pending write.
  EXPECT_EQ(reopen_and_load().outbox_pending, 1u);
  const auto pending = j->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].change.reason, transition_reason::completed);
}

TEST_F(JournalTest, WriteSettledAfterANewerOneWasQueuedIsLeftAsIs) {
  // The registration's write was in flight when the start was committed: the start's write
  // replaced it as the one the run owes, and how the older one ended changes nothing.
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("r1", at(0s))), core::success);
  ASSERT_EQ(commit(sup.start("r1", alice, at(10s))), core::success);
  ASSERT_EQ(j->outbox_pending(), 1u);
  ASSERT_EQ(deliver(1, at(11s)), core::success);
  ASSERT_EQ(refuse(1, "r1", at(12s)), core::success);
  EXPECT_EQ(j->outbox_pending(), 1u);
  EXPECT_EQ(j->outbox_dead(), 0u);
  const auto stored = j->delivery_of("r1");
  EXPECT_EQ(stored.latest_status, "pending");
  EXPECT_EQ(stored.pending, 1u);
  EXPECT_EQ(stored.dead, 0u);
  db_reader db(path);
  EXPECT_EQ(db.integer("SELECT wandb_pending FROM runs WHERE id = 'r1'"), 2);
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox"), 0);
}

TEST_F(JournalTest, PrunedRunsOwedWriteIsStillDeliveredAndSettled) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  run_to_success("gone");
  ASSERT_THAT(sup.prune(at(21s).wall), ElementsAre("gone"));
  ASSERT_EQ(j->prune({"gone"}), core::success);
  EXPECT_EQ(j->outbox_pending(), 1u);
  auto pending = j->pending_outbox();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].seq, 3);
  EXPECT_EQ(pending[0].change.reason, transition_reason::completed);
  // Its entity and project went with the run: the sink dead-letters it, naming why.
  EXPECT_EQ(pending[0].entity, "");

  EXPECT_EQ(reopen_and_load().outbox_pending, 1u);
  ASSERT_EQ(refuse(3, "gone", at(30s)), core::success);
  EXPECT_EQ(j->outbox_pending(), 0u);
  EXPECT_EQ(j->outbox_dead(), 1u);
  EXPECT_THAT(j->pending_outbox(), IsEmpty());
  db_reader db(path);
  EXPECT_EQ(db.text("SELECT status FROM outbox WHERE transition_seq = 3"), "dead");
  EXPECT_EQ(db.integer("SELECT COUNT(*) FROM outbox"), 1);
}

TEST_F(JournalTest, PendingWritesOfRunsAndOfTheOutboxComeBackOldestFirst) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("kept", at(0s))), core::success);                        // 1
  ASSERT_EQ(commit(reg("gone", at(0s))), core::success);                        // 2
  ASSERT_EQ(commit(sup.fail({"gone", "boom"}, alice, at(5s))), core::success);  // 3
  ASSERT_EQ(commit(sup.start("kept", alice, at(6s))), core::success);           // 4
  ASSERT_EQ(commit(reg("late", at(7s))), core::success);                        // 5
  ASSERT_THAT(sup.prune(at(21s).wall), ElementsAre("gone"));
  ASSERT_EQ(j->prune({"gone"}), core::success);
  reopen_and_load();
  const auto pending = j->pending_outbox();
  ASSERT_EQ(pending.size(), 3u);
  EXPECT_EQ(pending[0].seq, 3);
  EXPECT_EQ(pending[0].run, "gone");
  EXPECT_EQ(pending[1].seq, 4);
  EXPECT_EQ(pending[1].run, "kept");
  EXPECT_EQ(pending[1].entity, "team");
  EXPECT_EQ(pending[1].change.reason, transition_reason::started);
  EXPECT_EQ(pending[2].seq, 5);
  EXPECT_EQ(pending[2].run, "late");
}

TEST_F(JournalTest, WriteAheadLogStaysSmall) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  std::uintmax_t largest = 0;
  for (int i = 0; i < 700; ++i) {
    core::register_params p;
    p.run = "run-" + std::to_string(i);
    p.suggestion = core::json_text(nlohmann::json{{"notes", std::string(1000, 'x')}});
    ASSERT_EQ(commit(sup.register_run(p, alice, at(0s))), core::success);
    largest = std::max(largest, std::filesystem::file_size(path + "-wal"));
  }
  // Checkpointed in the background from 100 pages, by the committer itself at 1 024 (4 MiB):
  // a stream of commits without a pause still keeps it near SQLite's default size.
  EXPECT_LE(largest, 4608u * 1024u);
  // Once writes pause and the checkpoint catches up, the next commit starts the log afresh and
  // cuts it back to 1 MiB.
  j->wait_for_checkpoint();
  core::register_params p;
  p.run = "one-more";
  ASSERT_EQ(commit(sup.register_run(p, alice, at(0s))), core::success);
  EXPECT_LE(std::filesystem::file_size(path + "-wal"), 1024u * 1024u);
  EXPECT_GT(std::filesystem::file_size(path), 700u * 1000u);  // the data went to the database
  EXPECT_GT(j->checkpoints(), 0u) << "the background checkpointer never ran";
}

TEST_F(JournalTest, SuggestionComesBackAsTheSameJsonText) {
  j = open_ok();
  ASSERT_NE(j, nullptr);
  const nlohmann::json given = nlohmann::json::parse(
      R"({"lr":1e-05,"opt":{"name":"sgd","decay":null},"layers":[64,32.5],"tag":"caf\u00e9"})");
  core::register_params p;
  p.run = "r1";
  p.suggestion = core::json_text(given);
  ASSERT_EQ(commit(sup.register_run(p, alice, at(0s))), core::success);
  const auto contents = reopen_and_load();
  ASSERT_EQ(contents.runs.size(), 1u);
  EXPECT_EQ(contents.runs[0].suggestion.text(), given.dump());
  EXPECT_EQ(core::run_detail_json(contents.runs[0], restarted_at(1000s))["suggestion"].dump(),
            given.dump());
}

TEST_F(JournalTest, StoredSuggestionThatIsNotJsonStopsTheLoad) {
  // Read back as text, not parsed; still checked, so no reply ever carries it.
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("r1", at(0s))), core::success);
  exec_ok(j->handle(), R"(UPDATE runs SET suggestion = '{"lr":0.1' WHERE id = 'r1')");
  j.reset();
  j = open_ok();
  ASSERT_NE(j, nullptr);
  const auto loaded = j->load(restarted_at(1000s));
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("run 'r1'"));
  EXPECT_THAT(loaded.error().message, HasSubstr("not JSON"));
}

TEST_F(JournalTest, StoredTimesOutOfTheClocksRangeStopTheLoadNamingTheColumn) {
  // Values no sweepd wrote (a damaged or hand-edited file): converting them to the clocks' types
  // would overflow, which is undefined behaviour. Each stops the load with its column named; then
  // the damaged run is removed and the next case damages another.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"UPDATE runs SET finished_ms = 9715900100123 WHERE id = '{}'",
       "run '{}' cannot be read back: its finished_ms is out of range"},
      {"UPDATE runs SET registered_ms = -1 WHERE id = '{}'",
       "run '{}' cannot be read back: its registered_ms is out of range"},
      {"UPDATE runs SET max_runtime_s = 1e300 WHERE id = '{}'",
       "run '{}' cannot be read back: its max_runtime_s is out of range"},
      {"UPDATE runs SET heartbeat_timeout_s = -5 WHERE id = '{}'",
       "run '{}' cannot be read back: its heartbeat_timeout_s is out of range"},
      {"UPDATE transitions SET at_ms = 9223372036854775807 WHERE run = '{}' AND to_state = "
       "'running'",
       "a transition of run '{}' cannot be read back"}};
  j = open_ok();
  ASSERT_NE(j, nullptr);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string run = "r" + std::to_string(i);
    const std::string damage = fmt::format(fmt::runtime(cases[i].first), run);
    SCOPED_TRACE(damage);
    run_to_success(run);
    exec_ok(j->handle(), damage.c_str());
    j.reset();
    j = open_ok();
    ASSERT_NE(j, nullptr);
    const auto loaded = j->load(restarted_at(1000s));
    ASSERT_FALSE(loaded);
    EXPECT_THAT(loaded.error().message, HasSubstr(fmt::format(fmt::runtime(cases[i].second), run)));
    const std::string repair = fmt::format(
        "DELETE FROM runs WHERE id = '{0}'; DELETE FROM transitions WHERE run = '{0}'; "
        "DELETE FROM outbox WHERE run = '{0}';",
        run);
    exec_ok(j->handle(), repair.c_str());
  }
  EXPECT_EQ(reopen_and_load().runs.size(), 0u);
}

TEST_F(JournalTest, DeeplyNestedStoredSuggestionIsDroppedNotFatal) {
  // Stored before requests were bounded in depth: writing it back out would recurse 2 000 deep.
  j = open_ok();
  ASSERT_NE(j, nullptr);
  ASSERT_EQ(commit(reg("deep", at(0s))), core::success);
  const std::string deep = std::string(2000, '[') + std::string(2000, ']');
  exec_ok(j->handle(), ("UPDATE runs SET suggestion = '" + deep + "' WHERE id = 'deep'").c_str());
  const auto contents = reopen_and_load();
  ASSERT_EQ(contents.runs.size(), 1u);
  EXPECT_TRUE(contents.runs[0].suggestion.is_null());
  ASSERT_EQ(contents.warnings.size(), 1u);
  EXPECT_THAT(contents.warnings[0], HasSubstr("run 'deep'"));
  EXPECT_EQ(core::run_detail_json(contents.runs[0], restarted_at(1000s)).dump().empty(), false);
}

}  // namespace
}  // namespace sweepd::io
