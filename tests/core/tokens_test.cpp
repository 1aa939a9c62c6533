// The pure parts of remote authentication: the tokens file and the per-address failure limiter.
#include "core/tokens.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string digest_a(64, 'a');
const std::string digest_b = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789ABCDEF";

TEST(TokensFile, ReadsPrincipalsAndDigestsSkippingCommentsAndBlankLines) {
  const auto f = parse_tokens_file("# workers\n\nalice " + digest_a + "  # gpu box\n\t bob\t" +
                                   digest_b + "\r\n");
  ASSERT_TRUE(f.errors.empty()) << f.errors.front().message;
  ASSERT_EQ(f.entries.size(), 2u);
  EXPECT_EQ(f.entries[0].principal, "alice");
  EXPECT_EQ(to_hex(f.entries[0].digest), digest_a);
  EXPECT_EQ(f.entries[1].principal, "bob");
  EXPECT_EQ(to_hex(f.entries[1].digest),
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
}

TEST(TokensFile, EmptyFileHasNoEntriesAndNoErrors) {
  const auto f = parse_tokens_file("");
  EXPECT_TRUE(f.entries.empty());
  EXPECT_TRUE(f.errors.empty());
}

TEST(TokensFile, EveryProblemNamesItsLine) {
  const auto f = parse_tokens_file("alice " + digest_a + "\n" +        // 1 ok
                                   "bob\n" +                           // 2 one field
                                   "carol " + digest_b + " extra\n" +  // 3 three fields
                                   "bad/name " + digest_b + "\n" +     // 4 principal
                                   "dave abc\n" +                      // 5 short digest
                                   "alice " + digest_b + "\n" +        // 6 twice
                                   "erin " + digest_a + "\n");         // 7 same token
  ASSERT_EQ(f.errors.size(), 6u);
  EXPECT_EQ(f.errors[0].line, 2u);
  EXPECT_THAT(f.errors[0].message, HasSubstr("got 1 fields"));
  EXPECT_EQ(f.errors[1].line, 3u);
  EXPECT_EQ(f.errors[2].line, 4u);
  EXPECT_THAT(f.errors[2].message, HasSubstr("[A-Za-z0-9._@-]"));
  EXPECT_EQ(f.errors[3].line, 5u);
  EXPECT_THAT(f.errors[3].message, HasSubstr("64 hex digits"));
  EXPECT_EQ(f.errors[4].line, 6u);
  EXPECT_THAT(f.errors[4].message, HasSubstr("listed twice"));
  EXPECT_EQ(f.errors[5].line, 7u);
  EXPECT_THAT(f.errors[5].message, HasSubstr("same token"));
}

TEST(TokensFile, ATokenPastedInsteadOfItsDigestIsNotEchoed) {
  const std::string token = "s3cr3t-t0ken-pasted-by-mistake-0123456789ab";
  const auto f = parse_tokens_file("alice " + token + "\n");
  ASSERT_EQ(f.errors.size(), 1u);
  EXPECT_THAT(f.errors[0].message, Not(HasSubstr(token)));
  EXPECT_THAT(f.errors[0].message, HasSubstr("never the token itself"));
}

TEST(TokensFile, DigestsWithNonHexCharactersAreRefused) {
  std::string bad = digest_a;
  bad[10] = 'g';
  EXPECT_EQ(parse_tokens_file("alice " + bad).errors.size(), 1u);
}

TEST(Principal, NamesAreBoundedAndPrintable) {
  EXPECT_TRUE(is_valid_principal("worker-01.gpu@lab_a"));
  EXPECT_FALSE(is_valid_principal(""));
  EXPECT_FALSE(is_valid_principal(std::string(65, 'a')));
  EXPECT_TRUE(is_valid_principal(std::string(64, 'a')));
  EXPECT_FALSE(is_valid_principal("a b"));
  EXPECT_FALSE(is_valid_principal("a:b"));
  EXPECT_FALSE(is_valid_principal("a\n"));
}

mono_time t(mono_clock::duration d) { return mono_time{} + d; }

TEST(FailureLimiter, BlocksAnAddressAfterMaxFailuresUntilTheWindowEnds) {
  failure_limiter limiter({3, 60s, 100});
  EXPECT_FALSE(limiter.blocked_for("10.0.0.1", t(0s)));
  limiter.failed("10.0.0.1", t(1s));
  limiter.failed("10.0.0.1", t(2s));
  EXPECT_FALSE(limiter.blocked_for("10.0.0.1", t(3s)));
  limiter.failed("10.0.0.1", t(3s));
  ASSERT_TRUE(limiter.blocked_for("10.0.0.1", t(3s)));
  EXPECT_EQ(*limiter.blocked_for("10.0.0.1", t(31s)), 30s);  // the window started at its first
  EXPECT_FALSE(limiter.blocked_for("10.0.0.2", t(3s)));      // other addresses are not held up
  EXPECT_FALSE(limiter.blocked_for("10.0.0.1", t(61s)));
  limiter.failed("10.0.0.1", t(62s));  // a new window: counted afresh
  EXPECT_FALSE(limiter.blocked_for("10.0.0.1", t(62s)));
}

TEST(FailureLimiter, SuccessForgetsTheFailures) {
  failure_limiter limiter({2, 60s, 100});
  limiter.failed("a", t(0s));
  limiter.succeeded("a");
  limiter.failed("a", t(1s));
  EXPECT_FALSE(limiter.blocked_for("a", t(1s)));
  EXPECT_EQ(limiter.tracked(), 1u);
}

TEST(FailureLimiter, TracksABoundedNumberOfAddresses) {
  failure_limiter limiter({1, 60s, 3});
  limiter.failed("a", t(0s));
  limiter.failed("b", t(1s));
  limiter.failed("c", t(2s));
  limiter.failed("d", t(3s));  // full: the oldest window ("a") is forgotten
  EXPECT_EQ(limiter.tracked(), 3u);
  EXPECT_FALSE(limiter.blocked_for("a", t(3s)));
  EXPECT_TRUE(limiter.blocked_for("d", t(3s)));
  limiter.failed("e", t(70s));  // expired ones go first
  EXPECT_EQ(limiter.tracked(), 1u);
}

}  // namespace
}  // namespace sweepd::core
