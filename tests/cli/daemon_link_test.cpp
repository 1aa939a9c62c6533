// sweepctl exec's link to sweepd over a socketpair: the test plays sweepd on the other end and
// answers, closes, talks nonsense or stays silent. Time is passed to step() as a value, so a slow
// reply is one whose deadline the test steps past; every wait for bytes is bounded.

#include "cli/daemon_link.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/spool.hpp"
#include "support/process_support.hpp"

namespace sweepd::cli {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;
using ::testing::HasSubstr;

constexpr auto interval = 10s;
constexpr auto reply_timeout = 2s;

/// sweepd's end of one connection.
class daemon_end {
 public:
  explicit daemon_end(int fd) : fd_(fd) {}
  ~daemon_end() { ::close(fd_); }
  daemon_end(const daemon_end&) = delete;
  daemon_end& operator=(const daemon_end&) = delete;

  /// The next request line, parsed; null when none came within a second.
  json request() {
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        json j = json::parse(buffer_.substr(0, nl), nullptr, false);
        buffer_.erase(0, nl + 1);
        return j;
      }
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 1000) <= 0) return nullptr;
      char chunk[4096];
      const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
      if (n <= 0) return nullptr;
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  void send(std::string_view bytes) {
    ASSERT_EQ(::write(fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  void reply(const json& j) { send(j.dump() + "\n"); }
  /// Bytes written without blocking (the socket's buffer may be full).
  std::size_t send_some(std::string_view bytes) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  void hang_up() { ::shutdown(fd_, SHUT_RDWR); }

 private:
  int fd_;
  std::string buffer_;
};

core::register_params register_of(std::string run) {
  core::register_params p;
  p.run = std::move(run);
  p.sweep = "s1";
  p.watch_peer = true;
  return p;
}

json ok(std::string state) { return {{"ok", true}, {"run", "r1"}, {"state", std::move(state)}}; }

json refused(std::string code) {
  return {{"ok", false}, {"error", {{"code", std::move(code)}, {"message", "no"}}}};
}

class DaemonLink : public ::testing::Test {
 protected:
  DaemonLink() {
    link_.use_opener([this](std::string& why) { return open_pair(why); });
  }

  /// A new connection: the link's end, non-blocking, or -1; sweepd's end goes to daemons_.
  int open_pair(std::string& why) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      why = "socketpair failed";
      return -1;
    }
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    daemons_.push_back(std::make_unique<daemon_end>(fds[1]));
    return fds[0];
  }

  /// The sweepd end of the latest connection.
  daemon_end& daemon() { return *daemons_.back(); }

  /// Connects and answers the register and the start; the link is up at `now_`.
  void bring_up() {
    link_.step(now_, false);
    ASSERT_EQ(daemons_.size(), 1u);
    ASSERT_EQ(daemon().request().value("op", ""), "register");
    daemon().reply(ok("initializing"));
    link_.step(now_, true);
    ASSERT_EQ(daemon().request().value("op", ""), "start");
    daemon().reply(ok("running"));
    link_.step(now_, true);
    ASSERT_TRUE(link_.registered());
  }

  std::ostringstream err_;
  daemon_link link_{"/test/sweepd.sock", register_of("r1"), interval, reply_timeout, true, err_};
  std::vector<std::unique_ptr<daemon_end>> daemons_;
  steady::time_point now_ = steady::now();
};

