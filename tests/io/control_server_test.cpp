#include "io/control_server.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include "core/protocol.hpp"
#include "core/service.hpp"
#include "core/supervisor.hpp"
#include "io/client.hpp"
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
    if (opts.max_connections == 0) opts.max_connections = 4096;
    options_ = opts;
    server_ = std::make_unique<control_server>(
        io_, opts, [this](std::string_view line, const peer_credentials& peer) {
          last_peer_ = peer;
          if (line == "throw") throw std::runtime_error("injected");
          const core::caller who{peer.uid, peer.pid, false};
          return service_
              .handle(line, who, {core::mono_clock::now(), std::chrono::system_clock::now()})
              .reply;
        });
    auto err = server_->open();
    ASSERT_FALSE(err) << *err;
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
  opts.max_line_bytes = 1024;
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
  opts.max_line_bytes = 1024;
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
  opts.max_line_bytes = 1024;
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
  opts.max_connections = 2;
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

TEST(ControlServerOpen, RefusesAPathAnotherServerListensOn) {
  test::temp_dir dir;
  asio::io_context io;
  control_server_options opts;
  opts.path = dir.file("s.sock");
  auto echo = [](std::string_view, const peer_credentials&) { return std::string("{}\n"); };
  control_server first(io, opts, echo);
  ASSERT_FALSE(first.open());
  control_server second(io, opts, echo);
  auto err = second.open();
  ASSERT_TRUE(err);
  EXPECT_THAT(*err, HasSubstr("another process"));
  EXPECT_THAT(*err, HasSubstr(opts.path));
}

TEST(ControlServerOpen, ReplacesAStaleSocketFile) {
  test::temp_dir dir;
  asio::io_context io;
  control_server_options opts;
  opts.path = dir.file("s.sock");
  auto echo = [](std::string_view, const peer_credentials&) { return std::string("{}\n"); };
  {
    // A socket file nobody listens on any more, as a killed daemon leaves it.
    asio::local::stream_protocol::acceptor stale(io,
                                                 asio::local::stream_protocol::endpoint(opts.path));
  }
  ASSERT_TRUE(std::filesystem::exists(opts.path));
  control_server server(io, opts, echo);
  auto err = server.open();
  EXPECT_FALSE(err) << *err;
}

TEST(ControlServerOpen, RefusesAPathThatIsNotASocket) {
  test::temp_dir dir;
  asio::io_context io;
  control_server_options opts;
  opts.path = dir.file("s.sock");
  std::ofstream(opts.path) << "precious";
  control_server server(
      io, opts, [](std::string_view, const peer_credentials&) { return std::string("{}\n"); });
  auto err = server.open();
  ASSERT_TRUE(err);
  EXPECT_THAT(*err, HasSubstr("is not a socket"));
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
  control_server server(
      io, opts, [](std::string_view, const peer_credentials&) { return std::string("{}\n"); });
  auto err = server.open();
  EXPECT_FALSE(err) << *err;
  EXPECT_TRUE(std::filesystem::exists(opts.path));
}

}  // namespace
}  // namespace sweepd::io
