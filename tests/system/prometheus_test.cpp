// A real Prometheus server (Debian's package) scrapes the real sweepd every 200 ms; the test asks
// Prometheus's HTTP API for what its own requests caused. The alerting rules shipped in
// contrib/prometheus are checked and unit-tested with promtool.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "support/daemon_support.hpp"
#include "support/http_support.hpp"

namespace sweepd {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr const char* prometheus_binary = "/usr/bin/prometheus";
constexpr const char* promtool = "/usr/bin/promtool";

std::string url_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

void require_tool(const char* path) {
  ASSERT_TRUE(std::filesystem::exists(path))
      << path << " is missing: install the Debian package prometheus "
      << "(third_party/debian-packages.txt lists it)";
}

class PrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(require_tool(prometheus_binary));
    sweepd_port_ = test::free_tcp_port();
    daemon_.emplace(dir_,
                    "metrics: {listen: \"127.0.0.1:" + std::to_string(sweepd_port_) + "\"}\n");
    daemon_->start();

    prometheus_port_ = test::free_tcp_port();
    const std::string config = dir_.file("prometheus.yml");
    std::ofstream(config) << "global:\n"
                          << "  scrape_interval: 200ms\n"
                          << "  scrape_timeout: 200ms\n"
                          << "scrape_configs:\n"
                          << "  - job_name: sweepd\n"
                          << "    static_configs:\n"
                          << "      - targets: ['127.0.0.1:" << sweepd_port_ << "']\n";
    prometheus_.emplace(test::process::start(
        {prometheus_binary, "--config.file=" + config, "--storage.tsdb.path=" + dir_.file("tsdb"),
         "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port_), "--log.level=warn"},
        test::environment_with({})));
    // Prometheus says nothing when it is ready; its /-/ready does.
    const auto deadline = steady_clock::now() + seconds(60);
    while (test::http_get(prometheus_port_, "/-/ready").status != 200) {
      ASSERT_LT(steady_clock::now(), deadline)
          << "Prometheus never got ready: " << prometheus_->err();
      ASSERT_FALSE(prometheus_->wait_for(milliseconds(100))) << prometheus_->err();
    }
  }

  void TearDown() override {
    if (prometheus_ && prometheus_->running()) {
      prometheus_->send_signal(SIGTERM);
      if (!prometheus_->wait_for(seconds(10))) prometheus_->kill();
    }
  }

  /// An instant query's single sample value, or nullopt while Prometheus has none.
  std::optional<double> query(const std::string& promql) {
    const auto r = test::http_get(prometheus_port_, "/api/v1/query?query=" + url_encode(promql));
    if (r.status != 200) return std::nullopt;
    const json j = json::parse(r.body, nullptr, false);
    if (j.is_discarded() || j["status"] != "success") return std::nullopt;
    const json& result = j["data"]["result"];
    if (!result.is_array() || result.size() != 1) return std::nullopt;
    return std::stod(result[0]["value"][1].get<std::string>());
  }

  /// Asks until Prometheus has scraped `expected` (a new scrape every 200 ms), for at most 30 s.
  void expect_eventually(const std::string& promql, double expected) {
    const auto deadline = steady_clock::now() + seconds(30);
    std::optional<double> got;
    while (steady_clock::now() < deadline) {
      got = query(promql);
      if (got == expected) return;
      std::this_thread::sleep_for(milliseconds(100));  // the next scrape is the event; no hook
    }
    ADD_FAILURE() << promql << ": expected " << expected << ", Prometheus has "
                  << (got ? std::to_string(*got) : std::string("nothing"))
                  << "; prometheus: " << prometheus_->err();
  }

  test::temp_dir dir_;
  std::uint16_t sweepd_port_ = 0;
  std::uint16_t prometheus_port_ = 0;
  std::optional<test::sweepd_under_test> daemon_;
  std::optional<test::process> prometheus_;
};

TEST_F(PrometheusTest, PrometheusScrapesRunsAndTransitionsTheTestCaused) {
  expect_eventually(R"(up{job="sweepd"})", 1);
  for (const char* run : {"pa", "pb", "pc"}) {
    ASSERT_EQ(daemon_->call({{"op", "register"}, {"run", run}, {"sweep", "s"}})["ok"], true);
    ASSERT_EQ(daemon_->call({{"op", "start"}, {"run", run}})["ok"], true);
  }
  ASSERT_EQ(daemon_->call({{"op", "complete"}, {"run", "pa"}, {"objective", 1}})["ok"], true);
  ASSERT_EQ(daemon_->call({{"op", "complete"}, {"run", "pb"}, {"objective", 2}})["ok"], true);
  ASSERT_EQ(daemon_->call({{"op", "fail"}, {"run", "pc"}, {"error", "oom"}})["ok"], true);

  expect_eventually(R"(sweepd_runs{state="success"})", 2);
  expect_eventually(R"(sweepd_runs{state="failed"})", 1);
  expect_eventually(R"(sweepd_runs{state="running"})", 0);
  expect_eventually(R"(sweepd_transitions_total{state="success",reason="completed"})", 2);
  expect_eventually(R"(sweepd_transitions_total{state="failed",reason="worker_failed"})", 1);
  expect_eventually(R"(sum(sweepd_requests_total{op="register"}))", 3);
}

TEST(PrometheusRules, ShippedRulesPassPromtoolCheckRules) {
  ASSERT_NO_FATAL_FAILURE(require_tool(promtool));
  const auto r = test::run_command(
      {promtool, "check", "rules", SWEEPD_SOURCE_DIR "/contrib/prometheus/sweepd-rules.yml"},
      test::environment_with({}), seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::HasSubstr("SUCCESS"));
}

TEST(PrometheusRules, EachAlertFiresOnItsCaseAndOnlyThere) {
  ASSERT_NO_FATAL_FAILURE(require_tool(promtool));
  // promtool reads the rule files relative to the test file.
  const auto r = test::run_command(
      {promtool, "test", "rules", SWEEPD_SOURCE_DIR "/contrib/prometheus/sweepd-rules.test.yml"},
      test::environment_with({}), seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::HasSubstr("SUCCESS"));
}

}  // namespace
}  // namespace sweepd
