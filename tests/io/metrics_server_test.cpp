#include "io/metrics_server.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <memory>
#include <thread>

#include "support/http_support.hpp"

namespace sweepd::io {
namespace {

using ::testing::HasSubstr;

/// A metrics server on 127.0.0.1:0 with two routes, its loop on its own thread.
class MetricsServerTest : public ::testing::Test {
 protected:
  void start(metrics_server_options opts = {}) {
    opts.listen = "127.0.0.1:0";
    server_ = std::make_unique<metrics_server>(
        io_, opts,
        std::map<std::string, metrics_server::route>{
            {"/metrics",
             [this] {
               ++scrapes_;
               return http_answer{200, "text/plain; version=0.0.4; charset=utf-8", "up 1\n"};
             }},
            {"/healthz", [] {
               return http_answer{503, "text/plain", "journal: disk full\n"};
             }}});
    ASSERT_EQ(server_->open(), core::success);
    port_ = server_->local_port();
    ASSERT_NE(port_, 0);
    server_->start();
    loop_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_) {
      std::promise<void> stopped;
      boost::asio::post(io_, [&] {
        server_->stop();
        stopped.set_value();
      });
      stopped.get_future().wait();
    }
    work_.reset();
    io_.stop();
    if (loop_.joinable()) loop_.join();
  }

  /// Connections open, asked on the loop's thread.
  std::size_t connections() {
    std::promise<std::size_t> n;
    boost::asio::post(io_, [&] { n.set_value(server_->connections()); });
    return n.get_future().get();
  }

  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  std::unique_ptr<metrics_server> server_;
  std::uint16_t port_ = 0;
  std::atomic<int> scrapes_{0};
  std::thread loop_;
};

TEST_F(MetricsServerTest, GetOnARouteAnswersItsStatusTypeAndBody) {
  start();
  const auto r = test::http_get(port_, "/metrics");
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body, "up 1\n");
  EXPECT_EQ(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.header("Content-Length"), "5");
  EXPECT_EQ(r.header("Cache-Control"), "no-store");
  const auto h = test::http_get(port_, "/healthz");
  EXPECT_EQ(h.status, 503);
  EXPECT_EQ(h.body, "journal: disk full\n");
}

TEST_F(MetricsServerTest, AQueryStringIsIgnored) {
  start();
  EXPECT_EQ(test::http_get(port_, "/metrics?name[]=up").status, 200);
}

TEST_F(MetricsServerTest, OtherMethodsOnARouteAre405WithAllowGet) {
  start();
  for (const char* method : {"HEAD", "POST", "PUT", "DELETE", "OPTIONS"}) {
    const auto r = test::http_request(port_, method, "/metrics");
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_EQ(r.header("Allow"), "GET") << method;
  }
  EXPECT_EQ(scrapes_, 0) << "a refused request must not run the route";
}

TEST_F(MetricsServerTest, OtherPathsAre404WhateverTheMethod) {
  start();
  EXPECT_EQ(test::http_get(port_, "/").status, 404);
  EXPECT_EQ(test::http_get(port_, "/metrics/").status, 404);
  EXPECT_EQ(test::http_get(port_, "/api/v1/status").status, 404);
  EXPECT_EQ(test::http_request(port_, "POST", "/x").status, 404);
}

TEST_F(MetricsServerTest, ARequestWithABodyIsRefused) {
  start();
  const auto r = test::parse_http_reply(test::http_exchange(
      port_, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
  EXPECT_EQ(r.status, 400) << r.head;
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_EQ(scrapes_, 0);
}

TEST_F(MetricsServerTest, AnOversizedHeadIsAnswered431AndClosed) {
  metrics_server_options opts;
  opts.max_header_bytes = 1024;
  start(opts);
  const std::string raw =
      "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n";
  const auto r = test::parse_http_reply(test::http_exchange(port_, raw));
  EXPECT_EQ(r.status, 431) << r.head;
  EXPECT_EQ(scrapes_, 0);
}

TEST_F(MetricsServerTest, GarbageIsAnswered400) {
  start();
  const auto r =
      test::parse_http_reply(test::http_exchange(port_, "this is not http at all\r\n\r\n"));
  EXPECT_EQ(r.status, 400) << r.head;
}

TEST_F(MetricsServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  const std::string one = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string last = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const std::string raw = test::http_exchange(port_, one + one + last);
  std::size_t answers = 0;
  for (std::size_t at = 0; (at = raw.find("HTTP/1.1 200", at)) != std::string::npos; ++at) {
    ++answers;
  }
  EXPECT_EQ(answers, 3u) << raw;
  EXPECT_EQ(scrapes_, 3);
}

TEST_F(MetricsServerTest, ASlowOrIdleClientIsCutOffAtTheReadDeadline) {
  metrics_server_options opts;
  opts.read_timeout = std::chrono::milliseconds(200);
  start(opts);
  // Half a request, then nothing: the server closes the connection after the deadline, well
  // before the client's own 10 s.
  const auto started = std::chrono::steady_clock::now();
  const std::string raw = test::http_exchange(port_, "GET /metrics HTTP/1.1\r\nHo");
  EXPECT_EQ(raw, "");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_EQ(connections(), 0u);
}

TEST_F(MetricsServerTest, ConnectionsPastTheLimitAreClosedAtOnce) {
  metrics_server_options opts;
  opts.max_connections = 1;
  opts.read_timeout = std::chrono::seconds(5);
  start(opts);
  // The first connection holds the only slot with half a request.
  std::thread holder([&] { test::http_exchange(port_, "GET /met", std::chrono::seconds(2)); });
  for (int i = 0; i < 200 && connections() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // no event says it was accepted
  }
  ASSERT_EQ(connections(), 1u);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(test::http_get(port_, "/metrics").status, 0) << "closed without an answer";
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
  holder.join();
}

TEST_F(MetricsServerTest, AnAddressThatCannotBeBoundIsAnError) {
  metrics_server taken(io_, {.listen = "127.0.0.1:0"}, {});
  ASSERT_EQ(taken.open(), core::success);
  metrics_server second(io_, {.listen = taken.local_address()}, {});
  const auto opened = second.open();
  ASSERT_FALSE(opened);
  EXPECT_THAT(opened.error().message, HasSubstr(taken.local_address()));
  metrics_server nonsense(io_, {.listen = "no-port"}, {});
  EXPECT_FALSE(nonsense.open());
}

TEST_F(MetricsServerTest, Ipv6LoopbackIsBracketedInItsAddress) {
  metrics_server v6(io_, {.listen = "[::1]:0"}, {});
  if (auto opened = v6.open(); !opened) {
    GTEST_SKIP() << "no IPv6 loopback here: " << opened.error();
  }
  EXPECT_THAT(v6.local_address(), ::testing::StartsWith("[::1]:"));
}

}  // namespace
}  // namespace sweepd::io
