#include "core/protocol.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/json_limits.hpp"

namespace sweepd::core {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

/// Parses a line that must be refused and returns the error.
error refused(const std::string& line) {
  const parse_result r = parse_request(line);
  EXPECT_FALSE(r.req.has_value()) << line;
  EXPECT_NE(r.err.code, error_code::ok) << line;
  return r.err;
}

/// Parses a line that must be accepted as a request of type T.
template <typename T>
T accepted(const std::string& line) {
  const parse_result r = parse_request(line);
  if (!r.req) {
    ADD_FAILURE() << line << " refused: " << r.err.message;
    return T{};
  }
  const T* value = std::get_if<T>(&*r.req);
  if (value == nullptr) {
    ADD_FAILURE() << line << " parsed as another op (index " << r.req->index() << ")";
    return T{};
  }
  EXPECT_EQ(r.err.code, error_code::ok);
  return *value;
}

struct bad_line {
  std::string line;
  error_code code;
  std::string mentions;  // a part of the message, e.g. the field's name
};

void expect_refused(const std::vector<bad_line>& cases) {
  for (const bad_line& c : cases) {
    SCOPED_TRACE(c.line);
    const error e = refused(c.line);
    EXPECT_EQ(e.code, c.code) << e.message;
    EXPECT_THAT(e.message, HasSubstr(c.mentions));
  }
}

/// True when `s` is well-formed UTF-8 (as nlohmann's parser checks it).
bool is_utf8(const std::string& s) {
  return !json::parse("\"" + s + "\"", nullptr, false).is_discarded();
}

// ---------------------------------------------------------------------------------------------
// every op with all its fields

TEST(ParseRequest, Hello) { accepted<hello_request>(R"({"op":"hello"})"); }

TEST(ParseRequest, RegisterWithAllFields) {
  const auto p = accepted<register_params>(
      R"({"op":"register","run":"ab12cd34","sweep":"s1","entity":"e","project":"p",)"
      R"("suggestion":{"lr":0.01,"layers":[1,2]},"watch_peer":true,"heartbeat_timeout_s":600,)"
      R"("max_runtime_s":86400.5})");
  EXPECT_EQ(p.run, "ab12cd34");
  EXPECT_EQ(p.sweep, "s1");
  EXPECT_EQ(p.entity, "e");
  EXPECT_EQ(p.project, "p");
  EXPECT_EQ(p.suggestion.value(), json::parse(R"({"lr":0.01,"layers":[1,2]})"));
  // Kept as the compact text of that object.
  EXPECT_EQ(p.suggestion.text(), R"({"layers":[1,2],"lr":0.01})");
  EXPECT_TRUE(p.watch_peer);
  EXPECT_EQ(p.heartbeat_timeout_s, 600.0);
  EXPECT_EQ(p.max_runtime_s, 86400.5);
}

TEST(ParseRequest, RegisterWithOnlyTheRun) {
  const auto p = accepted<register_params>(R"({"op":"register","run":"r1"})");
  EXPECT_EQ(p.run, "r1");
  EXPECT_FALSE(p.sweep.has_value());
  EXPECT_FALSE(p.entity.has_value());
  EXPECT_FALSE(p.project.has_value());
  EXPECT_TRUE(p.suggestion.is_null());
  EXPECT_FALSE(p.watch_peer);
  EXPECT_FALSE(p.heartbeat_timeout_s.has_value());
  EXPECT_FALSE(p.max_runtime_s.has_value());
}

TEST(ParseRequest, Start) {
  EXPECT_EQ(accepted<start_request>(R"({"op":"start","run":"ab12cd34"})").run, "ab12cd34");
}

TEST(ParseRequest, HeartbeatWithAllFields) {
  const auto p = accepted<heartbeat_params>(
      R"({"op":"heartbeat","run":"r1","progress":-1200.5,"timeout_s":900})");
  EXPECT_EQ(p.run, "r1");
  EXPECT_EQ(p.progress, -1200.5);
  EXPECT_EQ(p.timeout_s, 900.0);
  const auto bare = accepted<heartbeat_params>(R"({"op":"heartbeat","run":"r1"})");
  EXPECT_FALSE(bare.progress.has_value());
  EXPECT_FALSE(bare.timeout_s.has_value());
}

TEST(ParseRequest, CompleteWithAllFields) {
  const auto p =
      accepted<complete_params>(R"({"op":"complete","run":"r1","objective":-0.93,"cost":3600.5})");
  EXPECT_EQ(p.run, "r1");
  EXPECT_EQ(p.objective, -0.93);
  EXPECT_EQ(p.cost, 3600.5);
  const auto zero = accepted<complete_params>(R"({"op":"complete","run":"r1","cost":0})");
  EXPECT_EQ(zero.cost, 0.0);
  EXPECT_FALSE(zero.objective.has_value());
}

TEST(ParseRequest, Fail) {
  const auto p = accepted<fail_params>(R"({"op":"fail","run":"r1","error":"CUDA out of memory"})");
  EXPECT_EQ(p.run, "r1");
  EXPECT_EQ(p.error, "CUDA out of memory");
}

TEST(ParseRequest, StatusShowObservations) {
  accepted<status_request>(R"({"op":"status"})");
  EXPECT_EQ(accepted<show_request>(R"({"op":"show","run":"r1"})").run, "r1");
  EXPECT_EQ(accepted<observations_request>(R"({"op":"observations","sweep":"s1"})").sweep, "s1");
  EXPECT_FALSE(accepted<observations_request>(R"({"op":"observations"})").sweep.has_value());
}

TEST(ParseRequest, ListWithAllFieldsAndDefaults) {
  const auto r =
      accepted<list_request>(R"({"op":"list","sweep":"s1","state":"timeout","limit":5})");
  EXPECT_EQ(r.sweep, "s1");
  EXPECT_EQ(r.state, run_state::timeout);
  EXPECT_EQ(r.limit, 5u);
  const auto d = accepted<list_request>(R"({"op":"list"})");
  EXPECT_FALSE(d.sweep.has_value());
  EXPECT_FALSE(d.state.has_value());
  EXPECT_EQ(d.limit, default_list_limit);
  EXPECT_EQ(accepted<list_request>(R"({"op":"list","limit":100000})").limit, max_list_limit);
  for (run_state s : all_run_states) {
    const std::string line = R"({"op":"list","state":")" + std::string(to_string(s)) + "\"}";
    EXPECT_EQ(accepted<list_request>(line).state, s);
  }
}

