// The W&B sink end to end in one process: a real journal, the real HTTP/GraphQL client and the
// delivery policy, against the fake W&B server with its faults.
#include "app/wandb_sink.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "core/supervisor.hpp"
#include "fakes/fake_wandb.hpp"
#include "io/journal.hpp"
#include "support/process_support.hpp"

namespace sweepd::app {
namespace {

using namespace std::chrono_literals;
using test::fake_wandb;
using ::testing::HasSubstr;

constexpr const char* entity = "team";
constexpr const char* project = "sweeps";

/// The changes of outcomes the supervisor planned and applied at once, to store them.
std::vector<core::run_change> changes_of(const std::vector<core::outcome>& outcomes) {
  std::vector<core::run_change> changes;
  for (const core::outcome& o : outcomes) {
    if (o.change) changes.push_back(*o.change);
  }
  return changes;
}

/// The sink on its own event-loop thread; every touch of it or the journal goes through run_on().
class WandbSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = io::journal::open(dir_.file("state.db"));
    ASSERT_TRUE(opened) << opened.error();
    journal_ = std::move(*opened);
    ASSERT_TRUE(journal_->load(now()));
    cfg_.wandb.mode = core::config::wandb_mode::online;
    cfg_.wandb.base_url = wandb_.base_url();
    cfg_.wandb.entity = entity;
    cfg_.wandb.project = project;
    cfg_.wandb.request_timeout = 2;
    policy_.backoff_min_s = 0.05;
    policy_.backoff_max_s = 0.2;
    policy_.recheck_after_s = {3600};  // out of the way unless a test sets it
  }

  void TearDown() override {
    if (loop_.joinable()) {
      run_on([&] {
        sink_->stop(nullptr);
        return true;
      });
      work_.reset();
      io_->stop();
      loop_.join();
    }
  }

  /// What a daemon restart does to the sink: stop it, close the journal, open it again and start
  /// a new sink on a new event loop.
  void restart_sink() {
    run_on([&] {
      sink_->stop(nullptr);
      return true;
    });
    work_.reset();
    io_->stop();
    loop_.join();
    sink_.reset();  // before the old loop, whose pending handlers refer to it, goes
    io_ = std::make_unique<asio::io_context>();
    work_.emplace(asio::make_work_guard(*io_));
    ASSERT_TRUE(reopen_journal());
    start_sink();
  }

  /// Closes the journal and opens and loads it again, as a restarted daemon does; what it loaded.
  std::optional<io::journal::contents> reopen_journal() {
    journal_.reset();
    auto reopened = io::journal::open(dir_.file("state.db"));
    EXPECT_TRUE(reopened) << reopened.error();
    if (!reopened) return std::nullopt;
    journal_ = std::move(*reopened);
    auto loaded = journal_->load(now());
    EXPECT_TRUE(loaded) << loaded.error();
    if (!loaded) return std::nullopt;
    return std::move(*loaded);
  }

  static core::instant now() { return {core::mono_clock::now(), std::chrono::system_clock::now()}; }

  void start_sink() {
    sink_ = std::make_unique<wandb_sink>(*io_, *journal_);
    sink_->override_policy(policy_);
    const std::string key = wandb_.api_key();
    auto started = sink_->start(cfg_, [key](std::string_view name) -> std::optional<std::string> {
      if (name == "WANDB_API_KEY") return key;
      return std::nullopt;
    });
    ASSERT_EQ(started, core::success);
    ASSERT_TRUE(sink_->online());
    loop_ = std::thread([this] { io_->run(); });
  }

  template <typename F>
  std::invoke_result_t<F> run_on(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(*io_, [&task] { task(); });
    EXPECT_EQ(result.wait_for(10s), std::future_status::ready);
    return result.get();
  }

  /// Commits outcomes to the journal and hands the new outbox rows to the sink, as the daemon does.
  void commit(std::vector<core::outcome> outcomes) {
    run_on([&] {
      std::vector<core::outbox_entry> queued;
      EXPECT_EQ(journal_->commit(changes_of(outcomes), runs_, true, &queued), core::success);
      if (sink_) sink_->enqueue(std::move(queued));
    });
  }

