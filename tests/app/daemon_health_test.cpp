// /healthz of a daemon in this process, whose journal the test can make refuse writes (the real
// binary's disk cannot be made to fail as root without a namespace).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "app/daemon.hpp"
#include "io/client.hpp"
#include "support/http_support.hpp"
#include "support/process_support.hpp"

namespace sweepd::app {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

class DaemonHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core::config cfg;
    cfg.socket.path = dir_.file("s.sock");
    cfg.state.path = dir_.file("state.db");
    cfg.wandb.mode = core::config::wandb_mode::offline;
    cfg.metrics.listen = "127.0.0.1:0";
    daemon_ = std::make_unique<daemon>(cfg, "");
    auto err = daemon_->open();
    ASSERT_FALSE(err) << *err;
    const std::string address = daemon_->metrics_address();
    port_ = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    loop_ = std::thread([this] { daemon_->run(); });
    ASSERT_TRUE(client_.connect(dir_.file("s.sock"))) << client_.last_error();
  }

  void TearDown() override {
    client_.close();
    if (loop_.joinable()) {
      boost::asio::post(daemon_->io(), [this] { daemon_->stop(); });
      loop_.join();
    }
  }

  /// Runs `sql` on the journal's connection, on the loop's thread.
  void exec_on_journal(const char* sql) {
    std::promise<int> done;
    boost::asio::post(daemon_->io(), [&] {
      done.set_value(sqlite3_exec(daemon_->journal()->handle(), sql, nullptr, nullptr, nullptr));
    });
    ASSERT_EQ(done.get_future().get(), SQLITE_OK) << sql;
  }

  test::temp_dir dir_;
  std::unique_ptr<daemon> daemon_;
  std::uint16_t port_ = 0;
  std::thread loop_;
  io::client client_;
};

TEST_F(DaemonHealthTest, HealthzIs503WithTheReasonWhileCommitsFailAndOkOnceOneWorks) {
  EXPECT_EQ(test::http_get(port_, "/healthz").status, 200);
  ASSERT_EQ(client_.call({{"op", "register"}, {"run", "h1"}})->at("ok"), true);

  exec_on_journal("PRAGMA query_only=1");
  const auto refused = client_.call({{"op", "register"}, {"run", "h2"}});
  ASSERT_TRUE(refused);
  EXPECT_EQ((*refused)["error"]["code"], "internal");
  const auto sick = test::http_get(port_, "/healthz");
  EXPECT_EQ(sick.status, 503);
  EXPECT_THAT(sick.body, HasSubstr("journal: the last commit failed"));
  const auto scraped = test::http_get(port_, "/metrics").body;
  EXPECT_THAT(scraped, HasSubstr("sweepd_journal_commit_failures_total 1\n"));
  EXPECT_THAT(scraped, HasSubstr("sweepd_requests_total{op=\"register\",result=\"internal\"} 1\n"));

  exec_on_journal("PRAGMA query_only=0");
  ASSERT_EQ(client_.call({{"op", "register"}, {"run", "h3"}})->at("ok"), true);
  const auto well = test::http_get(port_, "/healthz");
  EXPECT_EQ(well.status, 200);
  EXPECT_EQ(well.body, "ok\n");
}

}  // namespace
}  // namespace sweepd::app