TEST(ParseRequest, ListAndObservationsTakeACursorAndALimit) {
  const std::string list_next = encode_cursor(page_order::registered, {1795900000123, "r-9.x_"});
  const auto l = accepted<list_request>(R"({"op":"list","after":")" + list_next + "\"}");
  ASSERT_TRUE(l.after.has_value());
  EXPECT_EQ(*l.after, (page_cursor{1795900000123, "r-9.x_"}));
  EXPECT_FALSE(accepted<list_request>(R"({"op":"list"})").after.has_value());

  const std::string obs_next = encode_cursor(page_order::finished, {-5, "a"});
  const auto o = accepted<observations_request>(
      R"({"op":"observations","sweep":"s1","limit":20,"after":")" + obs_next + "\"}");
  EXPECT_EQ(o.sweep, "s1");
  EXPECT_EQ(o.limit, 20u);
  EXPECT_EQ(o.after, (page_cursor{-5, "a"}));
  const auto bare = accepted<observations_request>(R"({"op":"observations"})");
  EXPECT_FALSE(bare.limit.has_value());  // as many as fit in one reply
  EXPECT_FALSE(bare.after.has_value());
}

TEST(ParseRequest, CursorsAreCheckedAndBelongToTheirOp) {
  const std::string list_next = encode_cursor(page_order::registered, {17, "r1"});
  const std::string obs_next = encode_cursor(page_order::finished, {17, "r1"});
  EXPECT_NE(list_next, obs_next);
  EXPECT_EQ(decode_cursor(page_order::registered, list_next), (page_cursor{17, "r1"}));
  EXPECT_FALSE(decode_cursor(page_order::finished, list_next));
  const std::string long_id(max_run_id_chars, 'x');
  EXPECT_EQ(decode_cursor(page_order::finished,
                          encode_cursor(page_order::finished, {INT64_MAX, long_id})),
            (page_cursor{INT64_MAX, long_id}));
  expect_refused({
      {R"({"op":"list","after":")" + obs_next + "\"}", error_code::bad_request,
       "field 'after': not a cursor from the \"next\" of an earlier 'list' reply"},
      {R"({"op":"observations","after":")" + list_next + "\"}", error_code::bad_request,
       "field 'after': not a cursor from the \"next\" of an earlier 'observations' reply"},
      {R"({"op":"list","after":17})", error_code::bad_request,
       "field 'after': expected string, got number"},
      {R"({"op":"list","after":""})", error_code::bad_request, "field 'after'"},
      {R"({"op":"list","after":"r1:"})", error_code::bad_request, "field 'after'"},
      {R"({"op":"list","after":"r1:17"})", error_code::bad_request, "field 'after'"},
      {R"({"op":"list","after":"r1:17:"})", error_code::bad_request, "field 'after'"},
      {R"({"op":"list","after":"r1:x7:r1"})", error_code::bad_request, "field 'after'"},
      {R"({"op":"list","after":"r1:99999999999999999999:r1"})", error_code::bad_request,
       "field 'after'"},
      {R"({"op":"list","after":"r1:17:r/1"})", error_code::bad_request, "field 'after'"},
      {R"({"op":"list","after":"r1:17:)" + long_id + "x\"}", error_code::bad_request,
       "field 'after'"},
      {R"({"op":"observations","limit":0})", error_code::bad_request, "field 'limit'"},
      {R"({"op":"observations","limit":100001})", error_code::bad_request, "field 'limit'"},
      {R"({"op":"observations","limit":"5"})", error_code::bad_request, "field 'limit'"},
  });
}

