// The control socket's limits on the real sweepd: what one uid, one client that does not read, or
// the open-files limit may take from everyone else. Other uids are played by `setpriv` (run as
// root, as CI does; skipped otherwise).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "io/client.hpp"
#include "support/daemon_support.hpp"

namespace sweepd {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

/// Opens N connections one after another, says hello on each and prints each reply on its own
/// line, then holds them open until it is killed.
constexpr const char* holder_script = R"(import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
held = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(b'{"op":"hello"}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        print(reply.decode().strip() or "no reply", flush=True)
    except OSError as e:
        print("error: %s" % e, flush=True)
    held.append(s)
time.sleep(120)
)";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// The whole config: the test's socket (mode 0666, with `socket_extra` keys), state and W&B off.
std::string config_with(const test::sweepd_under_test& d, const std::string& socket_extra) {
  return "socket: {path: " + d.socket_path() + ", mode: \"0666\"" + socket_extra + "}\n" +
         "state: {path: " + d.state_path() + "}\nwandb: {mode: offline}\nlog: {level: info}\n";
}

/// Skips the test unless another uid can be played (root, setpriv and python3 present), and
/// opens `dir` to that uid.
bool can_be_another_uid(const test::temp_dir& dir) {
  if (::geteuid() != 0) return false;
  if (::access("/usr/bin/setpriv", X_OK) != 0 || ::access("/usr/bin/python3", X_OK) != 0) {
    return false;
  }
  return ::chmod(dir.path().c_str(), 0755) == 0;
}

/// A client of uid 65534 holding connections (see holder_script).
class other_uid_holder {
 public:
  other_uid_holder(const test::temp_dir& dir, const std::string& socket, int connections)
      : connections_(static_cast<std::size_t>(connections)) {
    const std::string script = dir.file("holder.py");
    std::ofstream(script) << holder_script;
    process_.emplace(test::process::start({"/usr/bin/setpriv", "--reuid", "65534", "--regid",
                                           "65534", "--clear-groups", "/usr/bin/python3", script,
                                           socket, std::to_string(connections)}));
  }

  /// The reply to each connection's hello, in order; waits (at most 20 s) for all of them.
  std::vector<json> replies() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::vector<std::string> lines = lines_of(process_->out());
    while (lines.size() < connections_ && std::chrono::steady_clock::now() < deadline &&
           !process_->wait_for(std::chrono::milliseconds(10))) {
      lines = lines_of(process_->out());  // its output is the only event it gives
    }
    EXPECT_EQ(lines.size(), connections_) << process_->out() << process_->err();
    std::vector<json> parsed;
    for (const std::string& line : lines) {
      json reply = json::parse(line, nullptr, false);
      EXPECT_FALSE(reply.is_discarded()) << line;
      parsed.push_back(std::move(reply));
    }
    return parsed;
  }

 private:
  std::size_t connections_;
  std::optional<test::process> process_;  // killed (with its connections) when the test ends
};

std::size_t count_ok(const std::vector<json>& replies) {
  return static_cast<std::size_t>(std::count_if(replies.begin(), replies.end(), [](const json& r) {
    return r.is_object() && r.value("ok", false);
  }));
}

/// The messages of the `busy` replies among `replies`.
std::vector<std::string> busy_messages(const std::vector<json>& replies) {
  std::vector<std::string> messages;
  for (const json& r : replies) {
    if (r.is_object() && !r.value("ok", true) && r["error"]["code"] == "busy") {
      messages.push_back(r["error"]["message"].get<std::string>());
    }
  }
  return messages;
}

bool answers_hello(const std::string& socket) {
  io::client c;
  if (!c.connect(socket)) return false;
  auto reply = c.call({{"op", "hello"}});
  return reply && (*reply)["ok"] == true;
}