  void complete_run(const std::string& run, double objective) {
    core::register_params p;
    p.run = run;
    std::vector<core::outcome> outs;
    outs.push_back(runs_.register_run(p, who_, now()));
    outs.push_back(runs_.start(run, who_, now()));
    outs.push_back(runs_.complete({run, objective, 12.5}, who_, now()));
    commit(std::move(outs));
  }

  bool delivered(const std::string& run, const std::string& state) {
    try {
      return wandb_.summary(entity, project, run).find("\"protein.state\":\"" + state + "\"") !=
             std::string::npos;
    } catch (const std::out_of_range&) {
      return false;
    }
  }

  nlohmann::json status() {
    return run_on([&] { return sink_->status(); });
  }

  /// Polls the sink until `pred` holds (bounded). The fake's wait_until wakes on its own requests,
  /// but the sink settles a row just after the answer, with no event a test can wait on.
  bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  test::temp_dir dir_;
  fake_wandb wandb_;
  std::unique_ptr<io::journal> journal_;
  core::config cfg_;
  core::delivery_policy policy_;
  core::supervisor runs_{core::supervisor_limits{300, 0, 0, 1000000, entity, project}};
  core::caller who_{1000, 1, false};
  std::unique_ptr<asio::io_context> io_ = std::make_unique<asio::io_context>();
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(*io_)};
  std::unique_ptr<wandb_sink> sink_;
  std::thread loop_;
};

TEST_F(WandbSinkTest, WritesProteinKeysAndKeepsEveryOtherKeyIncludingNaN) {
  const std::string original =
      R"({"loss":NaN,"best":-Infinity,"worst":Infinity,"acc":0.9,"_wandb":{"runtime":3},)"
      R"("protein.suggestion":{"lr":0.01},"note":"NaN is a string here"})";
  wandb_.add_run(entity, project, "r1", original);
  start_sink();
  complete_run("r1", 0.93);
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "success"); }, 10s));
  const std::string summary = wandb_.summary(entity, project, "r1");
  EXPECT_THAT(summary, HasSubstr(R"("loss":NaN)"));
  EXPECT_THAT(summary, HasSubstr(R"("best":-Infinity)"));
  EXPECT_THAT(summary, HasSubstr(R"("worst":Infinity)"));
  EXPECT_THAT(summary, HasSubstr(R"("acc":0.9)"));
  EXPECT_THAT(summary, HasSubstr(R"("_wandb":{"runtime":3})"));
  EXPECT_THAT(summary, HasSubstr(R"("protein.suggestion":{"lr":0.01})"));
  EXPECT_THAT(summary, HasSubstr(R"("note":"NaN is a string here")"));
  EXPECT_THAT(summary, HasSubstr(R"("protein.objective":0.93)"));
  EXPECT_THAT(summary, HasSubstr(R"("protein.cost":12.5)"));
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }, 10s));
  // Every request carried the key as Basic auth, and only there.
  for (const auto& r : wandb_.log()) {
    EXPECT_THAT(r.authorization, HasSubstr("Basic "));
    EXPECT_EQ(r.body.find(wandb_.api_key()), std::string::npos);
  }
}