TEST_F(DaemonLink, RegistersStartsThenSendsHeartbeatsEveryInterval) {
  link_.step(now_, false);
  ASSERT_EQ(daemons_.size(), 1u);
  EXPECT_EQ(daemon().request(),
            json({{"op", "register"}, {"run", "r1"}, {"sweep", "s1"}, {"watch_peer", true}}));
  EXPECT_EQ(link_.wake_at(), now_ + reply_timeout);  // waiting for the reply
  daemon().reply(ok("initializing"));
  link_.step(now_, true);
  EXPECT_EQ(daemon().request(), json({{"op", "start"}, {"run", "r1"}}));
  daemon().reply(ok("running"));
  link_.step(now_, true);
  EXPECT_TRUE(link_.registered());
  EXPECT_EQ(link_.wake_at(), now_ + interval);
  link_.step(now_ + interval, false);
  EXPECT_EQ(daemon().request(), json({{"op", "heartbeat"}, {"run", "r1"}}));
  daemon().reply(ok("running"));
  link_.step(now_ + interval, true);
  EXPECT_EQ(link_.wake_at(), now_ + 2 * interval);
  EXPECT_EQ(err_.str(), "");
}

TEST_F(DaemonLink, AClosedConnectionIsReportedOnceAndRetriedWithBackoff) {
  bring_up();
  daemon().hang_up();
  link_.step(now_ + 1s, true);
  EXPECT_EQ(link_.fd(), -1);
  EXPECT_THAT(err_.str(), HasSubstr("sweepd at /test/sweepd.sock closed the connection"));
  EXPECT_THAT(err_.str(), HasSubstr("the command keeps running"));
  // min(interval, 1 s) with a jitter of [0.5, 1].
  EXPECT_GE(link_.wake_at(), now_ + 1s + 500ms);
  EXPECT_LE(link_.wake_at(), now_ + 2s);
  link_.step(link_.wake_at(), false);
  ASSERT_EQ(daemons_.size(), 2u);
  EXPECT_EQ(daemon().request().value("op", ""), "register");
  daemon().reply(ok("running"));
  link_.step(now_ + 2s, true);
  EXPECT_EQ(daemon().request().value("op", ""), "start");
  daemon().reply(ok("running"));
  link_.step(now_ + 2s, true);
  EXPECT_THAT(err_.str(), HasSubstr("sweepd at /test/sweepd.sock is back; run r1 is running"));
}

TEST_F(DaemonLink, GarbageIsNotAReply) {
  link_.step(now_, false);
  ASSERT_FALSE(daemon().request().is_null());
  daemon().send("HTTP/1.1 400 Bad Request\r\n\r\n");
  link_.step(now_, true);
  EXPECT_EQ(link_.fd(), -1);
  EXPECT_THAT(err_.str(), HasSubstr("sent a reply sweepctl does not understand"));
  EXPECT_FALSE(link_.registered());
}

TEST_F(DaemonLink, AReplyToNoRequestDropsTheConnection) {
  bring_up();
  daemon().reply(ok("running"));
  link_.step(now_ + 1s, true);
  EXPECT_EQ(link_.fd(), -1);
  EXPECT_THAT(err_.str(), HasSubstr("a reply to no request"));
}

TEST_F(DaemonLink, ASlowReplyIsGivenUpOnAtItsDeadline) {
  link_.step(now_, false);
  ASSERT_FALSE(daemon().request().is_null());
  link_.step(now_ + reply_timeout - 1ms, false);
  EXPECT_NE(link_.fd(), -1);  // not late yet
  link_.step(now_ + reply_timeout, false);
  EXPECT_EQ(link_.fd(), -1);
  EXPECT_THAT(err_.str(), HasSubstr("no reply from sweepd at /test/sweepd.sock within 2 s"));
}

TEST_F(DaemonLink, AnOversizedReplyIsCutOff) {
  link_.step(now_, false);
  ASSERT_FALSE(daemon().request().is_null());
  const std::string block(std::size_t{64} * 1024, 'x');
  // Up to 2 MiB without a newline, read as it comes; the link gives up past 1 MiB.
  for (int i = 0; i < 32 && link_.fd() >= 0; ++i) {
    daemon().send_some(block);
    link_.step(now_, true);
  }
  EXPECT_EQ(link_.fd(), -1);
  EXPECT_THAT(err_.str(), HasSubstr("sent a reply longer than 1048576 bytes"));
}

