#include "io/credentials.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace sweepd::io {
namespace {

namespace fs = std::filesystem;

constexpr const char* secret = "s3cr3t-key-0123456789abcdef0123456789abcdef";

class Credentials : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "sweepd-cred-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    home_ = dir_ / "home";
    fs::create_directories(home_);
    vars_["HOME"] = home_.string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_ / "locked", fs::perms::owner_all, ec);
    fs::remove_all(dir_, ec);
  }

  fs::path write(const fs::path& path, const std::string& content) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }
  env_lookup env() const {
    return [vars = vars_](std::string_view name) -> std::optional<std::string> {
      auto it = vars.find(std::string(name));
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  }
  api_key_result find(const std::string& key_file = {},
                      const std::string& base = "https://api.wandb.ai") {
    auto u = parse_url(base);
    EXPECT_TRUE(u.has_value()) << base;
    return find_api_key(key_file, u.value_or(url{}), env());
  }
  // The parts of a lookup the tests check, each empty when the lookup did not give it.
  static std::optional<std::string> key_of(const api_key_result& r) {
    if (!r || !*r) return std::nullopt;
    return (*r)->key;
  }
  static std::string source_of(const api_key_result& r) { return r && *r ? (*r)->source : ""; }
  static std::string failure_of(const api_key_result& r) { return r ? "" : r.error().message; }

  fs::path dir_;
  fs::path home_;
  std::map<std::string, std::string> vars_;
};

TEST_F(Credentials, NoSourceGivesNoKeyAndNoError) {
  auto r = find();
  EXPECT_FALSE(key_of(r).has_value());
  EXPECT_EQ(failure_of(r), "");
}

TEST_F(Credentials, EnvironmentVariableComesFirst) {
  vars_["WANDB_API_KEY"] = "from-env";
  const auto file = write(dir_ / "key", "from-file\n");
  write(dir_ / "creds" / "wandb-api-key", "from-systemd");
  vars_["CREDENTIALS_DIRECTORY"] = (dir_ / "creds").string();
  write(home_ / ".netrc", "machine api.wandb.ai login user password from-netrc\n");
  auto r = find(file.string());
  EXPECT_EQ(key_of(r), "from-env");
  EXPECT_EQ(source_of(r), "$WANDB_API_KEY");
  EXPECT_EQ(failure_of(r), "");
}

TEST_F(Credentials, BlankEnvironmentVariableIsIgnored) {
  vars_["WANDB_API_KEY"] = "  ";
  write(home_ / ".netrc", "machine api.wandb.ai login user password from-netrc\n");
  EXPECT_EQ(key_of(find()), "from-netrc");
}

TEST_F(Credentials, KeyFileComesSecondAndIsTrimmed) {
  const auto file = write(dir_ / "key", "  from-file \n\n");
  write(dir_ / "creds" / "wandb-api-key", "from-systemd");
  vars_["CREDENTIALS_DIRECTORY"] = (dir_ / "creds").string();
  write(home_ / ".netrc", "machine api.wandb.ai login user password from-netrc\n");
  auto r = find(file.string());
  EXPECT_EQ(key_of(r), "from-file");
  EXPECT_EQ(source_of(r), file.string() + " (wandb.api_key_file)");
  EXPECT_EQ(failure_of(r), "");
}

TEST_F(Credentials, SystemdCredentialComesThird) {
  write(dir_ / "creds" / "wandb-api-key", "from-systemd\n");
  vars_["CREDENTIALS_DIRECTORY"] = (dir_ / "creds").string();
  write(home_ / ".netrc", "machine api.wandb.ai login user password from-netrc\n");
  auto r = find();
  EXPECT_EQ(key_of(r), "from-systemd");
  EXPECT_EQ(source_of(r), "systemd credential wandb-api-key");
}

TEST_F(Credentials, CredentialsDirectoryWithoutTheKeyFallsThroughToNetrc) {
  fs::create_directories(dir_ / "creds");
  vars_["CREDENTIALS_DIRECTORY"] = (dir_ / "creds").string();
  write(home_ / ".netrc", "machine api.wandb.ai login user password from-netrc\n");
  auto r = find();
  EXPECT_EQ(key_of(r), "from-netrc");
  EXPECT_EQ(source_of(r), (home_ / ".netrc").string() + " (machine api.wandb.ai)");
  EXPECT_EQ(failure_of(r), "");
}

