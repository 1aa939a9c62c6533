#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/line_buffer.hpp"
#include "core/result.hpp"

namespace sweepd::io {

namespace asio = boost::asio;

/// The peer of a connection: on the Unix socket from SO_PEERCRED at accept time; on the TLS
/// listener its address, and its principal once its token was verified.
struct peer_credentials {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::int32_t pid = 0;
  /// The peer process's start time when the connection was accepted (clock ticks since boot; 0
  /// when unknown), so that a pid reused later is not taken for it.
  std::uint64_t start_time = 0;
  /// The connection's socket, valid while a handler runs (SO_PEERPIDFD needs it).
  int socket_fd = -1;
  /// A remote connection (the TLS listener): no uid, no process; `address` is the peer's IP.
  bool remote = false;
  std::string address;
  std::string principal;  // set by the authenticator before any request is handled
};

/// The answer to one request line: the reply now, or a coroutine that produces it later (an op
/// that waits on W&B). A connection's later requests wait for it, so replies stay in order;
/// other connections are served meanwhile.
struct reply {
  reply() = default;
  reply(std::string now) : text(std::move(now)) {}  // NOLINT: a plain reply converts implicitly
  /// The handler cannot answer this line while the connection's earlier replies wait (it reads
  /// or changes what they change): the server settles them and asks again.
  static reply after_earlier_replies() {
    reply r;
    r.after_earlier = true;
    return r;
  }
  std::string text;
  std::function<asio::awaitable<std::string>()> later;
  bool after_earlier = false;
};

/// The limits a config reload may change (socket.*).
struct control_server_limits {
  std::size_t max_connections = 4096;
  std::size_t max_connections_per_uid = 1024;
  std::size_t max_line_bytes = 65536;
  /// Uids that may use the slots kept for operators and are not held to the per-uid limit.
  std::vector<std::uint32_t> admin_uids{0};
};

/// Reply bytes a connection may have waiting before sweepd stops answering it until they are
/// written (a client that does not read then holds at most this plus one reply).
inline constexpr std::size_t default_output_budget = std::size_t{256} * 1024;

/// The TLS listener for remote workers (config remote.*).
struct remote_options {
  std::string listen;  // HOST:PORT
  std::chrono::milliseconds handshake_timeout{10000};
  std::size_t max_connections = 1024;
};

/// The verdict on a remote connection's first line: the reply to send, and the principal when the
/// connection is accepted (else it is closed after the reply).
struct authentication {
  std::optional<std::string> principal;
  std::string reply;
};

struct control_server_options {
  std::string path;
  std::uint32_t mode = 0660;
  std::string group;  // empty: leave the group as created
  control_server_limits limits;
  std::size_t output_budget = default_output_budget;
};

/// The JSON-lines control socket (DESIGN §3): accepts connections on one thread, splits each
/// stream into lines and answers every line, in order, with what the handler returns.
///
/// What one client can cost is bounded: pipelined lines are answered one by one and their replies
/// written once they pass the output budget, and nothing more is read or answered on that
/// connection until the write completes; after a few lines (or a couple of milliseconds) of work a
/// connection yields to the others. A line over max_line_bytes is answered `too_large` and the
/// connection closed. Past max_connections (or max_connections_per_uid for one uid, or into the
/// slots kept for admins) a new connection is answered `busy` and closed; so is one that arrives
/// when the process is out of file descriptors (one descriptor is kept in reserve for that).
/// Nothing a client sends can throw out of here.
class control_server {
 public:
  /// Answers one request line (without '\n'); returns the reply with its '\n'. `behind_earlier`:
  /// replies to this connection's earlier lines are still waiting (to be committed); a handler
  /// may then answer reply::after_earlier_replies(), never otherwise.
  using line_handler =
      std::function<reply(std::string_view line, const peer_credentials&, bool behind_earlier)>;
  /// Decides the first line of a remote connection (the `hello` with its token), from the peer's
  /// address. Never sees another line.
  using authenticator = std::function<authentication(std::string_view line, const std::string&)>;

  control_server(asio::io_context& io, control_server_options options, line_handler handler);
  ~control_server();
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;

  /// Binds the socket (or adopts the one systemd passed); an error message naming the path on
  /// failure. Refuses to replace a socket another process is still listening on.
  core::result<void> open();
  /// Binds the TLS listener for remote workers: the same lines, handler, limits and ordering as
  /// the Unix socket, behind a TLS handshake and an authenticated first line, both within
  /// handshake_timeout. An error naming remote.listen on failure.
  core::result<void> open_remote(remote_options options, std::shared_ptr<asio::ssl::context> tls,
                                 authenticator authenticate);
  /// The certificate and key for remote connections accepted from now on (reload).
  void set_tls_context(std::shared_ptr<asio::ssl::context> tls) { tls_ = std::move(tls); }
  /// New remote limits (reload); the address stays.
  void set_remote_limits(std::chrono::milliseconds handshake_timeout, std::size_t max_connections);
  /// Closes every authenticated remote connection whose principal `revoked` names (after a
  /// reload took its token away); how many were closed, by principal. Connections still in their
  /// handshake are left: their hello is checked against the tokens in use when it comes.
  std::map<std::string, std::size_t> close_remote_of(
      const std::function<bool(const std::string& principal)>& revoked);
  /// "HOST:PORT" the TLS listener is bound to; empty when it is off.
  std::string remote_address() const;
  /// Starts accepting; connections are served until stop().
  void start();
  /// Stops accepting, closes every connection and removes the socket file this server created.
  void stop();

