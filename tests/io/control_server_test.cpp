#include "io/control_server.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <utility>

#include "core/protocol.hpp"
#include "core/service.hpp"
#include "core/supervisor.hpp"
#include "io/client.hpp"
#include "io/posix.hpp"
#include "support/process_support.hpp"

namespace sweepd::io {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

/// A control server over the real core service, run on its own thread like the daemon's loop.
class ControlServerTest : public ::testing::Test {
 protected:
  void start_server(control_server_options opts = {}) {
    opts.path = dir_.file("s.sock");
    if (opts.limits.max_connections == 0) opts.limits.max_connections = 4096;
    options_ = opts;
    server_ = std::make_unique<control_server>(
        io_, opts, [this](std::string_view line, const peer_credentials& peer, bool) {
          last_peer_ = peer;
          ++lines_answered_;
          if (on_line_) on_line_(line);
          if (line == "throw") throw std::runtime_error("injected");
          const core::caller who{peer.uid, peer.pid, false};
          core::handled h = service_.handle(
              line, who, {core::mono_clock::now(), std::chrono::system_clock::now()});
          // Applied at once: these tests have no journal to store it in first.
          if (h.result.change) runs_.apply(std::move(*h.result.change));
          return h.reply;
        });
    ASSERT_EQ(server_->open(), core::success);
    server_->start();
    loop_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_) asio::post(io_, [this] { server_->stop(); });
    if (loop_.joinable()) loop_.join();
  }

  client connect() {
    client c;
    EXPECT_TRUE(c.connect(options_.path)) << c.last_error();
    return c;
  }

  /// Runs `f` on the server's loop thread and waits (bounded) for it: the server is not
  /// thread-safe, like the daemon.
  template <typename F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    EXPECT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return result.get();
  }

  /// Waits (at most 5 s) until `done` holds on the loop's thread. It is asked once per turn of
  /// the loop, each turn running what the kernel has made ready meanwhile: the wait ends on the
  /// turn that runs the awaited completion, with no guessed pause.
  bool on_loop_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    auto result = std::make_shared<std::promise<bool>>();
    auto check = std::make_shared<std::function<void()>>();
    *check = [this, done, deadline, result, check] {
      if (done() || std::chrono::steady_clock::now() >= deadline) {
        result->set_value(done());
        *check = nullptr;  // breaks the cycle through the capture
        return;
      }
      asio::post(io_, *check);
    };
    asio::post(io_, *check);
    return result->get_future().get();
  }

  /// Polls `status` until the server counts `n` connections (the asking one included).
  bool wait_for_connections(client& c, std::size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      auto reply = c.call({{"op", "status"}});
      if (reply && (*reply)["connections"] == n) return true;
    }
    return false;
  }

  test::temp_dir dir_;
  asio::io_context io_;
  core::supervisor runs_{core::supervisor_limits{}};
  core::service service_{runs_, "test", core::mono_clock::now(), [this] {
                           core::daemon_stats s;
                           s.connections = server_ ? server_->connections() : 0;
                           return s;
                         }};
  control_server_options options_;
  std::unique_ptr<control_server> server_;
  std::thread loop_;
  peer_credentials last_peer_;
  std::atomic<std::size_t> lines_answered_{0};
  /// Called on the loop thread with every line, before it is answered.
  std::function<void(std::string_view)> on_line_;
};

TEST_F(ControlServerTest, AnswersHello) {
  start_server();
  client c = connect();
  auto reply = c.call({{"op", "hello"}});
  ASSERT_TRUE(reply) << c.last_error();
  EXPECT_EQ((*reply)["ok"], true);
  EXPECT_EQ((*reply)["server"], "sweepd");
  EXPECT_EQ((*reply)["protocol"], 1);
}

TEST_F(ControlServerTest, AnswersTwoHundredPipelinedRequestsInOrder) {
  start_server();
  client c = connect();
  std::string batch;
  for (int i = 0; i < 200; ++i) {
    batch += json{{"op", "register"}, {"run", "run-" + std::to_string(i)}}.dump() + "\n";
  }
  ASSERT_TRUE(c.send_raw(batch));
  for (int i = 0; i < 200; ++i) {
    auto line = c.read_line();
    ASSERT_TRUE(line) << "reply " << i << ": " << c.last_error();
    const json reply = json::parse(*line);
    EXPECT_EQ(reply["ok"], true) << *line;
    EXPECT_EQ(reply["run"], "run-" + std::to_string(i));
  }
  EXPECT_EQ(runs_.size(), 200u);
}