TEST(ParseRequest, NullMeansAbsent) {
  const auto p = accepted<register_params>(
      R"({"op":"register","run":"r1","sweep":null,"entity":null,"project":null,)"
      R"("suggestion":null,"watch_peer":null,"heartbeat_timeout_s":null,"max_runtime_s":null})");
  EXPECT_FALSE(p.sweep.has_value());
  EXPECT_FALSE(p.entity.has_value());
  EXPECT_TRUE(p.suggestion.is_null());
  EXPECT_FALSE(p.watch_peer);
  EXPECT_FALSE(p.heartbeat_timeout_s.has_value());
  const auto h = accepted<heartbeat_params>(
      R"({"op":"heartbeat","run":"r1","progress":null,"timeout_s":null})");
  EXPECT_FALSE(h.progress.has_value());
  EXPECT_FALSE(h.timeout_s.has_value());
  const auto c =
      accepted<complete_params>(R"({"op":"complete","run":"r1","objective":null,"cost":null})");
  EXPECT_FALSE(c.objective.has_value());
  EXPECT_FALSE(c.cost.has_value());
  // A required field given as null is missing.
  expect_refused({
      {R"({"op":"start","run":null})", error_code::bad_request, "missing field 'run'"},
      {R"({"op":"fail","run":"r1","error":null})", error_code::bad_request,
       "missing field 'error'"},
  });
}

TEST(ParseRequest, SurroundingWhitespaceIsFine) {
  accepted<hello_request>(" \t{\"op\" : \"hello\"}\r");
}

// ---------------------------------------------------------------------------------------------
// refused lines

TEST(ParseRequest, InvalidJsonIsBadJson) {
  expect_refused({
      {"", error_code::bad_json, "JSON"},
      {"not json", error_code::bad_json, "JSON"},
      {R"({"op":"hello")", error_code::bad_json, "JSON"},
      {R"({"op":"hello"} {"op":"hello"})", error_code::bad_json, "JSON"},
      {R"({'op':'hello'})", error_code::bad_json, "JSON"},
      {R"({"op":"heartbeat","run":"r1","progress":NaN})", error_code::bad_json, "JSON"},
      {R"({"op":"heartbeat","run":"r1","progress":Infinity})", error_code::bad_json, "JSON"},
      // Beyond double: the number itself cannot be read.
      {R"({"op":"heartbeat","run":"r1","progress":1e400})", error_code::bad_json, "JSON"},
  });
}

TEST(ParseRequest, InvalidUtf8IsBadJson) {
  expect_refused({
      {"{\"op\":\"fail\",\"run\":\"r1\",\"error\":\"\xff\"}", error_code::bad_json, "UTF-8"},
      {"{\"op\":\"fail\",\"run\":\"r1\",\"error\":\"\xc3\"}", error_code::bad_json, "UTF-8"},
      {"{\"op\":\"fail\",\"run\":\"r1\",\"error\":\"\xc0\xaf\"}", error_code::bad_json, "UTF-8"},
      {"{\"op\":\"fail\",\"run\":\"r1\",\"error\":\"\xed\xa0\x80\"}", error_code::bad_json,
       "UTF-8"},
      {R"({"op":"fail","run":"r1","error":"\ud800"})", error_code::bad_json, "UTF-8"},
  });
  // Valid multibyte text is fine.
  EXPECT_EQ(
      accepted<fail_params>("{\"op\":\"fail\",\"run\":\"r1\",\"error\":\"d\xc3\xa9j\xc3\xa0\"}")
          .error,
      "d\xc3\xa9j\xc3\xa0");
}