TEST_F(Credentials, AnEmptySystemdCredentialMeansNoKeyAndFallsThrough) {
  // The packaged unit's SetCredential=wandb-api-key: default when no key file was installed.
  write(dir_ / "creds" / "wandb-api-key", "");
  vars_["CREDENTIALS_DIRECTORY"] = (dir_ / "creds").string();
  EXPECT_EQ(key_of(find()), std::nullopt);
  EXPECT_EQ(failure_of(find()), "");
  write(home_ / ".netrc", "machine api.wandb.ai login user password from-netrc\n");
  EXPECT_EQ(key_of(find()), "from-netrc");
}

TEST_F(Credentials, NetrcVariableReplacesHome) {
  write(home_ / ".netrc", "machine api.wandb.ai password from-home\n");
  const auto other = write(dir_ / "other-netrc", "machine api.wandb.ai password from-netrc-var\n");
  vars_["NETRC"] = other.string();
  auto r = find();
  EXPECT_EQ(key_of(r), "from-netrc-var");
  EXPECT_EQ(source_of(r), other.string() + " (machine api.wandb.ai)");
}

TEST_F(Credentials, UnderscoreNetrcIsTheFallback) {
  write(home_ / "_netrc", "machine api.wandb.ai password from-underscore\n");
  EXPECT_EQ(key_of(find()), "from-underscore");
}

TEST_F(Credentials, NetrcMachineCarriesANonDefaultPort) {
  write(home_ / ".netrc",
        "machine wandb.local password without-port\n"
        "machine wandb.local:8080 password with-port\n");
  EXPECT_EQ(key_of(find({}, "http://wandb.local:8080")), "with-port");
  EXPECT_EQ(key_of(find({}, "http://wandb.local")), "without-port");
  // An explicit default port is the same URL as none.
  EXPECT_EQ(key_of(find({}, "https://WANDB.local:443/")), "without-port");
}

TEST_F(Credentials, NetrcDefaultEntryIsUsedWhenNoMachineMatches) {
  write(home_ / ".netrc",
        "machine other.example login a password other\n"
        "default login user password from-default\n");
  auto r = find();
  EXPECT_EQ(key_of(r), "from-default");
  EXPECT_EQ(source_of(r), (home_ / ".netrc").string() + " (default)");
}

TEST_F(Credentials, NetrcMachineEntryBeatsDefault) {
  write(home_ / ".netrc",
        "default password from-default\n"
        "machine api.wandb.ai password from-machine\n");
  EXPECT_EQ(key_of(find()), "from-machine");
}

TEST_F(Credentials, NetrcCommentsAndSeveralEntriesOnOneLine) {
  write(home_ / ".netrc",
        "# machine api.wandb.ai password commented-out\n"
        "machine a.example login x password y machine api.wandb.ai login user password right "
        "# trailing comment password wrong\n"
        "\tmachine b.example\tpassword z\n");
  auto r = find();
  EXPECT_EQ(key_of(r), "right");
  EXPECT_EQ(failure_of(r), "");
}

TEST_F(Credentials, NetrcQuotedValuesAndMacros) {
  write(home_ / ".netrc",
        "macdef init\n"
        "machine api.wandb.ai password inside-macro\n"
        "\n"
        "machine api.wandb.ai login \"the user\" password \"#quoted\\\"key\"\n");
  EXPECT_EQ(key_of(find()), "#quoted\"key");
}

TEST_F(Credentials, NetrcWithoutMatchingEntryGivesNoKeyAndNoError) {
  write(home_ / ".netrc", "machine other.example password other\n");
  auto r = find();
  EXPECT_FALSE(key_of(r).has_value());
  EXPECT_EQ(failure_of(r), "");
}

TEST_F(Credentials, NetrcEntryWithoutPasswordIsAnError) {
  write(home_ / ".netrc", "machine api.wandb.ai login user\n");
  auto r = find();
  EXPECT_FALSE(key_of(r).has_value());
  EXPECT_NE(failure_of(r).find((home_ / ".netrc").string()), std::string::npos) << failure_of(r);
  EXPECT_NE(failure_of(r).find("machine api.wandb.ai"), std::string::npos) << failure_of(r);
}

