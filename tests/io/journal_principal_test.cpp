// Schema 4 of the journal: the owner principal of runs registered over the TLS listener, and the
// migration of a schema 4 file (every run keeps its uid owner).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>

#include "core/core_test_support.hpp"
#include "io/journal.hpp"
#include "support/process_support.hpp"

namespace sweepd::io {
namespace {

using namespace std::chrono_literals;
using core::at;

class JournalPrincipalTest : public ::testing::Test {
 protected:
  std::unique_ptr<journal> open() {
    auto opened = journal::open(path_);
    EXPECT_TRUE(opened) << opened.error();
    return opened ? std::move(*opened) : nullptr;
  }

  void register_and_store(journal& j, const std::string& run, const core::caller& who) {
    core::register_params p;
    p.run = run;
    core::outcome o = sup_.plan_register(p, who, at(1s));
    ASSERT_TRUE(o.change);
    ASSERT_EQ(j.commit({&*o.change, 1}, sup_, false, nullptr), core::success);
    sup_.apply(std::move(*o.change));
  }

  static void exec(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* message = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &message), SQLITE_OK)
        << (message ? message : "");
    sqlite3_free(message);
    sqlite3_close(db);
  }

  test::temp_dir dir_;
  std::string path_ = dir_.file("state.db");
  core::supervisor sup_{core::supervisor_limits{}};
};

TEST_F(JournalPrincipalTest, RemoteOwnerComesBackAfterARestart) {
  {
    auto j = open();
    core::caller alice(static_cast<std::uint32_t>(-1), 0, false);
    alice.principal = "alice";
    register_and_store(*j, "remote-run", alice);
    register_and_store(*j, "local-run", core::caller{1000, 1, false});
  }
  auto loaded = open()->load(at(5s));
  ASSERT_TRUE(loaded) << loaded.error();
  const auto& contents = *loaded;
  ASSERT_EQ(contents.runs.size(), 2u);
  for (const core::run_record& r : contents.runs) {
    EXPECT_EQ(r.owner_principal, r.id == "remote-run" ? "alice" : "") << r.id;
    if (r.id == "local-run") {
      EXPECT_EQ(r.owner_uid, 1000u);
    }
  }
}

TEST_F(JournalPrincipalTest, SchemaFourFileIsMigratedWithItsOwnersIntact) {
  {
    auto j = open();
    register_and_store(*j, "old-run", core::caller{1000, 1, false});
  }
  // Make it the file sweepd wrote before principals: the column gone, version 4.
  exec(path_,
       "DROP INDEX outbox_by_transition; ALTER TABLE runs DROP COLUMN wandb_pending; "
       "ALTER TABLE runs DROP COLUMN owner_principal; PRAGMA user_version = 4;");
  auto j = open();
  auto loaded = j->load(at(5s));
  ASSERT_TRUE(loaded) << loaded.error();
  const auto& contents = *loaded;
  ASSERT_EQ(contents.runs.size(), 1u);
  EXPECT_EQ(contents.runs[0].owner_uid, 1000u);
  EXPECT_EQ(contents.runs[0].owner_principal, "");
  core::caller bob(static_cast<std::uint32_t>(-1), 0, false);
  bob.principal = "bob";
  register_and_store(*j, "new-run", bob);
  j.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), journal::schema_version);
  sqlite3_finalize(s);
  sqlite3_close(db);
  EXPECT_EQ(open()->load(at(6s)).value().runs.size(), 2u);
}

}  // namespace
}  // namespace sweepd::io