TEST(ParseRequest, NonObjectIsBadRequest) {
  expect_refused({
      {"[]", error_code::bad_request, "got array"},
      {R"(["op","hello"])", error_code::bad_request, "got array"},
      {R"("hello")", error_code::bad_request, "got string"},
      {"42", error_code::bad_request, "got number"},
      {"null", error_code::bad_request, "got null"},
      {"true", error_code::bad_request, "got boolean"},
  });
}

TEST(ParseRequest, MissingOrIllTypedOpIsBadRequest) {
  expect_refused({
      {"{}", error_code::bad_request, "missing field 'op'"},
      {R"({"run":"r1"})", error_code::bad_request, "missing field 'op'"},
      {R"({"op":42})", error_code::bad_request, "field 'op'"},
      {R"({"op":["hello"]})", error_code::bad_request, "field 'op'"},
      {R"({"op":null})", error_code::bad_request, "'op'"},
  });
}

TEST(ParseRequest, UnknownOpListsTheKnownOps) {
  const error e = refused(R"({"op":"launch","run":"r1"})");
  EXPECT_EQ(e.code, error_code::unknown_op);
  EXPECT_THAT(e.message, HasSubstr("'launch'"));
  for (const char* op : {"hello", "register", "start", "heartbeat", "complete", "fail", "status",
                         "show", "list", "observations"}) {
    EXPECT_THAT(e.message, HasSubstr(op));
  }
  // Op names are case-sensitive, and a huge op name is not echoed in full.
  EXPECT_EQ(refused(R"({"op":"Hello"})").code, error_code::unknown_op);
  const error huge = refused(R"({"op":")" + std::string(10000, 'x') + "\"}");
  EXPECT_EQ(huge.code, error_code::unknown_op);
  EXPECT_LT(huge.message.size(), 1000u);
}

TEST(ParseRequest, MissingRequiredFieldsAreNamed) {
  expect_refused({
      {R"({"op":"register"})", error_code::bad_request, "missing field 'run' for op 'register'"},
      {R"({"op":"start"})", error_code::bad_request, "missing field 'run' for op 'start'"},
      {R"({"op":"heartbeat"})", error_code::bad_request, "missing field 'run'"},
      {R"({"op":"complete"})", error_code::bad_request, "missing field 'run'"},
      {R"({"op":"fail","error":"x"})", error_code::bad_request, "missing field 'run'"},
      {R"({"op":"fail","run":"r1"})", error_code::bad_request, "missing field 'error'"},
      {R"({"op":"show"})", error_code::bad_request, "missing field 'run'"},
  });
}

TEST(ParseRequest, IllTypedFieldsAreNamed) {
  expect_refused({
      {R"({"op":"start","run":42})", error_code::bad_request, "field 'run': expected string"},
      {R"({"op":"register","run":"r1","sweep":1})", error_code::bad_request, "field 'sweep'"},
      {R"({"op":"register","run":"r1","entity":true})", error_code::bad_request, "field 'entity'"},
      {R"({"op":"register","run":"r1","project":{}})", error_code::bad_request, "field 'project'"},
      {R"({"op":"register","run":"r1","suggestion":[1,2]})", error_code::bad_request,
       "field 'suggestion': expected object, got array"},
      {R"({"op":"register","run":"r1","suggestion":"lr=0.1"})", error_code::bad_request,
       "field 'suggestion'"},
      {R"({"op":"register","run":"r1","watch_peer":"yes"})", error_code::bad_request,
       "field 'watch_peer': expected boolean, got string"},
      {R"({"op":"register","run":"r1","watch_peer":1})", error_code::bad_request,
       "field 'watch_peer'"},
      {R"({"op":"register","run":"r1","heartbeat_timeout_s":"600"})", error_code::bad_request,
       "field 'heartbeat_timeout_s': expected a number, got string"},
      {R"({"op":"register","run":"r1","max_runtime_s":[1]})", error_code::bad_request,
       "field 'max_runtime_s'"},
      {R"({"op":"heartbeat","run":"r1","progress":"12"})", error_code::bad_request,
       "field 'progress'"},
      {R"({"op":"heartbeat","run":"r1","timeout_s":true})", error_code::bad_request,
       "field 'timeout_s'"},
      {R"({"op":"complete","run":"r1","objective":"0.9"})", error_code::bad_request,
       "field 'objective'"},
      {R"({"op":"complete","run":"r1","cost":false})", error_code::bad_request, "field 'cost'"},
      {R"({"op":"fail","run":"r1","error":5})", error_code::bad_request,
       "field 'error': expected string, got number"},
      {R"({"op":"list","limit":"10"})", error_code::bad_request, "field 'limit'"},
      {R"({"op":"list","state":3})", error_code::bad_request, "field 'state'"},
      {R"({"op":"list","sweep":["s1"]})", error_code::bad_request, "field 'sweep'"},
      {R"({"op":"observations","sweep":7})", error_code::bad_request, "field 'sweep'"},
  });
}