TEST_F(Credentials, EmptyKeyFileIsAnErrorNamingTheFile) {
  const auto file = write(dir_ / "key", " \n\t\n");
  auto r = find(file.string());
  EXPECT_FALSE(key_of(r).has_value());
  EXPECT_NE(failure_of(r).find(file.string()), std::string::npos) << failure_of(r);
  EXPECT_NE(failure_of(r).find("empty"), std::string::npos) << failure_of(r);
}

TEST_F(Credentials, MissingKeyFileIsAnError) {
  const auto file = dir_ / "missing";
  auto r = find(file.string());
  EXPECT_FALSE(key_of(r).has_value());
  EXPECT_NE(failure_of(r).find(file.string()), std::string::npos) << failure_of(r);
}

TEST_F(Credentials, UnreadableKeyFileNamesTheFileNeverTheKey) {
  // A directory cannot be read as a file, even by root.
  const auto directory = dir_ / "key-dir";
  fs::create_directories(directory);
  auto r = find(directory.string());
  EXPECT_FALSE(key_of(r).has_value());
  EXPECT_NE(failure_of(r).find(directory.string()), std::string::npos) << failure_of(r);

  if (::geteuid() != 0) {
    const auto locked = write(dir_ / "locked" / "key", secret);
    fs::permissions(dir_ / "locked", fs::perms::none);
    auto locked_result = find(locked.string());
    EXPECT_FALSE(key_of(locked_result).has_value());
    EXPECT_NE(failure_of(locked_result).find(locked.string()), std::string::npos)
        << failure_of(locked_result);
    EXPECT_EQ(failure_of(locked_result).find(secret), std::string::npos);
  }
}

TEST_F(Credentials, KeyFileWithSeveralWordsIsAnErrorWithoutTheKey) {
  const auto file = write(dir_ / "key", std::string("WANDB_API_KEY: ") + secret + "\n");
  auto r = find(file.string());
  EXPECT_FALSE(key_of(r).has_value());
  EXPECT_NE(failure_of(r).find(file.string()), std::string::npos) << failure_of(r);
  EXPECT_EQ(failure_of(r).find(secret), std::string::npos) << failure_of(r);
}

TEST_F(Credentials, BrokenKeyFileDoesNotFallBackToLaterSources) {
  const auto file = write(dir_ / "key", "");
  write(home_ / ".netrc", "machine api.wandb.ai password from-netrc\n");
  auto r = find(file.string());
  EXPECT_FALSE(key_of(r).has_value());
  EXPECT_NE(failure_of(r), "");
}

TEST_F(Credentials, SourcesNeverContainTheKey) {
  vars_["WANDB_API_KEY"] = secret;
  EXPECT_EQ(source_of(find()).find(secret), std::string::npos);
  vars_.erase("WANDB_API_KEY");
  write(home_ / ".netrc", std::string("machine api.wandb.ai password ") + secret + "\n");
  auto r = find();
  EXPECT_EQ(key_of(r), secret);
  EXPECT_EQ(source_of(r).find(secret), std::string::npos);
}

TEST_F(Credentials, BaseUrlFromEnvironmentWinsOverConfig) {
  EXPECT_EQ(base_url_from("https://wandb.example", env()), "https://wandb.example");
  vars_["WANDB_BASE_URL"] = "http://127.0.0.1:8080/";
  EXPECT_EQ(base_url_from("https://wandb.example", env()), "http://127.0.0.1:8080/");
  vars_["WANDB_BASE_URL"] = "";
  EXPECT_EQ(base_url_from("https://wandb.example", env()), "https://wandb.example");
  EXPECT_EQ(base_url_from("", env()), "https://api.wandb.ai");
}

TEST_F(Credentials, ProcessEnvironmentReadsTheRealEnvironment) {
  // One test at a time on one thread: nothing reads the environment concurrently.
  ::setenv("SWEEPD_CREDENTIALS_TEST", "value", 1);  // NOLINT(concurrency-mt-unsafe)
  auto env = process_environment();
  EXPECT_EQ(env("SWEEPD_CREDENTIALS_TEST"), "value");
  ::unsetenv("SWEEPD_CREDENTIALS_TEST");  // NOLINT(concurrency-mt-unsafe)
  EXPECT_EQ(env("SWEEPD_CREDENTIALS_TEST"), std::nullopt);
}

}  // namespace
}  // namespace sweepd::io