TEST(SocketLimitsTest, AnotherUidPastItsQuotaIsBusyWhileRootIsServedAndReloadRaisesIt) {
  test::temp_dir dir;
  if (!can_be_another_uid(dir)) GTEST_SKIP() << "needs root, setpriv and python3 to be uid 65534";
  test::sweepd_under_test d(dir);
  d.write_config(config_with(d, ", max_connections_per_uid: 3"), true);
  d.start();
  {
    other_uid_holder nobody(dir, d.socket_path(), 5);
    const auto replies = nobody.replies();
    EXPECT_EQ(count_ok(replies), 3u);
    const auto busy = busy_messages(replies);
    ASSERT_EQ(busy.size(), 2u);
    EXPECT_THAT(busy[0], HasSubstr("uid 65534 has 3 connections open"));
    EXPECT_THAT(busy[0], HasSubstr("socket.max_connections_per_uid = 3"));
    // The other uid's connections are still there, and root, an admin, is not held to the quota.
    EXPECT_EQ(d.call({{"op", "status"}})["connections"], 4);
    EXPECT_TRUE(answers_hello(d.socket_path()));
  }
  ASSERT_TRUE(d.reload(config_with(d, ", max_connections_per_uid: 5"), true)) << d.proc().err();
  other_uid_holder nobody(dir, d.socket_path(), 5);
  EXPECT_EQ(count_ok(nobody.replies()), 5u);
  EXPECT_THAT(d.proc().err(), HasSubstr("busy"));  // refusals are logged
}

TEST(SocketLimitsTest, TheLastSlotsAreKeptForRoot) {
  test::temp_dir dir;
  if (!can_be_another_uid(dir)) GTEST_SKIP() << "needs root, setpriv and python3 to be uid 65534";
  test::sweepd_under_test d(dir);
  d.write_config(config_with(d, ", max_connections: 16"), true);  // two kept for admins
  d.start();                                                      // its client holds one
  other_uid_holder nobody(dir, d.socket_path(), 16);
  const auto replies = nobody.replies();
  EXPECT_EQ(count_ok(replies), 13u);
  const auto busy = busy_messages(replies);
  ASSERT_EQ(busy.size(), 3u);
  EXPECT_THAT(busy[0], HasSubstr("the last 2 of socket.max_connections = 16 are kept for root"));

  io::client operator1;
  io::client operator2;
  ASSERT_TRUE(operator1.connect(d.socket_path()));
  ASSERT_TRUE(operator2.connect(d.socket_path()));
  EXPECT_EQ((*operator1.call({{"op", "hello"}}))["ok"], true);
  EXPECT_EQ((*operator2.call({{"op", "hello"}}))["ok"], true);
  io::client past_all;
  ASSERT_TRUE(past_all.connect(d.socket_path()));
  auto refused = past_all.read_line();
  ASSERT_TRUE(refused) << past_all.last_error();
  EXPECT_THAT(*refused, HasSubstr("the limit (socket.max_connections)"));
}

TEST(SocketLimitsTest, MaxConnectionsFitsTheOpenFilesLimitAndEveryoneElseHearsBusy) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir);
  d.set_launcher({"/usr/bin/prlimit", "--nofile=128:128", "--"});
  d.start();  // its own client holds one connection
  // (128 - 64 kept - 4 for W&B requests) / 2 descriptors per connection.
  EXPECT_THAT(d.proc().err(), HasSubstr("socket.max_connections lowered from 4096 to 30"));
  std::vector<io::client> clients(40);
  std::size_t served = 0;
  std::size_t busy = 0;
  for (io::client& c : clients) {
    ASSERT_TRUE(c.connect(d.socket_path())) << c.last_error();
    ASSERT_TRUE(c.send_raw("{\"op\":\"hello\"}\n"));
    auto line = c.read_line(std::chrono::seconds(5));
    ASSERT_TRUE(line) << "client " << served + busy << " hangs: " << c.last_error();
    const json reply = json::parse(*line);
    if (reply["ok"] == true) {
      ++served;
    } else {
      EXPECT_THAT(*line, HasSubstr("socket.max_connections"));
      ++busy;
    }
  }
  EXPECT_EQ(served, 29u);
  EXPECT_EQ(busy, 11u);
  EXPECT_EQ(d.stop(), 0) << d.proc().err();
}

