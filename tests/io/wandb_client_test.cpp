// The W&B GraphQL client against the fake W&B server: how every kind of hostile or broken answer
// is classified. Nothing W&B answers may throw out of the client (the sink's loop would die, and
// sweepd with it, again at every restart while the write is pending).
#include "io/wandb_client.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <exception>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "core/reconcile.hpp"
#include "core/time.hpp"
#include "core/wandb_summary.hpp"
#include "fakes/fake_wandb.hpp"

namespace sweepd::io {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using core::attempt_result;
using test::fake_wandb;
using ::testing::HasSubstr;

constexpr const char* entity = "team";
constexpr const char* project = "sweeps";

using read_answer = std::pair<attempt_result, std::optional<wandb_run_view>>;
using list_answer = std::pair<attempt_result, std::optional<wandb_runs_page>>;

class WandbClientTest : public ::testing::Test {
 protected:
  wandb_client make_client() {
    return wandb_client(io_, parse_url(wandb_.base_url()).value(), wandb_.api_key(), 5s);
  }

  /// Runs `body` on the test's io_context until it finishes (at most 30 s); rethrows what it
  /// threw, so that an exception out of the client fails the test instead of passing unseen.
  void run(const std::function<asio::awaitable<void>()>& body) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io_, body(), [&](std::exception_ptr e) {
      error = std::move(e);
      done = true;
      io_.stop();
    });
    io_.restart();
    io_.run_for(30s);
    ASSERT_TRUE(done) << "the client did not finish in time";
    if (error) std::rethrow_exception(error);
  }

  read_answer read(const std::string& name) {
    wandb_client client = make_client();
    read_answer out;
    run([&]() -> asio::awaitable<void> { out = co_await client.read_run(entity, project, name); });
    return out;
  }

  /// Reads run `name` and writes `summary_text` to it, as the sink does.
  attempt_result read_then_write(const std::string& name, const std::string& summary_text) {
    wandb_client client = make_client();
    attempt_result out;
    run([&]() -> asio::awaitable<void> {
      auto [read, view] = co_await client.read_run(entity, project, name);
      if (!view) {
        out = read;
        co_return;
      }
      out = co_await client.write_summary(*view, summary_text);
    });
    return out;
  }

  /// One page of the listing.
  list_answer list_page(const std::string& filters, const std::optional<std::string>& cursor,
                        int per_page, const std::string& in_project = project) {
    wandb_client client = make_client();
    list_answer out;
    run([&]() -> asio::awaitable<void> {
      out = co_await client.list_runs(entity, in_project, filters, cursor, per_page);
    });
    return out;
  }

  /// The names of the whole listing, page after page on one client, as reconcile walks it.
  std::vector<std::string> list_all(const std::string& filters, int per_page = 100) {
    wandb_client client = make_client();
    std::vector<std::string> names;
    run([&]() -> asio::awaitable<void> {
      std::optional<std::string> cursor;
      for (int page = 0; page < 100; ++page) {
        auto [result, listed] =
            co_await client.list_runs(entity, project, filters, cursor, per_page);
        EXPECT_EQ(result.what, attempt_result::kind::delivered) << result.error;
        if (!listed) co_return;
        for (const core::wandb_listed_run& r : listed->runs) names.push_back(r.name);
        if (!listed->next_cursor) co_return;
        cursor = listed->next_cursor;
      }
      ADD_FAILURE() << "the listing did not end";
    });
    return names;
  }

  asio::io_context io_;
  fake_wandb wandb_;
};

TEST_F(WandbClientTest, ReadsARun) {
  wandb_.add_run(entity, project, "r1", R"({"loss":NaN})", "finished");
  const auto [result, view] = read("r1");
  ASSERT_EQ(result.what, attempt_result::kind::delivered) << result.error;
  ASSERT_TRUE(view);
  EXPECT_EQ(view->storage_id, fake_wandb::storage_id(entity, project, "r1"));
  EXPECT_EQ(view->state, "finished");
  EXPECT_EQ(view->summary_text, R"({"loss":NaN})");
  EXPECT_EQ(view->path, "team/sweeps/r1");
  EXPECT_EQ(result.wandb_state, "finished");
}

TEST_F(WandbClientTest, UnknownProjectOrRunIsNotFound) {
  wandb_.add_run(entity, project, "known");
  EXPECT_EQ(read("unknown").first.what, attempt_result::kind::not_found);
  wandb_.push_answer(200, R"({"data":{"project":null}})");
  EXPECT_EQ(read("known").first.what, attempt_result::kind::not_found);
  wandb_.push_answer(200, R"({"data":{}})");
  EXPECT_EQ(read("known").first.what, attempt_result::kind::not_found);
}

// The crash the adversarial pass found: `id` or `state` of another JSON type threw type_error.302
// out of read_run.
struct wrong_field {
  const char* name;  // of the test case
  const char* field;
  std::optional<std::string> raw;  // nullopt: left out of the answer
  const char* expected_in_error;
};