TEST_F(DaemonLink, ARefusedRegisterEndsAllTalk) {
  link_.step(now_, false);
  ASSERT_FALSE(daemon().request().is_null());
  daemon().reply(refused("conflict"));
  link_.step(now_, true);
  EXPECT_EQ(link_.fd(), -1);
  EXPECT_EQ(link_.wake_at(), steady::time_point::max());
  EXPECT_THAT(err_.str(), HasSubstr("sweepd refused to register run r1: conflict: no"));
  link_.step(now_ + 1h, false);
  EXPECT_EQ(daemons_.size(), 1u);  // never connects again
}

TEST_F(DaemonLink, ATransientErrorIsRetried) {
  link_.step(now_, false);
  ASSERT_FALSE(daemon().request().is_null());
  daemon().reply(refused("busy"));
  link_.step(now_, true);
  EXPECT_EQ(link_.fd(), -1);
  EXPECT_THAT(err_.str(), HasSubstr("answered busy: no"));
  EXPECT_LT(link_.wake_at(), now_ + 2s);
}

TEST_F(DaemonLink, ATimeoutForGoodIsNoticed) {
  bring_up();
  link_.step(now_ + interval, false);
  ASSERT_EQ(daemon().request().value("op", ""), "heartbeat");
  daemon().reply(ok("timeout"));
  link_.step(now_ + interval, true);
  EXPECT_TRUE(link_.timed_out());
  EXPECT_THAT(err_.str(), HasSubstr("sweepd reports run r1 as timeout; the command keeps running"));
}

TEST_F(DaemonLink, FinishSendsWhatSweepdHasNotAcknowledgedThenTheReport) {
  link_.use_opener([this](std::string& why) {
    const int fd = open_pair(why);
    // The replies wait in the socket before the requests: the link reads one per request.
    daemon().reply(ok("initializing"));
    daemon().reply(ok("running"));
    daemon().reply(ok("success"));
    return fd;
  });
  test::temp_dir spool;
  core::complete_params report;
  report.run = "r1";
  report.objective = 0.93;
  EXPECT_TRUE(link_.finish(report, true, steady::now() + 5s, {spool.path(), ::getuid()}));
  ASSERT_EQ(daemons_.size(), 1u);
  EXPECT_EQ(daemon().request().value("op", ""), "register");
  EXPECT_EQ(daemon().request(), json({{"op", "start"}, {"run", "r1"}}));
  EXPECT_EQ(daemon().request(), json({{"op", "complete"}, {"run", "r1"}, {"objective", 0.93}}));
  EXPECT_EQ(err_.str(), "");
  EXPECT_TRUE(std::filesystem::is_empty(spool.path()));
}

TEST_F(DaemonLink, AReportSweepdDoesNotTakeIsSpooled) {
  link_.use_opener([](std::string& why) {
    why = "cannot connect to sweepd at /test/sweepd.sock: Connection refused";
    return -1;
  });
  test::temp_dir spool;
  const auto dir = std::filesystem::path(spool.path()) / "spool";
  EXPECT_FALSE(link_.finish(core::fail_params{"r1", "exit code 3"}, true, steady::now() + 200ms,
                            {dir, ::getuid()}));
  EXPECT_THAT(err_.str(), HasSubstr("could not record the end of run r1"));
  EXPECT_THAT(err_.str(), HasSubstr("spooled at " + (dir / "r1.json").string()));
  std::string problem;
  const auto entries = list_spool(dir, problem);
  ASSERT_EQ(entries.size(), 1u) << problem;
  ASSERT_TRUE(entries[0].record.has_value()) << entries[0].problem;
  EXPECT_EQ(entries[0].record->report,
            json({{"op", "fail"}, {"run", "r1"}, {"error", "exit code 3"}}));
  // Without watch_peer: the process it names is gone by the time the file is delivered.
  EXPECT_EQ(entries[0].record->register_request,
            json({{"op", "register"}, {"run", "r1"}, {"sweep", "s1"}}));
}

}  // namespace
}  // namespace sweepd::cli