TEST(ParseRequest, OutOfRangeNumbersAreNamed) {
  expect_refused({
      {R"({"op":"register","run":"r1","heartbeat_timeout_s":0})", error_code::bad_request,
       "field 'heartbeat_timeout_s'"},
      {R"({"op":"register","run":"r1","heartbeat_timeout_s":-5})", error_code::bad_request,
       "field 'heartbeat_timeout_s'"},
      {R"({"op":"register","run":"r1","heartbeat_timeout_s":1e300})", error_code::bad_request,
       "field 'heartbeat_timeout_s'"},
      {R"({"op":"register","run":"r1","heartbeat_timeout_s":31536001})", error_code::bad_request,
       "field 'heartbeat_timeout_s'"},
      {R"({"op":"register","run":"r1","max_runtime_s":-1})", error_code::bad_request,
       "field 'max_runtime_s'"},
      {R"({"op":"register","run":"r1","max_runtime_s":1e20})", error_code::bad_request,
       "field 'max_runtime_s'"},
      {R"({"op":"heartbeat","run":"r1","timeout_s":0})", error_code::bad_request,
       "field 'timeout_s'"},
      {R"({"op":"heartbeat","run":"r1","timeout_s":-0.5})", error_code::bad_request,
       "field 'timeout_s'"},
      {R"({"op":"complete","run":"r1","cost":-0.5})", error_code::bad_request, "field 'cost'"},
      {R"({"op":"complete","run":"r1","cost":-1e-300})", error_code::bad_request, "field 'cost'"},
      {R"({"op":"list","limit":0})", error_code::bad_request, "field 'limit'"},
      {R"({"op":"list","limit":-3})", error_code::bad_request, "field 'limit'"},
      {R"({"op":"list","limit":100001})", error_code::bad_request, "field 'limit'"},
  });
  // The largest bounds themselves are accepted, and finite extremes pass where any number goes.
  EXPECT_EQ(accepted<register_params>(
                R"({"op":"register","run":"r1","heartbeat_timeout_s":31536000,"max_runtime_s":0})")
                .heartbeat_timeout_s,
            max_timeout_s);
  EXPECT_EQ(
      accepted<heartbeat_params>(R"({"op":"heartbeat","run":"r1","progress":-1.7e308})").progress,
      -1.7e308);
  EXPECT_EQ(
      accepted<complete_params>(R"({"op":"complete","run":"r1","objective":1e308})").objective,
      1e308);
  EXPECT_EQ(
      accepted<heartbeat_params>(R"({"op":"heartbeat","run":"r1","progress":18446744073709551616})")
          .progress,
      18446744073709551616.0);
}

TEST(ParseRequest, TimeoutsBelowAMillisecondAreRefused) {
  // They would round to 0 and switch the silence timeout off.
  expect_refused({
      {R"({"op":"register","run":"r1","heartbeat_timeout_s":1e-300})", error_code::bad_request,
       "field 'heartbeat_timeout_s': 1e-300 is shorter than 0.001 s"},
      {R"({"op":"register","run":"r1","max_runtime_s":0.0009})", error_code::bad_request,
       "field 'max_runtime_s'"},
      {R"({"op":"heartbeat","run":"r1","timeout_s":1e-10})", error_code::bad_request,
       "field 'timeout_s'"},
  });
  EXPECT_EQ(accepted<register_params>(R"({"op":"register","run":"r1","heartbeat_timeout_s":0.001})")
                .heartbeat_timeout_s,
            0.001);
  EXPECT_EQ(
      accepted<register_params>(R"({"op":"register","run":"r1","max_runtime_s":0})").max_runtime_s,
      0.0);
}