class WandbClientWrongField : public WandbClientTest,
                              public ::testing::WithParamInterface<wrong_field> {};

TEST_P(WandbClientWrongField, IsADeadLetterNamingTheFieldAndWhatItWas) {
  const wrong_field& p = GetParam();
  wandb_.add_run(entity, project, "r1");
  wandb_.set_raw_field(entity, project, "r1", p.field, p.raw);
  const auto [result, view] = read("r1");
  EXPECT_EQ(result.what, attempt_result::kind::dead);
  EXPECT_FALSE(view);
  EXPECT_THAT(result.error, HasSubstr("team/sweeps/r1"));
  EXPECT_THAT(result.error, HasSubstr(p.expected_in_error));
}

INSTANTIATE_TEST_SUITE_P(
    IdStateAndSummary, WandbClientWrongField,
    ::testing::Values(
        wrong_field{"IdNumber", "id", "42",
                    "`data.project.run.id` is a number (42), expected a non-empty string"},
        wrong_field{"IdNull", "id", "null", "the run has no `id`"},
        wrong_field{"IdAbsent", "id", std::nullopt, "the run has no `id`"},
        wrong_field{"IdObject", "id", R"({"a":1})", "`data.project.run.id` is an object"},
        wrong_field{"IdEmpty", "id", R"("")",
                    "`data.project.run.id` is a string, expected a non-empty string"},
        wrong_field{"StateNumber", "state", "7",
                    "`data.project.run.state` is a number (7), expected a string"},
        wrong_field{"StateNull", "state", "null",
                    "`data.project.run.state` is missing or null, expected a string"},
        wrong_field{"StateAbsent", "state", std::nullopt,
                    "`data.project.run.state` is missing or null"},
        wrong_field{"StateArray", "state", "[]", "`data.project.run.state` is an array"},
        wrong_field{"StateBoolean", "state", "true",
                    "`data.project.run.state` is a boolean (true)"},
        wrong_field{"SummaryObject", "summaryMetrics", R"({"loss":1})",
                    "`data.project.run.summaryMetrics` is an object, expected a JSON string"},
        wrong_field{"SummaryNumber", "summaryMetrics", "3.5",
                    "`data.project.run.summaryMetrics` is a number (3.5)"}),
    [](const ::testing::TestParamInfo<wrong_field>& p) { return p.param.name; });

TEST_F(WandbClientTest, NullOrAbsentSummaryIsAnEmptySummary) {
  wandb_.add_run(entity, project, "r1");
  for (const std::optional<std::string>& raw :
       {std::optional<std::string>("null"), std::optional<std::string>()}) {
    wandb_.set_raw_field(entity, project, "r1", "summaryMetrics", raw);
    const auto [result, view] = read("r1");
    ASSERT_EQ(result.what, attempt_result::kind::delivered) << result.error;
    ASSERT_TRUE(view);
    EXPECT_EQ(view->summary_text, "{}");
  }
}

TEST_F(WandbClientTest, DataProjectOrRunOfAnotherTypeIsADeadLetter) {
  wandb_.add_run(entity, project, "r1");
  const std::pair<const char*, const char*> cases[] = {
      {R"({"data":null})", "`data` is missing or null, expected an object"},
      {R"({})", "`data` is missing or null, expected an object"},
      {R"({"data":[1]})", "`data` is an array, expected an object"},
      {R"({"data":{"project":5}})", "`data.project` is a number (5), expected an object"},
      {R"({"data":{"project":{"run":"r1"}}})", "`data.project.run` is a string"},
      {R"([1,2])", "W&B's answer for run team/sweeps/r1 is an array, not a JSON object"},
      {R"("text")", "is a string, not a JSON object"},
  };
  for (const auto& [body, expected] : cases) {
    wandb_.push_answer(200, body);
    const auto [result, view] = read("r1");
    EXPECT_EQ(result.what, attempt_result::kind::dead) << body;
    EXPECT_THAT(result.error, HasSubstr(expected)) << body;
  }
}

TEST_F(WandbClientTest, GraphqlErrorsOfEveryShapeAreADeadLetterThatSaysWhat) {
  wandb_.add_run(entity, project, "r1");
  const std::pair<const char*, const char*> cases[] = {
      {R"({"errors":[{"message":"run locked"},{"message":"try later"}]})",
       "[run locked; try later]"},
      {R"({"errors":["plain message"]})", "[plain message]"},
      {R"({"errors":[{"message":5}]})", "`errors[0].message` is a number (5), expected a string"},
      {R"({"errors":[{"path":["x"]}]})", "`errors[0].message` is missing or null, expected a"},
      {R"({"errors":[7]})", "`errors[0]` is a number (7), expected an object"},
      {R"({"errors":"boom"})", "`errors` is a string, expected an array"},
      {R"({"errors":{"message":"boom"}})", "`errors` is an object, expected an array"},
  };
  for (const auto& [body, expected] : cases) {
    wandb_.push_answer(200, body);
    const auto [result, view] = read("r1");
    EXPECT_EQ(result.what, attempt_result::kind::dead) << body;
    EXPECT_THAT(result.error, HasSubstr(expected)) << body;
  }
}

