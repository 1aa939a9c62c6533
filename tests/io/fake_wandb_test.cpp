#include "fakes/fake_wandb.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace sweepd::test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using nlohmann::json;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;
using fault = fake_wandb::fault;

// base64("api:fake-key-0123456789012345678901234567890123456789"), worked out independently.
const std::string good_auth =
    "Basic YXBpOmZha2Uta2V5LTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODk=";
// base64("Run:v1:run1:proj:ent").
const std::string run1_id = "UnVuOnYxOnJ1bjE6cHJvajplbnQ=";

constexpr const char* run_query_text =
    "query Run($entity: String!, $project: String!, $name: String!) {"
    " project(name: $project, entityName: $entity) { run(name: $name) {"
    " id name state summaryMetrics } } }";
constexpr const char* upsert_text =
    "mutation UpsertBucket($id: String, $summaryMetrics: JSONString) {"
    " upsertBucket(input: {id: $id, summaryMetrics: $summaryMetrics}) { bucket { id } } }";

std::string run_query_body(const std::string& entity, const std::string& project,
                           const std::string& name) {
  return json{{"query", run_query_text},
              {"variables", {{"entity", entity}, {"project", project}, {"name", name}}}}
      .dump();
}

std::string upsert_body(const std::string& id, const std::string& summary_text) {
  return json{{"query", upsert_text},
              {"variables", {{"id", id}, {"summaryMetrics", summary_text}}},
              {"operationName", "UpsertBucket"}}
      .dump();
}

constexpr const char* runs_query_text =
    "query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50,"
    " $order: String, $filters: JSONString) { project(name: $project, entityName: $entity) {"
    " runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {"
    " edges { node { name state createdAt heartbeatAt summaryMetrics } cursor }"
    " pageInfo { hasNextPage endCursor } } } }";

/// A Runs query; `variables` adds to (or overrides) entity and project.
std::string runs_body(const std::string& entity, const std::string& project,
                      const json& variables = json::object()) {
  json all = {{"entity", entity}, {"project", project}, {"order", "+created_at"}};
  all.update(variables);
  return json{{"query", runs_query_text}, {"variables", all}, {"operationName", ""}}.dump();
}

request graphql(const std::string& body, const std::string& authorization = good_auth,
                http::verb method = http::verb::post, const std::string& target = "/graphql") {
  request req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "application/json");
  if (!authorization.empty()) req.set(http::field::authorization, authorization);
  req.body() = body;
  req.prepare_payload();
  return req;
}

/// A blocking HTTP/1.1 client over one connection: each call runs Beast's async operation on a
/// private io_context with a deadline, so a misbehaving server fails the test instead of hanging.
class http_client {
 public:
  explicit http_client(const fake_wandb& fake) {
    const std::string url = fake.base_url();
    port_ = static_cast<unsigned short>(std::stoi(url.substr(url.rfind(':') + 1)));
  }

  boost::system::error_code connect() {
    return run([&](auto done) {
      stream_.async_connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port_),
                            [done](boost::system::error_code ec) { done(ec, 0); });
    });
  }

  boost::system::error_code send(const request& req) {
    return run([&](auto done) { http::async_write(stream_, req, done); });
  }

  std::pair<boost::system::error_code, response> receive() {
    response res;
    const auto ec = run([&](auto done) { http::async_read(stream_, buffer_, res, done); });
    return {ec, std::move(res)};
  }

  /// Sends and reads the answer; fails the test on a transport error.
  response post(const request& req) {
    EXPECT_FALSE(send(req));
    auto [ec, res] = receive();
    EXPECT_FALSE(ec) << ec.message();
    return res;
  }

 private:
  template <typename Start>
  boost::system::error_code run(Start start) {
    boost::system::error_code result = asio::error::would_block;
    stream_.expires_after(std::chrono::seconds(10));
    start([&result](boost::system::error_code ec, std::size_t) { result = ec; });
    io_.restart();
    io_.run();
    return result;
  }

  asio::io_context io_;
  beast::tcp_stream stream_{io_};
  beast::flat_buffer buffer_;
  unsigned short port_ = 0;
};

