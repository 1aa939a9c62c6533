#include "support/daemon_support.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>

namespace sweepd::test {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

bool has_line(const std::string& message, const std::string& field) {
  std::istringstream lines(message);
  for (std::string line; std::getline(lines, line);) {
    if (line == field) return true;
  }
  return false;
}

}  // namespace

notify_listener::notify_listener(std::string path) : path_(std::move(path)) {
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  if (::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    throw std::system_error(errno, std::generic_category(), "bind " + path_);
  }
}

notify_listener::~notify_listener() {
  if (fd_ >= 0) ::close(fd_);
  ::unlink(path_.c_str());
}

bool notify_listener::wait_for(const std::string& field, milliseconds timeout, int give_up_fd) {
  const auto deadline = steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) return false;
    // poll() ignores a negative fd, so without `give_up_fd` this waits on the socket alone.
    pollfd pfds[2] = {{fd_, POLLIN, 0}, {give_up_fd, POLLIN, 0}};
    const int ready = ::poll(pfds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    // A message sent just before giving up (READY=1, then exit) still counts.
    if ((pfds[0].revents & POLLIN) == 0) return false;
    char buffer[4096];
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n <= 0) continue;
    received_.emplace_back(buffer, static_cast<std::size_t>(n));
    if (has_line(received_.back(), field)) return true;
  }
}

sweepd_under_test::sweepd_under_test(const temp_dir& dir, const std::string& extra,
                                     std::vector<std::string> env)
    : socket_(daemon_paths::in(dir).socket),
      state_(daemon_paths::in(dir).state),
      config_(daemon_paths::in(dir).config),
      env_(std::move(env)),
      notify_(dir.file("notify.sock")) {
  write_config(extra);
}

void write_daemon_config(const daemon_paths& paths, const std::string& extra, bool raw) {
  // Written aside and renamed: a SIGHUP never reads half a file.
  const std::string next = paths.config + ".next";
  std::string text = extra;
  if (!raw) {
    // The test's own socket and state paths go into its `socket: {…}`/`state: {…}`, if it has
    // them, or into sections of their own.
    const auto with_path = [&](const std::string& section, const std::string& path) {
      const std::string flow = section + ": {";
      if (const auto at = text.find(flow); at != std::string::npos) {
        text.insert(at + flow.size(), "path: " + path + ", ");
      } else {
        text = section + ": {path: " + path + "}\n" + text;
      }
    };
    with_path("socket", paths.socket);
    with_path("state", paths.state);
    if (text.find("wandb:") == std::string::npos) text += "wandb: {mode: offline}\n";
    if (text.find("log:") == std::string::npos) text += "log: {level: debug}\n";
  }
  std::ofstream(next) << text;
  std::filesystem::rename(next, paths.config);
}

daemon_paths daemon_paths::in(const temp_dir& dir) {
  return {dir.file("sweepd.sock"), dir.file("state.db"), dir.file("sweepd.yaml")};
}

void sweepd_under_test::write_config(const std::string& extra, bool raw) {
  write_daemon_config({socket_, state_, config_}, extra, raw);
}

void sweepd_under_test::start() {
  ASSERT_TRUE(try_start()) << "sweepd exited before READY=1: " << process_->err();
}

bool sweepd_under_test::try_start() {
  client_.close();
  std::vector<std::string> env = env_;
  env.push_back("NOTIFY_SOCKET=" + notify_.path());
  std::vector<std::string> argv = launcher_;
  argv.insert(argv.end(), {SWEEPD_BINARY, "--config", config_});
  process_.emplace(process::start(argv, env));
  // Without a pidfd an early exit is only seen at the timeout: slower, never wrong.
  if (notify_.wait_for("READY=1", std::chrono::seconds(10), process_->exit_fd())) {
    const bool connected = client_.connect(socket_);
    EXPECT_TRUE(connected) << client_.last_error();
    return connected;
  }
  if (process_->wait_for(std::chrono::seconds(1))) return false;
  ADD_FAILURE() << "sweepd neither sent READY=1 nor exited in 10 s: " << process_->err();
  return false;
}

bool sweepd_under_test::reload(const std::string& extra, bool raw) {
  write_config(extra, raw);
  if (!process_->send_signal(SIGHUP)) return false;
  return notify_.wait_for("RELOADING=1", std::chrono::seconds(10)) &&
         notify_.wait_for("READY=1", std::chrono::seconds(10));
}

std::optional<int> sweepd_under_test::stop() {
  client_.close();
  if (!process_->send_signal(SIGTERM)) return process_->wait_for(milliseconds(0));
  return process_->wait_for(std::chrono::seconds(10));
}

nlohmann::json sweepd_under_test::call(const nlohmann::json& request) {
  auto reply = client_.call(request);
  EXPECT_TRUE(reply) << client_.last_error();
  return reply.value_or(nlohmann::json());
}

nlohmann::json sweepd_under_test::wait_for_state(const std::string& run, const std::string& state) {
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  nlohmann::json shown;
  while (steady_clock::now() < deadline) {
    shown = call({{"op", "show"}, {"run", run}});
    if (shown["run"]["state"] == state) return shown["run"];
    std::this_thread::sleep_for(milliseconds(20));  // no event says a run changed
  }
  ADD_FAILURE() << run << " never became " << state << ": " << shown.dump();
  return shown;
}

}  // namespace sweepd::test