TEST_F(WandbClientTest, UpsertWithoutAStringBucketIdIsADeadLetter) {
  wandb_.add_run(entity, project, "r1");
  const std::pair<const char*, const char*> cases[] = {
      {R"({"data":{"upsertBucket":{"bucket":{"id":5}}}})",
       "`data.upsertBucket.bucket.id` is a number (5), expected a string"},
      {R"({"data":{"upsertBucket":{"bucket":{}}}})", "it returned no bucket id"},
      {R"({"data":{"upsertBucket":{"bucket":"b"}}})", "`data.upsertBucket.bucket` is a string"},
      {R"({"data":{"upsertBucket":null}})", "it returned no `upsertBucket`"},
      {R"({"data":{"upsertBucket":[]}})", "`data.upsertBucket` is an array"},
  };
  // Plain names, not a structured binding: clang before 16 cannot capture a binding.
  for (const auto& [body_text, expected] : cases) {
    const char* const body = body_text;
    wandb_client client = make_client();
    attempt_result out;
    run([&]() -> asio::awaitable<void> {
      auto [read, view] = co_await client.read_run(entity, project, "r1");
      EXPECT_EQ(read.what, attempt_result::kind::delivered) << read.error;
      if (!view) co_return;
      wandb_.push_answer(200, body);  // for the upsertBucket only
      out = co_await client.write_summary(*view, "{}");
    });
    EXPECT_EQ(out.what, attempt_result::kind::dead) << body;
    EXPECT_THAT(out.error, HasSubstr("the summary write of run team/sweeps/r1")) << body;
    EXPECT_THAT(out.error, HasSubstr(expected)) << body;
  }
  // And a good answer is still a delivery.
  EXPECT_EQ(read_then_write("r1", R"({"a":1})").what, attempt_result::kind::delivered);
  EXPECT_EQ(wandb_.summary(entity, project, "r1"), R"({"a":1})");
}

TEST_F(WandbClientTest, AnswerNestedTooDeepIsADeadLetterUnparsed) {
  wandb_.add_run(entity, project, "r1");
  // Deep enough to overflow the stack of any recursive walk of the parsed value.
  const std::string deep = std::string(80000, '[') + std::string(80000, ']');
  wandb_.set_raw_field(entity, project, "r1", "id", deep);
  const auto [result, view] = read("r1");
  EXPECT_EQ(result.what, attempt_result::kind::dead);
  EXPECT_THAT(result.error,
              HasSubstr("W&B's answer for run team/sweeps/r1 nests deeper than 256 levels"));
  // Just within the bound, the answer is read (and its id is of the wrong type).
  wandb_.set_raw_field(entity, project, "r1", "id", std::string(252, '[') + std::string(252, ']'));
  const auto [within, unused] = read("r1");
  EXPECT_EQ(within.what, attempt_result::kind::dead);
  EXPECT_THAT(within.error, HasSubstr("`data.project.run.id` is an array"));
}

TEST_F(WandbClientTest, DeepBodyOfAnErrorStatusIsClassifiedByTheStatus) {
  wandb_.add_run(entity, project, "r1");
  const std::string deep = std::string(80000, '[') + std::string(80000, ']');
  wandb_.push_answer(503, deep);
  EXPECT_EQ(read("r1").first.what, attempt_result::kind::retry);
  wandb_.push_answer(403, deep);
  EXPECT_EQ(read("r1").first.what, attempt_result::kind::dead);
}

TEST_F(WandbClientTest, DeepSummaryComesBackAsTextAndTheMergeRefusesIt) {
  wandb_.add_run(entity, project, "r1", fake_wandb::nested_summary(80000));
  const auto [result, view] = read("r1");
  ASSERT_EQ(result.what, attempt_result::kind::delivered) << result.error;
  ASSERT_TRUE(view);
  const core::summary_merge merged =
      core::merge_summary(view->summary_text, {{"state", "running"}}, "protein.");
  EXPECT_FALSE(merged.text);
  EXPECT_EQ(merged.error,
            "the run's W&B summary nests deeper than 256 levels; sweepd will not rewrite it");
}

