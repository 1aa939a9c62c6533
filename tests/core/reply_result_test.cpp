// What the requests metric labels a reply and a line with: the result and the op.
#include <gtest/gtest.h>

#include "core/protocol.hpp"
#include "core/service.hpp"
#include "core_test_support.hpp"

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;

TEST(ReplyResult, EveryErrorReplyGivesItsCode) {
  for (error_code c : all_error_codes) {
    EXPECT_EQ(reply_result(error_reply({c, "a message with \"quotes\" and \"ok\":false}"})),
              to_string(c));
  }
}

TEST(ReplyResult, OkRepliesAndPagesAreOk) {
  EXPECT_EQ(reply_result(ok_reply({{"run", "a"}, {"state", "running"}})), "ok");
  // An ok body may itself hold an "error" field (a run's error text): still ok.
  EXPECT_EQ(reply_result(ok_reply({{"error", {{"code", "busy"}}}})), "ok");
  EXPECT_EQ(reply_result("{\"runs\":[],\"truncated\":false,\"ok\":true}\n"), "ok");
  EXPECT_EQ(reply_result(""), "ok");
}

TEST(ReplyResult, AnUnknownCodeCountsAsInternal) {
  EXPECT_EQ(reply_result(R"({"error":{"code":"made_up","message":"x"},"ok":false})"), "internal");
}

TEST(ServiceLastOp, NamesTheOpOrInvalid) {
  supervisor runs({});
  service svc(runs, "test", mono_time{}, nullptr);
  const caller who{1000, 1, false};
  svc.handle(R"({"op":"hello"})", who, at(1s));
  EXPECT_EQ(svc.last_op(), "hello");
  svc.handle(R"({"op":"register","run":"bad id!"})", who, at(1s));
  EXPECT_EQ(svc.last_op(), "register") << "a known op with refused fields keeps its name";
  svc.handle(R"({"op":"frobnicate"})", who, at(1s));
  EXPECT_EQ(svc.last_op(), "invalid") << "a client-chosen op name never becomes a label";
  svc.handle("not json", who, at(1s));
  EXPECT_EQ(svc.last_op(), "invalid");
  svc.handle(R"({"no":"op"})", who, at(1s));
  EXPECT_EQ(svc.last_op(), "invalid");
}

TEST(OpNames, ListsEveryOpOnce) {
  const auto names = op_names();
  EXPECT_EQ(names.size(), 12u);
  EXPECT_EQ(std::count(names.begin(), names.end(), "register"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "reconcile"), 1);
}

}  // namespace
}  // namespace sweepd::core