TEST_F(WandbSinkTest, OutageThenRecoveryLosesNothingAndEndsInTheLatestState) {
  for (int i = 0; i < 5; ++i) wandb_.add_run(entity, project, "r" + std::to_string(i));
  wandb_.push_fault(fake_wandb::fault::unavailable_503);
  wandb_.push_fault(fake_wandb::fault::server_error_500);
  wandb_.push_fault(fake_wandb::fault::drop_connection);
  wandb_.push_fault(fake_wandb::fault::rate_limited_429, 1s);
  wandb_.push_fault(fake_wandb::fault::unavailable_503);
  start_sink();
  for (int i = 0; i < 5; ++i) complete_run("r" + std::to_string(i), i);
  ASSERT_TRUE(wandb_.wait_until(
      [&] {
        for (int i = 0; i < 5; ++i) {
          if (!delivered("r" + std::to_string(i), "success")) return false;
        }
        return true;
      },
      20s));
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }, 10s));
  EXPECT_EQ(status()["dead"], 0);
  // Per run, the states W&B was sent never go back: each is a later transition than the last.
  const std::vector<std::string> order = {"initializing", "running", "success"};
  for (int i = 0; i < 5; ++i) {
    const std::string id = fake_wandb::storage_id(entity, project, "r" + std::to_string(i));
    std::size_t last = 0;
    for (const auto& r : wandb_.log()) {
      if (r.status != 200 || r.body.find("upsertBucket") == std::string::npos) continue;
      const auto body = nlohmann::json::parse(r.body);
      if (body["variables"]["id"] != id) continue;
      const std::string summary = body["variables"]["summaryMetrics"];
      std::size_t index = order.size();
      for (std::size_t k = 0; k < order.size(); ++k) {
        if (summary.find("\"protein.state\":\"" + order[k] + "\"") != std::string::npos) index = k;
      }
      ASSERT_LT(index, order.size()) << summary;
      EXPECT_GE(index, last) << "run r" << i << " went back to " << order[index];
      last = index;
    }
  }
}

TEST_F(WandbSinkTest, AnswerSlowerThanTheTimeoutIsRetried) {
  cfg_.wandb.request_timeout = 0.3;
  wandb_.add_run(entity, project, "r1");
  wandb_.push_fault(fake_wandb::fault::slow, 2s);
  start_sink();
  complete_run("r1", 0.5);
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "success"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }));
  EXPECT_EQ(status()["dead"], 0);
}

TEST_F(WandbSinkTest, NeverMoreRequestsInFlightThanMaxInFlight) {
  policy_.max_in_flight = 2;
  wandb_.set_latency(30ms);
  for (int i = 0; i < 12; ++i) wandb_.add_run(entity, project, "r" + std::to_string(i));
  start_sink();
  for (int i = 0; i < 12; ++i) complete_run("r" + std::to_string(i), i);
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }, 20s));
  EXPECT_LE(wandb_.max_concurrent(), 2u);
  EXPECT_EQ(wandb_.max_concurrent(), 2u);  // and the bound was actually used
  for (int i = 0; i < 12; ++i) EXPECT_TRUE(delivered("r" + std::to_string(i), "success"));
}

TEST_F(WandbSinkTest, RefusedWriteIsDeadLetteredAndTheNextOneStillGoes) {
  wandb_.add_run(entity, project, "r1");
  wandb_.push_fault(fake_wandb::fault::unauthorized_401);
  start_sink();
  core::register_params p;
  p.run = "r1";
  commit({runs_.register_run(p, who_, now())});
  ASSERT_TRUE(eventually([&] { return status()["dead"] == 1; }, 10s));
  EXPECT_THAT(status()["last_error"].get<std::string>(), HasSubstr("401"));
  EXPECT_THAT(status()["last_error"].get<std::string>(),
              ::testing::Not(HasSubstr(wandb_.api_key())));
  commit({runs_.start("r1", who_, now())});
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "running"); }, 10s));
  EXPECT_EQ(status()["dead"], 1);
}

TEST_F(WandbSinkTest, UnknownRunIsRetriedForTheGraceThenDeadLettered) {
  policy_.run_not_found_grace_s = 0.5;
  start_sink();
  core::register_params p;
  p.run = "ghost";
  commit({runs_.register_run(p, who_, now())});
  p.run = "late";
  commit({runs_.register_run(p, who_, now())});
  // "late" appears in W&B after the first attempts (its wandb.init was slow).
  ASSERT_TRUE(wandb_.wait_until([&] { return wandb_.requests() >= 2; }, 10s));
  wandb_.add_run(entity, project, "late");
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("late", "initializing"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["dead"] == 1; }, 10s));
  EXPECT_THAT(status()["last_error"].get<std::string>(), HasSubstr("ghost"));
}