TEST_F(WandbClientTest, AnswerOverTheCapIsADeadLetterAndTheNextRequestStillWorks) {
  wandb_.add_run(entity, project, "huge", fake_wandb::large_summary(std::size_t{9} * 1024 * 1024));
  wandb_.add_run(entity, project, "small");
  wandb_client client = make_client();
  read_answer huge;
  read_answer small;
  run([&]() -> asio::awaitable<void> {
    huge = co_await client.read_run(entity, project, "huge");
    small = co_await client.read_run(entity, project, "small");
  });
  EXPECT_EQ(huge.first.what, attempt_result::kind::dead);
  EXPECT_EQ(huge.first.error, "W&B's answer for run team/sweeps/huge is larger than " +
                                  std::to_string(default_max_response_body) + " bytes");
  EXPECT_EQ(small.first.what, attempt_result::kind::delivered) << small.first.error;
}

TEST_F(WandbClientTest, SummaryJustUnderTheCapIsRead) {
  // The answer carries the summary escaped inside a string, a little larger than the summary.
  const std::string summary = fake_wandb::large_summary(std::size_t{7} * 1024 * 1024);
  wandb_.add_run(entity, project, "r1", summary);
  const auto [result, view] = read("r1");
  ASSERT_EQ(result.what, attempt_result::kind::delivered) << result.error;
  ASSERT_TRUE(view);
  EXPECT_EQ(view->summary_text, summary);
}

TEST_F(WandbClientTest, TwoHundredThatIsNotJsonIsRetriedButGraphqlErrorsAreNot) {
  wandb_.add_run(entity, project, "r1");
  wandb_.push_fault(fake_wandb::fault::html_200);
  const auto html = read("r1").first;
  EXPECT_EQ(html.what, attempt_result::kind::retry);
  EXPECT_EQ(html.error, "W&B answered 200 with a body that is not JSON");
  // Not JSON, however many brackets it opens.
  wandb_.push_answer(200, std::string(1000, '['));
  EXPECT_EQ(read("r1").first.what, attempt_result::kind::retry);
  wandb_.push_answer(200, "");
  EXPECT_EQ(read("r1").first.what, attempt_result::kind::retry);
  wandb_.push_fault(fake_wandb::fault::graphql_errors_200);
  const auto errors = read("r1").first;
  EXPECT_EQ(errors.what, attempt_result::kind::dead);
  EXPECT_THAT(errors.error, HasSubstr("injected error"));
}

// --- list_runs ---------------------------------------------------------------------------------

/// "r000", "r001", ...: names that sort as their numbers do.
std::string numbered(int i) {
  const std::string digits = std::to_string(i);
  return "r" + std::string(digits.size() < 3 ? 3 - digits.size() : 0, '0') + digits;
}

/// "2023-11-05T17:MM:SS" for `s` seconds past 17:00 (under an hour), as W&B writes it: no zone.
std::string created_text(int s) {
  const auto two = [](int v) { return (v < 10 ? "0" : "") + std::to_string(v); };
  return "2023-11-05T17:" + two(s / 60) + ":" + two(s % 60);
}

const std::string live_filter =
    core::reconcile_filter("s1", "protein.", {"initializing", "running"});

TEST_F(WandbClientTest, ListsEveryPageChainingTheLastEdgesCursorUntilThereIsNone) {
  for (int i = 0; i < 250; ++i) {
    wandb_.add_run(entity, project, numbered(i), R"({"protein.state":"running"})");
    wandb_.set_run_meta(entity, project, numbered(i), "s1", created_text(i), "");
  }
  wandb_client client = make_client();
  std::vector<list_answer> pages;
  run([&]() -> asio::awaitable<void> {
    std::optional<std::string> cursor;
    do {
      pages.push_back(co_await client.list_runs(entity, project, live_filter, cursor, 100));
      if (!pages.back().second) co_return;
      cursor = pages.back().second->next_cursor;
    } while (cursor && pages.size() < 10);
  });
  ASSERT_EQ(pages.size(), 3u);
  std::vector<std::string> names;
  for (const auto& [result, page] : pages) {
    ASSERT_EQ(result.what, attempt_result::kind::delivered) << result.error;
    ASSERT_TRUE(page);
    for (const auto& r : page->runs) names.push_back(r.name);
  }
  EXPECT_EQ(pages[0].second->runs.size(), 100u);
  EXPECT_EQ(pages[1].second->runs.size(), 100u);
  EXPECT_EQ(pages[2].second->runs.size(), 50u);
  EXPECT_TRUE(pages[0].second->next_cursor);
  EXPECT_TRUE(pages[1].second->next_cursor);
  EXPECT_NE(pages[0].second->next_cursor, pages[1].second->next_cursor);
  EXPECT_FALSE(pages[2].second->next_cursor);
  ASSERT_EQ(names.size(), 250u);
  for (int i = 0; i < 250; ++i) EXPECT_EQ(names[i], numbered(i));
  EXPECT_EQ(wandb_.list_queries(), 3u);

  // What went over the wire: the SDK's variables, the filter as JSON text, the cursor chained.
  const auto log = wandb_.log();
  ASSERT_EQ(log.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    const nlohmann::json body = nlohmann::json::parse(log[i].body);
    const nlohmann::json& v = body["variables"];
    EXPECT_THAT(body["query"].get<std::string>(), HasSubstr("runs(filters: $filters"));
    EXPECT_EQ(v["entity"], entity);
    EXPECT_EQ(v["project"], project);
    EXPECT_EQ(v["filters"], live_filter);  // a string, not an object
    EXPECT_EQ(v["order"], "+created_at");
    EXPECT_EQ(v["perPage"], 100);
    if (i == 0) {
      EXPECT_TRUE(v.contains("cursor") && v["cursor"].is_null()) << v;
    } else {
      EXPECT_EQ(v["cursor"], *pages[i - 1].second->next_cursor);
    }
  }
}

