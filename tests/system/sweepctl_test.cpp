// System tests of sweepctl: the real binary against no daemon, bad command lines, and a fake
// sweepd (a thread on a Unix socket that records request lines and answers canned replies).

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "core/version.hpp"
#include "support/process_support.hpp"

namespace sweepd::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

// The helpers other system tests build on.

TEST(SweepctlProcessSupport, CapturesExitCodeAndBothStreams) {
  auto r = run_command({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}, {}, 10s);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(SweepctlProcessSupport, ChildGetsExactlyTheGivenEnvironment) {
  auto r = run_command({"/usr/bin/env"}, {"A=1", "B=two"}, 10s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "A=1\nB=two\n");
  auto inherited = environment_with({"SWEEPD_TEST_X=1"});
  EXPECT_NE(std::find(inherited.begin(), inherited.end(), "SWEEPD_TEST_X=1"), inherited.end());
}

TEST(SweepctlProcessSupport, KillsACommandThatOutlivesItsTimeout) {
  auto r = run_command({"/bin/sh", "-c", "exec sleep 60"}, {}, 200ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
}

TEST(SweepctlProcessSupport, ReportsDeathBySignalAndWaitsAgain) {
  auto p = process::start({"/bin/sh", "-c", "exec sleep 60"});
  EXPECT_FALSE(p.wait_for(10ms).has_value());
  EXPECT_TRUE(p.send_signal(SIGTERM));
  EXPECT_EQ(p.wait_for(10s), 128 + SIGTERM);
  EXPECT_EQ(p.wait_for(0ms), 128 + SIGTERM);
  EXPECT_FALSE(p.running());
}

TEST(SweepctlProcessSupport, MissingProgramThrows) {
  EXPECT_THROW(process::start({"/nonexistent/program"}), std::system_error);
}

TEST(SweepctlProcessSupport, TempDirIsShortAndRemovedWithItsContents) {
  std::filesystem::path where;
  {
    temp_dir dir;
    where = dir.path();
    EXPECT_TRUE(std::filesystem::is_directory(where));
    EXPECT_LT(dir.file("sweepd.sock").size(), 40u);
    std::filesystem::create_directory(dir.path() / "sub");
    std::FILE* f = std::fopen(dir.file("sub/x").c_str(), "w");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(std::fclose(f), 0);
  }
  EXPECT_FALSE(std::filesystem::exists(where));
}

// A stand-in for sweepd: accepts connections one at a time on a Unix socket, records every request
// line, and answers each as told: with a canned line, never (the client must time out), or by
// hanging up. A stop eventfd wakes every wait, so the destructor's join is prompt.
class fake_server {
 public:
  enum class behaviour { answer, stay_silent, hang_up };

  explicit fake_server(std::string path) : path_(std::move(path)) {
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) ||
        ::listen(listen_fd_, 16) != 0) {
      throw std::system_error(errno, std::generic_category(), "fake_server on " + path_);
    }
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this] { serve(); });
  }

  ~fake_server() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof(one));
    thread_.join();
    ::close(listen_fd_);
    ::close(stop_fd_);
  }

  fake_server(const fake_server&) = delete;
  fake_server& operator=(const fake_server&) = delete;

  const std::string& path() const { return path_; }

  void answer(const json& reply) {
    std::lock_guard lock(mutex_);
    behaviour_ = behaviour::answer;
    reply_ = reply.dump();
  }
  void answer_raw(std::string line) {
    std::lock_guard lock(mutex_);
    behaviour_ = behaviour::answer;
    reply_ = std::move(line);
  }
  /// Answers the next requests with `replies` in turn, then with the last of them.
  void answer_each(const std::vector<json>& replies) {
    std::lock_guard lock(mutex_);
    behaviour_ = behaviour::answer;
    queued_.clear();
    for (const json& r : replies) queued_.push_back(r.dump());
    reply_ = queued_.back();
  }
  void behave(behaviour b) {
    std::lock_guard lock(mutex_);
    behaviour_ = b;
  }

  std::vector<std::string> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  /// Waits until `fd` is readable; false when the server is stopping.
  bool wait_readable(int fd) const {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    for (;;) {
      const int ready = ::poll(fds, 2, -1);
      if (ready < 0 && errno == EINTR) continue;
      return ready > 0 && (fds[1].revents & POLLIN) == 0;
    }
  }

  void serve() {
    while (wait_readable(listen_fd_)) {
      const int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      serve_connection(conn);
      ::close(conn);
    }
  }

  void serve_connection(int conn) {
    std::string buffer;
    while (wait_readable(conn)) {
      char chunk[4096];
      const ssize_t n = ::recv(conn, chunk, sizeof(chunk), 0);
      if (n <= 0) return;
      buffer.append(chunk, static_cast<std::size_t>(n));
      for (auto nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
        const std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        const auto [what, reply] = record(line);
        if (what == behaviour::hang_up) return;
        if (what == behaviour::answer) send_line(conn, reply);
      }
    }
  }

  std::pair<behaviour, std::string> record(const std::string& line) {
    std::lock_guard lock(mutex_);
    requests_.push_back(line);
    if (!queued_.empty()) {
      std::string next = std::move(queued_.front());
      queued_.erase(queued_.begin());
      return {behaviour_, std::move(next)};
    }
    return {behaviour_, reply_};
  }

  static void send_line(int conn, std::string line) {
    line += '\n';
    std::string_view rest = line;
    while (!rest.empty()) {
      const ssize_t n = ::send(conn, rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  std::string path_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  mutable std::mutex mutex_;
  behaviour behaviour_ = behaviour::answer;
  std::string reply_ = R"({"ok":true})";
  std::vector<std::string> queued_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

/// Runs the real sweepctl with `args` and exactly the environment `env`; bounded in time.
command_result sweepctl(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  args.insert(args.begin(), SWEEPCTL_BINARY);
  return run_command(args, env, 20s);
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

/// The first line of `text` that contains `needle`, or "".
std::string line_with(const std::string& text, std::string_view needle) {
  for (const std::string& line : lines_of(text)) {
    if (contains(line, needle)) return line;
  }
  return {};
}

// (a) No daemon.

TEST(SweepctlNoDaemon, ExitsThreeNamingTheSocketAndTheErrno) {
  temp_dir dir;
  const std::string socket = dir.file("missing.sock");
  auto r = sweepctl({"--socket", socket, "status"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, socket)) << r.err;
  EXPECT_TRUE(contains(r.err, "No such file or directory")) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(SweepctlNoDaemon, RefusedConnectionNamesTheErrno) {
  temp_dir dir;
  const std::string socket = dir.file("dead.sock");
  {  // A socket file nobody listens on, as a crashed daemon leaves behind.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  auto r = sweepctl({"--socket", socket, "start", "r1"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, socket)) << r.err;
  EXPECT_TRUE(contains(r.err, "Connection refused")) << r.err;
}

TEST(SweepctlNoDaemon, SocketComesFromTheEnvironment) {
  temp_dir dir;
  const std::string socket = dir.file("env.sock");
  auto r = sweepctl({"ping"}, {"SWEEPD_SOCKET=" + socket});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, socket)) << r.err;
}

TEST(SweepctlNoDaemon, SocketOptionBeatsTheEnvironment) {
  temp_dir dir;
  auto r = sweepctl({"list", "--socket", dir.file("opt.sock")},
                    {"SWEEPD_SOCKET=" + dir.file("env.sock")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, dir.file("opt.sock"))) << r.err;
  EXPECT_FALSE(contains(r.err, "env.sock")) << r.err;
}

TEST(SweepctlNoDaemon, DefaultsToTheSystemSocket) {
  if (std::filesystem::exists("/run/sweepd/sweepd.sock")) GTEST_SKIP() << "a sweepd is running";
  auto r = sweepctl({"status"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, "/run/sweepd/sweepd.sock")) << r.err;
}

// (b) Usage errors: exit 2, the option named, and nothing sent to the (fake) daemon.

struct usage_case {
  std::vector<std::string> args;
  std::string expected;  // in stderr
};

std::string joined(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) {
    if (!out.empty()) out += ' ';
    out.append(a, 0, 40);
  }
  return out;
}

void PrintTo(const usage_case& c, std::ostream* os) { *os << "sweepctl " << joined(c.args); }

class SweepctlUsage : public ::testing::TestWithParam<usage_case> {};

TEST_P(SweepctlUsage, ExitsTwoNamingTheProblemAndSendsNothing) {
  temp_dir dir;
  fake_server server(dir.file("s.sock"));
  std::vector<std::string> args = {"--socket", server.path()};
  args.insert(args.end(), GetParam().args.begin(), GetParam().args.end());
  auto r = sweepctl(args);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(contains(r.err, GetParam().expected)) << r.err;
  EXPECT_TRUE(r.err.starts_with("sweepctl: ")) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(server.requests().empty());
}

const usage_case usage_cases[] = {
    {{}, "no command given"},
    {{"bogus"}, "unknown command 'bogus'"},
    {{"--bogus", "status"}, "unknown option '--bogus'"},
    {{"list", "--bogus"}, "unknown option '--bogus' for 'list'"},
    {{"start", "r1", "--progress", "3"}, "unknown option '--progress' for 'start'"},
    {{"list", "--sweep"}, "option '--sweep' needs a value"},
    {{"--json=yes", "status"}, "option '--json' takes no value"},
    {{"--timeout", "never", "status"}, "'--timeout'"},
    {{"--timeout", "0", "status"}, "'--timeout'"},
    {{"--socket", "", "status"}, "'--socket'"},
    {{"list", "--limit", "0"}, "'--limit'"},
    {{"list", "--limit", "ten"}, "'--limit'"},
    {{"list", "--limit", "100001"}, "'--limit'"},
    {{"list", "--state", "zombie"}, "option '--state': 'zombie' is not a state"},
    {{"show"}, "missing RUN"},
    {{"show", "r1", "r2"}, "unexpected argument 'r2'"},
    {{"show", "bad id!"}, "not a valid run id"},
    {{"start", std::string(129, 'a')}, "not a valid run id"},
    {{"complete", "r1", "--objective", "abc"}, "option '--objective'"},
    {{"complete", "r1", "--objective", "inf"}, "option '--objective'"},
    {{"complete", "r1", "--objective", "nan"}, "option '--objective'"},
    {{"complete", "r1", "--objective", "1.5x"}, "option '--objective'"},
    {{"complete", "r1", "--objective", "+-1"}, "option '--objective'"},
    {{"complete", "r1", "--objective", "0x10"}, "option '--objective'"},
    {{"complete", "r1", "--cost", "-1"}, "option '--cost'"},
    {{"heartbeat", "r1", "--progress", "1e999"}, "option '--progress'"},
    {{"heartbeat", "r1", "--timeout", "0"}, "option '--timeout'"},
    {{"register", "r1", "--heartbeat-timeout", "soon"}, "option '--heartbeat-timeout'"},
    {{"register", "r1", "--heartbeat-timeout", "0"}, "option '--heartbeat-timeout'"},
    {{"register", "r1", "--max-runtime", "-5"}, "option '--max-runtime'"},
    {{"register", "r1", "--max-runtime", "400d"}, "option '--max-runtime'"},
    {{"register", "r1", "--suggestion", "{not json"}, "option '--suggestion'"},
    {{"register", "r1", "--suggestion", "[1,2]"}, "option '--suggestion'"},
    {{"register", "r1", "--suggestion", "{\"a\":\"" + std::string(70000, 'x') + "\"}"},
     "option '--suggestion'"},
    {{"fail", "r1"}, "--error"},
    {{"fail", "r1", "oom", "--error", "oom"}, "not both"},
    {{"spool"}, "missing flush|list"},
    {{"spool", "drain"}, "'drain' is not a spool action (flush or list)"},
    {{"spool", "flush", "list"}, "unexpected argument 'list'"},
    {{"spool", "list", "--spool-dir", ""}, "option '--spool-dir': the path is empty"},
};

INSTANTIATE_TEST_SUITE_P(Sweepctl, SweepctlUsage, ::testing::ValuesIn(usage_cases));

// (c) Help and version.

struct help_case {
  std::string command;
  std::vector<std::string> options;
};

void PrintTo(const help_case& c, std::ostream* os) { *os << "sweepctl " << c.command << " --help"; }

class SweepctlHelp : public ::testing::TestWithParam<help_case> {};

TEST_P(SweepctlHelp, ListsEveryOptionAndExitsZero) {
  const help_case& c = GetParam();
  for (const char* flag : {"--help", "-h"}) {
    auto r = sweepctl({c.command, flag});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_TRUE(contains(r.out, "Usage: sweepctl")) << r.out;
    EXPECT_TRUE(contains(r.out, " " + c.command)) << r.out;
    for (const std::string& option : c.options) {
      EXPECT_TRUE(contains(r.out, "  " + option + " ")) << option << " missing in\n" << r.out;
    }
    for (const char* global : {"--socket PATH", "--json", "--timeout SECONDS"}) {
      EXPECT_TRUE(contains(r.out, global)) << r.out;
    }
  }
}

const help_case help_cases[] = {
    {"status", {}},
    {"list", {"--sweep S", "--state STATE", "--limit N", "--after CURSOR"}},
    {"show", {}},
    {"observations", {"--sweep S", "--limit N", "--after CURSOR"}},
    {"register",
     {"--sweep S", "--entity E", "--project P", "--suggestion JSON", "--watch-peer",
      "--heartbeat-timeout S", "--max-runtime S"}},
    {"start", {}},
    {"heartbeat", {"--progress X", "--timeout S"}},
    {"complete", {"--objective X", "--cost C"}},
    {"fail", {"--error TEXT"}},
    {"hello", {}},
    {"ping", {}},
    {"spool", {"--spool-dir DIR"}},
};

INSTANTIATE_TEST_SUITE_P(Sweepctl, SweepctlHelp, ::testing::ValuesIn(help_cases));

TEST(SweepctlHelpAll, ProgramHelpListsCommandsAndGlobalOptions) {
  auto r = sweepctl({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const help_case& c : help_cases) {
    EXPECT_TRUE(contains(r.out, "  " + c.command + " ")) << c.command << " missing in\n" << r.out;
  }
  for (const char* option : {"--socket PATH", "--json", "--timeout SECONDS", "--help", "--version",
                             "SWEEPD_SOCKET", "/run/sweepd/sweepd.sock", "Exit status"}) {
    EXPECT_TRUE(contains(r.out, option)) << option << " missing in\n" << r.out;
  }
  EXPECT_TRUE(contains(r.out, "  exec ")) << r.out;  // its own help is tested in exec_test.cpp
}

TEST(SweepctlHelpAll, HelpWinsOverMissingOperands) {
  auto r = sweepctl({"show", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "show RUN")) << r.out;
}

TEST(SweepctlHelpAll, VersionPrintsTheProjectVersion) {
  auto r = sweepctl({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string("sweepctl ") + core::version + "\n");
}

TEST(SweepctlHelpAll, NoArgumentsPrintsUsageToStderr) {
  auto r = sweepctl({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.err, "Usage: sweepctl")) << r.err;
  EXPECT_EQ(r.out, "");
}

// (d) Against a fake sweepd: the exact requests, the rendering, errors.

class SweepctlFake : public ::testing::Test {
 protected:
  /// Runs sweepctl against the fake server with `args` after --socket.
  command_result run(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--socket", server_.path()};
    all.insert(all.end(), args.begin(), args.end());
    return sweepctl(all);
  }

  /// The one request the server received, parsed.
  json only_request() {
    const auto requests = server_.requests();
    EXPECT_EQ(requests.size(), 1u);
    if (requests.empty()) return nullptr;
    return json::parse(requests.front(), nullptr, false);
  }

  temp_dir dir_;
  fake_server server_{dir_.file("sweepd.sock")};
};

struct request_case {
  std::vector<std::string> args;
  json expected;
};

void PrintTo(const request_case& c, std::ostream* os) { *os << "sweepctl " << joined(c.args); }

class SweepctlRequests : public SweepctlFake, public ::testing::WithParamInterface<request_case> {};

TEST_P(SweepctlRequests, SendsExactlyTheRequest) {
  server_.answer({{"ok", true}, {"run", "r1"}, {"state", "running"}});
  auto r = run(GetParam().args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(only_request(), GetParam().expected);
}

const request_case request_cases[] = {
    {{"status"}, {{"op", "status"}}},
    {{"hello"}, {{"op", "hello"}}},
    {{"ping"}, {{"op", "hello"}}},
    {{"list"}, {{"op", "list"}}},
    {{"list", "--sweep", "s1", "--state", "running", "--limit", "5"},
     {{"op", "list"}, {"sweep", "s1"}, {"state", "running"}, {"limit", 5}}},
    {{"list", "--sweep=s1"}, {{"op", "list"}, {"sweep", "s1"}}},
    {{"show", "r1"}, {{"op", "show"}, {"run", "r1"}}},
    {{"observations"}, {{"op", "observations"}}},
    {{"observations", "--sweep", "s1"}, {{"op", "observations"}, {"sweep", "s1"}}},
    {{"observations", "--limit", "20", "--after", "f1:5:r1"},
     {{"op", "observations"}, {"limit", 20}, {"after", "f1:5:r1"}}},
    {{"list", "--after", "r1:5:r1"}, {{"op", "list"}, {"after", "r1:5:r1"}}},
    {{"register", "r1"}, {{"op", "register"}, {"run", "r1"}}},
    {{"register", "ab12.cd_34-x", "--sweep", "s1", "--entity", "e", "--project", "p",
      "--suggestion", R"({"lr": 0.01, "layers": [1, 2], "opt": {"name": "adam"}})", "--watch-peer",
      "--heartbeat-timeout", "600", "--max-runtime", "1d"},
     {{"op", "register"},
      {"run", "ab12.cd_34-x"},
      {"sweep", "s1"},
      {"entity", "e"},
      {"project", "p"},
      {"suggestion", {{"lr", 0.01}, {"layers", {1, 2}}, {"opt", {{"name", "adam"}}}}},
      {"watch_peer", true},
      {"heartbeat_timeout_s", 600},
      {"max_runtime_s", 86400}}},
    {{"register", "r1", "--heartbeat-timeout", "1.5", "--max-runtime", "0"},
     {{"op", "register"}, {"run", "r1"}, {"heartbeat_timeout_s", 1.5}, {"max_runtime_s", 0}}},
    {{"start", "r1"}, {{"op", "start"}, {"run", "r1"}}},
    {{"heartbeat", "r1"}, {{"op", "heartbeat"}, {"run", "r1"}}},
    {{"heartbeat", "r1", "--progress", "1200", "--timeout", "15m"},
     {{"op", "heartbeat"}, {"run", "r1"}, {"progress", 1200}, {"timeout_s", 900}}},
    {{"--timeout", "5", "heartbeat", "r1", "--progress", "-2.5"},
     {{"op", "heartbeat"}, {"run", "r1"}, {"progress", -2.5}}},
    {{"complete", "r1"}, {{"op", "complete"}, {"run", "r1"}}},
    {{"complete", "r1", "--objective", "0.93", "--cost", "3600.5"},
     {{"op", "complete"}, {"run", "r1"}, {"objective", 0.93}, {"cost", 3600.5}}},
    {{"complete", "r1", "--objective", "+2", "--cost", "0.25"},
     {{"op", "complete"}, {"run", "r1"}, {"objective", 2}, {"cost", 0.25}}},
    {{"complete", "r1", "--objective", "-1.5e-3", "--cost", "0"},
     {{"op", "complete"}, {"run", "r1"}, {"objective", -0.0015}, {"cost", 0}}},
    {{"fail", "r1", "--error", "CUDA out of memory"},
     {{"op", "fail"}, {"run", "r1"}, {"error", "CUDA out of memory"}}},
    {{"fail", "r1", "CUDA out of memory"},
     {{"op", "fail"}, {"run", "r1"}, {"error", "CUDA out of memory"}}},
    {{"fail", "r1", "--", "--weird: \"quoted\"\nsecond line"},
     {{"op", "fail"}, {"run", "r1"}, {"error", "--weird: \"quoted\"\nsecond line"}}},
};

INSTANTIATE_TEST_SUITE_P(Sweepctl, SweepctlRequests, ::testing::ValuesIn(request_cases));

TEST_F(SweepctlFake, IntegralNumbersGoOnTheWireAsIntegers) {
  auto r = run({"heartbeat", "r1", "--progress", "1200"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_TRUE(contains(requests[0], R"("progress":1200)")) << requests[0];
}

TEST_F(SweepctlFake, MutatingCommandsPrintRunAndState) {
  server_.answer({{"ok", true}, {"run", "ab12cd34"}, {"state", "success"}});
  auto r = run({"complete", "ab12cd34", "--objective", "0.93"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ab12cd34: success\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(SweepctlFake, GlobalOptionsMayFollowTheCommand) {
  const json reply = {{"ok", true}, {"run", "r1"}, {"state", "running"}};
  server_.answer(reply);
  auto r = run({"start", "r1", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), reply);
}

json status_reply() {
  return {{"ok", true},
          {"version", "0.1.0"},
          {"protocol", 1},
          {"uptime_s", 3725.5},
          {"runs",
           {{"initializing", 1},
            {"running", 3},
            {"success", 5},
            {"failed", 0},
            {"crashed", 1},
            {"timeout", 2}}},
          {"runs_total", 12},
          {"connections", 4},
          {"wandb",
           {{"mode", "online"},
            {"pending", 2},
            {"in_flight", 1},
            {"dead", 1},
            {"last_error", "HTTP 401 from api.wandb.ai"}}}};
}

TEST_F(SweepctlFake, StatusShowsVersionUptimeRunsConnectionsAndWandb) {
  server_.answer(status_reply());
  auto r = run({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(line_with(r.out, "sweepd:"), "0.1.0 (protocol 1)")) << r.out;
  EXPECT_TRUE(contains(line_with(r.out, "uptime:"), "1h02m")) << r.out;
  const std::string runs = line_with(r.out, "runs:");
  for (const char* part : {"12 total", "initializing 1", "running 3", "success 5", "failed 0",
                           "crashed 1", "timeout 2"}) {
    EXPECT_TRUE(contains(runs, part)) << part << " missing in " << runs;
  }
  EXPECT_TRUE(contains(line_with(r.out, "connections:"), "4")) << r.out;
  const std::string wandb = line_with(r.out, "wandb:");
  for (const char* part : {"online", "pending 2", "in_flight 1", "dead 1"}) {
    EXPECT_TRUE(contains(wandb, part)) << part << " missing in " << wandb;
  }
  EXPECT_TRUE(contains(r.out, "HTTP 401 from api.wandb.ai")) << r.out;
}

TEST_F(SweepctlFake, StatusWithoutWandbErrorHasNoErrorLine) {
  json reply = status_reply();
  reply["wandb"].erase("last_error");
  server_.answer(reply);
  auto r = run({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(contains(r.out, "error")) << r.out;
}

TEST_F(SweepctlFake, JsonPrintsTheReplyPrettyForStatus) {
  server_.answer(status_reply());
  auto r = run({"--json", "status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), status_reply());
  EXPECT_GT(lines_of(r.out).size(), 5u) << "expected indented JSON";
}

json list_reply(bool truncated) {
  return {{"ok", true},
          {"runs",
           {{{"run", "ab12cd34"},
             {"sweep", "s1"},
             {"state", "running"},
             {"reason", "started"},
             {"registered_at", "2026-11-28T20:00:00.000Z"},
             {"updated_at", "2026-11-28T20:00:01.250Z"},
             {"age_s", 754.2},
             {"last_seen_s", 2.5}},
            {{"run", "longer-run-id-0001"},
             {"sweep", ""},
             {"state", "success"},
             {"reason", "completed"},
             {"registered_at", "2026-11-28T19:00:00.000Z"},
             {"updated_at", "2026-11-28T19:30:00.000Z"},
             {"runtime_s", 1800.0},
             {"objective", 0.93},
             {"cost", 1800.0}}}},
          {"truncated", truncated}};
}

TEST_F(SweepctlFake, ListPrintsAnAlignedTable) {
  server_.answer(list_reply(false));
  auto r = run({"list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  const std::string& header = lines[0];
  for (const char* column :
       {"RUN", "SWEEP", "STATE", "REASON", "AGE/RUNTIME", "OBJECTIVE", "UPDATED"}) {
    EXPECT_TRUE(contains(header, column)) << column << " missing in " << header;
  }
  const std::string& live = line_with(r.out, "ab12cd34");
  const std::string& done = line_with(r.out, "longer-run-id-0001");
  // Text columns start under their header, numbers end under it.
  EXPECT_EQ(live.find("running"), header.find("STATE")) << r.out;
  EXPECT_EQ(done.find("success"), header.find("STATE")) << r.out;
  EXPECT_EQ(done.find("completed"), header.find("REASON")) << r.out;
  EXPECT_EQ(done.find("2026-11-28 19:30:00Z"), header.find("UPDATED")) << r.out;
  EXPECT_EQ(live.find("12m34s") + 6, header.find("AGE/RUNTIME") + 11) << r.out;
  EXPECT_EQ(done.find("30m00s") + 6, header.find("AGE/RUNTIME") + 11) << r.out;
  EXPECT_EQ(done.find("0.93") + 4, header.find("OBJECTIVE") + 9) << r.out;
  EXPECT_EQ(live.find("s1"), header.find("SWEEP")) << r.out;
  EXPECT_FALSE(contains(r.out, "only the first")) << r.out;
  for (const std::string& line : lines) EXPECT_FALSE(line.ends_with(" ")) << '"' << line << '"';
}

TEST_F(SweepctlFake, ListSaysWhenTruncated) {
  server_.answer(list_reply(true));
  auto r = run({"list", "--limit", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "only the first 2 runs")) << r.out;
}

TEST_F(SweepctlFake, ListWithoutRunsSaysSo) {
  server_.answer({{"ok", true}, {"runs", json::array()}, {"truncated", false}});
  auto r = run({"list", "--state", "crashed"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "no runs\n");
}

TEST_F(SweepctlFake, ListJsonIsTheReplyOnOneLine) {
  server_.answer(list_reply(true));
  auto r = run({"--json", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out).size(), 1u) << r.out;
  EXPECT_EQ(json::parse(r.out), list_reply(true));
}

json show_reply() {
  return {{"ok", true},
          {"run",
           {{"run", "ab12cd34"},
            {"sweep", "s1"},
            {"state", "failed"},
            {"reason", "worker_failed"},
            {"registered_at", "2026-11-28T20:00:00.000Z"},
            {"updated_at", "2026-11-28T20:10:00.000Z"},
            {"finished_at", "2026-11-28T20:10:00.000Z"},
            {"runtime_s", 600.0},
            {"entity", "acme"},
            {"project", "mnist"},
            {"suggestion", {{"lr", 0.01}}},
            {"owner_uid", 1000},
            {"watch_peer", true},
            {"peer_pid", 4242},
            {"heartbeat_timeout_s", 300.0},
            {"max_runtime_s", 0.0},
            {"stall_timeout_s", 0.0},
            {"error", "CUDA out of memory\nTraceback..."},
            {"transitions",
             {{{"run", "ab12cd34"},
               {"from", nullptr},
               {"to", "initializing"},
               {"reason", "registered"},
               {"at", "2026-11-28T20:00:00.000Z"}},
              {{"run", "ab12cd34"},
               {"from", "initializing"},
               {"to", "running"},
               {"reason", "started"},
               {"at", "2026-11-28T20:00:01.000Z"}},
              {{"run", "ab12cd34"},
               {"from", "running"},
               {"to", "failed"},
               {"reason", "worker_failed"},
               {"at", "2026-11-28T20:10:00.000Z"},
               {"runtime_s", 600.0},
               {"error", "CUDA out of memory\nTraceback..."}}}}}}};
}

TEST_F(SweepctlFake, ShowPrintsTheRecordAndItsTransitions) {
  server_.answer(show_reply());
  auto r = run({"show", "ab12cd34"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(line_with(r.out, "run:"), "ab12cd34")) << r.out;
  EXPECT_TRUE(contains(line_with(r.out, "state:"), "failed (worker_failed)")) << r.out;
  EXPECT_TRUE(contains(line_with(r.out, "entity/project:"), "acme/mnist")) << r.out;
  EXPECT_TRUE(contains(line_with(r.out, "runtime:"), "10m00s")) << r.out;
  EXPECT_TRUE(contains(line_with(r.out, "heartbeat timeout:"), "5m00s")) << r.out;
  EXPECT_TRUE(contains(line_with(r.out, "max runtime:"), "off")) << r.out;
  EXPECT_TRUE(contains(line_with(r.out, "watch peer:"), "pid 4242")) << r.out;
  EXPECT_TRUE(contains(line_with(r.out, "suggestion:"), R"({"lr":0.01})")) << r.out;
  // The multi-line error stays on one line, so it cannot break the layout.
  EXPECT_TRUE(contains(line_with(r.out, "error:"), "CUDA out of memory Traceback...")) << r.out;
  // Values line up after the keys.
  EXPECT_EQ(line_with(r.out, "run:").find("ab12cd34"), line_with(r.out, "state:").find("failed"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "transitions:")) << r.out;
  const std::string header = line_with(r.out, "REASON");
  for (const char* column : {"AT", "FROM", "TO", "REASON", "RUNTIME", "ERROR"}) {
    EXPECT_TRUE(contains(header, column)) << column << " missing in " << header;
  }
  const std::string registered = line_with(r.out, "registered  ");
  EXPECT_EQ(registered.find("initializing"), header.find("TO")) << r.out;
  EXPECT_EQ(line_with(r.out, "worker_failed  ").find("failed"), header.find("TO")) << r.out;
}

TEST_F(SweepctlFake, ShowJsonIsThePrettyReply) {
  server_.answer(show_reply());
  auto r = run({"show", "ab12cd34", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), show_reply());
  EXPECT_GT(lines_of(r.out).size(), 10u);
}

TEST_F(SweepctlFake, ObservationsPrintATable) {
  server_.answer({{"ok", true},
                  {"observations",
                   {{{"run_id", "r1"},
                     {"suggestion", {{"lr", 0.1}}},
                     {"objective", 0.5},
                     {"cost", 120.0},
                     {"is_failure", false},
                     {"state", "success"}},
                    {{"run_id", "r2"},
                     {"suggestion", {{"lr", 0.2}}},
                     {"objective", nullptr},
                     {"cost", 33.25},
                     {"is_failure", true},
                     {"state", "timeout"}},
                    {{"run_id", "r3"},
                     {"suggestion", nullptr},
                     {"objective", 0.75},
                     {"cost", 1.0},
                     {"is_failure", false},
                     {"state", "success"},
                     {"late", true}}}}});
  auto r = run({"observations", "--sweep", "s1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  for (const char* column : {"RUN", "STATE", "OBJECTIVE", "COST", "FAILURE"}) {
    EXPECT_TRUE(contains(lines[0], column)) << column << " missing in " << lines[0];
  }
  EXPECT_EQ(lines[2].find("timeout"), lines[0].find("STATE")) << r.out;
  EXPECT_EQ(lines[2].find('-') + 1, lines[0].find("OBJECTIVE") + 9) << r.out;
  EXPECT_EQ(lines[2].find("33.25") + 5, lines[0].find("COST") + 4) << r.out;
  EXPECT_EQ(lines[2].find("yes"), lines[0].find("FAILURE")) << r.out;
  EXPECT_EQ(lines[1].find("no"), lines[0].find("FAILURE")) << r.out;
  EXPECT_TRUE(contains(lines[3], "success (late)")) << r.out;
}

json run_entry(const std::string& id) {
  return {{"run", id},           {"sweep", "s1"}, {"state", "running"},
          {"reason", "started"}, {"age_s", 1.0},  {"last_seen_s", 1.0}};
}

json observation_entry(const std::string& id) {
  return {{"run_id", id}, {"suggestion", nullptr}, {"objective", 0.5},
          {"cost", 1.0},  {"is_failure", false},   {"state", "success"}};
}

std::vector<json> requests_of(const fake_server& server) {
  std::vector<json> parsed;
  for (const std::string& line : server.requests()) parsed.push_back(json::parse(line));
  return parsed;
}

TEST_F(SweepctlFake, ListFollowsNextUpToItsLimitOnOneConnection) {
  server_.answer_each({
      {{"ok", true},
       {"runs", {run_entry("a"), run_entry("b")}},
       {"truncated", true},
       {"next", "r1:1:b"}},
      {{"ok", true}, {"runs", {run_entry("c")}}, {"truncated", true}, {"next", "r1:2:c"}},
      {{"ok", true}, {"runs", {run_entry("d")}}, {"truncated", false}},
  });
  auto r = run({"--json", "list", "--sweep", "s1", "--limit", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json shown = json::parse(r.out);
  EXPECT_EQ(shown["runs"].size(), 4u);
  EXPECT_EQ(shown["runs"][3]["run"], "d");
  EXPECT_EQ(shown["truncated"], false);
  EXPECT_FALSE(shown.contains("next"));
  EXPECT_EQ(
      requests_of(server_),
      (std::vector<json>{{{"op", "list"}, {"sweep", "s1"}, {"limit", 4}},
                         {{"op", "list"}, {"sweep", "s1"}, {"limit", 2}, {"after", "r1:1:b"}},
                         {{"op", "list"}, {"sweep", "s1"}, {"limit", 1}, {"after", "r1:2:c"}}}));
}

TEST_F(SweepctlFake, ListStopsAtItsLimitAndSaysHowToGoOn) {
  server_.answer_each({
      {{"ok", true}, {"runs", {run_entry("a")}}, {"truncated", true}, {"next", "r1:1:b"}},
      {{"ok", true}, {"runs", {run_entry("b")}}, {"truncated", true}, {"next", "r1:2:c"}},
  });
  auto r = run({"list", "--limit", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "only the first 2 runs are shown")) << r.out;
  EXPECT_TRUE(contains(r.out, "sweepctl list --after r1:2:c shows the next ones")) << r.out;
  EXPECT_EQ(server_.requests().size(), 2u);
}

TEST_F(SweepctlFake, ObservationsReadEveryPage) {
  server_.answer_each({
      {{"ok", true},
       {"observations", {observation_entry("r1")}},
       {"truncated", true},
       {"next", "f1:1:r1"}},
      {{"ok", true},
       {"observations", {observation_entry("r2"), observation_entry("r3")}},
       {"truncated", false}},
  });
  auto r = run({"--json", "observations", "--sweep", "s1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json shown = json::parse(r.out);
  EXPECT_EQ(shown["observations"].size(), 3u);
  EXPECT_EQ(shown["truncated"], false);
  EXPECT_EQ(requests_of(server_),
            (std::vector<json>{{{"op", "observations"}, {"sweep", "s1"}},
                               {{"op", "observations"}, {"sweep", "s1"}, {"after", "f1:1:r1"}}}));
  server_.answer_each({{{"ok", true},
                        {"observations", {observation_entry("r1")}},
                        {"truncated", true},
                        {"next", "f1:1:r1"}}});
  r = run({"observations", "--limit", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out,
                       "only the first 1 observations are shown; sweepctl observations "
                       "--after f1:1:r1 shows the next ones"))
      << r.out;
}

TEST_F(SweepctlFake, APageThatDoesNotMoveOnStops) {
  server_.answer_each({
      {{"ok", true},
       {"observations", {observation_entry("r1")}},
       {"truncated", true},
       {"next", "f1:1:r1"}},
  });
  auto r = run({"observations"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "same page twice")) << r.err;
  EXPECT_EQ(server_.requests().size(), 2u);
}

TEST_F(SweepctlFake, HelloAndPingNameTheDaemon) {
  server_.answer({{"ok", true}, {"server", "sweepd"}, {"version", "0.1.0"}, {"protocol", 1}});
  auto hello = run({"hello"});
  EXPECT_EQ(hello.exit_code, 0) << hello.err;
  EXPECT_TRUE(contains(hello.out, "sweepd 0.1.0, protocol 1")) << hello.out;
  auto ping = run({"ping"});
  EXPECT_EQ(ping.exit_code, 0) << ping.err;
  EXPECT_TRUE(contains(ping.out, server_.path())) << ping.out;
  EXPECT_TRUE(contains(ping.out, " ms")) << ping.out;
}

TEST_F(SweepctlFake, DaemonErrorExitsOneWithCodeAndMessage) {
  const json reply = {{"ok", false},
                      {"error", {{"code", "conflict"}, {"message", "run 'x' is already success"}}}};
  server_.answer(reply);
  for (const char* json_flag : {"", "--json"}) {
    std::vector<std::string> args = {"complete", "x", "--objective", "1"};
    if (*json_flag != '\0') args.emplace_back(json_flag);
    auto r = run(args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.err, "sweepctl: conflict: run 'x' is already success\n");
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(SweepctlFake, DaemonTextCannotDriveTheTerminal) {
  server_.answer({{"ok", false},
                  {"error", {{"code", "bad_request"}, {"message", "evil \x1b[31mred\x1b[0m"}}}});
  auto r = run({"start", "r1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(contains(r.err, "\x1b")) << r.err;
  EXPECT_TRUE(contains(r.err, "bad_request: evil")) << r.err;
}

TEST_F(SweepctlFake, ReplyThatIsNotJsonExitsOne) {
  server_.answer_raw("this is not json");
  auto r = run({"status"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "this is not json")) << r.err;
  EXPECT_TRUE(contains(r.err, server_.path())) << r.err;
}

TEST_F(SweepctlFake, SilentDaemonTimesOutWithExitThree) {
  server_.behave(fake_server::behaviour::stay_silent);
  auto r = run({"--timeout", "0.3", "status"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, "no reply")) << r.err;
  EXPECT_TRUE(contains(r.err, server_.path())) << r.err;
  EXPECT_EQ(server_.requests().size(), 1u);
}

// sweepctl exec against a sweepd that refuses the run: one register, then silence (no reconnect
// to register again, no report), while the command runs to its end.
TEST_F(SweepctlFake, ExecStopsTalkingToASweepdThatRefusedItsRegister) {
  server_.answer(
      json{{"ok", false},
           {"error", {{"code", "conflict"}, {"message", "run 'r1' is already success"}}}});
  auto r =
      run({"exec", "--run", "r1", "--interval", "0.2", "--", "/bin/sh", "-c", "sleep 0.5; exit 4"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(contains(r.err, "sweepd refused to register run r1: conflict")) << r.err;
  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 1u) << r.err;
  EXPECT_EQ(json::parse(requests[0])["op"], "register");
}

TEST_F(SweepctlFake, DaemonHangingUpExitsThree) {
  server_.behave(fake_server::behaviour::hang_up);
  auto r = run({"status"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, "closed the connection")) << r.err;
}

}  // namespace
}  // namespace sweepd::test
