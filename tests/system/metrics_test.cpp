// The metrics endpoint of the real sweepd: what a scrape shows after requests the test makes,
// checked by promtool (the Prometheus project's own linter), /healthz, and what is refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "io/posix.hpp"
#include "support/daemon_support.hpp"
#include "support/http_support.hpp"

namespace sweepd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* promtool = "/usr/bin/promtool";

/// sweepd with metrics on a port chosen for it.
class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = test::free_tcp_port();
    daemon_.emplace(dir_, "metrics: {listen: \"127.0.0.1:" + std::to_string(port_) + "\"}\n");
    daemon_->start();
  }

  std::string scrape() {
    const auto r = test::http_get(port_, "/metrics");
    EXPECT_EQ(r.status, 200) << r.head;
    return r.body;
  }

  json ok(const json& request) {
    json reply = daemon_->call(request);
    EXPECT_EQ(reply["ok"], true) << request.dump() << " -> " << reply.dump();
    return reply;
  }

  /// The value of the sample line that starts with `series` ("name{labels}"), or nullopt.
  static std::optional<double> value_of(const std::string& body, const std::string& series) {
    std::istringstream lines(body);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return std::nullopt;
  }

  test::temp_dir dir_;
  std::uint16_t port_ = 0;
  std::optional<test::sweepd_under_test> daemon_;
};

TEST_F(MetricsTest, AScrapeShowsRunsTransitionsAndRequestsTheTestCaused) {
  ok({{"op", "register"}, {"run", "m-ok"}, {"sweep", "s1"}, {"suggestion", {{"lr", 0.5}}}});
  ok({{"op", "start"}, {"run", "m-ok"}});
  ok({{"op", "complete"}, {"run", "m-ok"}, {"objective", 0.9}});
  ok({{"op", "register"}, {"run", "m-bad"}, {"sweep", "s1"}});
  ok({{"op", "fail"}, {"run", "m-bad"}, {"error", "SECRET-ERROR-TEXT"}});
  EXPECT_EQ(daemon_->call({{"op", "complete"}, {"run", "m-bad"}})["error"]["code"], "conflict");
  EXPECT_EQ(daemon_->call({{"op", "made_up_op"}})["error"]["code"], "unknown_op");

  const std::string body = scrape();
  EXPECT_EQ(value_of(body, R"(sweepd_runs{state="success"})"), 1) << body;
  EXPECT_EQ(value_of(body, R"(sweepd_runs{state="failed"})"), 1);
  EXPECT_EQ(value_of(body, R"(sweepd_runs{state="running"})"), 0);
  EXPECT_EQ(value_of(body, R"(sweepd_transitions_total{state="success",reason="completed"})"), 1);
  EXPECT_EQ(value_of(body, R"(sweepd_transitions_total{state="initializing",reason="registered"})"),
            2);
  EXPECT_EQ(value_of(body, R"(sweepd_transitions_total{state="failed",reason="worker_failed"})"),
            1);
  EXPECT_EQ(value_of(body, R"(sweepd_requests_total{op="register",result="ok"})"), 2);
  EXPECT_EQ(value_of(body, R"(sweepd_requests_total{op="complete",result="conflict"})"), 1);
  EXPECT_EQ(value_of(body, R"(sweepd_requests_total{op="invalid",result="unknown_op"})"), 1);
  EXPECT_EQ(value_of(body, R"(sweepd_request_duration_seconds_count{op="register"})"), 2);
  EXPECT_EQ(value_of(body, "sweepd_journal_commit_duration_seconds_count"), 5);
  EXPECT_EQ(value_of(body, "sweepd_journal_commit_failures_total"), 0);
  EXPECT_EQ(value_of(body, "sweepd_connections"), 1);
  EXPECT_EQ(value_of(body, R"(sweepd_wandb_mode{mode="offline"})"), 1);
  // One write waits per run: a newer one supersedes an older unsent one.
  EXPECT_EQ(value_of(body, "sweepd_wandb_outbox_pending"), 2);
  EXPECT_EQ(value_of(body, "sweepd_wandb_outbox_dead"), 0);
  EXPECT_THAT(body, HasSubstr("sweepd_build_info{version=\""));
  EXPECT_GT(value_of(body, "process_resident_memory_bytes").value_or(0), 1e6);
  EXPECT_GT(value_of(body, "process_open_fds").value_or(0), 3);
  EXPECT_GT(value_of(body, "process_start_time_seconds").value_or(0), 1.7e9);
  EXPECT_TRUE(value_of(body, "process_cpu_seconds_total"));
  // Never a run id, a sweep, a suggestion or an error text; never an op a client made up.
  for (const char* secret : {"m-ok", "m-bad", "s1", "lr", "SECRET-ERROR-TEXT", "made_up_op"}) {
    EXPECT_THAT(body, Not(HasSubstr(secret)));
  }
}

/// Sends `lines` in one write on one connection and reads a reply per line (bounded in time).
std::vector<json> pipelined(const std::string& socket_path, const std::vector<json>& lines) {
  std::vector<json> replies;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    ADD_FAILURE() << "connect: " << sweepd::io::errno_text(errno);
    return replies;
  }
  std::string out;
  for (const json& l : lines) out += l.dump() + "\n";
  if (::write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
    ADD_FAILURE() << "short write";
  }
  std::string in;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (replies.size() < lines.size() && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
    for (std::size_t nl; (nl = in.find('\n')) != std::string::npos; in.erase(0, nl + 1)) {
      replies.push_back(json::parse(in.substr(0, nl)));
    }
  }
  ::close(fd);
  EXPECT_EQ(replies.size(), lines.size()) << "replies missing after 10 s";
  return replies;
}