json body_of(const response& res) {
  json j = json::parse(res.body(), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << res.body();
  return j;
}

class FakeWandbTest : public ::testing::Test {
 protected:
  void SetUp() override { fake_.add_run("ent", "proj", "run1", R"({"loss":0.5,"x":NaN})"); }

  /// One request on a fresh connection.
  response post(const request& req) {
    http_client c(fake_);
    EXPECT_FALSE(c.connect());
    return c.post(req);
  }

  fake_wandb fake_;
};

TEST_F(FakeWandbTest, StorageIdIsBase64OfRunProjectEntity) {
  EXPECT_EQ(fake_wandb::storage_id("ent", "proj", "run1"), run1_id);
  EXPECT_THAT(fake_.base_url(), ::testing::StartsWith("http://127.0.0.1:"));
}

TEST_F(FakeWandbTest, MissingOrWrongAuthorizationIs401) {
  const std::string wrong = "Basic YXBpOm5vdC10aGUta2V5";  // api:not-the-key
  for (const std::string& auth : {std::string(), wrong}) {
    const response res = post(graphql(run_query_body("ent", "proj", "run1"), auth));
    EXPECT_EQ(res.result_int(), 401u);
    EXPECT_EQ(body_of(res)["errors"][0]["message"], "permission denied");
  }
  const auto log = fake_.log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].authorization, "");
  EXPECT_EQ(log[1].authorization, wrong);
  EXPECT_EQ(log[1].status, 401u);
  EXPECT_EQ(fake_.requests(), 2u);
}

TEST_F(FakeWandbTest, RunQueryReturnsTheRunWithSummaryAsString) {
  const response res = post(graphql(run_query_body("ent", "proj", "run1")));
  ASSERT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  const json run = body_of(res)["data"]["project"]["run"];
  EXPECT_EQ(run["id"], run1_id);
  EXPECT_EQ(run["name"], "run1");
  EXPECT_EQ(run["state"], "running");
  ASSERT_TRUE(run["summaryMetrics"].is_string());
  EXPECT_EQ(run["summaryMetrics"], R"({"loss":0.5,"x":NaN})");
  EXPECT_FALSE(body_of(res).contains("errors"));
  const auto log = fake_.log();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].authorization, good_auth);
  EXPECT_EQ(log[0].body, run_query_body("ent", "proj", "run1"));
  EXPECT_EQ(log[0].status, 200u);
}

TEST_F(FakeWandbTest, RunQueryUnknownProjectGivesNullProject) {
  for (const auto& [entity, project] : {std::pair{"ent", "other"}, std::pair{"other", "proj"}}) {
    const json body = body_of(post(graphql(run_query_body(entity, project, "run1"))));
    ASSERT_TRUE(body["data"].contains("project")) << body;
    EXPECT_TRUE(body["data"]["project"].is_null()) << body;
  }
}

TEST_F(FakeWandbTest, RunQueryUnknownRunGivesNullRun) {
  const json body = body_of(post(graphql(run_query_body("ent", "proj", "nope"))));
  ASSERT_TRUE(body["data"]["project"].is_object()) << body;
  ASSERT_TRUE(body["data"]["project"].contains("run")) << body;
  EXPECT_TRUE(body["data"]["project"]["run"].is_null()) << body;
}

TEST_F(FakeWandbTest, UpsertReplacesSummaryTextByteForByte) {
  const std::string text = R"({"a":NaN,"b":-Infinity,"c":Infinity})";
  const response res = post(graphql(upsert_body(run1_id, text)));
  ASSERT_EQ(res.result_int(), 200u);
  const json body = body_of(res);
  EXPECT_EQ(body["data"]["upsertBucket"]["bucket"]["id"], run1_id);
  EXPECT_FALSE(body.contains("errors"));
  EXPECT_EQ(fake_.upserts(), 1u);
  // Replaced, not merged: the old keys are gone.
  EXPECT_EQ(fake_.summary("ent", "proj", "run1"), text);
  const json run =
      body_of(post(graphql(run_query_body("ent", "proj", "run1"))))["data"]["project"]["run"];
  EXPECT_EQ(run["summaryMetrics"], text);
}

