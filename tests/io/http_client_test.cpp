#include "io/http_client.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <map>
#include <memory>

#include "core/version.hpp"

namespace sweepd::io {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::as_tuple;
using asio::use_awaitable;
using namespace std::chrono_literals;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(as_tuple(use_awaitable));
}

/// Runs `body` on `io` until it finishes (at most 20 s); rethrows what it threw.
void run(asio::io_context& io, const std::function<asio::awaitable<void>()>& body) {
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(io, body(), [&](std::exception_ptr e) {
    error = std::move(e);
    done = true;
    io.stop();
  });
  io.run_for(20s);
  ASSERT_TRUE(done) << "the test body did not finish in time";
  if (error) std::rethrow_exception(error);
}

struct recorded_request {
  int connection = 0;
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
};

/// A tiny HTTP/1.1 server (TLS when given a context) on 127.0.0.1, port 0, on the test's
/// io_context. Records what it receives; behaviour is set through the public knobs.
class test_server {
 public:
  explicit test_server(asio::io_context& io, ssl::context* tls = nullptr)
      : io_(io), tls_(tls), acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io_, accept_loop(), rethrow);
  }

  std::string port() const { return std::to_string(acceptor_.local_endpoint().port()); }
  std::string url(std::string_view scheme = "http", std::string_view host = "127.0.0.1") const {
    return std::string(scheme) + "://" + std::string(host) + ":" + port();
  }
  /// Waits until `n` connections have ended, whichever side closed them (run() bounds the wait).
  asio::awaitable<void> wait_for_closed(int n) {
    while (closed_connections < n) co_await closed_.async_wait(as_tuple(use_awaitable));
  }
  /// Closes every open connection from the server side.
  void close_all() {
    for (auto* socket : open_) {
      beast::error_code ignored;
      socket->shutdown(tcp::socket::shutdown_both, ignored);
      socket->close(ignored);
    }
  }

  // Knobs.
  std::function<http::response<http::string_body>(const recorded_request&)> respond =
      [](const recorded_request&) {
        http::response<http::string_body> res{http::status::ok, 11};
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"ok":true})";
        return res;
      };
  bool never_answer = false;
  int drop_request = -1;  // index into requests: read it, then close without an answer

  // What happened.
  std::vector<recorded_request> requests;
  int connections = 0;
  int closed_connections = 0;
  int handshake_failures = 0;
  std::string server_name;  // SNI of the last TLS connection

 private:
  static void rethrow(const std::exception_ptr& e) {
    if (e) std::rethrow_exception(e);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(as_tuple(use_awaitable));
      if (ec) co_return;
      asio::co_spawn(io_, session(std::move(socket), ++connections), rethrow);
    }
  }

  asio::awaitable<void> session(tcp::socket socket, int id) {
    if (tls_) {
      ssl::stream<tcp::socket> stream(std::move(socket), *tls_);
      open_.push_back(&stream.next_layer());
      auto [ec] =
          co_await stream.async_handshake(ssl::stream_base::server, as_tuple(use_awaitable));
      if (ec) {
        ++handshake_failures;
      } else {
        const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
        server_name = name ? name : "";
        co_await serve(stream, id);
      }
      forget(&stream.next_layer());
    } else {
      open_.push_back(&socket);
      co_await serve(socket, id);
      forget(&socket);
    }
    ++closed_connections;
    closed_.cancel();  // wakes wait_for_closed
  }

  void forget(tcp::socket* socket) {
    open_.erase(std::remove(open_.begin(), open_.end(), socket), open_.end());
    beast::error_code ignored;
    socket->close(ignored);
  }

  template <class Stream>
  asio::awaitable<void> serve(Stream& stream, int id) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [ec, n] = co_await http::async_read(stream, buffer, req, as_tuple(use_awaitable));
      if (ec == http::error::end_of_stream) co_return;
      if (ec) {
        // Not HTTP (a TLS ClientHello, say): answer like a real server would, then close.
        http::response<http::string_body> bad{http::status::bad_request, 11};
        bad.keep_alive(false);
        bad.body() = "bad request";
        bad.prepare_payload();
        co_await http::async_write(stream, bad, as_tuple(use_awaitable));
        co_return;
      }
      recorded_request rec;
      rec.connection = id;
      rec.method = std::string(req.method_string());
      rec.target = std::string(req.target());
      for (const auto& field : req) rec.headers[lower(field.name_string())] = field.value();
      rec.body = req.body();
      requests.push_back(rec);
      const int index = static_cast<int>(requests.size()) - 1;
      if (never_answer) {
        co_await sleep_for(1h);
        co_return;
      }
      if (index == drop_request) co_return;
      auto res = respond(rec);
      res.keep_alive(res.keep_alive() && req.keep_alive());
      if (!res.chunked()) res.prepare_payload();
      auto [write_ec, written] = co_await http::async_write(stream, res, as_tuple(use_awaitable));
      if (write_ec || !res.keep_alive()) co_return;
    }
  }

  asio::io_context& io_;
  ssl::context* tls_;
  asio::steady_timer closed_{io_, asio::steady_timer::time_point::max()};
  tcp::acceptor acceptor_;
  std::vector<tcp::socket*> open_;
};