TEST_F(MetricsTest, PipelinedChangesShareACommitAndTheConnectionReadsItsOwnWrites) {
  // One write: changes of three runs, then a read and a second change of a run already in the
  // batch (both must wait for it), then a heartbeat of a run registered in the same write.
  const std::vector<json> lines = {
      {{"op", "register"}, {"run", "p-a"}},
      {{"op", "register"}, {"run", "p-b"}},
      {{"op", "register"}, {"run", "p-c"}},
      {{"op", "show"}, {"run", "p-a"}},
      {{"op", "start"}, {"run", "p-a"}},
      {{"op", "heartbeat"}, {"run", "p-a"}},
      {{"op", "start"}, {"run", "p-b"}},
      {{"op", "complete"}, {"run", "p-a"}, {"objective", 1.5}},
  };
  const std::vector<json> replies = pipelined(daemon_->socket_path(), lines);
  ASSERT_EQ(replies.size(), lines.size());
  for (std::size_t i = 0; i < replies.size(); ++i) {
    EXPECT_EQ(replies[i]["ok"], true) << i << ": " << replies[i].dump();
  }
  EXPECT_EQ(replies[0]["run"], "p-a");  // in the order sent
  EXPECT_EQ(replies[2]["run"], "p-c");
  EXPECT_EQ(replies[3]["run"]["state"], "initializing") << replies[3].dump();
  EXPECT_EQ(replies[4]["state"], "running");
  EXPECT_EQ(replies[5]["state"], "running");
  EXPECT_EQ(replies[6]["state"], "running");
  EXPECT_EQ(replies[7]["state"], "success");

  const std::string body = scrape();
  EXPECT_EQ(value_of(body, R"(sweepd_transitions_total{state="initializing",reason="registered"})"),
            3)
      << body;
  // The three registers in one commit (the show waits for it); the start of p-a in the next (the
  // heartbeat, a read of it, waits for that one); the start of p-b and the complete of p-a in a
  // third. Six transitions, three commits.
  EXPECT_EQ(value_of(body, "sweepd_journal_commit_duration_seconds_count"), 3);
}

TEST_F(MetricsTest, ALiveScrapePassesPromtoolCheckMetrics) {
  ASSERT_TRUE(std::filesystem::exists(promtool))
      << "promtool is missing: install the Debian package prometheus "
         "(third_party/debian-packages.txt)";
  ok({{"op", "register"}, {"run", "p1"}, {"heartbeat_timeout_s", 0.05}});
  daemon_->wait_for_state("p1", "timeout");
  ok({{"op", "status"}});
  const std::string file = dir_.file("scrape.txt");
  std::ofstream(file) << scrape();
  const auto r =
      test::run_command({"/bin/sh", "-c", std::string(promtool) + " check metrics < " + file},
                        test::environment_with({}), std::chrono::seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out + r.err, "") << "promtool lints nothing";
}

TEST_F(MetricsTest, ExpiryLagIsCountedForEachTimedOutRun) {
  ok({{"op", "register"}, {"run", "late1"}, {"heartbeat_timeout_s", 0.05}});
  ok({{"op", "register"}, {"run", "late2"}, {"heartbeat_timeout_s", 0.05}});
  daemon_->wait_for_state("late1", "timeout");
  daemon_->wait_for_state("late2", "timeout");
  const std::string body = scrape();
  EXPECT_EQ(value_of(body, "sweepd_expiry_lag_seconds_count"), 2) << body;
  // Marked within a second of the deadline (one timer at the earliest deadline).
  EXPECT_EQ(value_of(body, R"(sweepd_expiry_lag_seconds_bucket{le="1"})"), 2);
  EXPECT_EQ(
      value_of(body, R"(sweepd_transitions_total{state="timeout",reason="heartbeat_timeout"})"), 2);
}

TEST_F(MetricsTest, HealthzIsOkWhileTheJournalIsWritable) {
  const auto r = test::http_get(port_, "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
}

TEST_F(MetricsTest, OnlyGetOnTheTwoPathsIsServed) {
  EXPECT_EQ(test::http_request(port_, "HEAD", "/metrics").status, 405);
  EXPECT_EQ(test::http_request(port_, "POST", "/metrics").status, 405);
  EXPECT_EQ(test::http_request(port_, "DELETE", "/healthz").status, 405);
  EXPECT_EQ(test::http_get(port_, "/").status, 404);
  EXPECT_EQ(test::http_get(port_, "/debug/pprof").status, 404);
  // The daemon still serves its socket and its metrics.
  ok({{"op", "hello"}});
  EXPECT_EQ(test::http_get(port_, "/metrics").status, 200);
}

TEST(MetricsConfig, AnAddressInUseStopsStartupWithTheAddressNamed) {
  test::temp_dir dir;
  // Hold a port, then ask sweepd for it.
  const std::uint16_t port = test::free_tcp_port();
  test::sweepd_under_test first(dir,
                                "metrics: {listen: \"127.0.0.1:" + std::to_string(port) + "\"}\n");
  first.start();
  test::temp_dir other;
  test::sweepd_under_test second(other,
                                 "metrics: {listen: \"127.0.0.1:" + std::to_string(port) + "\"}\n");
  auto p = test::process::start({SWEEPD_BINARY, "--config", second.config_path()});
  EXPECT_EQ(p.wait_for(std::chrono::seconds(10)), 1) << p.err();
  EXPECT_THAT(p.err(), HasSubstr("127.0.0.1:" + std::to_string(port)));
  EXPECT_FALSE(std::filesystem::exists(second.socket_path()))
      << "the control socket is removed when startup fails";
}

}  // namespace
}  // namespace sweepd