TEST_F(FakeWandbTest, SetSummaryAndSetStateShowInTheRunQuery) {
  fake_.set_summary("ent", "proj", "run1", R"({"_step": 3, "y": Infinity})");
  fake_.set_state("ent", "proj", "run1", "crashed");
  EXPECT_EQ(fake_.state("ent", "proj", "run1"), "crashed");
  const json run =
      body_of(post(graphql(run_query_body("ent", "proj", "run1"))))["data"]["project"]["run"];
  EXPECT_EQ(run["summaryMetrics"], R"({"_step": 3, "y": Infinity})");
  EXPECT_EQ(run["state"], "crashed");
  EXPECT_THROW(fake_.summary("ent", "proj", "nope"), std::out_of_range);
}

TEST_F(FakeWandbTest, UpsertUnknownIdIs200WithErrors) {
  const response res = post(graphql(upsert_body("bm90LWEtcnVu", "{}")));
  EXPECT_EQ(res.result_int(), 200u);
  const json body = body_of(res);
  ASSERT_TRUE(body.contains("errors")) << body;
  EXPECT_FALSE(body["errors"].empty());
  EXPECT_EQ(fake_.upserts(), 0u);
  EXPECT_EQ(fake_.summary("ent", "proj", "run1"), R"({"loss":0.5,"x":NaN})");
}

TEST_F(FakeWandbTest, UpsertWithSummaryAsObjectIsAnError) {
  const std::string body =
      json{{"query", upsert_text}, {"variables", {{"id", run1_id}, {"summaryMetrics", {{"a", 1}}}}}}
          .dump();
  EXPECT_TRUE(body_of(post(graphql(body))).contains("errors"));
  EXPECT_EQ(fake_.upserts(), 0u);
}

TEST_F(FakeWandbTest, OtherTargetsAre404AndBadJsonIs400) {
  EXPECT_EQ(post(graphql("", good_auth, http::verb::get)).result_int(), 404u);
  EXPECT_EQ(
      post(graphql(run_query_body("ent", "proj", "run1"), good_auth, http::verb::post, "/other"))
          .result_int(),
      404u);
  EXPECT_EQ(post(graphql("{not json")).result_int(), 400u);
  EXPECT_EQ(post(graphql(R"({"variables":{}})")).result_int(), 400u);
}

TEST_F(FakeWandbTest, StatusFaultsAnswerInFifoOrderThenNormalHandlingResumes) {
  const std::pair<fault, unsigned> faults[] = {
      {fault::unauthorized_401, 401}, {fault::server_error_500, 500},
      {fault::unavailable_503, 503},  {fault::not_implemented_501, 501},
      {fault::bad_request_400, 400},  {fault::graphql_errors_200, 200},
  };
  for (const auto& [f, status] : faults) fake_.push_fault(f);
  http_client c(fake_);
  ASSERT_FALSE(c.connect());
  for (const auto& [f, status] : faults) {
    const response res = c.post(graphql(upsert_body(run1_id, R"({"z":1})")));
    EXPECT_EQ(res.result_int(), status);
    EXPECT_TRUE(body_of(res).contains("errors")) << res.body();
  }
  EXPECT_EQ(fake_.upserts(), 0u);  // no fault applied the write
  EXPECT_EQ(fake_.summary("ent", "proj", "run1"), R"({"loss":0.5,"x":NaN})");
  const response ok = c.post(graphql(upsert_body(run1_id, R"({"z":1})")));
  EXPECT_EQ(ok.result_int(), 200u);
  EXPECT_FALSE(body_of(ok).contains("errors"));
  EXPECT_EQ(fake_.upserts(), 1u);
  EXPECT_EQ(fake_.log().size(), 7u);
}