// Built outside co_await expressions: GCC 12 rejects braced lists of string literals inside them
// ("array used as initializer").
using header_list = std::vector<std::pair<std::string, std::string>>;
header_list no_headers() { return {}; }

url parsed(const std::string& text) {
  auto u = parse_url(text);
  EXPECT_TRUE(u.has_value()) << text;
  return u.value_or(url{});
}

class HttpClient : public ::testing::Test {
 protected:
  asio::io_context io_;
};

TEST_F(HttpClient, PostRoundTripSendsHeadersAndBody) {
  test_server server(io_);
  server.respond = [](const recorded_request&) {
    http::response<http::string_body> res{http::status::too_many_requests, 11};
    res.set("Retry-After", "7");
    res.set("X-Custom-Thing", "yes");
    res.body() = "slow down";
    return res;
  };
  http_client client(io_, parsed(server.url() + "/prefix/"), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    header_list headers{{"Authorization", "Basic YXBpOmtleQ=="}};
    auto r = co_await client.post("/graphql", R"({"query":"{viewer{id}}"})", std::move(headers));
    EXPECT_EQ(r.error, "");
    EXPECT_TRUE(r.response.has_value());
    if (!r.response) co_return;
    EXPECT_EQ(r.response->status, 429u);
    EXPECT_EQ(r.response->body, "slow down");
    EXPECT_EQ(r.response->header("retry-after"), "7");
    EXPECT_EQ(r.response->header("RETRY-AFTER"), "7");
    EXPECT_EQ(r.response->header("x-custom-thing"), "yes");
    EXPECT_EQ(r.response->header("x-absent"), std::nullopt);
    for (const auto& [name, value] : r.response->headers) EXPECT_EQ(name, lower(name));
  });
  ASSERT_EQ(server.requests.size(), 1u);
  const auto& req = server.requests[0];
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/prefix/graphql");
  EXPECT_EQ(req.body, R"({"query":"{viewer{id}}"})");
  EXPECT_EQ(req.headers.at("host"), "127.0.0.1:" + server.port());
  EXPECT_EQ(req.headers.at("content-type"), "application/json");
  EXPECT_EQ(req.headers.at("content-length"), std::to_string(req.body.size()));
  EXPECT_EQ(req.headers.at("user-agent"), std::string("sweepd/") + core::version);
  EXPECT_EQ(req.headers.at("authorization"), "Basic YXBpOmtleQ==");
}

TEST_F(HttpClient, PathWithoutSlashAndEmptyPrefix) {
  test_server server(io_);
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("graphql", "{}", no_headers());
    EXPECT_EQ(r.error, "");
  });
  ASSERT_EQ(server.requests.size(), 1u);
  EXPECT_EQ(server.requests[0].target, "/graphql");
}

TEST_F(HttpClient, ExtraHeaderReplacesTheDefault) {
  test_server server(io_);
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    header_list headers{{"User-Agent", "W&B Public Client 0.0"}};
    co_await client.post("/graphql", "{}", std::move(headers));
  });
  ASSERT_EQ(server.requests.size(), 1u);
  EXPECT_EQ(server.requests[0].headers.at("user-agent"), "W&B Public Client 0.0");
}