  std::size_t connections() const { return connections_.size(); }
  std::size_t remote_connections() const { return remote_open_; }
  /// Applies new limits to connections accepted and lines read from now on (config reload).
  void set_limits(control_server_limits limits);
  const control_server_limits& limits() const { return options_.limits; }
  const std::string& path() const { return options_.path; }

  /// Reply bytes answered but not yet handed to the kernel, over all connections.
  std::size_t queued_reply_bytes() const { return queued_reply_bytes_; }
  /// The most reply bytes any one connection has had waiting at once.
  std::size_t peak_queued_reply_bytes() const { return peak_queued_reply_bytes_; }
  /// Connections answered `busy` because the process had no file descriptor left for them.
  std::size_t refused_without_descriptors() const { return refused_without_descriptors_; }

 private:
  using socket_type = asio::local::stream_protocol::socket;
  using tls_stream = asio::ssl::stream<asio::ip::tcp::socket>;
  struct connection {
    std::variant<socket_type, tls_stream> stream;
    peer_credentials peer;
    std::size_t queued = 0;  // reply bytes answered, not yet written
    /// Closes the underlying socket, ending whatever waits on it.
    void close() noexcept;
  };
  using connection_list = std::list<connection>;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> accept_remote_loop();
  asio::awaitable<void> serve(connection_list::iterator conn);
  /// The TLS handshake and the authenticated first line, then serve_lines.
  asio::awaitable<void> serve_remote(connection_list::iterator conn);
  /// The first line of a remote connection, read within its deadline; nullopt when none came.
  asio::awaitable<std::optional<std::string>> read_first_line(tls_stream& stream,
                                                              core::line_buffer& input);
  /// Answers the lines of one connection until it ends; `input` may hold lines already read.
  template <typename Stream>
  asio::awaitable<void> serve_lines(connection& conn, Stream& stream, core::line_buffer& input);
  /// Closes a connection and forgets it (unless the server stopped, which closed them all).
  void release(connection_list::iterator it);
  asio::awaitable<void> refuse_busy(socket_type sock, std::string reason);
  /// Adds a reply to what `conn` has waiting in `output`.
  void queue_reply(connection& conn, std::string& output, std::string reply);
  /// Writes what `conn` has waiting; false when the connection failed.
  template <typename Stream>
  asio::awaitable<bool> flush(connection& conn, Stream& stream, std::string& output);
  /// A connection's replies not yet queued, in order: the first is a later one.
  struct waiting_replies {
    std::vector<reply> replies;
    std::size_t bytes = 0;  // of the replies already made
    void add(reply r);
  };
  /// Queues the waiting replies in order, each later one once it is ready; false on stop.
  asio::awaitable<bool> settle(connection& conn, std::string& output, waiting_replies& waiting);
  reply answer_line(std::string_view line, const peer_credentials& peer, bool behind_earlier);
  /// Runs a deferred reply to its end; `internal` if it throws.
  asio::awaitable<std::string> await_later(const reply& r);
  bool is_admin(std::uint32_t uid) const;
  /// Accepts and refuses, with the reserve descriptor, connections waiting while the process is
  /// out of descriptors; returns how many.
  std::size_t refuse_waiting_without_descriptors();
  void open_reserve_descriptor();
  void close_reserve_descriptor();
  /// Counts refused connections and logs them in one line at most every few seconds.
  void note_refusal(std::string_view reason, std::size_t count = 1);
  core::result<void> bind_socket();
  core::result<void> apply_permissions();

  asio::io_context& io_;
  control_server_options options_;
  line_handler handler_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::ip::tcp::acceptor remote_acceptor_;
  remote_options remote_;
  std::shared_ptr<asio::ssl::context> tls_;
  authenticator authenticate_;
  std::size_t remote_open_ = 0;
  connection_list connections_;
  std::unordered_map<std::uint32_t, std::size_t> open_by_uid_;
  int reserve_fd_ = -1;
  std::size_t queued_reply_bytes_ = 0;
  std::size_t peak_queued_reply_bytes_ = 0;
  std::size_t refused_without_descriptors_ = 0;
  std::size_t refusals_unlogged_ = 0;
  std::size_t lingering_refusals_ = 0;  // refused connections still reading what their client sent
  std::chrono::steady_clock::time_point last_refusal_log_{};
  bool out_of_descriptors_ = false;  // accept failed with EMFILE/ENFILE and has not worked since
  bool created_file_ = false;
  bool stopped_ = false;
};

}  // namespace sweepd::io