TEST_F(FakeWandbTest, RateLimitedCarriesRetryAfterOrRateLimitReset) {
  fake_.push_fault(fault::rate_limited_429, milliseconds(1500));
  fake_.push_fault(fault::rate_limited_429);
  http_client c(fake_);
  ASSERT_FALSE(c.connect());
  const response first = c.post(graphql(run_query_body("ent", "proj", "run1")));
  EXPECT_EQ(first.result_int(), 429u);
  EXPECT_EQ(first[http::field::retry_after], "2");  // 1.5 s rounded up
  const response second = c.post(graphql(run_query_body("ent", "proj", "run1")));
  EXPECT_EQ(second.result_int(), 429u);
  EXPECT_EQ(second.count(http::field::retry_after), 0u);
  EXPECT_EQ(second["RateLimit-Reset"], "1");
}

TEST_F(FakeWandbTest, DropConnectionClosesWithoutAnswer) {
  fake_.push_fault(fault::drop_connection);
  http_client c(fake_);
  ASSERT_FALSE(c.connect());
  ASSERT_FALSE(c.send(graphql(upsert_body(run1_id, "{}"))));
  const auto [ec, res] = c.receive();
  EXPECT_TRUE(ec);
  EXPECT_NE(ec, beast::error::timeout);
  EXPECT_EQ(fake_.upserts(), 0u);
  ASSERT_EQ(fake_.log().size(), 1u);
  EXPECT_EQ(fake_.log()[0].status, 0u);
  // The fault was used up: a new connection is served normally.
  EXPECT_EQ(post(graphql(upsert_body(run1_id, "{}"))).result_int(), 200u);
  EXPECT_EQ(fake_.upserts(), 1u);
}

TEST_F(FakeWandbTest, SlowAnswersNormallyAfterTheDelay) {
  fake_.push_fault(fault::slow, milliseconds(200));
  const auto start = std::chrono::steady_clock::now();
  const response res = post(graphql(upsert_body(run1_id, R"({"s":1})")));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(200));
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(body_of(res)["data"]["upsertBucket"]["bucket"]["id"], run1_id);
  EXPECT_EQ(fake_.summary("ent", "proj", "run1"), R"({"s":1})");
}

TEST_F(FakeWandbTest, LatencyDelaysEveryAnswer) {
  fake_.set_latency(milliseconds(100));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(post(graphql(run_query_body("ent", "proj", "run1"))).result_int(), 200u);
  EXPECT_EQ(post(graphql("", "", http::verb::get, "/")).result_int(), 404u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(200));
}

TEST_F(FakeWandbTest, KeepAliveServesTwoRequestsOnOneConnection) {
  http_client c(fake_);
  ASSERT_FALSE(c.connect());
  const response first = c.post(graphql(upsert_body(run1_id, R"({"k":1})")));
  EXPECT_EQ(first.result_int(), 200u);
  EXPECT_TRUE(first.keep_alive());
  const response second = c.post(graphql(run_query_body("ent", "proj", "run1")));
  EXPECT_EQ(second.result_int(), 200u);
  EXPECT_EQ(body_of(second)["data"]["project"]["run"]["summaryMetrics"], R"({"k":1})");
  EXPECT_EQ(fake_.requests(), 2u);
}

TEST_F(FakeWandbTest, SlowRequestsOnTwoConnectionsAreHandledConcurrently) {
  // The first request is held far longer than the test runs; the second, arriving while the
  // first is held, is answered anyway. The destructor cuts the first one short.
  fake_.push_fault(fault::slow, std::chrono::seconds(60));
  fake_.push_fault(fault::slow, milliseconds(50));
  http_client held(fake_);
  ASSERT_FALSE(held.connect());
  ASSERT_FALSE(held.send(graphql(run_query_body("ent", "proj", "run1"))));
  ASSERT_TRUE(fake_.wait_until([&] { return fake_.requests() >= 1; }, std::chrono::seconds(10)));
  http_client quick(fake_);
  ASSERT_FALSE(quick.connect());
  EXPECT_EQ(quick.post(graphql(run_query_body("ent", "proj", "run1"))).result_int(), 200u);
  EXPECT_EQ(fake_.max_concurrent(), 2u);
  EXPECT_EQ(fake_.log().size(), 1u);  // only the quick one was answered
}