TEST(SocketLimitsTest, TheSoftOpenFilesLimitIsRaisedToTheHardOne) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir);
  d.set_launcher({"/usr/bin/prlimit", "--nofile=128:1024", "--"});
  d.start();
  EXPECT_THAT(d.proc().err(), HasSubstr("open-files limit raised from 128 to 1024"));
  EXPECT_THAT(d.proc().err(), HasSubstr("socket.max_connections lowered from 4096 to 478"));
  EXPECT_EQ(d.stop(), 0) << d.proc().err();
}

/// The daemon's resident memory in KiB, from /proc/PID/status.
std::size_t rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  }
  return 0;
}

TEST(SocketLimitsTest, ClientsThatDoNotReadCostBoundedMemory) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir);
  d.start();
  ASSERT_EQ(d.call({{"op", "register"},
                    {"run", "big"},
                    {"suggestion", {{"pad", std::string(60000, 'x')}}}})["ok"],
            true);
  // Ten clients pipeline 500 shows of it each (~300 MB of replies in all) and never read.
  std::vector<io::client> silent(10);
  std::string batch;
  for (int i = 0; i < 500; ++i)
    batch += R"({"op":"show","run":"big"})"
             "\n";
  for (io::client& c : silent) {
    ASSERT_TRUE(c.connect(d.socket_path()));
    ASSERT_TRUE(c.send_raw(batch));
  }
  std::size_t most = 0;
  for (int i = 0; i < 20; ++i) {
    const json status = d.call({{"op", "status"}});
    ASSERT_EQ(status["ok"], true);
    most = std::max(most, rss_kib(d.proc().pid()));
  }
  // Each holds at most its 256 KiB budget and one 60 KB reply.
  EXPECT_LT(most, 128u * 1024) << "sweepd grew to " << most << " KiB";
  silent.clear();
  EXPECT_EQ(d.call({{"op", "hello"}})["ok"], true);
  EXPECT_EQ(d.stop(), 0) << d.proc().err();
}

TEST(SocketLimitsTest, SweepctlPagesThroughObservationsLargerThanOneReply) {
  test::temp_dir dir;
  test::sweepd_under_test d(dir);
  d.start();
  const std::string pad(60000, 'x');
  for (int i = 0; i < 80; ++i) {
    const std::string run = fmt::format("big-{:02}", i);
    ASSERT_EQ(d.call({{"op", "register"}, {"run", run}, {"suggestion", {{"pad", pad}}}})["ok"],
              true);
    ASSERT_EQ(d.call({{"op", "fail"}, {"run", run}, {"error", "e"}})["ok"], true);
  }
  const auto sweepctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {SWEEPCTL_BINARY, "--socket", d.socket_path()});
    return test::run_command(args, {}, std::chrono::seconds(30));
  };
  // ~4.8 MB: more than one reply carries.
  ASSERT_EQ(d.call({{"op", "observations"}})["truncated"], true);
  auto r = sweepctl({"--json", "observations"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json all = json::parse(r.out);
  ASSERT_EQ(all["observations"].size(), 80u);
  EXPECT_EQ(all["observations"][79]["run_id"], "big-79");
  EXPECT_EQ(all["truncated"], false);

  r = sweepctl({"observations", "--limit", "50"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch next;
  ASSERT_TRUE(std::regex_search(r.out, next, std::regex("--after (\\S+) shows the next ones")))
      << r.out;
  EXPECT_EQ(lines_of(r.out).size(), 52u);  // header, 50 runs, the note
  r = sweepctl({"observations", "--after", next[1]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rest = lines_of(r.out);
  ASSERT_EQ(rest.size(), 31u) << r.out;
  EXPECT_THAT(rest[1], HasSubstr("big-50"));
  EXPECT_THAT(rest[30], HasSubstr("big-79"));
}

}  // namespace
}  // namespace sweepd