TEST_F(ControlServerTest, OverlongPartialLineIsTooLargeThenClosed) {
  control_server_options opts;
  opts.limits.max_line_bytes = 1024;
  start_server(opts);
  client c = connect();
  ASSERT_TRUE(c.send_raw(std::string(1500, 'x')));
  auto line = c.read_line();
  ASSERT_TRUE(line) << c.last_error();
  EXPECT_EQ(json::parse(*line)["error"]["code"], "too_large");
  EXPECT_FALSE(c.read_line());
  EXPECT_THAT(c.last_error(), HasSubstr("closed"));
}

TEST_F(ControlServerTest, OverlongCompleteLineIsTooLargeAfterEarlierReplies) {
  control_server_options opts;
  opts.limits.max_line_bytes = 1024;
  start_server(opts);
  client c = connect();
  ASSERT_TRUE(c.send_raw("{\"op\":\"hello\"}\n" + std::string(2000, ' ') + "\n"));
  auto first = c.read_line();
  ASSERT_TRUE(first) << c.last_error();
  EXPECT_EQ(json::parse(*first)["ok"], true);
  auto second = c.read_line();
  ASSERT_TRUE(second) << c.last_error();
  EXPECT_EQ(json::parse(*second)["error"]["code"], "too_large");
  EXPECT_FALSE(c.read_line());
}

TEST_F(ControlServerTest, LineOfExactlyTheLimitIsServed) {
  control_server_options opts;
  opts.limits.max_line_bytes = 1024;
  start_server(opts);
  client c = connect();
  std::string line = R"({"op":"hello"})";
  line.append(1024 - line.size(), ' ');
  ASSERT_TRUE(c.send_raw(line + "\n"));
  auto reply = c.read_line();
  ASSERT_TRUE(reply) << c.last_error();
  EXPECT_EQ(json::parse(*reply)["ok"], true);
}

TEST_F(ControlServerTest, BadJsonKeepsTheConnection) {
  start_server();
  client c = connect();
  ASSERT_TRUE(c.send_raw("{not json\n"));
  auto line = c.read_line();
  ASSERT_TRUE(line) << c.last_error();
  EXPECT_EQ(json::parse(*line)["error"]["code"], "bad_json");
  auto reply = c.call({{"op", "hello"}});
  ASSERT_TRUE(reply) << c.last_error();
  EXPECT_EQ((*reply)["ok"], true);
}

TEST_F(ControlServerTest, HandlerExceptionIsInternalAndKeepsTheConnection) {
  start_server();
  client c = connect();
  ASSERT_TRUE(c.send_raw("throw\n"));
  auto line = c.read_line();
  ASSERT_TRUE(line) << c.last_error();
  EXPECT_EQ(json::parse(*line)["error"]["code"], "internal");
  EXPECT_TRUE(c.call({{"op", "hello"}}));
}

TEST_F(ControlServerTest, AcceptsCrLfLineEndings) {
  start_server();
  client c = connect();
  ASSERT_TRUE(c.send_raw("{\"op\":\"hello\"}\r\n"));
  auto line = c.read_line();
  ASSERT_TRUE(line) << c.last_error();
  EXPECT_EQ(json::parse(*line)["ok"], true);
}

TEST_F(ControlServerTest, ServesANewClientWithThreeHundredIdleConnections) {
  start_server();
  std::vector<client> idle;
  idle.reserve(300);
  for (int i = 0; i < 300; ++i) idle.push_back(connect());
  client c = connect();
  EXPECT_TRUE(wait_for_connections(c, 301));
  // The idle ones are still served too.
  auto reply = idle.front().call({{"op", "hello"}});
  ASSERT_TRUE(reply) << idle.front().last_error();
  EXPECT_EQ((*reply)["ok"], true);
}

TEST_F(ControlServerTest, HalfALineThenCloseDropsTheConnectionOnly) {
  start_server();
  {
    client half = connect();
    ASSERT_TRUE(half.send_raw(R"({"op":"register","run":"half")"));
  }
  client c = connect();
  EXPECT_TRUE(wait_for_connections(c, 1));
  EXPECT_EQ(runs_.size(), 0u);  // the half line was never a request
}