// --- the Runs listing ---------------------------------------------------------------------------

/// "r0000", "r0001", ...: names that sort as their numbers do.
std::string fmt_name(int i) {
  std::string digits = std::to_string(i);
  return "r" + std::string(digits.size() < 4 ? 4 - digits.size() : 0, '0') + digits;
}

/// Names of a listing page's nodes, in order.
std::vector<std::string> names_of(const json& body) {
  std::vector<std::string> names;
  for (const json& edge : body["data"]["project"]["runs"]["edges"]) {
    names.push_back(edge["node"]["name"].get<std::string>());
  }
  return names;
}

/// "2023-11-05T17:46:SS".
std::string at_second(int s) {
  return "2023-11-05T17:46:" + std::string(s < 10 ? "0" : "") + std::to_string(s);
}

class FakeWandbListTest : public FakeWandbTest {
 protected:
  /// One Runs query; its body, and the test fails unless the answer is a 200.
  json list(const std::string& project, const json& variables = json::object()) {
    const response res = post(graphql(runs_body("ent", project, variables)));
    EXPECT_EQ(res.result_int(), 200u) << res.body();
    return body_of(res);
  }

  /// The names the whole listing gives, page after page of `per_page`.
  std::vector<std::string> list_all(const std::string& project, const std::string& filters,
                                    int per_page = 2) {
    std::vector<std::string> names;
    json cursor = nullptr;
    for (int page = 0; page < 100; ++page) {
      const json body =
          list(project, {{"filters", filters}, {"perPage", per_page}, {"cursor", cursor}});
      const json& runs = body["data"]["project"]["runs"];
      for (const std::string& n : names_of(body)) names.push_back(n);
      if (!runs["pageInfo"]["hasNextPage"].get<bool>()) return names;
      cursor = runs["edges"].back()["cursor"];
    }
    ADD_FAILURE() << "the listing did not end";
    return names;
  }

  /// Adds run `name` to ent/`project` with a sweep and a createdAt.
  void add(const std::string& project, const std::string& name, const std::string& sweep,
           int created_s, const std::string& summary = "{}", const std::string& state = "running") {
    fake_.add_run("ent", project, name, summary, state);
    fake_.set_run_meta("ent", project, name, sweep, at_second(created_s), "");
  }
};

TEST_F(FakeWandbListTest, PagesInCreatedAtThenNameOrderChainedByTheLastEdgesCursor) {
  add("lp", "c", "s1", 3);
  add("lp", "b", "s1", 1);
  add("lp", "a", "s1", 1);  // same createdAt as b: the name decides
  add("lp", "d", "s1", 7);
  add("lp", "e", "s1", 9);
  fake_.add_run("ent", "other", "x");  // another project's run is never listed
  fake_.set_run_meta("ent", "lp", "e", "s1", at_second(9), "2023-11-05T18:00:00");

  const json first = list("lp", {{"perPage", 2}, {"cursor", nullptr}});
  EXPECT_EQ(names_of(first), (std::vector<std::string>{"a", "b"}));
  const json& runs = first["data"]["project"]["runs"];
  EXPECT_TRUE(runs["pageInfo"]["hasNextPage"].get<bool>());
  EXPECT_EQ(runs["pageInfo"]["endCursor"], runs["edges"][1]["cursor"]);
  EXPECT_NE(runs["edges"][0]["cursor"], runs["edges"][1]["cursor"]);
  const json& node = runs["edges"][0]["node"];
  EXPECT_EQ(node["createdAt"], at_second(1));
  EXPECT_TRUE(node["heartbeatAt"].is_null());
  EXPECT_EQ(node["state"], "running");
  EXPECT_EQ(node["summaryMetrics"], "{}");

  // Each edge's cursor continues right after its own run.
  const json after_a = list("lp", {{"perPage", 2}, {"cursor", runs["edges"][0]["cursor"]}});
  EXPECT_EQ(names_of(after_a), (std::vector<std::string>{"b", "c"}));

  const json second = list("lp", {{"perPage", 2}, {"cursor", runs["edges"][1]["cursor"]}});
  EXPECT_EQ(names_of(second), (std::vector<std::string>{"c", "d"}));
  const json third = list(
      "lp", {{"perPage", 2}, {"cursor", second["data"]["project"]["runs"]["edges"][1]["cursor"]}});
  EXPECT_EQ(names_of(third), (std::vector<std::string>{"e"}));
  const json& last = third["data"]["project"]["runs"];
  EXPECT_FALSE(last["pageInfo"]["hasNextPage"].get<bool>());
  EXPECT_EQ(last["edges"][0]["node"]["heartbeatAt"], "2023-11-05T18:00:00");
  EXPECT_EQ(fake_.list_queries(), 4u);
}

