// sweepd under the systemd protocols it speaks, with the test in systemd's place: the watchdog
// (WATCHDOG=1 on $NOTIFY_SOCKET at half of $WATCHDOG_USEC, from the event loop) and socket
// activation (the listening socket passed as fd 3 with $LISTEN_FDS/$LISTEN_PID, which outlives
// the daemon). What systemd then does, restarting a unit whose pings stop, needs systemd as PID 1
// and is not tested here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

#include "io/posix.hpp"
#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

/// A launcher that runs sweepd with $WATCHDOG_PID (or $LISTEN_PID) set to sweepd's own pid, as
/// systemd sets it: the shell's pid is the one sweepd gets by exec.
std::vector<std::string> with_own_pid(const std::string& exports) {
  return {"/bin/sh", "-c", exports + " && exec \"$@\"", "sh"};
}

/// The process state letter from /proc/PID/stat ('T' when stopped).
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() ? '?' : text[close + 2];
}

TEST(Watchdog, PingsAtHalfTheIntervalAndStopsWhenTheLoopIsBlocked) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir, "", {"WATCHDOG_USEC=400000"});
  d.set_launcher(with_own_pid("export WATCHDOG_PID=$$"));
  d.start();
  // Every 200 ms: several within a second.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(d.notify().wait_for("WATCHDOG=1", seconds(2)))
        << "ping " << i << ": " << d.proc().err();
  }
  EXPECT_THAT(d.proc().err(), HasSubstr("systemd watchdog: 400 ms, pinged every 200 ms"));

  // Block the loop: a stopped process is the stuck loop systemd's watchdog is for.
  ASSERT_TRUE(d.proc().send_signal(SIGSTOP));
  for (int i = 0; i < 200 && process_state(d.proc().pid()) != 'T'; ++i) {
    std::this_thread::sleep_for(milliseconds(5));  // no event says the stop took effect
  }
  ASSERT_EQ(process_state(d.proc().pid()), 'T');
  // What was sent before the stop is drained; then nothing comes for 2.5 intervals, past the
  // point where systemd would have given up on it.
  while (d.notify().wait_for("WATCHDOG=1", milliseconds(50))) {
  }
  EXPECT_FALSE(d.notify().wait_for("WATCHDOG=1", milliseconds(1000)))
      << "a stopped loop must not ping";

  // Unblocked, it pings again (and serves).
  ASSERT_TRUE(d.proc().send_signal(SIGCONT));
  EXPECT_TRUE(d.notify().wait_for("WATCHDOG=1", seconds(2)));
  EXPECT_EQ(d.call({{"op", "hello"}})["ok"], true);
  EXPECT_EQ(d.stop(), 0);
}

TEST(Watchdog, NoPingsWithoutAWatchdogOrForAnotherProcess) {
  test::temp_dir dir;
  test::sweepd_under_test off(dir);
  off.start();
  EXPECT_FALSE(off.notify().wait_for("WATCHDOG=1", milliseconds(600)));
  EXPECT_EQ(off.stop(), 0);

  // $WATCHDOG_PID names another process (systemd meant the watchdog for the unit's main process).
  test::temp_dir other;
  test::sweepd_under_test elsewhere(other, "", {"WATCHDOG_USEC=200000", "WATCHDOG_PID=1"});
  elsewhere.start();
  EXPECT_FALSE(elsewhere.notify().wait_for("WATCHDOG=1", milliseconds(600)));
  EXPECT_EQ(elsewhere.stop(), 0);
}

/// A listening Unix socket that the test owns, as systemd owns it for sweepd.socket.
class listening_socket {
 public:
  explicit listening_socket(const std::string& path) {
    // Not close-on-exec: the launcher hands it to sweepd as fd 3.
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 64) != 0) {
      ADD_FAILURE() << "listen on " << path << ": " << sweepd::io::errno_text(errno);
    }
  }
  ~listening_socket() { ::close(fd_); }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

/// A raw client connection: connects and writes even while no sweepd runs.
class raw_client {
 public:
  explicit raw_client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~raw_client() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool send(const std::string& line) {
    return ::send(fd_, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
  }
  /// One reply line, waiting at most `timeout`; empty when none came.
  std::string read_line(milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string out;
    while (out.find('\n') == std::string::npos) {
      const auto left =
          std::chrono::ceil<milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
      char buffer[4096];
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return {};
      out.append(buffer, static_cast<std::size_t>(n));
    }
    return out.substr(0, out.find('\n'));
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

TEST(SocketActivation, ThePassedSocketOutlivesARestartAndConnectionsMadeMeanwhileAreServed) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir);
  listening_socket listener(d.socket_path());
  d.set_launcher(with_own_pid("exec 3<&" + std::to_string(listener.fd()) + " " +
                              std::to_string(listener.fd()) +
                              "<&- && export LISTEN_FDS=1 LISTEN_PID=$$"));
  d.start();
  EXPECT_THAT(d.proc().err(), HasSubstr("listening on the socket passed by systemd"));
  ASSERT_EQ(d.call({{"op", "register"}, {"run", "act1"}})["ok"], true);
  ASSERT_EQ(d.stop(), 0);
  EXPECT_TRUE(std::filesystem::exists(d.socket_path()))
      << "sweepd must not remove a socket it did not create";

  // sweepd is down; a worker connects and sends its heartbeat: the kernel queues both.
  raw_client worker(d.socket_path());
  ASSERT_TRUE(worker.connected()) << sweepd::io::errno_text(errno);
  ASSERT_TRUE(worker.send(R"({"op":"heartbeat","run":"act1"})"
                          "\n"));
  EXPECT_EQ(worker.read_line(milliseconds(200)), "") << "no one answers while sweepd is down";

  // The next sweepd takes over the same socket and answers the waiting worker.
  d.start();
  const json reply = json::parse(worker.read_line(seconds(10)), nullptr, false);
  EXPECT_EQ(reply["ok"], true) << reply.dump();
  EXPECT_EQ(reply["state"], "initializing");
  EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace sweepd
