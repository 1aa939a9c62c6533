// Token hashing and the tokens file as sweepd reads it (OpenSSL EVP, constant-time compare).
#include "io/tokens.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "support/process_support.hpp"

namespace sweepd::io {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Sha256, MatchesTheStandardTestVectors) {
  EXPECT_EQ(core::to_hex(sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(core::to_hex(sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(RandomToken, Is43Base64UrlCharactersAndNeverRepeats) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string t = random_token();
    ASSERT_EQ(t.size(), 43u);
    EXPECT_EQ(
        t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        std::string::npos);
    EXPECT_TRUE(seen.insert(t).second);
  }
}

TEST(TokenStore, VerifiesTokensByTheirDigest) {
  test::temp_dir dir;
  const std::string path = dir.file("tokens");
  std::ofstream(path) << "# remote workers\nalice " << core::to_hex(sha256("tok-a")) << "\nbob "
                      << core::to_hex(sha256("tok-b")) << "\n";
  auto loaded = token_store::load(path);
  ASSERT_TRUE(loaded) << loaded.error();
  EXPECT_EQ(loaded->size(), 2u);
  EXPECT_EQ(loaded->verify("tok-a"), "alice");
  EXPECT_EQ(loaded->verify("tok-b"), "bob");
  EXPECT_FALSE(loaded->verify("tok-c"));
  EXPECT_FALSE(loaded->verify(""));
  EXPECT_FALSE(loaded->verify(core::to_hex(sha256("tok-a"))));  // the digest is no token
}

TEST(TokenStore, DigestOfAPrincipalTellsARotatedTokenFromTheSameOne) {
  const token_store before({{"alice", sha256("tok-a")}, {"bob", sha256("tok-b")}});
  const token_store after({{"alice", sha256("tok-a2")}, {"bob", sha256("tok-b")}});
  EXPECT_EQ(before.digest_of("bob"), after.digest_of("bob"));
  EXPECT_NE(before.digest_of("alice"), after.digest_of("alice"));
  EXPECT_EQ(after.digest_of("alice"), sha256("tok-a2"));
  EXPECT_FALSE(after.digest_of("carol"));
  EXPECT_TRUE(after.has_principal("alice"));
  EXPECT_FALSE(after.has_principal("carol"));
}

TEST(TokenStore, ProblemsNameTheFileAndLineAndNeverTheToken) {
  test::temp_dir dir;
  const std::string path = dir.file("tokens");
  std::ofstream(path) << "alice my-plain-token\n";
  auto loaded = token_store::load(path);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr(path + ":1: "));
  EXPECT_THAT(loaded.error().message, Not(HasSubstr("my-plain-token")));
  EXPECT_THAT(token_store::load(dir.file("missing")).error().message, HasSubstr("No such file"));
}

TEST(TokenStore, OversizedFileIsRefused) {
  test::temp_dir dir;
  const std::string path = dir.file("tokens");
  std::ofstream(path) << std::string(core::max_tokens_file_bytes + 10, '#');
  EXPECT_THAT(token_store::load(path).error().message, HasSubstr("larger than"));
}

}  // namespace
}  // namespace sweepd::io