TEST(ParseRequest, DeepNestingIsRefusedBeforeParsing) {
  const auto deep = [](std::size_t depth) {
    return R"({"op":"register","run":"r1","suggestion":{"a":)" + std::string(depth, '[') +
           std::string(depth, ']') + "}}";
  };
  // 2 levels for the request and the suggestion, then the arrays.
  accepted<register_params>(deep(max_request_json_depth - 2));
  expect_refused({{deep(max_request_json_depth - 1), error_code::bad_request, "levels deep"},
                  {deep(200000), error_code::bad_request, "levels deep"}});
}

TEST(ParseRequest, Reconcile) {
  auto r = accepted<reconcile_request>(
      R"({"op":"reconcile","sweep":"sw","entity":"e","project":"p","apply":true,)"
      R"("stale_after_s":600})");
  EXPECT_EQ(r.sweep, "sw");
  EXPECT_EQ(r.entity, "e");
  EXPECT_EQ(r.project, "p");
  EXPECT_TRUE(r.apply);
  EXPECT_EQ(r.stale_after_s, 600.0);
  r = accepted<reconcile_request>(R"({"op":"reconcile","sweep":"sw"})");
  EXPECT_FALSE(r.apply);
  EXPECT_FALSE(r.entity.has_value());
  expect_refused({
      {R"({"op":"reconcile"})", error_code::bad_request, "missing field 'sweep'"},
      {R"({"op":"reconcile","sweep":"sw","apply":"yes"})", error_code::bad_request,
       "field 'apply'"},
      {R"({"op":"reconcile","sweep":"sw","stale_after_s":-1})", error_code::bad_request,
       "field 'stale_after_s'"},
      {R"({"op":"reconcile","sweep":"sw","dry":true})", error_code::bad_request,
       "unknown field 'dry'"},
  });
}

TEST(ParseRequest, UnknownFieldsAreRefusedByName) {
  expect_refused({
      {R"({"op":"hello","verbose":true})", error_code::bad_request,
       "unknown field 'verbose' for op 'hello'"},
      {R"({"op":"register","run":"r1","heartbeat_timeout":600})", error_code::bad_request,
       "unknown field 'heartbeat_timeout'"},
      {R"({"op":"heartbeat","run":"r1","pid":1234})", error_code::bad_request,
       "unknown field 'pid'"},
      {R"({"op":"complete","run":"r1","error":"x"})", error_code::bad_request,
       "unknown field 'error'"},
      {R"({"op":"fail","run":"r1","error":"x","objective":1})", error_code::bad_request,
       "unknown field 'objective'"},
      {R"({"op":"status","run":"r1"})", error_code::bad_request, "unknown field 'run'"},
      {R"({"op":"start","run":"r1","progress":1})", error_code::bad_request,
       "unknown field 'progress'"},
      {R"({"op":"list","run":"r1"})", error_code::bad_request, "unknown field 'run'"},
  });
}

TEST(ParseRequest, RunIdCharsetAndLength) {
  const std::string max_id(128, 'a');
  EXPECT_EQ(accepted<start_request>(R"({"op":"start","run":")" + max_id + "\"}").run, max_id);
  EXPECT_EQ(accepted<start_request>(R"({"op":"start","run":"A-z_0.9"})").run, "A-z_0.9");
  EXPECT_EQ(accepted<start_request>(R"({"op":"start","run":"x"})").run, "x");
  for (const std::string& bad :
       {std::string(129, 'a'), std::string(""), std::string("a/b"), std::string("a b"),
        std::string("r\\u00e9"), std::string("..\\/etc"), std::string("a\\n")}) {
    SCOPED_TRACE(bad);
    const error e = refused(R"({"op":"register","run":")" + bad + "\"}");
    EXPECT_EQ(e.code, error_code::bad_request);
    EXPECT_THAT(e.message, HasSubstr("field 'run'"));
    EXPECT_THAT(e.message, HasSubstr("128"));
  }
}