TEST_F(WandbClientTest, FilterSelectsTheSweepsRunsWhoseSummaryStateIsLive) {
  const std::tuple<const char*, const char*, const char*> runs[] = {
      {"live", "s1", R"({"protein.state":"running","loss":0.5})"},
      {"init", "s1", R"({"protein.state":"initializing"})"},
      {"done", "s1", R"({"protein.state":"success"})"},
      {"bare", "s1", "{}"},
      {"other", "s2", R"({"protein.state":"running"})"},
      {"custom", "s1", R"({"hp.state":"active"})"},
      {"customdone", "s1", R"({"hp.state":"timeout"})"},
  };
  int created = 0;
  for (const auto& [name, sweep, summary] : runs) {
    wandb_.add_run(entity, project, name, summary);
    wandb_.set_run_meta(entity, project, name, sweep, created_text(created++), "");
  }
  EXPECT_EQ(list_all(live_filter, 2), (std::vector<std::string>{"live", "init"}));
  // A custom prefix and mapped names: both live states are "active" in this sweep's summaries.
  const auto mapped = core::live_summary_names({{"initializing", "active"}, {"running", "active"}});
  ASSERT_EQ(mapped, std::vector<std::string>{"active"});
  EXPECT_EQ(list_all(core::reconcile_filter("s1", "hp.", mapped)),
            std::vector<std::string>{"custom"});
  EXPECT_EQ(list_all(core::reconcile_filter("s2", "protein.", {"running"})),
            std::vector<std::string>{"other"});
}

TEST_F(WandbClientTest, ListedTimesAreParsedAndUnreadableOnesAreNone) {
  wandb_.add_run(entity, project, "a", "{}", "running");
  wandb_.set_run_meta(entity, project, "a", "s1", "2023-11-05T17:46:35",
                      "2023-11-05T17:51:35.250Z");
  wandb_.add_run(entity, project, "b", "{}", "crashed");
  wandb_.set_run_meta(entity, project, "b", "s1", "2023-11-05T19:46:36+02:00", "");
  wandb_.add_run(entity, project, "c", "{}", "finished");
  wandb_.set_run_meta(entity, project, "c", "s1", "2023-11-05T17:46:37 UTC", "2023-13-45T00:00:00");
  const auto [result, page] = list_page(R"({"sweep":"s1"})", std::nullopt, 10);
  ASSERT_EQ(result.what, attempt_result::kind::delivered) << result.error;
  ASSERT_TRUE(page);
  ASSERT_EQ(page->runs.size(), 3u);
  // The fake orders by createdAt as text, which mixed zones do not keep in time order.
  std::map<std::string, core::wandb_listed_run> by_name;
  for (const auto& r : page->runs) by_name[r.name] = r;
  ASSERT_EQ(by_name.size(), 3u);
  // 2023-11-05T17:46:35Z, worked out independently.
  const core::wall_time t0 = core::wall_time{} + 1699206395s;
  EXPECT_EQ(by_name["a"].state, "running");
  EXPECT_EQ(by_name["a"].created_at, t0);
  EXPECT_EQ(by_name["a"].heartbeat_at, t0 + 300s + 250ms);
  EXPECT_EQ(by_name["b"].state, "crashed");
  EXPECT_EQ(by_name["b"].created_at, t0 + 1s);
  EXPECT_EQ(by_name["b"].heartbeat_at, std::nullopt);  // null
  EXPECT_EQ(by_name["c"].created_at, std::nullopt);    // not ISO-8601: no time, no error
  EXPECT_EQ(by_name["c"].heartbeat_at, std::nullopt);
  EXPECT_FALSE(page->next_cursor);
}

