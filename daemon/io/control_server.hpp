#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <string_view>

namespace sweepd::io {

namespace asio = boost::asio;

/// The peer of a connection, from SO_PEERCRED at accept time.
struct peer_credentials {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::int32_t pid = 0;
  /// The peer process's start time when the connection was accepted (clock ticks since boot; 0
  /// when unknown), so that a pid reused later is not taken for it.
  std::uint64_t start_time = 0;
  /// The connection's socket, valid while a handler runs (SO_PEERPIDFD needs it).
  int socket_fd = -1;
};

struct control_server_options {
  std::string path;
  std::uint32_t mode = 0660;
  std::string group;  // empty: leave the group as created
  std::size_t max_connections = 4096;
  std::size_t max_line_bytes = 65536;
};

/// The JSON-lines control socket (DESIGN §3): accepts connections on one thread, splits each
/// stream into lines and answers every line, in order, with what the handler returns. Pipelined
/// lines read together are answered with one write. A line over max_line_bytes is answered
/// `too_large` and the connection closed; past max_connections a new connection is answered
/// `busy` and closed. Nothing a client sends can throw out of here.
class control_server {
 public:
  /// Answers one request line (without '\n'); returns the reply with its '\n'.
  using line_handler = std::function<std::string(std::string_view line, const peer_credentials&)>;

  control_server(asio::io_context& io, control_server_options options, line_handler handler);
  ~control_server();
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;

  /// Binds the socket (or adopts the one systemd passed); an error message naming the path on
  /// failure. Refuses to replace a socket another process is still listening on.
  std::optional<std::string> open();
  /// Starts accepting; connections are served until stop().
  void start();
  /// Stops accepting, closes every connection and removes the socket file this server created.
  void stop();

  std::size_t connections() const { return connections_.size(); }
  /// Applies new limits to connections accepted and lines read from now on (config reload).
  void set_limits(std::size_t max_connections, std::size_t max_line_bytes);
  const std::string& path() const { return options_.path; }

 private:
  using socket_type = asio::local::stream_protocol::socket;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::list<socket_type>::iterator conn);
  asio::awaitable<void> refuse_busy(socket_type sock);
  /// Answers every complete line at the front of `buffer` and removes them from it.
  std::string answer_complete_lines(std::string& buffer, const peer_credentials& peer);
  std::string answer_line(std::string_view line, const peer_credentials& peer);
  std::optional<std::string> bind_socket();
  std::optional<std::string> apply_permissions();

  asio::io_context& io_;
  control_server_options options_;
  line_handler handler_;
  asio::local::stream_protocol::acceptor acceptor_;
  std::list<socket_type> connections_;
  bool created_file_ = false;
  bool stopped_ = false;
};

}  // namespace sweepd::io
