#include "core/enum_print.hpp"

#include <gtest/gtest.h>

#include "core/config.hpp"
#include "core/errors.hpp"
#include "core/reconcile.hpp"
#include "core/run.hpp"

namespace sweepd::core {
namespace {

using ::testing::PrintToString;

TEST(EnumPrint, FailingAssertionsNameRunStatesAndReasons) {
  EXPECT_EQ(PrintToString(run_state::running), "running");
  EXPECT_EQ(PrintToString(run_state::timeout), "timeout");
  EXPECT_EQ(PrintToString(transition_reason::heartbeat_timeout), "heartbeat_timeout");
}

TEST(EnumPrint, FailingAssertionsNameErrorCodesModesAndActions) {
  EXPECT_EQ(PrintToString(error_code::unknown_run), "unknown_run");
  EXPECT_EQ(PrintToString(config::wandb_mode::offline), "offline");
  EXPECT_EQ(PrintToString(config::log_format::json), "json");
  EXPECT_EQ(PrintToString(reconcile_decision::action::repair),
            std::string(to_string(reconcile_decision::action::repair)));
}

TEST(EnumPrint, ContainersAndOptionalsPrintNamesToo) {
  EXPECT_EQ(PrintToString(std::vector<run_state>{run_state::success, run_state::failed}),
            "{ success, failed }");
  EXPECT_EQ(PrintToString(std::optional<run_state>(run_state::crashed)), "(crashed)");
}

}  // namespace
}  // namespace sweepd::core