TEST_F(HttpClient, KeepAliveReusesTheConnection) {
  test_server server(io_);
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    auto first = co_await client.post("/graphql", "{\"n\":1}", no_headers());
    EXPECT_EQ(first.error, "");
    EXPECT_EQ(client.idle_connections(), 1u);
    auto second = co_await client.post("/graphql", "{\"n\":2}", no_headers());
    EXPECT_EQ(second.error, "");
    EXPECT_EQ(client.idle_connections(), 1u);
  });
  EXPECT_EQ(server.connections, 1);
  ASSERT_EQ(server.requests.size(), 2u);
  EXPECT_EQ(server.requests[1].body, "{\"n\":2}");
}

TEST_F(HttpClient, ConnectionCloseResponseIsNotKept) {
  test_server server(io_);
  server.respond = [](const recorded_request&) {
    http::response<http::string_body> res{http::status::ok, 11};
    res.keep_alive(false);
    res.body() = "{}";
    return res;
  };
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    EXPECT_EQ((co_await client.post("/graphql", "{}", no_headers())).error, "");
    EXPECT_EQ(client.idle_connections(), 0u);
    EXPECT_EQ((co_await client.post("/graphql", "{}", no_headers())).error, "");
  });
  EXPECT_EQ(server.connections, 2);
}

TEST_F(HttpClient, ConcurrentPostsUseSeparateConnections) {
  using namespace asio::experimental::awaitable_operators;
  test_server server(io_);
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    auto [a, b] = co_await (client.post("/graphql", "{\"n\":1}", no_headers()) &&
                            client.post("/graphql", "{\"n\":2}", no_headers()));
    EXPECT_EQ(a.error, "");
    EXPECT_EQ(b.error, "");
    EXPECT_EQ(client.idle_connections(), 2u);
  });
  EXPECT_EQ(server.connections, 2);
}

/// Answers "big" requests with a body of `size` bytes, others with {}.
std::function<http::response<http::string_body>(const recorded_request&)> big_answer(
    std::size_t size, bool chunked = false) {
  return [size, chunked](const recorded_request& req) {
    http::response<http::string_body> res{http::status::ok, 11};
    res.body() = req.body == "big" ? std::string(size, 'x') : "{}";
    res.prepare_payload();
    if (chunked) res.chunked(true);
    return res;
  };
}

TEST_F(HttpClient, BodyOverTheCapIsRefusedAndItsConnectionNotReused) {
  test_server server(io_);
  server.respond = big_answer(default_max_response_body + 1);
  http_client client(io_, parsed(server.url()), 5s);
  EXPECT_EQ(client.max_response_body(), 8u * 1024 * 1024);
  run(io_, [&]() -> asio::awaitable<void> {
    EXPECT_EQ((co_await client.post("/graphql", "small", no_headers())).error, "");
    EXPECT_EQ(client.idle_connections(), 1u);
    // On the kept-alive connection: refused, and not retried on a fresh one.
    auto r = co_await client.post("/graphql", "big", no_headers());
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(r.too_large);
    EXPECT_EQ(r.error, "127.0.0.1:" + server.port() + ": the response body is larger than " +
                           std::to_string(default_max_response_body) + " bytes");
    EXPECT_EQ(client.idle_connections(), 0u);
    auto next = co_await client.post("/graphql", "small", no_headers());
    EXPECT_EQ(next.error, "");
    EXPECT_FALSE(next.too_large);
  });
  EXPECT_EQ(server.requests.size(), 3u);
  EXPECT_EQ(server.connections, 2);
}

TEST_F(HttpClient, BodyOfExactlyTheCapIsRead) {
  test_server server(io_);
  server.respond = big_answer(default_max_response_body);
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "big", no_headers());
    EXPECT_EQ(r.error, "");
    EXPECT_FALSE(r.too_large);
    EXPECT_EQ(r.response ? r.response->body.size() : 0u, default_max_response_body);
  });
}

