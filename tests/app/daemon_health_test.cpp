// /healthz of a daemon in this process, whose journal the test can make refuse writes (the real
// binary's disk cannot be made to fail as root without a namespace).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "app/app_harness.hpp"
#include "support/http_support.hpp"

namespace sweepd::app {
namespace {

using ::testing::HasSubstr;

class DaemonHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_.start();
    const std::string address = daemon_.get().metrics_address();
    port_ = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  }

  test::temp_dir dir_;
  test::daemon_in_process daemon_{dir_, "metrics: {listen: \"127.0.0.1:0\"}\n"};
  std::uint16_t port_ = 0;
};

TEST_F(DaemonHealthTest, HealthzIs503WithTheReasonWhileCommitsFailAndOkOnceOneWorks) {
  EXPECT_EQ(test::http_get(port_, "/healthz").status, 200);
  ASSERT_EQ(daemon_.call({{"op", "register"}, {"run", "h1"}})["ok"], true);

  daemon_.refuse_journal_writes(true);
  const auto refused = daemon_.call({{"op", "register"}, {"run", "h2"}});
  EXPECT_EQ(refused["error"]["code"], "internal");
  const auto sick = test::http_get(port_, "/healthz");
  EXPECT_EQ(sick.status, 503);
  EXPECT_THAT(sick.body, HasSubstr("journal: the last commit failed"));
  const auto scraped = test::http_get(port_, "/metrics").body;
  EXPECT_THAT(scraped, HasSubstr("sweepd_journal_commit_failures_total 1\n"));
  EXPECT_THAT(scraped, HasSubstr("sweepd_requests_total{op=\"register\",result=\"internal\"} 1\n"));

  daemon_.refuse_journal_writes(false);
  ASSERT_EQ(daemon_.call({{"op", "register"}, {"run", "h3"}})["ok"], true);
  const auto well = test::http_get(port_, "/healthz");
  EXPECT_EQ(well.status, 200);
  EXPECT_EQ(well.body, "ok\n");
}

}  // namespace
}  // namespace sweepd::app