TEST(IsValidRunId, AcceptsTheWandbAlphabetOnly) {
  EXPECT_TRUE(is_valid_run_id("ab12cd34"));
  EXPECT_TRUE(is_valid_run_id("A.b_c-9"));
  EXPECT_TRUE(is_valid_run_id(std::string(128, 'z')));
  EXPECT_FALSE(is_valid_run_id(std::string(129, 'z')));
  EXPECT_FALSE(is_valid_run_id(""));
  EXPECT_FALSE(is_valid_run_id("a/b"));
  EXPECT_FALSE(is_valid_run_id("a:b"));
  EXPECT_FALSE(is_valid_run_id(std::string("a\0b", 3)));
  EXPECT_FALSE(is_valid_run_id("r\xc3\xa9"));
}

TEST(ParseRequest, NamesAreBoundedAndPrintable) {
  const std::string max_name(128, 's');
  EXPECT_EQ(accepted<list_request>(R"({"op":"list","sweep":")" + max_name + "\"}").sweep, max_name);
  EXPECT_EQ(accepted<register_params>(R"({"op":"register","run":"r1","entity":"my team"})").entity,
            "my team");
  expect_refused({
      {R"({"op":"register","run":"r1","sweep":""})", error_code::bad_request, "field 'sweep'"},
      {R"({"op":"register","run":"r1","sweep":")" + std::string(129, 's') + "\"}",
       error_code::bad_request, "field 'sweep'"},
      {R"({"op":"register","run":"r1","entity":"a/b"})", error_code::bad_request, "field 'entity'"},
      {R"({"op":"register","run":"r1","project":"a\nb"})", error_code::bad_request,
       "field 'project'"},
      {R"({"op":"observations","sweep":"s\u0000"})", error_code::bad_request, "field 'sweep'"},
      {R"({"op":"list","state":"zombie"})", error_code::bad_request, "field 'state'"},
      {R"({"op":"list","state":"Running"})", error_code::bad_request, "field 'state'"},
  });
}

TEST(ParseRequest, SuggestionUpTo64KiB) {
  // {"k":"…"} is 8 bytes plus the string.
  auto with_suggestion = [](std::size_t value_bytes) {
    return R"({"op":"register","run":"r1","suggestion":{"k":")" + std::string(value_bytes, 'v') +
           "\"}}";
  };
  const auto p = accepted<register_params>(with_suggestion(max_suggestion_bytes - 8));
  EXPECT_EQ(p.suggestion.text().size(), max_suggestion_bytes);
  const error e = refused(with_suggestion(max_suggestion_bytes - 7));
  EXPECT_EQ(e.code, error_code::bad_request);
  EXPECT_THAT(e.message, HasSubstr("field 'suggestion'"));
  EXPECT_THAT(e.message, HasSubstr("65536"));
  // Any JSON object is a suggestion, nested ones included.
  EXPECT_EQ(accepted<register_params>(
                R"({"op":"register","run":"r1","suggestion":{"a":{"b":[1,null,"c"]}}})")
                .suggestion.value()["a"]["b"][2],
            "c");
}

TEST(ParseRequest, OnlyTheFirstProblemIsReported) {
  const error e = refused(R"({"op":"register","run":"a/b","sweep":5,"watch_peer":"x"})");
  EXPECT_EQ(e.code, error_code::bad_request);
  EXPECT_THAT(e.message, HasSubstr("'run'"));
  EXPECT_THAT(e.message, ::testing::Not(HasSubstr("'sweep'")));
}

// ---------------------------------------------------------------------------------------------
// error text

TEST(TruncateUtf8, KeepsShortTextAndCutsOnCharacterBoundaries) {
  EXPECT_EQ(truncate_utf8("hello", 5), "hello");
  EXPECT_EQ(truncate_utf8("hello", 10), "hello");
  EXPECT_EQ(truncate_utf8("hello", 3), "hel");
  EXPECT_EQ(truncate_utf8("hello", 0), "");
  const std::string e_acute = "\xc3\xa9";        // 2 bytes
  const std::string euro = "\xe2\x82\xac";       // 3 bytes
  const std::string emoji = "\xf0\x9f\x98\x80";  // 4 bytes
  EXPECT_EQ(truncate_utf8("a" + e_acute, 2), "a");
  EXPECT_EQ(truncate_utf8("a" + e_acute, 3), "a" + e_acute);
  EXPECT_EQ(truncate_utf8(euro + euro, 5), euro);
  EXPECT_EQ(truncate_utf8(euro + euro, 4), euro);
  EXPECT_EQ(truncate_utf8(euro + euro, 3), euro);
  EXPECT_EQ(truncate_utf8(euro + euro, 2), "");
  EXPECT_EQ(truncate_utf8("ab" + emoji, 5), "ab");
  EXPECT_EQ(truncate_utf8("ab" + emoji, 6), "ab" + emoji);
  EXPECT_EQ(truncate_utf8(emoji, 1), "");
}