TEST_F(HttpClient, ChunkedBodyOverTheCapIsRefusedAsItArrives) {
  test_server server(io_);
  server.respond = big_answer(5000, true);
  http_client client(io_, parsed(server.url()), 5s);
  client.set_max_response_body(4096);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "big", no_headers());
    EXPECT_TRUE(r.too_large);
    EXPECT_EQ(r.error,
              "127.0.0.1:" + server.port() + ": the response body is larger than 4096 bytes");
    EXPECT_EQ(client.idle_connections(), 0u);
  });
}

TEST_F(HttpClient, ServerClosingAnIdleConnectionIsHandled) {
  test_server server(io_);
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    EXPECT_EQ((co_await client.post("/graphql", "{}", no_headers())).error, "");
    server.close_all();
    // Its end on the server side comes after the close sent the client its FIN.
    co_await server.wait_for_closed(1);
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_EQ(r.error, "");
    EXPECT_TRUE(r.response.has_value());
  });
  EXPECT_EQ(server.connections, 2);
  // The closed connection was noticed before the request was sent on it.
  EXPECT_EQ(server.requests.size(), 2u);
}

TEST_F(HttpClient, RequestCutOffOnAReusedConnectionIsRetriedOnceOnAFreshOne) {
  test_server server(io_);
  server.drop_request = 1;  // the second request, sent on the kept-alive connection
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    EXPECT_EQ((co_await client.post("/graphql", "{\"n\":1}", no_headers())).error, "");
    auto r = co_await client.post("/graphql", "{\"n\":2}", no_headers());
    EXPECT_EQ(r.error, "");
    EXPECT_TRUE(r.response.has_value());
  });
  EXPECT_EQ(server.connections, 2);
  ASSERT_EQ(server.requests.size(), 3u);
  EXPECT_EQ(server.requests[1].connection, 1);
  EXPECT_EQ(server.requests[2].connection, 2);
  EXPECT_EQ(server.requests[2].body, "{\"n\":2}");
}

TEST_F(HttpClient, RequestCutOffOnAFreshConnectionIsNotRetried) {
  test_server server(io_);
  server.drop_request = 0;
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(contains(r.error, "127.0.0.1:" + server.port())) << r.error;
    EXPECT_TRUE(contains(r.error, "connection closed")) << r.error;
  });
  EXPECT_EQ(server.requests.size(), 1u);
  EXPECT_EQ(server.connections, 1);
}

TEST_F(HttpClient, ServerThatNeverAnswersTimesOut) {
  test_server server(io_);
  server.never_answer = true;
  http_client client(io_, parsed(server.url()), 300ms);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(contains(r.error, "timeout after 300 ms waiting for the response")) << r.error;
    EXPECT_TRUE(contains(r.error, "127.0.0.1:" + server.port())) << r.error;
    EXPECT_EQ(client.idle_connections(), 0u);
  });
}

TEST_F(HttpClient, SetTimeoutAppliesToTheNextRequest) {
  test_server server(io_);
  server.never_answer = true;
  http_client client(io_, parsed(server.url()), 30s);
  client.set_timeout(200ms);
  EXPECT_EQ(client.timeout(), 200ms);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_TRUE(contains(r.error, "timeout after 200 ms")) << r.error;
  });
}

TEST_F(HttpClient, ConnectionRefusedNamesHostAndPort) {
  std::string port;
  {
    tcp::acceptor closed(io_, {asio::ip::make_address("127.0.0.1"), 0});
    port = std::to_string(closed.local_endpoint().port());
  }
  http_client client(io_, parsed("http://127.0.0.1:" + port), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(contains(r.error, "127.0.0.1:" + port)) << r.error;
    EXPECT_TRUE(contains(r.error, "connect")) << r.error;
  });
}

TEST_F(HttpClient, InvalidHeaderIsRefusedWithoutEchoingItsValue) {
  test_server server(io_);
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    header_list injected{{"Authorization", "Basic c2VjcmV0\r\nX-Injected: 1"}};
    auto r = co_await client.post("/graphql", "{}", std::move(injected));
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(contains(r.error, "Authorization")) << r.error;
    EXPECT_FALSE(contains(r.error, "c2VjcmV0")) << r.error;
    header_list spaced{{"Bad Name", "x"}};
    auto bad_name = co_await client.post("/graphql", "{}", std::move(spaced));
    EXPECT_FALSE(bad_name.response.has_value());
    EXPECT_NE(bad_name.error, "");
  });
  EXPECT_EQ(server.requests.size(), 0u);
}