TEST_F(WandbSinkTest, ReappliesWhenTheLiveRunOverwroteTheState) {
  policy_.recheck_after_s = {0.2, 0.4};
  policy_.recheck_every_s = 0.3;
  wandb_.add_run(entity, project, "r1", R"({"loss":1.5})", "running");
  start_sink();
  complete_run("r1", 0.5);
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "success"); }, 10s));
  // The live run re-uploads its own summary, without our keys.
  wandb_.set_summary(entity, project, "r1", R"({"loss":1.25})");
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "success"); }, 10s));
  EXPECT_THAT(wandb_.summary(entity, project, "r1"), HasSubstr(R"("loss":1.25)"));
  // Once W&B shows the run finished and our state is there, the re-checks stop: one more read
  // sees it, and then nothing (a bounded wait for something that must not happen).
  wandb_.set_state(entity, project, "r1", "finished");
  const auto upserts = wandb_.upserts();
  const auto requests = wandb_.requests();
  ASSERT_TRUE(wandb_.wait_until([&] { return wandb_.requests() > requests; }, 10s));
  const auto after_check = wandb_.requests();
  EXPECT_FALSE(wandb_.wait_until([&] { return wandb_.requests() > after_check; }, 1s));
  EXPECT_EQ(wandb_.upserts(), upserts);
}

TEST_F(WandbSinkTest, ReChecksSurviveARestartAndPutTheStateBack) {
  policy_.recheck_after_s = {0.5, 1.0};
  policy_.recheck_every_s = 0.5;
  wandb_.add_run(entity, project, "r1", R"({"loss":1.5})", "running");
  start_sink();
  complete_run("r1", 0.5);
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "success"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }));
  restart_sink();
  // Between the write and its re-check, across the restart, the live run overwrote the summary.
  wandb_.set_summary(entity, project, "r1", R"({"loss":1.25})");
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "success"); }, 10s))
      << wandb_.summary(entity, project, "r1");
  EXPECT_THAT(wandb_.summary(entity, project, "r1"), HasSubstr(R"("loss":1.25)"));
  // Once W&B shows the run finished, the row's convergence ends and a further restart resumes
  // nothing.
  wandb_.set_state(entity, project, "r1", "finished");
  ASSERT_TRUE(
      eventually([&] { return run_on([&] { return journal_->converging_outbox().empty(); }); }));
  restart_sink();
  const auto requests = wandb_.requests();
  EXPECT_FALSE(wandb_.wait_until([&] { return wandb_.requests() > requests; }, 1500ms));
}

TEST_F(WandbSinkTest, ShowsEachRunsDeliveryAndResyncWritesItAgain) {
  wandb_.add_run(entity, project, "r1");
  wandb_.push_fault(fake_wandb::fault::unauthorized_401);
  start_sink();
  core::register_params p;
  p.run = "r1";
  commit({runs_.register_run(p, who_, now())});
  ASSERT_TRUE(eventually([&] { return status()["dead"] == 1; }, 10s));
  const core::run_record& run = *runs_.find("r1");
  nlohmann::json shown = run_on([&] { return sink_->delivery_of(run); });
  EXPECT_EQ(shown["status"], "dead");
  EXPECT_EQ(shown["dead"], 1);
  EXPECT_EQ(shown["attempts"], 1);
  EXPECT_THAT(shown["last_error"].get<std::string>(), HasSubstr("401"));
  EXPECT_FALSE(shown.contains("last_delivered_at"));

  // The key is fixed: resync writes sweepd's state for the run again.
  ASSERT_EQ(run_on([&] { return sink_->resync(run); }), core::success);
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "initializing"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }));
  shown = run_on([&] { return sink_->delivery_of(run); });
  EXPECT_EQ(shown["status"], "delivered");
  EXPECT_EQ(shown["pending"], 0);
  EXPECT_EQ(shown["dead"], 1);  // the old dead letter stays on record
  EXPECT_TRUE(shown["last_delivered_at"].is_string());
}