TEST_F(WandbClientTest, ListedSummaryComesBackAsTextWithItsNanAndNullIsEmpty) {
  const std::string summary = R"({"protein.state":"running","loss":NaN,"best":-Infinity})";
  wandb_.add_run(entity, project, "a", summary);
  wandb_.add_run(entity, project, "b", summary);
  wandb_.add_run(entity, project, "c", summary);
  wandb_.set_raw_field(entity, project, "b", "summaryMetrics", "null");
  wandb_.set_raw_field(entity, project, "c", "summaryMetrics", std::nullopt);
  const auto [all, listed] = list_page("{}", std::nullopt, 10);
  ASSERT_EQ(all.what, attempt_result::kind::delivered) << all.error;
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->runs.size(), 3u);
  EXPECT_EQ(listed->runs[0].summary_text, summary);
  EXPECT_EQ(listed->runs[1].summary_text, "{}");
  EXPECT_EQ(listed->runs[2].summary_text, "{}");
}

TEST_F(WandbClientTest, ListingAnUnknownProjectIsNotFound) {
  wandb_.add_run(entity, project, "a");
  const auto [result, page] = list_page("{}", std::nullopt, 10, "nope");
  EXPECT_EQ(result.what, attempt_result::kind::not_found);
  EXPECT_THAT(result.error, HasSubstr("team/nope"));
  EXPECT_FALSE(page);
  wandb_.push_answer(200, R"({"data":{}})");
  EXPECT_EQ(list_page("{}", std::nullopt, 10).first.what, attempt_result::kind::not_found);
  // A known project with nothing to list is an empty last page.
  const auto [none, empty] = list_page(R"({"sweep":"none"})", std::nullopt, 10);
  ASSERT_EQ(none.what, attempt_result::kind::delivered) << none.error;
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->runs.empty());
  EXPECT_FALSE(empty->next_cursor);
}

// An answer with two good edges, for the cases below to break one field of.
const nlohmann::json good_page = nlohmann::json::parse(R"({"data":{"project":{"runs":{
  "edges":[
    {"node":{"name":"a","state":"running","createdAt":"2023-11-05T17:46:35",
             "heartbeatAt":null,"summaryMetrics":"{\"loss\":NaN}"},"cursor":"c1"},
    {"node":{"name":"b","state":"finished","createdAt":"2023-11-05T17:46:36Z",
             "heartbeatAt":"2023-11-05T17:50:00Z","summaryMetrics":null},"cursor":"c2"}],
  "pageInfo":{"hasNextPage":true,"endCursor":"c2"}}}}})");

struct broken_page {
  const char* name;                     // of the test case
  const char* pointer;                  // JSON pointer to the field replaced
  std::optional<nlohmann::json> value;  // nullopt: removed
  std::string expected_in_error;
};

class WandbClientBrokenPage : public WandbClientTest,
                              public ::testing::WithParamInterface<broken_page> {};