TEST_F(HttpClient, CloseDropsIdleConnections) {
  test_server server(io_);
  http_client client(io_, parsed(server.url()), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    EXPECT_EQ((co_await client.post("/graphql", "{}", no_headers())).error, "");
    EXPECT_EQ(client.idle_connections(), 1u);
    client.close();
    EXPECT_EQ(client.idle_connections(), 0u);
    co_await server.wait_for_closed(1);
    EXPECT_EQ(server.closed_connections, 1);
    // Still usable afterwards, on a new connection.
    EXPECT_EQ((co_await client.post("/graphql", "{}", no_headers())).error, "");
  });
  EXPECT_EQ(server.connections, 2);
}

TEST_F(HttpClient, HttpsToAPlainServerIsATlsHandshakeError) {
  test_server server(io_);
  http_client client(io_, parsed(server.url("https")), 10s);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(contains(r.error, "TLS handshake")) << r.error;
    EXPECT_TRUE(contains(r.error, "127.0.0.1:" + server.port())) << r.error;
  });
  EXPECT_EQ(server.requests.size(), 0u);
}

TEST_F(HttpClient, SilentServerTimesOutTheTlsHandshake) {
  // Accepts and then says nothing: the handshake must end at the deadline, not hang.
  tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = std::to_string(acceptor.local_endpoint().port());
  tcp::socket held(io_);
  acceptor.async_accept(held, [](beast::error_code) {});
  http_client client(io_, parsed("https://127.0.0.1:" + port), 200ms);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(contains(r.error, "timeout after 200 ms during TLS handshake")) << r.error;
  });
}

TEST(HttpClientUrl, ParsesHttpAndHttps) {
  auto u = parse_url("https://api.wandb.ai");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "api.wandb.ai");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->path_prefix, "");

  u = parse_url("HTTP://Wandb.Example.COM:8080/base/path/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "wandb.example.com");
  EXPECT_EQ(u->port, "8080");
  EXPECT_EQ(u->path_prefix, "/base/path");

  u = parse_url("http://127.0.0.1/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, "80");
  EXPECT_EQ(u->path_prefix, "");

  u = parse_url("http://[::1]:9000//");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "9000");
  EXPECT_EQ(u->path_prefix, "");
}

TEST(HttpClientUrl, RefusesWhatItCannotUse) {
  for (const char* bad : {"", "api.wandb.ai", "ftp://api.wandb.ai", "https://", "https://:443",
                          "https://host:", "https://host:0", "https://host:65536",
                          "https://host:12ab", "https://user:pw@host", "https://host/path?query=1",
                          "https://host/#fragment", "https://ho st", "http://[::1",
                          "http://[not-v6]:80", "http://::1:80", "https://host/pa th"}) {
    EXPECT_FALSE(parse_url(bad).has_value()) << bad;
  }
}

TEST(HttpClientUrl, NetlocHasThePortOnlyWhenNotTheDefault) {
  EXPECT_EQ(netloc(*parse_url("https://api.wandb.ai")), "api.wandb.ai");
  EXPECT_EQ(netloc(*parse_url("https://api.wandb.ai:443")), "api.wandb.ai");
  EXPECT_EQ(netloc(*parse_url("http://wandb.local:443")), "wandb.local:443");
  EXPECT_EQ(netloc(*parse_url("http://wandb.local:8080/x")), "wandb.local:8080");
  EXPECT_EQ(netloc(*parse_url("http://[::1]:8080")), "[::1]:8080");
}

// A self-signed certificate made in memory, so that TLS is tested against a real handshake.
struct test_certificate {
  std::string cert_pem;
  std::string key_pem;
};