TEST_F(WandbSinkTest, ResumesThePendingOutboxAfterARestart) {
  for (int i = 0; i < 3; ++i) {
    wandb_.add_run(entity, project, "r" + std::to_string(i));
    core::register_params p;
    p.run = "r" + std::to_string(i);
    std::vector<core::outcome> outs{runs_.register_run(p, who_, now())};
    ASSERT_EQ(journal_->commit(changes_of(outs), runs_, true),
              core::success);  // while nothing delivers
  }
  const auto loaded = reopen_journal();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->outbox_pending, 3u);
  start_sink();
  ASSERT_TRUE(wandb_.wait_until(
      [&] {
        return delivered("r0", "initializing") && delivered("r1", "initializing") &&
               delivered("r2", "initializing");
      },
      10s));
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }, 10s));
}

TEST_F(WandbSinkTest, PendingRowsAnOlderSweepdQueuedAreDeliveredAndSettled) {
  // Schema 5 kept every pending write as an outbox row; since schema 6 a run owes its write in
  // its own row. A file written before the upgrade still has such rows: they go out as before.
  wandb_.add_run(entity, project, "old");
  wandb_.add_run(entity, project, "new");
  core::register_params p;
  p.run = "old";
  std::vector<core::outcome> outs{runs_.register_run(p, who_, now())};
  ASSERT_EQ(journal_->commit(changes_of(outs), runs_, false), core::success);
  ASSERT_EQ(
      sqlite3_exec(journal_->handle(), "INSERT INTO outbox(run, transition_seq) VALUES('old', 1)",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  p.run = "new";
  outs = {runs_.register_run(p, who_, now())};
  ASSERT_EQ(journal_->commit(changes_of(outs), runs_, true), core::success);
  const auto loaded = reopen_journal();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->outbox_pending, 2u);
  start_sink();
  ASSERT_TRUE(wandb_.wait_until(
      [&] { return delivered("old", "initializing") && delivered("new", "initializing"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }, 10s));
  for (const char* run : {"old", "new"}) {
    const core::run_record& record = *runs_.find(run);
    const nlohmann::json shown = run_on([&] { return sink_->delivery_of(record); });
    EXPECT_EQ(shown["status"], "delivered") << run;
    EXPECT_EQ(shown["pending"], 0) << run;
  }
}

// Hostile or broken W&B answers (found by an adversarial pass): each is a dead letter or a retry
// for its run, never an exception out of the sink's loop, and the other runs' writes still go.

TEST_F(WandbSinkTest, RunsWithAnIdOrStateOfAnotherTypeAreDeadLetteredAndOthersStillGo) {
  wandb_.add_run(entity, project, "numeric_id");
  wandb_.set_raw_field(entity, project, "numeric_id", "id", "42");
  wandb_.add_run(entity, project, "null_state");
  wandb_.set_raw_field(entity, project, "null_state", "state", "null");
  wandb_.add_run(entity, project, "object_id");
  wandb_.set_raw_field(entity, project, "object_id", "id", R"({"id":"x"})");
  wandb_.add_run(entity, project, "good");
  start_sink();
  for (const char* run : {"numeric_id", "null_state", "object_id", "good"}) {
    core::register_params p;
    p.run = run;
    commit({runs_.register_run(p, who_, now())});
  }
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("good", "initializing"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["dead"] == 3 && status()["pending"] == 0; }));
  const auto last_error_of = [&](const char* run) {
    const core::run_record& record = *runs_.find(run);
    const nlohmann::json shown = run_on([&] { return sink_->delivery_of(record); });
    EXPECT_EQ(shown["status"], "dead") << run;
    return shown.value("last_error", "");
  };
  EXPECT_THAT(last_error_of("numeric_id"),
              HasSubstr("W&B's answer for run team/sweeps/numeric_id: `data.project.run.id` is a "
                        "number (42)"));
  EXPECT_THAT(last_error_of("null_state"),
              HasSubstr("`data.project.run.state` is missing or null, expected a string"));
  EXPECT_THAT(last_error_of("object_id"), HasSubstr("`data.project.run.id` is an object"));
  // The sink keeps serving: the next write of a good run goes.
  commit({runs_.start("good", who_, now())});
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("good", "running"); }, 10s));
  EXPECT_EQ(status()["dead"], 3);
}