TEST_F(FakeWandbListTest, UnknownProjectIsNullAndNoMatchIsAnEmptyLastPage) {
  const json unknown = list("nope");
  ASSERT_TRUE(unknown["data"].contains("project")) << unknown;
  EXPECT_TRUE(unknown["data"]["project"].is_null()) << unknown;
  add("lp", "a", "s1", 1);
  const json none = list("lp", {{"filters", R"({"sweep":"s2"})"}});
  const json& runs = none["data"]["project"]["runs"];
  EXPECT_TRUE(runs["edges"].is_array() && runs["edges"].empty()) << none;
  EXPECT_FALSE(runs["pageInfo"]["hasNextPage"].get<bool>());
  EXPECT_TRUE(runs["pageInfo"]["endCursor"].is_null());
  EXPECT_FALSE(none.contains("errors"));
}

TEST_F(FakeWandbListTest, FilterSelectsBySweepAndTheFlatSummaryKey) {
  add("lp", "live", "s1", 1, R"({"protein.state":"running","loss":NaN})");
  add("lp", "init", "s1", 2, R"({"protein.state":"initializing","best":-Infinity})");
  add("lp", "done", "s1", 3, R"({"protein.state":"success"})");
  add("lp", "nested", "s1", 4, R"({"protein":{"state":"running"}})");  // not the flat key
  add("lp", "bare", "s1", 5, "{}");
  add("lp", "elsewhere", "s2", 6, R"({"protein.state":"running"})");
  add("lp", "nosweep", "", 7, R"({"protein.state":"running"})");
  add("lp", "broken", "s1", 8, "not json");
  const std::string live =
      R"({"$and":[{"sweep":"s1"},{"summary_metrics.protein.state":{"$in":["initializing","running"]}}]})";
  EXPECT_EQ(list_all("lp", live), (std::vector<std::string>{"live", "init"}));
  EXPECT_EQ(list_all("lp", R"({"sweep":"s1"})"),
            (std::vector<std::string>{"live", "init", "done", "nested", "bare", "broken"}));
  // A custom prefix and mapped state names.
  add("lp", "custom", "s1", 9, R"({"hp.state":"active"})");
  EXPECT_EQ(
      list_all("lp",
               R"({"$and":[{"sweep":"s1"},{"summary_metrics.hp.state":{"$in":["active"]}}]})"),
      (std::vector<std::string>{"custom"}));
}

