// encode_request() is the inverse of parse_request(): every op, with all its fields and with none,
// comes back equal; and error_of_reply() reads any reply without throwing.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/protocol.hpp"

namespace sweepd::core {
namespace {

using json = nlohmann::json;

/// The wire name of a request's op, from its own line.
std::string op_of(const request& r) { return request_json(r).value("op", ""); }

register_params full_register() {
  // max_runtime_s 0 is "off", and still given.
  return {"ab12.cd_34-x",
          "s1",
          "acme",
          "mnist",
          json_text(json::parse(R"({"lr":0.01,"layers":[1,2],"opt":{"name":"adam"}})")),
          true,
          1.5,
          0.0};
}

/// A request of type T for `run` (or `sweep`), every optional field left out.
template <typename T>
T with_run(const std::string& run) {
  T r;
  r.run = run;
  return r;
}

reconcile_request reconcile_of(std::string sweep) {
  reconcile_request r;
  r.sweep = std::move(sweep);
  return r;
}

list_request list_of_at_most(std::size_t limit) {
  list_request r;
  r.limit = limit;
  return r;
}

/// One request of every op with every field set, and one with only what is required.
std::vector<request> sample_requests() {
  return {
      hello_request{},
      hello_request{"t0ken"},
      with_run<register_params>("r1"),
      full_register(),
      start_request{"r1"},
      with_run<heartbeat_params>("r1"),
      heartbeat_params{"r1", -2.5, 900},
      with_run<complete_params>("r1"),
      complete_params{"r1", 0.934512345, 3600.5},
      fail_params{"r1", "CUDA out of memory\nsecond line \"quoted\" é"},
      status_request{},
      show_request{"r1"},
      list_request{},
      list_request{"s1", run_state::running, 5, page_cursor{1700000000123, "r9"}},
      list_of_at_most(max_list_limit),
      observations_request{},
      observations_request{"s1", 20, page_cursor{-5, "a.b"}},
      resync_request{"r1"},
      reconcile_of("sw"),
      reconcile_request{"sw", "acme", "mnist", true, 3600},
  };
}

TEST(EncodeRequest, ParsingTheLineGivesTheRequestBack) {
  for (const request& r : sample_requests()) {
    const std::string line = encode_request(r);
    SCOPED_TRACE(line);
    ASSERT_TRUE(line.ends_with('\n'));
    ASSERT_EQ(line.find('\n'), line.size() - 1) << "one line";
    const parse_result parsed = parse_request(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(parsed.req.has_value()) << parsed.err.message;
    EXPECT_EQ(parsed.op, op_of(r));
    EXPECT_TRUE(*parsed.req == r);
  }
}

TEST(EncodeRequest, EveryOpIsCovered) {
  std::set<std::string> encoded;
  for (const request& r : sample_requests()) encoded.insert(op_of(r));
  for (std::string_view op : op_names()) EXPECT_TRUE(encoded.contains(std::string(op))) << op;
  EXPECT_EQ(encoded.size(), op_names().size());
}

TEST(EncodeRequest, EncodingTheParsedLineGivesTheSameObject) {
  // The other direction, for lines as sweepctl has always sent them.
  const std::vector<std::string> lines = {
      R"({"op":"hello"})",
      R"({"op":"list","sweep":"s1","state":"running","limit":5,"after":"r1:5:r1"})",
      R"({"op":"observations","limit":20,"after":"f1:5:r1"})",
      // NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one line, split for width
      R"({"op":"register","run":"r1","suggestion":{"lr":0.01},"watch_peer":true,)"
      R"("heartbeat_timeout_s":600,"max_runtime_s":86400})",
      R"({"op":"heartbeat","run":"r1","progress":1200,"timeout_s":900})",
      R"({"op":"complete","run":"r1","objective":-0.0015,"cost":0})",
      R"({"op":"reconcile","sweep":"s","apply":true,"stale_after_s":1.5})",
  };
  for (const std::string& line : lines) {
    SCOPED_TRACE(line);
    const parse_result parsed = parse_request(line);
    ASSERT_TRUE(parsed.req.has_value()) << parsed.err.message;
    EXPECT_EQ(request_json(*parsed.req), json::parse(line));
  }
}

TEST(EncodeRequest, IntegralNumbersAreWrittenAsIntegers) {
  const std::string line = encode_request(heartbeat_params{"r1", 1200, 0.5});
  EXPECT_THAT(line, ::testing::HasSubstr(R"("progress":1200)"));
  EXPECT_THAT(line, ::testing::HasSubstr(R"("timeout_s":0.5)"));
}

TEST(EncodeRequest, DefaultsAndFalseFlagsAreLeftOut) {
  EXPECT_EQ(request_json(list_request{}), json({{"op", "list"}}));
  EXPECT_EQ(request_json(with_run<register_params>("r1")),
            json({{"op", "register"}, {"run", "r1"}}));
  EXPECT_EQ(request_json(reconcile_of("s")), json({{"op", "reconcile"}, {"sweep", "s"}}));
}

TEST(EncodeRequest, InvalidUtf8DoesNotThrow) {
  const std::string line = encode_request(fail_params{"r1", "bad \xff byte"});
  EXPECT_TRUE(parse_request(line.substr(0, line.size() - 1)).req.has_value()) << line;
}

TEST(ErrorOfReply, ReadsTheCodeAndMessage) {
  const json reply = json::parse(error_reply({error_code::conflict, "run r1 is terminal"}));
  const reply_error e = error_of_reply(reply);
  EXPECT_EQ(e.code, "conflict");
  EXPECT_EQ(e.message, "run r1 is terminal");
}

TEST(ErrorOfReply, HostileRepliesGiveEmptyParts) {
  const std::vector<json> replies = {
      nullptr,
      json::array({1, 2}),
      "text",
      {{"ok", false}},
      {{"ok", false}, {"error", "busy"}},
      {{"ok", false}, {"error", {{"code", 7}, {"message", {1, 2}}}}},
      {{"ok", false}, {"error", {{"code", nullptr}}}},
  };
  for (const json& reply : replies) {
    SCOPED_TRACE(reply.dump());
    const reply_error e = error_of_reply(reply);
    EXPECT_EQ(e.code, "");
    EXPECT_EQ(e.message, "");
  }
  const reply_error partial =
      error_of_reply({{"ok", false}, {"error", {{"code", "busy"}, {"message", 3}}}});
  EXPECT_EQ(partial.code, "busy");
  EXPECT_EQ(partial.message, "");
}

TEST(ErrorOfReply, LongPartsAreCutToTheErrorLimit) {
  const std::string huge(max_error_bytes * 4, 'x');
  const reply_error e = error_of_reply({{"error", {{"code", huge}, {"message", huge}}}});
  EXPECT_EQ(e.code.size(), max_error_bytes);
  EXPECT_EQ(e.message.size(), max_error_bytes);
}

}  // namespace
}  // namespace sweepd::core