test_certificate make_certificate(const std::string& subject_alt_names) {
  test_certificate out;
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24L * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("sweepd test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  for (const auto& [nid, value] :
       {std::pair{NID_subject_alt_name, subject_alt_names},
        std::pair{NID_basic_constraints, std::string("critical,CA:TRUE")}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(cert, key, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  out.cert_pem.assign(data, static_cast<std::size_t>(size));
  BIO_free(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  size = BIO_get_mem_data(bio, &data);
  out.key_pem.assign(data, static_cast<std::size_t>(size));
  BIO_free(bio);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

class HttpClientTls : public ::testing::Test {
 protected:
  void use(const test_certificate& cert) {
    server_tls_.use_certificate_chain(asio::buffer(cert.cert_pem));
    server_tls_.use_private_key(asio::buffer(cert.key_pem), ssl::context::pem);
  }

  asio::io_context io_;
  ssl::context server_tls_{ssl::context::tls_server};
};

TEST_F(HttpClientTls, PostsOverVerifiedTlsWithSniAndKeepAlive) {
  const auto cert = make_certificate("DNS:localhost,IP:127.0.0.1");
  use(cert);
  test_server server(io_, &server_tls_);
  http_client client(io_, parsed(server.url("https", "localhost")), 5s);
  EXPECT_EQ(client.add_certificate_authority(cert.cert_pem), core::success);
  run(io_, [&]() -> asio::awaitable<void> {
    auto first = co_await client.post("/graphql", "{\"n\":1}", no_headers());
    EXPECT_EQ(first.error, "");
    EXPECT_TRUE(first.response && first.response->status == 200);
    auto second = co_await client.post("/graphql", "{\"n\":2}", no_headers());
    EXPECT_EQ(second.error, "");
    client.close();
    co_await server.wait_for_closed(1);
  });
  EXPECT_EQ(server.server_name, "localhost");
  EXPECT_EQ(server.connections, 1);
  EXPECT_EQ(server.closed_connections, 1);
  ASSERT_EQ(server.requests.size(), 2u);
  EXPECT_EQ(server.requests[0].headers.at("host"), "localhost:" + server.port());
}

TEST_F(HttpClientTls, IpAddressHostIsVerifiedWithoutSni) {
  const auto cert = make_certificate("DNS:localhost,IP:127.0.0.1");
  use(cert);
  test_server server(io_, &server_tls_);
  http_client client(io_, parsed(server.url("https")), 5s);
  EXPECT_EQ(client.add_certificate_authority(cert.cert_pem), core::success);
  run(io_, [&]() -> asio::awaitable<void> {
    EXPECT_EQ((co_await client.post("/graphql", "{}", no_headers())).error, "");
  });
  EXPECT_EQ(server.server_name, "");
}

TEST_F(HttpClientTls, UntrustedCertificateFailsTheHandshake) {
  use(make_certificate("DNS:localhost,IP:127.0.0.1"));
  test_server server(io_, &server_tls_);
  http_client client(io_, parsed(server.url("https")), 5s);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(contains(r.error, "TLS handshake")) << r.error;
    EXPECT_TRUE(contains(r.error, "certificate")) << r.error;
  });
  EXPECT_EQ(server.requests.size(), 0u);
}

TEST_F(HttpClientTls, CertificateForAnotherHostFailsTheHandshake) {
  const auto cert = make_certificate("DNS:other.example");
  use(cert);
  test_server server(io_, &server_tls_);
  http_client client(io_, parsed(server.url("https", "localhost")), 5s);
  EXPECT_EQ(client.add_certificate_authority(cert.cert_pem), core::success);
  run(io_, [&]() -> asio::awaitable<void> {
    auto r = co_await client.post("/graphql", "{}", no_headers());
    EXPECT_FALSE(r.response.has_value());
    EXPECT_TRUE(contains(r.error, "TLS handshake")) << r.error;
    EXPECT_TRUE(contains(r.error, "mismatch")) << r.error;
  });
  EXPECT_EQ(server.requests.size(), 0u);
}

TEST_F(HttpClientTls, BadCertificateAuthorityIsAnError) {
  http_client tls_client(io_, parsed("https://localhost:1"), 5s);
  EXPECT_FALSE(tls_client.add_certificate_authority("not a certificate"));
  http_client plain_client(io_, parsed("http://localhost:1"), 5s);
  EXPECT_FALSE(plain_client.add_certificate_authority("whatever"));
}

}  // namespace
}  // namespace sweepd::io
