// Remote callers are principals: ownership of runs and sweeps compares callers (a uid or a
// principal), never a uid against a principal's run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/core_test_support.hpp"
#include "core/protocol.hpp"
#include "core/service.hpp"
#include "core/supervisor.hpp"

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

caller remote(std::string_view principal, bool admin = false) {
  caller who(static_cast<std::uint32_t>(-1), 0, admin);
  who.principal = principal;
  return who;
}

class PrincipalTest : public ::testing::Test {
 protected:
  outcome register_run(const std::string& run, const caller& who, const char* sweep = nullptr) {
    register_params p;
    p.run = run;
    if (sweep != nullptr) p.sweep = sweep;
    return sup.register_run(p, who, at(1s));
  }

  supervisor sup{supervisor_limits{}};
  const caller alice = remote("alice");
  const caller bob = remote("bob");
  const caller local{1000, 42, false};
};

TEST_F(PrincipalTest, APrincipalOwnsWhatItRegistered) {
  ASSERT_TRUE(register_run("r1", alice).ok());
  const run_record& r = *sup.find("r1");
  EXPECT_EQ(r.owner_principal, "alice");
  EXPECT_EQ(caller_name(r.owner_uid, r.owner_principal), "token:alice");
  EXPECT_TRUE(sup.start("r1", alice, at(2s)).ok());
  EXPECT_TRUE(sup.complete({"r1", 0.5, 1.0}, alice, at(3s)).ok());
  EXPECT_EQ(sup.find("r1")->state, run_state::success);
}

TEST_F(PrincipalTest, AnotherPrincipalMayNotCompleteOrFailTheRun) {
  ASSERT_TRUE(register_run("r1", alice).ok());
  const outcome o = sup.complete({"r1", 0.9, 1.0}, bob, at(2s));
  EXPECT_EQ(o.err.code, error_code::forbidden);
  EXPECT_THAT(o.err.message, HasSubstr("belongs to token:alice; token:bob may not"));
  EXPECT_EQ(sup.fail({"r1", "no"}, bob, at(2s)).err.code, error_code::forbidden);
  EXPECT_EQ(register_run("r1", bob).err.code, error_code::forbidden);
  EXPECT_EQ(sup.find("r1")->state, run_state::initializing);
}

TEST_F(PrincipalTest, AUidNeverMatchesAPrincipalsRunAndTheOtherWayRound) {
  // The remote owner's uid field holds the "no uid" value: a local caller with that uid (an
  // unknown peer) must not take the run over.
  ASSERT_TRUE(register_run("r1", alice).ok());
  const caller nobody{static_cast<std::uint32_t>(-1), 1, false};
  EXPECT_EQ(sup.start("r1", nobody, at(2s)).err.code, error_code::forbidden);
  EXPECT_EQ(sup.start("r1", local, at(2s)).err.code, error_code::forbidden);
  ASSERT_TRUE(register_run("r2", local).ok());
  EXPECT_EQ(sup.start("r2", alice, at(2s)).err.code, error_code::forbidden);
}

TEST_F(PrincipalTest, AdminPrincipalsMayChangeAnyRun) {
  ASSERT_TRUE(register_run("r1", alice).ok());
  ASSERT_TRUE(register_run("r2", local).ok());
  const caller ops = remote("ops", true);
  EXPECT_TRUE(sup.fail({"r1", "stopped by ops"}, ops, at(2s)).ok());
  EXPECT_TRUE(sup.fail({"r2", "stopped by ops"}, ops, at(2s)).ok());
}

TEST_F(PrincipalTest, SweepsBelongToThePrincipalOfTheirFirstRun) {
  ASSERT_TRUE(register_run("r1", alice, "s1").ok());
  ASSERT_TRUE(register_run("r2", alice, "s1").ok());
  const outcome o = register_run("r3", bob, "s1");
  EXPECT_EQ(o.err.code, error_code::forbidden);
  EXPECT_THAT(o.err.message, HasSubstr("sweep 's1' belongs to token:alice"));
  EXPECT_EQ(register_run("r4", local, "s1").err.code, error_code::forbidden);
  EXPECT_TRUE(sup.may_read(*sup.find("r2"), alice));
  EXPECT_FALSE(sup.may_read(*sup.find("r2"), bob));
}

TEST_F(PrincipalTest, ServiceRefusesWatchPeerRemotelyAndRecordsTheOwner) {
  service svc{sup, "1.0", at(0s).mono, nullptr};
  handled h = svc.handle(R"({"op":"register","run":"r1","watch_peer":true})", alice, at(1s));
  EXPECT_THAT(h.reply, HasSubstr("bad_request"));
  EXPECT_THAT(h.reply, HasSubstr("process watch needs the local socket"));
  EXPECT_FALSE(h.result.change);
  h = svc.handle(R"({"op":"register","run":"r1"})", alice, at(1s));
  ASSERT_TRUE(h.result.change);
  sup.apply(std::move(*h.result.change));
  h = svc.handle(R"({"op":"show","run":"r1"})", bob, at(2s));
  EXPECT_THAT(h.reply, HasSubstr(R"("owner":"token:alice")"));
  h = svc.handle(R"({"op":"list"})", local, at(2s));
  EXPECT_THAT(h.reply, HasSubstr(R"("owner":"token:alice")"));
  h = svc.handle(R"({"op":"reconcile","sweep":"s","apply":true})", bob, at(2s));
  EXPECT_THAT(h.reply, HasSubstr("token:bob may not apply reconcile"));
}

TEST(HelloToken, IsReadAndNeverEchoedWhenRefused) {
  const parse_result ok = parse_request(R"({"op":"hello","token":"abc"})");
  ASSERT_TRUE(ok.req);
  EXPECT_EQ(std::get<hello_request>(*ok.req).token, "abc");
  EXPECT_FALSE(std::get<hello_request>(*parse_request(R"({"op":"hello"})").req).token);
  const std::string long_token(max_token_bytes + 1, 'x');
  const parse_result too_long = parse_request(R"({"op":"hello","token":")" + long_token + "\"}");
  EXPECT_EQ(too_long.err.code, error_code::bad_request);
  EXPECT_THAT(too_long.err.message, Not(HasSubstr("xxxx")));
  EXPECT_EQ(parse_request(R"({"op":"hello","token":""})").err.code, error_code::bad_request);
  EXPECT_EQ(parse_request(R"({"op":"hello","token":7})").err.code, error_code::bad_request);
}

}  // namespace
}  // namespace sweepd::core
