#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <string>

#include "core/result.hpp"

namespace sweepd::io {

namespace asio = boost::asio;

/// What a route answers: status, media type and body.
struct http_answer {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct metrics_server_options {
  /// HOST:PORT (IPv6 hosts in brackets; port 0 lets the kernel choose).
  std::string listen;
  /// Largest request head (request line and headers) read; a larger one is answered 431.
  std::size_t max_header_bytes = std::size_t{8} * 1024;
  /// A request must arrive whole within this; an idle keep-alive connection is closed after it.
  std::chrono::milliseconds read_timeout{5000};
  /// Connections served at once; one past it is closed at once (a scraper opens one or two).
  std::size_t max_connections = 32;
};

/// The HTTP endpoint for Prometheus (`metrics.listen`): Beast on the daemon's event loop, one
/// coroutine per connection, keep-alive. Serves GET on the routes it was given; any other method on
/// a route is 405 (with Allow: GET), any other path 404, a request with a body 400 and a head over
/// the limit 431. Requests are bounded in size and time, connections in number, so a scraper that
/// misbehaves costs a bounded amount. Because it runs on the event loop, an answer at all says the
/// loop is turning.
class metrics_server {
 public:
  using route = std::function<http_answer()>;

  metrics_server(asio::io_context& io, metrics_server_options options,
                 std::map<std::string, route> routes);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  /// Resolves and binds the address; an error message naming it on failure.
  core::result<void> open();
  /// Starts accepting; connections are served until stop().
  void start();
  /// Stops accepting and closes every connection.
  void stop();

  /// The address bound ("127.0.0.1:9464"), with the kernel's port when 0 was asked for.
  std::string local_address() const;
  std::uint16_t local_port() const;
  std::size_t connections() const { return connections_.size(); }

 private:
  using socket_type = asio::ip::tcp::socket;
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::list<socket_type>::iterator sock);

  asio::io_context& io_;
  metrics_server_options options_;
  std::map<std::string, route> routes_;
  asio::ip::tcp::acceptor acceptor_;
  std::list<socket_type> connections_;
  bool stopped_ = false;
};

}  // namespace sweepd::io