TEST_F(FakeWandbListTest, OperatorsFollowMongoDb) {
  add("lp", "a", "s1", 1, R"({"k":1,"n":null,"x":NaN})", "running");
  add("lp", "b", "s1", 2, R"({"k":2.0})", "finished");
  add("lp", "c", "s2", 3, "{}", "crashed");
  const std::pair<const char*, std::vector<std::string>> cases[] = {
      {R"({})", {"a", "b", "c"}},
      {R"({"name":"b"})", {"b"}},
      {R"({"state":{"$eq":"crashed"}})", {"c"}},
      {R"({"state":{"$ne":"crashed"}})", {"a", "b"}},
      {R"({"summary_metrics.k":1.0})", {"a"}},  // numbers compare as numbers
      {R"({"summary_metrics.k":{"$eq":2}})", {"b"}},
      {R"({"summary_metrics.k":{"$ne":1}})", {"b", "c"}},  // a missing field is not equal to 1
      {R"({"summary_metrics.k":{"$exists":true}})", {"a", "b"}},
      {R"({"summary_metrics.k":{"$exists":false}})", {"c"}},
      {R"({"summary_metrics.n":{"$exists":true}})", {"a"}},  // null is there
      {R"({"summary_metrics.n":null})", {"a", "b", "c"}},    // missing equals null
      {R"({"summary_metrics.x":{"$exists":true}})", {"a"}},  // NaN is a value
      {R"({"summary_metrics.k":{"$in":[2,3]}})", {"b"}},
      {R"({"summary_metrics.k":{"$in":[]}})", {}},
      {R"({"summary_metrics.k":{"$exists":true,"$ne":2}})", {"a"}},  // all operators hold
      {R"({"sweep":"s1","state":"finished"})", {"b"}},               // all keys hold
      {R"({"sweep":null})", {}},
      {R"({"$and":[]})", {"a", "b", "c"}},
      {R"({"$and":[{"sweep":"s1"},{"$and":[{"state":{"$in":["running","crashed"]}}]}]})", {"a"}},
  };
  for (const auto& [filter, expected] : cases) {
    EXPECT_EQ(list_all("lp", filter), expected) << filter;
  }
}

TEST_F(FakeWandbListTest, WhatTheFakeCannotEvaluateIsAGraphqlError) {
  add("lp", "a", "s1", 1);
  const std::pair<json, const char*> cases[] = {
      {{{"filters", R"({"$or":[{"sweep":"s1"}]})"}}, "$or"},
      {{{"filters", R"({"name":{"$regex":"a.*"}})"}}, "$regex"},
      {{{"filters", R"({"config.lr":1})"}}, "config.lr"},
      {{{"filters", R"({"summary_metrics.":1})"}}, "summary_metrics."},
      {{{"filters", R"({"$and":{"sweep":"s1"}})"}}, "$and expects an array"},
      {{{"filters", R"({"$and":["sweep"]})"}}, "$and expects objects"},
      {{{"filters", R"({"name":{"$in":"a"}})"}}, "$in expects an array"},
      {{{"filters", R"({"name":{"$exists":1}})"}}, "$exists expects a boolean"},
      {{{"filters", R"({"name":{}})"}}, "a condition needs"},
      // Checked whole: a branch no run reaches is still an error.
      {{{"filters", R"({"$and":[{"sweep":"none"},{"name":{"$gt":"a"}}]})"}}, "$gt"},
      {{{"filters", json{{"sweep", "s1"}}}}, "filters: expected a JSON string"},
      {{{"filters", "{not json"}}, "filters: expected the text of a JSON object"},
      {{{"filters", "[]"}}, "filters: expected the text of a JSON object"},
      {{{"order", "-created_at"}}, "+created_at"},
      {{{"perPage", "10"}}, "perPage: expected an Int"},
      {{{"perPage", 2.5}}, "perPage: expected an Int"},
      {{{"cursor", "Q3Vyc29yOnYxOg=="}}, "invalid cursor"},
      {{{"cursor", 3}}, "invalid cursor"},
  };
  for (const auto& [variables, expected] : cases) {
    const response res = post(graphql(runs_body("ent", "lp", variables)));
    EXPECT_EQ(res.result_int(), 200u) << variables;
    const json body = body_of(res);
    EXPECT_TRUE(body["data"].is_null()) << body;
    ASSERT_TRUE(body["errors"].is_array()) << body;
    EXPECT_THAT(body["errors"][0]["message"].get<std::string>(), HasSubstr(expected)) << variables;
  }
}

