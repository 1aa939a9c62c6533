// How wandb.mode resolves at start and in --check-config: a mode, a key and where it came from,
// or the failure that keeps sweepd from starting with that config.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

#include "app/wandb_sink.hpp"

namespace sweepd::app {
namespace {

using mode = core::config::wandb_mode;
using ::testing::HasSubstr;
using ::testing::Not;

/// An environment holding only `vars` (no HOME: no ~/.netrc is read).
io::env_lookup environment(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

core::config with_mode(mode m) {
  core::config cfg;
  cfg.wandb.mode = m;
  return cfg;
}

TEST(WandbSetup, DisabledAndOfflineNeedNoKey) {
  for (const mode m : {mode::disabled, mode::offline}) {
    const auto setup = resolve_wandb(with_mode(m), environment({}));
    ASSERT_TRUE(setup) << setup.error();
    EXPECT_EQ(setup->mode, m);
    EXPECT_FALSE(setup->key);
  }
}

TEST(WandbSetup, AutoIsOnlineWithAKeyAndOfflineWithout) {
  const auto without = resolve_wandb(with_mode(mode::auto_), environment({}));
  ASSERT_TRUE(without) << without.error();
  EXPECT_EQ(without->mode, mode::offline);
  const auto with =
      resolve_wandb(with_mode(mode::auto_), environment({{"WANDB_API_KEY", "k-0123456789"}}));
  ASSERT_TRUE(with) << with.error();
  EXPECT_EQ(with->mode, mode::online);
  EXPECT_EQ(with->key, "k-0123456789");
  EXPECT_EQ(with->key_source, "$WANDB_API_KEY");
}

TEST(WandbSetup, OnlineWithoutAKeyOrWithABadBaseUrlIsAFailureThatSaysWhy) {
  const auto no_key = resolve_wandb(with_mode(mode::online), environment({}));
  ASSERT_FALSE(no_key);
  EXPECT_THAT(no_key.error().message, HasSubstr("wandb.mode is online but no W&B API key"));
  const auto bad_url = resolve_wandb(
      with_mode(mode::online),
      environment({{"WANDB_BASE_URL", "ftp://example"}, {"WANDB_API_KEY", "k-0123456789"}}));
  ASSERT_FALSE(bad_url);
  EXPECT_THAT(bad_url.error().message, HasSubstr("wandb.base_url 'ftp://example'"));
  EXPECT_THAT(bad_url.error().message, Not(HasSubstr("k-0123456789")));
}

}  // namespace
}  // namespace sweepd::app