TEST_F(ControlServerTest, RefusesConnectionsOverTheLimitWithBusy) {
  control_server_options opts;
  opts.limits.max_connections = 2;
  start_server(opts);
  client a = connect();
  client b = connect();
  ASSERT_TRUE(a.call({{"op", "hello"}}));  // both accepted before the third arrives
  ASSERT_TRUE(b.call({{"op", "hello"}}));
  client extra = connect();
  auto line = extra.read_line();
  ASSERT_TRUE(line) << extra.last_error();
  const json reply = json::parse(*line);
  EXPECT_EQ(reply["error"]["code"], "busy");
  EXPECT_THAT(reply["error"]["message"].get<std::string>(), HasSubstr("max_connections"));
  EXPECT_FALSE(extra.read_line());
  EXPECT_TRUE(a.call({{"op", "hello"}}));  // the others keep being served
}

TEST_F(ControlServerTest, PassesPeerCredentialsFromTheKernel) {
  start_server();
  client c = connect();
  ASSERT_TRUE(c.call({{"op", "hello"}}));
  EXPECT_EQ(last_peer_.uid, ::getuid());
  EXPECT_EQ(last_peer_.pid, ::getpid());
}

TEST_F(ControlServerTest, SetsTheSocketFileMode) {
  control_server_options opts;
  opts.mode = 0600;
  start_server(opts);
  struct stat st {};
  ASSERT_EQ(::stat(options_.path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ControlServerTest, StopRemovesTheSocketFile) {
  start_server();
  std::promise<void> stopped;
  asio::post(io_, [&] {
    server_->stop();
    stopped.set_value();
  });
  ASSERT_EQ(stopped.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_FALSE(std::filesystem::exists(options_.path));
}

/// A client socket created before it connects, for tests that run the process out of
/// descriptors: socket() needs one, connect() does not.
class raw_client {
 public:
  raw_client() : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {}
  ~raw_client() { close(); }
  raw_client(raw_client&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), buffer_(std::move(other.buffer_)) {}
  raw_client& operator=(raw_client&&) = delete;

  bool valid() const { return fd_ >= 0; }
  bool connect(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    return ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  bool send(std::string_view bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  /// One line (without '\n'), or nullopt on timeout, EOF or error.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  std::string buffer_;
};

/// Lowers the soft RLIMIT_NOFILE so that exactly `free_slots` descriptors are left free, and puts
/// the limit back when it goes away.
class descriptor_squeeze {
 public:
  explicit descriptor_squeeze(int free_slots) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    int fd = 0;
    for (int free = 0; free < free_slots; ++fd) {
      if (::fcntl(fd, F_GETFD) < 0) ++free;
    }
    rlimit lowered = saved_;
    lowered.rlim_cur = static_cast<rlim_t>(fd);
    ok_ = ::setrlimit(RLIMIT_NOFILE, &lowered) == 0;
  }
  ~descriptor_squeeze() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  descriptor_squeeze(const descriptor_squeeze&) = delete;
  descriptor_squeeze& operator=(const descriptor_squeeze&) = delete;
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

std::size_t kernel_socket_buffer_bytes() {
  std::ifstream in("/proc/sys/net/core/wmem_default");
  std::size_t bytes = 0;
  return in >> bytes ? bytes : 212992;
}

json hello() { return {{"op", "hello"}}; }

bool answered_ok(client& c) {
  auto reply = c.call(hello());
  return reply && (*reply)["ok"] == true;
}

/// The busy reply a refused client gets before the server closes its connection.
std::string busy_message(client& c) {
  auto line = c.read_line();
  if (!line) return "no reply: " + c.last_error();
  const json reply = json::parse(*line, nullptr, false);
  if (reply.is_discarded() || reply.value("ok", true) || reply["error"]["code"] != "busy") {
    return "not busy: " + *line;
  }
  EXPECT_FALSE(c.read_line()) << "a refused connection stays open";
  return reply["error"]["message"].get<std::string>();
}

TEST_F(ControlServerTest, AClientThatDoesNotReadHoldsAtMostTheOutputBudget) {
  start_server();
  client other = connect();
  const std::string filler(60000, 'x');
  auto registered =
      other.call({{"op", "register"}, {"run", "big"}, {"suggestion", {{"pad", filler}}}});
  ASSERT_TRUE(registered && (*registered)["ok"] == true) << other.last_error();
  auto shown = other.call({{"op", "show"}, {"run", "big"}});
  ASSERT_TRUE(shown);
  const std::size_t reply_bytes = shown->dump().size() + 1;
  std::atomic<std::size_t> shows{0};
  on_loop([&] {
    on_line_ = [&](std::string_view line) {
      if (line.find("\"show\"") != std::string_view::npos) ++shows;
    };
    return 0;
  });

  // 200 pipelined shows (~12 MB of replies) from a client that does not read.
  client silent = connect();
  std::string batch;
  for (int i = 0; i < 200; ++i)
    batch += R"({"op":"show","run":"big"})"
             "\n";
  ASSERT_TRUE(silent.send_raw(batch));

  // Another client is answered all along; the silent one stops being answered.
  std::size_t last = 0;
  for (int unchanged = 0; unchanged < 5;) {
    auto status = other.call({{"op", "status"}}, std::chrono::seconds(5));
    ASSERT_TRUE(status) << other.last_error();
    ASSERT_EQ((*status)["ok"], true);
    const std::size_t now = shows.load();
    unchanged = now == last && now > 0 ? unchanged + 1 : 0;
    last = now;
  }
  // Answered: the budget's worth, the reply that passed it, and what the kernel buffers.
  EXPECT_LE(last * reply_bytes,
            options_.output_budget + 2 * reply_bytes + kernel_socket_buffer_bytes());
  EXPECT_LE(on_loop([&] { return server_->peak_queued_reply_bytes(); }),
            options_.output_budget + reply_bytes);

  // Once it reads, it gets every reply, in order.
  for (int i = 0; i < 200; ++i) {
    auto line = silent.read_line();
    ASSERT_TRUE(line) << "reply " << i << ": " << silent.last_error();
    const json reply = json::parse(*line);
    ASSERT_EQ(reply["ok"], true) << i;
    ASSERT_EQ(reply["run"]["run"], "big") << i;
  }
  EXPECT_EQ(shows.load(), 200u);
  // The last write's completion may run on the loop just after its bytes reached the client.
  EXPECT_TRUE(on_loop_until([&] { return server_->queued_reply_bytes() == 0; }))
      << on_loop([&] { return server_->queued_reply_bytes(); }) << " bytes still queued";
}

TEST_F(ControlServerTest, APipelinedBatchLetsOtherClientsIn) {
  start_server();
  client other = connect();
  ASSERT_TRUE(answered_ok(other));
  client batcher = connect();
  std::vector<std::string> order;  // touched on the loop thread only
  bool sent = false;
  on_loop([&] {
    on_line_ = [&](std::string_view line) {
      const bool status = line.find("status") != std::string_view::npos;
      order.emplace_back(status ? "status" : "hello");
      // The other client asks while the batch is being answered.
      if (!status && !sent)
        sent = other.send_raw(R"({"op":"status"})"
                              "\n");
    };
    return 0;
  });
  std::string batch;
  for (int i = 0; i < 1000; ++i)
    batch += R"({"op":"hello"})"
             "\n";  // one read's worth
  ASSERT_LE(batch.size(), 16u * 1024);
  ASSERT_TRUE(batcher.send_raw(batch));
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(batcher.read_line()) << i << batcher.last_error();
  auto status = other.read_line();
  ASSERT_TRUE(status) << other.last_error();
  EXPECT_EQ(json::parse(*status)["ok"], true);

  const auto seen = on_loop([&] {
    on_line_ = nullptr;
    return order;
  });
  ASSERT_EQ(seen.size(), 1001u);
  const auto at = std::find(seen.begin(), seen.end(), "status") - seen.begin();
  // Answered after a turn or two of the batch (64 lines each), not after all of it.
  EXPECT_LT(at, 300) << "the status waited for " << at << " lines of the batch";
}

TEST_F(ControlServerTest, AUidPastItsQuotaIsBusyWhileAdminsAreNotHeldToIt) {
  control_server_options opts;
  opts.limits.max_connections_per_uid = 2;
  opts.limits.admin_uids = {};  // the test's own uid is an ordinary user here
  start_server(opts);
  client a = connect();
  client b = connect();
  ASSERT_TRUE(answered_ok(a));
  ASSERT_TRUE(answered_ok(b));
  client c = connect();
  const std::string message = busy_message(c);
  EXPECT_THAT(message, HasSubstr(fmt::format("uid {} has 2 connections open", ::getuid())));
  EXPECT_THAT(message, HasSubstr("socket.max_connections_per_uid = 2"));
  EXPECT_TRUE(answered_ok(a));  // the others keep being served

  // A place freed is a place for the same uid again.
  b.close();
  ASSERT_TRUE(wait_for_connections(a, 1));
  client d = connect();
  EXPECT_TRUE(answered_ok(d));

  // Made an admin (as a reload of socket.admin_uids does), the uid is not held to the quota.
  control_server_limits limits = options_.limits;
  limits.admin_uids = {::getuid()};
  on_loop([&] {
    server_->set_limits(limits);
    return 0;
  });
  client e = connect();
  client f = connect();
  EXPECT_TRUE(answered_ok(e));
  EXPECT_TRUE(answered_ok(f));
}

TEST_F(ControlServerTest, ARefusedClientCanStillSendItsRequestAndRead) {
  control_server_options opts;
  opts.limits.max_connections = 1;
  start_server(opts);
  client first = connect();
  ASSERT_TRUE(answered_ok(first));
  // Clients write their request before they read: that write must not fail (EPIPE) because the
  // busy connection was already closed, or the client never learns why it was refused.
  // Here it writes only once the server is done answering (the busy line, then end of file).
  raw_client refused;
  ASSERT_TRUE(refused.connect(options_.path));
  auto line = refused.read_line(std::chrono::seconds(5));
  ASSERT_TRUE(line);
  EXPECT_EQ(json::parse(*line)["error"]["code"], "busy");
  EXPECT_FALSE(refused.read_line(std::chrono::seconds(5)));
  EXPECT_TRUE(refused.send(hello().dump() + "\n")) << sweepd::io::errno_text(errno);
}

TEST_F(ControlServerTest, TheLastSlotsAreKeptForAdmins) {
  control_server_options opts;
  opts.limits.max_connections = 16;  // two kept for admins
  opts.limits.admin_uids = {};
  start_server(opts);
  std::vector<client> users;
  for (int i = 0; i < 14; ++i) {
    users.push_back(connect());
    ASSERT_TRUE(answered_ok(users.back())) << i;
  }
  client refused = connect();
  EXPECT_THAT(busy_message(refused),
              HasSubstr("the last 2 of socket.max_connections = 16 are kept for root and "
                        "socket.admin_uids"));

  control_server_limits limits = options_.limits;
  limits.admin_uids = {::getuid()};
  on_loop([&] {
    server_->set_limits(limits);
    return 0;
  });
  client operator1 = connect();
  client operator2 = connect();
  EXPECT_TRUE(answered_ok(operator1));
  EXPECT_TRUE(answered_ok(operator2));
  client extra = connect();
  EXPECT_THAT(busy_message(extra), HasSubstr("16 open, the limit (socket.max_connections)"));
}

TEST_F(ControlServerTest, OutOfDescriptorsNewClientsHearBusyAndServingGoesOn) {
  start_server();
  // Every client socket exists before the squeeze: only the server's accept() needs descriptors.
  std::vector<raw_client> clients(12);
  for (const raw_client& c : clients) ASSERT_TRUE(c.valid());
  std::vector<std::size_t> served;
  std::size_t busy = 0;
  std::size_t next = 0;
  {
    descriptor_squeeze squeeze(2);
    ASSERT_TRUE(squeeze.ok());
    for (; next < 8 && busy < 2; ++next) {
      raw_client& c = clients[next];
      ASSERT_TRUE(c.connect(options_.path)) << next;
      ASSERT_TRUE(c.send(hello().dump() + "\n"));
      auto line = c.read_line(std::chrono::seconds(5));
      ASSERT_TRUE(line) << "client " << next << " got no answer: it hangs in the backlog";
      const json reply = json::parse(*line);
      if (reply["ok"] == true) {
        served.push_back(next);
      } else {
        EXPECT_EQ(reply["error"]["code"], "busy") << *line;
        EXPECT_THAT(reply["error"]["message"].get<std::string>(), HasSubstr("file descriptors"));
        EXPECT_FALSE(c.read_line(std::chrono::seconds(5)));  // then closed
        ++busy;
      }
    }
    EXPECT_EQ(busy, 2u);
    ASSERT_FALSE(served.empty());
    // The served ones still are; one leaving makes room for a newcomer.
    raw_client& first = clients[served.front()];
    ASSERT_TRUE(first.send(hello().dump() + "\n"));
    ASSERT_TRUE(first.read_line(std::chrono::seconds(5)));
    clients[served.back()].close();
    const std::size_t left = served.size() - 1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (std::size_t counted = 0; counted != left;) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline);
      ASSERT_TRUE(first.send(R"({"op":"status"})"
                             "\n"));
      auto line = first.read_line(std::chrono::seconds(5));
      ASSERT_TRUE(line);
      counted = json::parse(*line)["connections"].get<std::size_t>();
    }
    raw_client& newcomer = clients[next];
    ASSERT_TRUE(newcomer.connect(options_.path));
    ASSERT_TRUE(newcomer.send(hello().dump() + "\n"));
    auto line = newcomer.read_line(std::chrono::seconds(5));
    ASSERT_TRUE(line);
    EXPECT_EQ(json::parse(*line)["ok"], true) << *line;
  }
  EXPECT_EQ(on_loop([&] { return server_->refused_without_descriptors(); }), 2u);
}

TEST(ControlServerOpen, RefusesAPathAnotherServerListensOn) {
  test::temp_dir dir;
  asio::io_context io;
  control_server_options opts;
  opts.path = dir.file("s.sock");
  auto echo = [](std::string_view, const peer_credentials&, bool) { return std::string("{}\n"); };
  control_server first(io, opts, echo);
  ASSERT_EQ(first.open(), core::success);
  control_server second(io, opts, echo);
  const auto opened = second.open();
  ASSERT_FALSE(opened);
  EXPECT_THAT(opened.error().message, HasSubstr("another process"));
  EXPECT_THAT(opened.error().message, HasSubstr(opts.path));
}

TEST(ControlServerOpen, ReplacesAStaleSocketFile) {
  test::temp_dir dir;
  asio::io_context io;
  control_server_options opts;
  opts.path = dir.file("s.sock");
  auto echo = [](std::string_view, const peer_credentials&, bool) { return std::string("{}\n"); };
  {
    // A socket file nobody listens on any more, as a killed daemon leaves it.
    asio::local::stream_protocol::acceptor stale(io,
                                                 asio::local::stream_protocol::endpoint(opts.path));
  }
  ASSERT_TRUE(std::filesystem::exists(opts.path));
  control_server server(io, opts, echo);
  EXPECT_EQ(server.open(), core::success);
}

TEST(ControlServerOpen, RefusesAPathThatIsNotASocket) {
  test::temp_dir dir;
  asio::io_context io;
  control_server_options opts;
  opts.path = dir.file("s.sock");
  std::ofstream(opts.path) << "precious";
  control_server server(io, opts, [](std::string_view, const peer_credentials&, bool) {
    return std::string("{}\n");
  });
  const auto opened = server.open();
  ASSERT_FALSE(opened);
  EXPECT_THAT(opened.error().message, HasSubstr("is not a socket"));
  std::ifstream in(opts.path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST(ControlServerOpen, CreatesAMissingSocketDirectory) {
  test::temp_dir dir;
  asio::io_context io;
  control_server_options opts;
  opts.path = dir.file("run/sweepd/s.sock");
  control_server server(io, opts, [](std::string_view, const peer_credentials&, bool) {
    return std::string("{}\n");
  });
  EXPECT_EQ(server.open(), core::success);
  EXPECT_TRUE(std::filesystem::exists(opts.path));
}

TEST(ControlServerDeferred, ALaterReplyKeepsItsConnectionsOrderAndOthersAreServedMeanwhile) {
  test::temp_dir dir;
  asio::io_context io;
  asio::steady_timer gate(io, asio::steady_timer::time_point::max());
  control_server_options opts;
  opts.path = dir.file("s.sock");
  control_server server(
      io, opts, [&](std::string_view line, const peer_credentials&, bool) -> reply {
        if (line != "later") return std::string(line) + "\n";
        reply r;
        r.later = [&]() -> asio::awaitable<std::string> {
          co_await gate.async_wait(asio::as_tuple(asio::use_awaitable));  // until the test opens it
          co_return "later-done\n";
        };
        return r;
      });
  ASSERT_EQ(server.open(), core::success);
  server.start();
  std::thread loop([&] { io.run(); });

  client a;
  client b;
  ASSERT_TRUE(a.connect(opts.path));
  ASSERT_TRUE(b.connect(opts.path));
  ASSERT_TRUE(a.send_raw("later\nafter\n"));
  ASSERT_TRUE(b.send_raw("b\n"));
  EXPECT_EQ(b.read_line(), "b");                              // served while a's request waits
  EXPECT_FALSE(a.read_line(std::chrono::milliseconds(100)));  // nothing for a yet, not even "after"
  asio::post(io, [&] { gate.cancel(); });
  EXPECT_EQ(a.read_line(), "later-done");
  EXPECT_EQ(a.read_line(), "after");
  asio::post(io, [&] { server.stop(); });
  loop.join();
}

}  // namespace
}  // namespace sweepd::io