TEST_F(WandbSinkTest, SummaryNestedTooDeepIsDeadLetteredUntouchedAndOthersStillGo) {
  const std::string deep = fake_wandb::nested_summary(80000);
  wandb_.add_run(entity, project, "deep", deep);
  wandb_.add_run(entity, project, "good");
  start_sink();
  core::register_params p;
  p.run = "deep";
  commit({runs_.register_run(p, who_, now())});
  p.run = "good";
  commit({runs_.register_run(p, who_, now())});
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("good", "initializing"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["dead"] == 1 && status()["pending"] == 0; }));
  EXPECT_EQ(status()["last_error"],
            "run deep: the run's W&B summary nests deeper than 256 levels; sweepd will not "
            "rewrite it");
  EXPECT_EQ(wandb_.summary(entity, project, "deep"), deep);
  EXPECT_EQ(wandb_.upserts(), 1u);  // the good run's only
  commit({runs_.start("good", who_, now())});
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("good", "running"); }, 10s));
}

TEST_F(WandbSinkTest, AnswerOverTheSizeCapIsDeadLetteredAndOthersStillGo) {
  wandb_.add_run(entity, project, "huge", fake_wandb::large_summary(std::size_t{9} * 1024 * 1024));
  wandb_.add_run(entity, project, "good");
  start_sink();
  core::register_params p;
  p.run = "huge";
  commit({runs_.register_run(p, who_, now())});
  p.run = "good";
  commit({runs_.register_run(p, who_, now())});
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("good", "initializing"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["dead"] == 1 && status()["pending"] == 0; }));
  const core::run_record& huge = *runs_.find("huge");
  const nlohmann::json shown = run_on([&] { return sink_->delivery_of(huge); });
  EXPECT_EQ(shown["status"], "dead");
  EXPECT_EQ(shown["last_error"],
            "W&B's answer for run team/sweeps/huge is larger than 8388608 bytes");
  commit({runs_.start("good", who_, now())});
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("good", "running"); }, 10s));
}

TEST_F(WandbSinkTest, TwoHundredWithAnHtmlPageIsRetriedUntilWandbAnswers) {
  wandb_.add_run(entity, project, "r1");
  wandb_.push_fault(fake_wandb::fault::html_200);
  wandb_.push_fault(fake_wandb::fault::html_200);
  start_sink();
  core::register_params p;
  p.run = "r1";
  commit({runs_.register_run(p, who_, now())});
  ASSERT_TRUE(wandb_.wait_until([&] { return delivered("r1", "initializing"); }, 10s));
  ASSERT_TRUE(eventually([&] { return status()["pending"] == 0; }));
  EXPECT_EQ(status()["dead"], 0);
  EXPECT_EQ(status()["last_error"], "W&B answered 200 with a body that is not JSON");
  const core::run_record& run = *runs_.find("r1");
  EXPECT_EQ(run_on([&] { return sink_->delivery_of(run); })["attempts"], 3);
}

TEST_F(WandbSinkTest, TwoHundredWithGraphqlErrorsStaysADeadLetter) {
  wandb_.add_run(entity, project, "r1");
  wandb_.push_fault(fake_wandb::fault::graphql_errors_200);
  start_sink();
  core::register_params p;
  p.run = "r1";
  commit({runs_.register_run(p, who_, now())});
  ASSERT_TRUE(eventually([&] { return status()["dead"] == 1; }));
  EXPECT_THAT(status()["last_error"].get<std::string>(), HasSubstr("injected error"));
  EXPECT_EQ(wandb_.requests(), 1u);
}

}  // namespace
}  // namespace sweepd::app
