// The W&B GraphQL client against the fake W&B server: how every kind of hostile or broken answer
// is classified. Nothing W&B answers may throw out of the client (the sink's loop would die, and
// sweepd with it, again at every restart while the write is pending).
#include "io/wandb_client.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <exception>
#include <functional>
#include <nlohmann/json.hpp>

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
      error = e;
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
  for (const auto& [body, expected] : cases) {
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
  wandb_.add_run(entity, project, "huge", fake_wandb::large_summary(9 * 1024 * 1024));
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
  const std::string summary = fake_wandb::large_summary(7 * 1024 * 1024);
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

}  // namespace
}  // namespace sweepd::io