TEST(TruncateUtf8, AnyCutOfMixedTextStaysValidUtf8) {
  const std::string text = "x\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80y\xe2\x82\xac";
  for (std::size_t max = 0; max <= text.size(); ++max) {
    const std::string cut = truncate_utf8(text, max);
    EXPECT_LE(cut.size(), max);
    EXPECT_EQ(text.compare(0, cut.size(), cut), 0) << max;
    EXPECT_TRUE(is_utf8(cut)) << max;
    EXPECT_GT(cut.size() + 4, max) << "cut more than one character at " << max;
  }
}

TEST(ParseRequest, FailErrorIsTruncatedTo4KiBOnACharacterBoundary) {
  std::string euros;
  for (int i = 0; i < 2000; ++i) euros += "\xe2\x82\xac";  // 6000 bytes
  const auto p = accepted<fail_params>(R"({"op":"fail","run":"r1","error":")" + euros + "\"}");
  EXPECT_EQ(p.error.size(), 4095u);  // 1365 whole characters
  EXPECT_TRUE(is_utf8(p.error));
  EXPECT_EQ(euros.compare(0, p.error.size(), p.error), 0);
  const std::string ascii(max_error_bytes, 'e');
  EXPECT_EQ(accepted<fail_params>(R"({"op":"fail","run":"r1","error":")" + ascii + "\"}").error,
            ascii);
  EXPECT_EQ(
      accepted<fail_params>(R"({"op":"fail","run":"r1","error":")" + ascii + "E\"}").error.size(),
      max_error_bytes);
}

// ---------------------------------------------------------------------------------------------
// replies

TEST(ErrorReply, IsOneLineWithCodeAndMessage) {
  const std::string line = error_reply({error_code::conflict, "run 'r1' is\nalready \"done\""});
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  const json j = json::parse(line);
  EXPECT_EQ(j, json::parse(R"({"ok":false,"error":{"code":"conflict",)"
                           R"("message":"run 'r1' is\nalready \"done\""}})"));
}

TEST(ErrorReply, EveryCodeHasItsWireName) {
  const std::vector<std::pair<error_code, std::string>> codes = {
      {error_code::bad_json, "bad_json"},       {error_code::bad_request, "bad_request"},
      {error_code::unknown_op, "unknown_op"},   {error_code::unknown_run, "unknown_run"},
      {error_code::conflict, "conflict"},       {error_code::forbidden, "forbidden"},
      {error_code::too_large, "too_large"},     {error_code::busy, "busy"},
      {error_code::unavailable, "unavailable"}, {error_code::internal, "internal"}};
  for (const auto& [code, name] : codes) {
    EXPECT_EQ(json::parse(error_reply({code, "m"}))["error"]["code"], name);
  }
}

TEST(ErrorReply, SurvivesInvalidUtf8InTheMessage) {
  const std::string line = error_reply({error_code::internal, "disk \xff\xfe full"});
  const json j = json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr("disk"));
}

TEST(OkReply, AddsOkAndKeepsTheBodyOnOneLine) {
  const std::string line = ok_reply({{"run", "r1"}, {"state", "running"}, {"note", "a\nb"}});
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(json::parse(line),
            json::parse(R"({"ok":true,"run":"r1","state":"running","note":"a\nb"})"));
  EXPECT_EQ(json::parse(ok_reply(json::object())), json::parse(R"({"ok":true})"));
}

TEST(OkReply, NeverThrowsOnInvalidUtf8) {
  std::string line;
  EXPECT_NO_THROW(line = ok_reply({{"suggestion", "bad \xc3"}}));
  EXPECT_FALSE(json::parse(line, nullptr, false).is_discarded());
  EXPECT_TRUE(json::parse(line)["ok"].get<bool>());
}

}  // namespace
}  // namespace sweepd::core