TEST_P(WandbClientBrokenPage, IsADeadLetterNamingTheField) {
  const broken_page& p = GetParam();
  nlohmann::json answer = good_page;
  const nlohmann::json::json_pointer at(p.pointer);
  if (p.value) {
    answer[at] = *p.value;
  } else {
    answer[at.parent_pointer()].erase(at.back());
  }
  wandb_.add_run(entity, project, "a");
  wandb_.push_answer(200, answer.dump());
  const auto [result, page] = list_page("{}", std::nullopt, 10);
  EXPECT_EQ(result.what, attempt_result::kind::dead) << answer;
  EXPECT_FALSE(page);
  EXPECT_THAT(result.error, HasSubstr("W&B's answer for the runs of team/sweeps: "));
  EXPECT_THAT(result.error, HasSubstr(p.expected_in_error));
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, WandbClientBrokenPage,
    ::testing::Values(
        broken_page{"ProjectNumber", "/data/project", 5,
                    "`data.project` is a number (5), expected an object"},
        broken_page{"RunsAbsent", "/data/project/runs", std::nullopt,
                    "`data.project.runs` is missing or null, expected an object"},
        broken_page{"RunsArray", "/data/project/runs", nlohmann::json::array(),
                    "`data.project.runs` is an array, expected an object"},
        broken_page{"EdgesObject", "/data/project/runs/edges", nlohmann::json::object(),
                    "`data.project.runs.edges` is an object, expected an array"},
        broken_page{"EdgesNull", "/data/project/runs/edges", nullptr,
                    "`data.project.runs.edges` is missing or null, expected an array"},
        broken_page{"PageInfoAbsent", "/data/project/runs/pageInfo", std::nullopt,
                    "`data.project.runs.pageInfo` is missing or null, expected an object"},
        broken_page{"HasNextPageString", "/data/project/runs/pageInfo/hasNextPage", "true",
                    "`data.project.runs.pageInfo.hasNextPage` is a string, expected a boolean"},
        broken_page{"HasNextPageAbsent", "/data/project/runs/pageInfo/hasNextPage", std::nullopt,
                    "`data.project.runs.pageInfo.hasNextPage` is missing or null"},
        broken_page{"EdgeNumber", "/data/project/runs/edges/1", 7,
                    "`data.project.runs.edges[1]` is a number (7), expected an object"},
        broken_page{"NodeAbsent", "/data/project/runs/edges/0/node", std::nullopt,
                    "`data.project.runs.edges[0].node` is missing or null, expected an object"},
        broken_page{"NodeString", "/data/project/runs/edges/0/node", "a",
                    "`data.project.runs.edges[0].node` is a string, expected an object"},
        broken_page{"NameNumber", "/data/project/runs/edges/1/node/name", 42,
                    "`data.project.runs.edges[1].node.name` is a number (42), expected a string"},
        broken_page{"NameAbsent", "/data/project/runs/edges/0/node/name", std::nullopt,
                    "`data.project.runs.edges[0].node.name` is missing or null"},
        broken_page{"NameNotARunId", "/data/project/runs/edges/0/node/name", "a/../b\n",
                    R"(`data.project.runs.edges[0].node.name` is "a/../b\n", not a valid run id)"},
        broken_page{"NameEmpty", "/data/project/runs/edges/0/node/name", "",
                    R"(`data.project.runs.edges[0].node.name` is "", not a valid run id)"},
        broken_page{"NameTooLong", "/data/project/runs/edges/0/node/name", std::string(300, 'x'),
                    "\"" + std::string(64, 'x') + "\"..., not a valid run id"},
        broken_page{
            "StateNull", "/data/project/runs/edges/0/node/state", nullptr,
            "`data.project.runs.edges[0].node.state` is missing or null, expected a string"},
        broken_page{"StateNumber", "/data/project/runs/edges/1/node/state", 3,
                    "`data.project.runs.edges[1].node.state` is a number (3), expected a string"},
        broken_page{"CreatedAtNumber", "/data/project/runs/edges/1/node/createdAt", 1699206395,
                    "`data.project.runs.edges[1].node.createdAt` is a number (1699206395), "
                    "expected a string or null"},
        broken_page{"HeartbeatAtObject", "/data/project/runs/edges/0/node/heartbeatAt",
                    nlohmann::json::object(),
                    "`data.project.runs.edges[0].node.heartbeatAt` is an object, expected a "
                    "string or null"},
        broken_page{"SummaryObject", "/data/project/runs/edges/0/node/summaryMetrics",
                    nlohmann::json{{"loss", 1}},
                    "`data.project.runs.edges[0].node.summaryMetrics` is an object, expected a "
                    "JSON string"},
        broken_page{"SummaryBoolean", "/data/project/runs/edges/1/node/summaryMetrics", false,
                    "`data.project.runs.edges[1].node.summaryMetrics` is a boolean (false)"},
        broken_page{"CursorAbsent", "/data/project/runs/edges/1/cursor", std::nullopt,
                    "`data.project.runs.edges[1].cursor` is missing or null, expected a "
                    "non-empty string"},
        broken_page{"CursorNumber", "/data/project/runs/edges/0/cursor", 2,
                    "`data.project.runs.edges[0].cursor` is a number (2)"},
        broken_page{"CursorEmpty", "/data/project/runs/edges/1/cursor", "",
                    "`data.project.runs.edges[1].cursor` is a string, expected a non-empty "
                    "string"},
        broken_page{"MoreButNoEdges", "/data/project/runs/edges", nlohmann::json::array(),
                    "`data.project.runs.pageInfo.hasNextPage` is true on a page with no runs"}),
    [](const ::testing::TestParamInfo<broken_page>& p) { return p.param.name; });

TEST_F(WandbClientTest, TheUnbrokenPageIsRead) {
  // The control for the cases above: the same answer, whole, is a page.
  wandb_.push_answer(200, good_page.dump());
  const auto [result, page] = list_page("{}", std::nullopt, 10);
  ASSERT_EQ(result.what, attempt_result::kind::delivered) << result.error;
  ASSERT_TRUE(page);
  ASSERT_EQ(page->runs.size(), 2u);
  EXPECT_EQ(page->runs[0].name, "a");
  EXPECT_EQ(page->runs[0].summary_text, R"({"loss":NaN})");
  EXPECT_EQ(page->runs[1].summary_text, "{}");
  EXPECT_EQ(page->runs[1].heartbeat_at, core::parse_iso8601_utc("2023-11-05T17:50:00Z"));
  EXPECT_EQ(page->next_cursor, "c2");  // the last edge's cursor, whatever endCursor says
  nlohmann::json other_end = good_page;
  other_end["data"]["project"]["runs"]["pageInfo"]["endCursor"] = "elsewhere";
  wandb_.push_answer(200, other_end.dump());
  EXPECT_EQ(list_page("{}", std::nullopt, 10).second->next_cursor, "c2");
}