TEST_F(FakeWandbListTest, PerPageDefaultsTo50AndIsClampedToOneAndAThousand) {
  for (int i = 0; i < 1001; ++i) {
    fake_.add_run("ent", "big", fmt_name(i));
  }
  const auto page = [&](const json& variables) {
    const json body = list("big", variables);
    return std::pair{body["data"]["project"]["runs"]["edges"].size(),
                     body["data"]["project"]["runs"]["pageInfo"]["hasNextPage"].get<bool>()};
  };
  EXPECT_EQ(page(json::object()), std::pair(std::size_t{50}, true));
  EXPECT_EQ(page({{"perPage", nullptr}}), std::pair(std::size_t{50}, true));
  EXPECT_EQ(page({{"perPage", 0}}), std::pair(std::size_t{1}, true));
  EXPECT_EQ(page({{"perPage", -7}}), std::pair(std::size_t{1}, true));
  EXPECT_EQ(page({{"perPage", 5000}}), std::pair(std::size_t{1000}, true));
  EXPECT_EQ(page({{"perPage", 1001}}), std::pair(std::size_t{1000}, true));
  EXPECT_EQ(page({{"perPage", 999}}), std::pair(std::size_t{999}, true));
}

TEST_F(FakeWandbListTest, ACursorStaysValidWhenRunsAreAdded) {
  add("lp", "a", "s1", 1);
  add("lp", "b", "s1", 2);
  const json first = list("lp", {{"perPage", 1}});
  const json cursor = first["data"]["project"]["runs"]["edges"][0]["cursor"];
  add("lp", "early", "s1", 0);  // before the cursor: not listed after it
  add("lp", "late", "s1", 5);
  const json rest = list("lp", {{"perPage", 10}, {"cursor", cursor}});
  EXPECT_EQ(names_of(rest), (std::vector<std::string>{"b", "late"}));
}

TEST_F(FakeWandbListTest, RawFieldsGoIntoTheListedNodes) {
  add("lp", "a", "s1", 1);
  fake_.set_raw_field("ent", "lp", "a", "name", "42");
  fake_.set_raw_field("ent", "lp", "a", "createdAt", std::nullopt);
  fake_.set_raw_field("ent", "lp", "a", "summaryMetrics", R"({"x":1})");
  const json node = list("lp")["data"]["project"]["runs"]["edges"][0]["node"];
  EXPECT_EQ(node["name"], 42);
  EXPECT_FALSE(node.contains("createdAt"));
  EXPECT_EQ(node["summaryMetrics"], json({{"x", 1}}));
  EXPECT_EQ(node["state"], "running");
}

TEST_F(FakeWandbListTest, FaultsTakeListQueriesToo) {
  add("lp", "a", "s1", 1);
  fake_.push_fault(fault::unavailable_503);
  fake_.push_answer(200, R"({"data":{"project":{"runs":"canned"}}})");
  EXPECT_EQ(post(graphql(runs_body("ent", "lp"))).result_int(), 503u);
  EXPECT_EQ(body_of(post(graphql(runs_body("ent", "lp"))))["data"]["project"]["runs"], "canned");
  EXPECT_EQ(fake_.list_queries(), 0u);
  EXPECT_EQ(names_of(list("lp")), (std::vector<std::string>{"a"}));
  EXPECT_EQ(fake_.list_queries(), 1u);
  EXPECT_EQ(fake_.requests(), 3u);
}

TEST_F(FakeWandbListTest, TheRunQueryIsNotAListing) {
  EXPECT_EQ(body_of(post(
                graphql(run_query_body("ent", "proj", "run1"))))["data"]["project"]["run"]["name"],
            "run1");
  EXPECT_EQ(fake_.list_queries(), 0u);
}

TEST_F(FakeWandbTest, WaitUntilIsFalseOnTimeout) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(fake_.wait_until([&] { return fake_.requests() > 0; }, milliseconds(50)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
}

TEST_F(FakeWandbTest, WaitUntilWakesWhenARequestSatisfiesIt) {
  auto writer = std::async(std::launch::async, [&] {
    return post(graphql(upsert_body(run1_id, R"({"w":1})"))).result_int();
  });
  EXPECT_TRUE(fake_.wait_until([&] { return fake_.upserts() == 1; }, std::chrono::seconds(10)));
  EXPECT_EQ(fake_.summary("ent", "proj", "run1"), R"({"w":1})");
  EXPECT_EQ(writer.get(), 200u);
}

}  // namespace
}  // namespace sweepd::test