TEST_F(WandbClientTest, APageThatEndsWhereItWasAskedToStartIsADeadLetter) {
  // Listing on would ask for this same page forever.
  wandb_.push_answer(200, good_page.dump());
  const auto [result, page] = list_page("{}", std::string("c2"), 10);
  EXPECT_EQ(result.what, attempt_result::kind::dead);
  EXPECT_THAT(result.error, HasSubstr("ends at the cursor it was asked to continue after"));
  // The same page after another cursor is fine.
  wandb_.push_answer(200, good_page.dump());
  EXPECT_EQ(list_page("{}", std::string("c0"), 10).first.what, attempt_result::kind::delivered);
}

TEST_F(WandbClientTest, ARunNamedWithANumberByTheServerIsADeadLetter) {
  for (int i = 0; i < 3; ++i) wandb_.add_run(entity, project, numbered(i));
  wandb_.set_raw_field(entity, project, numbered(1), "name", "101");
  const auto [result, page] = list_page("{}", std::nullopt, 10);
  EXPECT_EQ(result.what, attempt_result::kind::dead);
  EXPECT_THAT(result.error,
              HasSubstr("`data.project.runs.edges[1].node.name` is a number (101), expected a "
                        "string"));
}

TEST_F(WandbClientTest, AFailureMidListingIsClassifiedAndTheListingResumesAtItsCursor) {
  for (int i = 0; i < 5; ++i) wandb_.add_run(entity, project, numbered(i));
  wandb_client client = make_client();
  std::vector<list_answer> answers;
  run([&]() -> asio::awaitable<void> {
    answers.push_back(co_await client.list_runs(entity, project, "{}", std::nullopt, 2));
    const auto cursor = answers.back().second->next_cursor;
    wandb_.push_fault(fake_wandb::fault::unavailable_503);
    answers.push_back(co_await client.list_runs(entity, project, "{}", cursor, 2));
    wandb_.push_fault(fake_wandb::fault::rate_limited_429, 3s);
    answers.push_back(co_await client.list_runs(entity, project, "{}", cursor, 2));
    answers.push_back(co_await client.list_runs(entity, project, "{}", cursor, 2));
    answers.push_back(
        co_await client.list_runs(entity, project, "{}", answers.back().second->next_cursor, 2));
  });
  ASSERT_EQ(answers.size(), 5u);
  EXPECT_EQ(answers[0].first.what, attempt_result::kind::delivered);
  EXPECT_EQ(answers[1].first.what, attempt_result::kind::retry);
  EXPECT_FALSE(answers[1].second);
  EXPECT_EQ(answers[2].first.what, attempt_result::kind::retry);
  EXPECT_TRUE(answers[2].first.rate_limited);
  EXPECT_EQ(answers[2].first.retry_after_s, 3.0);
  ASSERT_EQ(answers[3].first.what, attempt_result::kind::delivered) << answers[3].first.error;
  ASSERT_EQ(answers[3].second->runs.size(), 2u);
  EXPECT_EQ(answers[3].second->runs[0].name, numbered(2));
  ASSERT_EQ(answers[4].first.what, attempt_result::kind::delivered) << answers[4].first.error;
  ASSERT_EQ(answers[4].second->runs.size(), 1u);
  EXPECT_EQ(answers[4].second->runs[0].name, numbered(4));
  EXPECT_FALSE(answers[4].second->next_cursor);
  EXPECT_EQ(wandb_.list_queries(), 3u);  // the faults took two requests
}

TEST_F(WandbClientTest, AListingWBRefusesIsADeadLetterWithItsMessage) {
  wandb_.add_run(entity, project, "a");
  const auto [cursor, unused] = list_page("{}", std::string("not-a-cursor"), 10);
  EXPECT_EQ(cursor.what, attempt_result::kind::dead);
  EXPECT_THAT(cursor.error, HasSubstr("invalid cursor"));
  const auto [filter, unused2] = list_page(R"({"$where":"1"})", std::nullopt, 10);
  EXPECT_EQ(filter.what, attempt_result::kind::dead);
  EXPECT_THAT(filter.error, HasSubstr("$where"));
}

TEST_F(WandbClientTest, APageOverTheCapIsADeadLetterAndSmallerPagesStillWork) {
  // Two runs whose summaries are each well under the cap, but not together.
  const std::string big = fake_wandb::large_summary(std::size_t{5} * 1024 * 1024);
  wandb_.add_run(entity, project, "a", big);
  wandb_.add_run(entity, project, "b", big);
  const auto [both, none] = list_page("{}", std::nullopt, 2);
  EXPECT_EQ(both.what, attempt_result::kind::dead);
  EXPECT_THAT(both.error, HasSubstr("W&B's answer for the runs of team/sweeps is larger than"));
  const auto [one, page] = list_page("{}", std::nullopt, 1);
  ASSERT_EQ(one.what, attempt_result::kind::delivered) << one.error;
  EXPECT_EQ(page->runs.at(0).summary_text, big);
  EXPECT_TRUE(page->next_cursor);
}

}  // namespace
}  // namespace sweepd::io
