#include "io/control_server.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <system_error>

#include "core/connection_limits.hpp"
#include "core/errors.hpp"
#include "core/line_buffer.hpp"
#include "core/protocol.hpp"
#include "io/posix.hpp"
#include "io/process_watch.hpp"

namespace sweepd::io {

namespace {

using asio::as_tuple;
using asio::use_awaitable;
using stream = asio::local::stream_protocol;

/// The id of group `name`; nullopt when there is no such group or it cannot be looked up.
/// getgrnam_r rather than getgrnam, whose static result another thread could overwrite.
std::optional<gid_t> group_id(const std::string& name) {
  // A group with many members needs a larger buffer (ERANGE); 16 MiB bounds the retries.
  for (std::size_t size = 16384; size <= std::size_t{16} * 1024 * 1024; size *= 2) {
    std::vector<char> buffer(size);
    group entry{};
    group* found = nullptr;
    const int rc = ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE) continue;
    if (rc != 0 || found == nullptr) return std::nullopt;
    return found->gr_gid;
  }
  return std::nullopt;
}

/// How much a connection asks for per read; its buffer grows only as far as a line needs.
constexpr std::size_t read_chunk = std::size_t{16} * 1024;
/// A connection yields to the others after this many lines or this much time answering them, so
/// that a long pipelined batch delays another client's request by about one turn.
constexpr std::size_t lines_per_turn = 64;
constexpr auto turn_time = std::chrono::milliseconds(2);
/// The clock is read every few lines only: most lines take a microsecond or two.
constexpr std::size_t clock_every_lines = 8;
/// Replies a connection may have waiting for their commit before it stops reading to settle them.
constexpr std::size_t max_waiting_replies = 1024;
/// Out of descriptors: how long accepting pauses after refusing what waits (never a busy loop),
/// and how many waiting connections one pause may refuse.
constexpr auto descriptor_pause = std::chrono::milliseconds(50);
constexpr std::size_t max_refused_per_pause = 256;
/// How long a connection answered `busy` may still send before it is closed.
constexpr auto refuse_linger = std::chrono::milliseconds(200);
constexpr std::size_t max_lingering_refusals = 64;
/// Refused connections are logged in one line at most this often.
constexpr auto refusal_log_interval = std::chrono::seconds(10);

/// A peer with no identity: the most restricted one rather than root.
peer_credentials nobody(int fd) {
  peer_credentials p;
  p.uid = static_cast<std::uint32_t>(-1);
  p.gid = static_cast<std::uint32_t>(-1);
  p.socket_fd = fd;
  return p;
}

peer_credentials credentials_of(stream::socket& sock) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  peer_credentials p = nobody(sock.native_handle());
  if (::getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return p;
  const process_probe peer = probe_process(cred.pid);
  p.uid = cred.uid;
  p.gid = cred.gid;
  p.pid = cred.pid;
  p.start_time = peer.what == process_probe::state::alive ? peer.start_time : 0;
  return p;
}

/// Whether some process accepts connections on the socket file at `path` right now.
bool someone_listens(const std::string& path) {
  asio::io_context probe_io;
  stream::socket probe(probe_io);
  boost::system::error_code ec;
  probe.connect(stream::endpoint(path), ec);
  return !ec;
}

/// The socket systemd passed us (socket activation), or -1.
int systemd_socket() {
  if (sd_listen_fds(0) != 1) return -1;
  const int fd = SD_LISTEN_FDS_START;
  return sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0 ? fd : -1;
}

}  // namespace

control_server::control_server(asio::io_context& io, control_server_options options,
                               line_handler handler)
    : io_(io),
      options_(std::move(options)),
      handler_(std::move(handler)),
      acceptor_(io),
      remote_acceptor_(io) {}

control_server::~control_server() {
  stop();
  close_reserve_descriptor();
}

core::result<void> control_server::open() {
  if (const int fd = systemd_socket(); fd >= 0) {
    boost::system::error_code ec;
    acceptor_.assign(stream(), fd, ec);
    if (ec)
      return core::failure{
          fmt::format("cannot adopt the socket passed by systemd: {}", ec.message())};
    spdlog::info("listening on the socket passed by systemd");
    return {};
  }
  if (auto done = bind_socket(); !done) return done;
  return apply_permissions();
}

core::result<void> control_server::bind_socket() {
  namespace fs = std::filesystem;
  const fs::path path(options_.path);
  std::error_code fec;
  if (path.has_parent_path() && !fs::exists(path.parent_path(), fec)) {
    fs::create_directories(path.parent_path(), fec);
    if (fec) {
      return core::failure{fmt::format("cannot create the socket directory {}: {}",
                                       path.parent_path().string(), fec.message())};
    }
  }
  const auto status = fs::symlink_status(path, fec);
  if (fs::exists(status)) {
    if (!fs::is_socket(status)) {
      return core::failure{fmt::format(
          "{} exists and is not a socket; remove it or set socket.path", options_.path)};
    }
    if (someone_listens(options_.path)) {
      return core::failure{
          fmt::format("another process (a running sweepd?) is listening on {}", options_.path)};
    }
    fs::remove(path, fec);  // a stale socket left by a daemon that died
  }
  boost::system::error_code ec;
  acceptor_.open(stream(), ec);
  if (!ec) acceptor_.bind(stream::endpoint(options_.path), ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.close();
    return core::failure{fmt::format("cannot listen on {}: {}", options_.path, ec.message())};
  }
  created_file_ = true;
  return {};
}

core::result<void> control_server::apply_permissions() {
  if (::chmod(options_.path.c_str(), options_.mode) != 0) {
    return core::failure{fmt::format("cannot set mode {:04o} on {}: {}", options_.mode,
                                     options_.path, errno_text(errno))};
  }
  if (options_.group.empty()) return {};
  const auto gid = group_id(options_.group);
  if (!gid) {
    return core::failure{
        fmt::format("socket.group '{}' is not a group on this system", options_.group)};
  }
  if (::chown(options_.path.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
    return core::failure{fmt::format("cannot give {} to group '{}': {}", options_.path,
                                     options_.group, errno_text(errno))};
  }
  return {};
}

void control_server::start() {
  boost::system::error_code ec;
  // accept4() on the reserve path must never block the loop.
  acceptor_.non_blocking(true, ec);
  open_reserve_descriptor();
  asio::co_spawn(io_, accept_loop(), [](const std::exception_ptr& e) {
    if (e) std::rethrow_exception(e);  // a bug: let the daemon stop non-zero
  });
  if (remote_acceptor_.is_open()) {
    asio::co_spawn(io_, accept_remote_loop(), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
  }
}

void control_server::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  remote_acceptor_.close(ec);
  close_reserve_descriptor();
  for (auto& conn : connections_) conn.close();
  if (created_file_) {
    std::error_code fec;
    std::filesystem::remove(options_.path, fec);
    created_file_ = false;
  }
}

std::map<std::string, std::size_t> control_server::close_remote_of(
    const std::function<bool(const std::string& principal)>& revoked) {
  std::map<std::string, std::size_t> closed;
  for (connection& conn : connections_) {
    if (!conn.peer.remote || conn.peer.principal.empty() || !revoked(conn.peer.principal)) continue;
    // Closing the socket ends the connection's pending read or write; its coroutine then
    // releases it, as at stop(). A request already being handled finishes, but its reply is lost.
    conn.close();
    ++closed[conn.peer.principal];
  }
  return closed;
}

void control_server::set_limits(control_server_limits limits) {
  options_.limits = std::move(limits);
}

bool control_server::is_admin(std::uint32_t uid) const {
  const auto& admins = options_.limits.admin_uids;
  return std::find(admins.begin(), admins.end(), uid) != admins.end();
}

void control_server::open_reserve_descriptor() {
  if (reserve_fd_ >= 0) return;
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) {
    spdlog::warn(
        "cannot open /dev/null for the reserve descriptor ({}); out of descriptors, new "
        "connections will wait instead of being answered busy",
        errno_text(errno));
  }
}

void control_server::close_reserve_descriptor() {
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
  reserve_fd_ = -1;
}

void control_server::note_refusal(std::string_view reason, std::size_t count) {
  refusals_unlogged_ += count;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_refusal_log_ < refusal_log_interval) return;
  spdlog::warn("answered {} connection(s) busy since the last such message; latest: {}",
               refusals_unlogged_, reason);
  refusals_unlogged_ = 0;
  last_refusal_log_ = now;
}

std::size_t control_server::refuse_waiting_without_descriptors() {
  const std::string reply = core::error_reply(
      {core::error_code::busy,
       "sweepd is out of file descriptors (its open-files limit); try again shortly"});
  // The reserve descriptor is given up for as long as it takes to accept, answer and close the
  // connections waiting, so that they hear `busy` instead of hanging in the backlog.
  close_reserve_descriptor();
  std::size_t refused = 0;
  while (refused < max_refused_per_pause) {
    const int fd =
        ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;  // none waiting, or not even one descriptor free
    // A fresh socket's buffer holds the short reply; if not, the client hears only the close.
    [[maybe_unused]] const ssize_t sent =
        ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
    ++refused;
  }
  open_reserve_descriptor();
  refused_without_descriptors_ += refused;
  return refused;
}

asio::awaitable<void> control_server::accept_loop() {
  asio::steady_timer pause(io_);
  while (!stopped_) {
    auto [ec, sock] = co_await acceptor_.async_accept(as_tuple(use_awaitable));
    if (stopped_) break;
    if (ec) {
      if (ec == boost::system::errc::too_many_files_open ||
          ec == boost::system::errc::too_many_files_open_in_system) {
        if (!out_of_descriptors_) {
          spdlog::warn(
              "accept on {}: {}; new connections are answered busy until some close (see the "
              "open-files limit at startup)",
              options_.path, ec.message());
          out_of_descriptors_ = true;
        }
        // accept() fails with EMFILE before it looks for a waiting connection, so this also
        // runs when none waits; the pause keeps that to a few cheap calls a second.
        if (const std::size_t refused = refuse_waiting_without_descriptors(); refused > 0) {
          note_refusal("out of file descriptors", refused);
        }
        pause.expires_after(descriptor_pause);
      } else {
        // Anything else (ENOBUFS, ENOMEM): say so and keep serving the connections we have.
        spdlog::warn("accept on {} failed: {}", options_.path, ec.message());
        pause.expires_after(std::chrono::milliseconds(100));
      }
      co_await pause.async_wait(as_tuple(use_awaitable));
      continue;
    }
    if (out_of_descriptors_) {
      spdlog::info("accept on {}: descriptors free again, serving new connections", options_.path);
      out_of_descriptors_ = false;
    }
    const peer_credentials peer = credentials_of(sock);
    std::size_t& open_by_uid = open_by_uid_[peer.uid];
    if (auto why = core::refuse_connection(
            {options_.limits.max_connections, options_.limits.max_connections_per_uid},
            connections_.size(), open_by_uid, peer.uid, is_admin(peer.uid))) {
      if (open_by_uid == 0) open_by_uid_.erase(peer.uid);
      note_refusal(*why);
      asio::co_spawn(io_, refuse_busy(std::move(sock), std::move(*why)),
                     [](const std::exception_ptr& e) {
                       if (e) std::rethrow_exception(e);
                     });
      continue;
    }
    ++open_by_uid;
    connections_.push_back(connection{std::move(sock), peer});
    asio::co_spawn(io_, serve(std::prev(connections_.end())), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
  }
}

asio::awaitable<void> control_server::refuse_busy(socket_type sock, std::string reason) {
  const std::string reply = core::error_reply({core::error_code::busy, std::move(reason)});
  co_await asio::async_write(sock, asio::buffer(reply), as_tuple(use_awaitable));
  boost::system::error_code ec;
  // A client sends its request before it reads: closed at once, it would fail that write (EPIPE)
  // and never see why. What it sends is read and dropped until it hangs up, for a moment at most,
  // and only for a few connections at once, lest a flood of refused ones use up the descriptors.
  if (stopped_ || lingering_refusals_ >= max_lingering_refusals) {
    sock.shutdown(asio::socket_base::shutdown_both, ec);
    co_return;
  }
  sock.shutdown(asio::socket_base::shutdown_send, ec);
  ++lingering_refusals_;
  asio::steady_timer linger(io_, refuse_linger);
  linger.async_wait([&sock](boost::system::error_code timer_ec) {
    if (!timer_ec) sock.cancel();
  });
  std::array<char, 4096> sink;
  for (;;) {
    auto [read_ec, n] = co_await sock.async_read_some(asio::buffer(sink), as_tuple(use_awaitable));
    if (read_ec) break;
  }
  linger.cancel();
  --lingering_refusals_;
}

void control_server::queue_reply(connection& conn, std::string& output, std::string reply) {
  if (output.empty()) {
    output = std::move(reply);  // the usual case: no copy
  } else {
    output += reply;
  }
  queued_reply_bytes_ += output.size() - conn.queued;
  conn.queued = output.size();
  peak_queued_reply_bytes_ = std::max(peak_queued_reply_bytes_, conn.queued);
}

template <typename Stream>
asio::awaitable<bool> control_server::flush(connection& conn, Stream& stream, std::string& output) {
  auto [ec, written] =
      co_await asio::async_write(stream, asio::buffer(output), as_tuple(use_awaitable));
  queued_reply_bytes_ -= conn.queued;
  conn.queued = 0;
  output.clear();
  // One large page must not stay allocated for the life of an idle connection.
  if (output.capacity() > options_.output_budget) std::string().swap(output);
  co_return !ec && !stopped_;
}

void control_server::connection::close() noexcept {
  boost::system::error_code ec;
  const auto shut = [&ec](auto& sock) {
    sock.shutdown(asio::socket_base::shutdown_both, ec);
    sock.close(ec);
  };
  // get_if, not std::visit: visit throws on a valueless variant, and ~control_server closes.
  if (auto* plain = std::get_if<socket_type>(&stream)) shut(*plain);
  if (auto* tls = std::get_if<tls_stream>(&stream)) shut(tls->lowest_layer());
}

asio::awaitable<void> control_server::serve(connection_list::iterator it) {
  core::line_buffer input;
  co_await serve_lines(*it, std::get<socket_type>(it->stream), input);
  release(it);
}

void control_server::release(connection_list::iterator it) {
  connection& conn = *it;
  queued_reply_bytes_ -= conn.queued;
  conn.queued = 0;
  if (stopped_) return;  // stop() closed every connection; the list goes with the server
  conn.close();
  if (conn.peer.remote) {
    --remote_open_;
  } else if (auto count = open_by_uid_.find(conn.peer.uid);
             count != open_by_uid_.end() && --count->second == 0) {
    open_by_uid_.erase(count);
  }
  connections_.erase(it);
}

template <typename Stream>
asio::awaitable<void> control_server::serve_lines(connection& conn, Stream& stream,
                                                  core::line_buffer& input) {
  std::string output;
  waiting_replies waiting;
  bool closing = false;
  bool failed = false;
  // A remote connection's first read may have brought lines after its hello: answer those first.
  bool must_read = input.pending() == 0;
  while (!closing && !failed) {
    if (must_read) {
      const std::span<char> room = input.writable(read_chunk);
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(room.data(), room.size()),
                                                     as_tuple(use_awaitable));
      input.commit(n);
      if (ec || stopped_) break;  // EOF (a half line is dropped: it was never a request) or error
    }
    must_read = true;

    // Answer the complete lines one by one. A reply that comes later (a transition waiting for
    // its commit) does not hold up the lines after it: they are answered too, and may join the
    // same commit; their replies wait in `waiting` and go out in order.
    std::size_t lines_this_turn = 0;
    auto turn_started = std::chrono::steady_clock::now();
    while (const std::optional<std::string_view> line = input.next_line()) {
      if (line->size() > options_.limits.max_line_bytes) {
        closing = true;  // a whole over-long line arrived in one read: refused like a partial one
        break;
      }
      reply answered = answer_line(*line, conn.peer, !waiting.replies.empty());
      if (answered.after_earlier) {
        // The handler cannot answer this line before the ones waiting (a read of what they
        // change, a second change of one run): settle them, then ask again.
        if (!co_await settle(conn, output, waiting)) {
          failed = true;
          break;
        }
        answered = answer_line(*line, conn.peer, false);
      }
      if (answered.later || !waiting.replies.empty()) {
        waiting.add(std::move(answered));
      } else {
        queue_reply(conn, output, std::move(answered.text));
      }
      if (output.size() + waiting.bytes > options_.output_budget ||
          waiting.replies.size() >= max_waiting_replies) {
        // A client that does not read stops being answered here, holding at most the budget and
        // one reply; the write is also this connection's turn ending.
        if (!co_await settle(conn, output, waiting) || !co_await flush(conn, stream, output)) {
          failed = true;
          break;
        }
        lines_this_turn = 0;
        turn_started = std::chrono::steady_clock::now();
      } else if (++lines_this_turn >= lines_per_turn ||
                 (lines_this_turn % clock_every_lines == 0 &&
                  std::chrono::steady_clock::now() - turn_started >= turn_time)) {
        // Let other connections (and the deadline timer) in before the rest of this batch.
        co_await asio::post(io_, use_awaitable);
        if (stopped_) {
          failed = true;
          break;
        }
        lines_this_turn = 0;
        turn_started = std::chrono::steady_clock::now();
      }
    }
    if (failed) break;
    if (closing || input.pending() > options_.limits.max_line_bytes) {
      closing = true;
      waiting.add(core::error_reply(
          {core::error_code::too_large,
           fmt::format("request line longer than {} bytes (socket.max_line_bytes); closing",
                       options_.limits.max_line_bytes)}));
    }
    if (!co_await settle(conn, output, waiting)) break;
    if (!output.empty() && !co_await flush(conn, stream, output)) break;
    input.shrink(4 * read_chunk);
  }
}

void control_server::waiting_replies::add(reply r) {
  bytes += r.text.size();
  replies.push_back(std::move(r));
}

asio::awaitable<bool> control_server::settle(connection& conn, std::string& output,
                                             waiting_replies& waiting) {
  for (reply& r : waiting.replies) {
    // Not a conditional expression: GCC 12 destroys a temporary twice when one arm co_awaits.
    std::string text;
    if (r.later) {
      text = co_await await_later(r);
    } else {
      text = std::move(r.text);
    }
    if (stopped_) co_return false;
    queue_reply(conn, output, std::move(text));
  }
  waiting.replies.clear();
  waiting.bytes = 0;
  co_return true;
}

reply control_server::answer_line(std::string_view line, const peer_credentials& peer,
                                  bool behind_earlier) {
  try {
    reply r = handler_(line, peer, behind_earlier);
    if (r.after_earlier && !behind_earlier) {
      // Nothing to wait for: a handler that asks anyway would loop.
      spdlog::error("request handler asked to wait with no earlier reply waiting");
      return core::error_reply({core::error_code::internal, "sweepd could not handle the request"});
    }
    return r;
  } catch (const std::exception& e) {
    spdlog::error("request failed: {}", e.what());
    return core::error_reply({core::error_code::internal, "sweepd could not handle the request"});
  }
}

asio::awaitable<std::string> control_server::await_later(const reply& r) {
  try {
    co_return co_await r.later();
  } catch (const std::exception& e) {
    spdlog::error("request failed: {}", e.what());
  }
  co_return core::error_reply({core::error_code::internal, "sweepd could not handle the request"});
}

// ---- the TLS listener for remote workers ----------------------------------------------------

namespace {

/// "HOST:PORT" (an IPv6 host in brackets) as an endpoint; what is wrong with it otherwise.
core::result<asio::ip::tcp::endpoint> parse_endpoint(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return core::failure{"expected HOST:PORT"};
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const std::string_view digits = std::string_view(listen).substr(colon + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc{} || end != digits.data() + digits.size() || port > 65535) {
    return core::failure{"the port is not a number from 0 to 65535"};
  }
  boost::system::error_code aec;
  const auto address = asio::ip::make_address(host, aec);
  if (aec) {
    // A name would be resolved once, at start, to one of possibly many addresses: ask for the
    // address meant instead (0.0.0.0 or [::] for every interface).
    return core::failure{fmt::format(
        "'{}' is not an IP address (use 0.0.0.0, [::] or an interface's address)", host)};
  }
  return asio::ip::tcp::endpoint(address, static_cast<unsigned short>(port));
}

std::string format_endpoint(const asio::ip::tcp::endpoint& e) {
  const auto address = e.address();
  return address.is_v6() ? fmt::format("[{}]:{}", address.to_string(), e.port())
                         : fmt::format("{}:{}", address.to_string(), e.port());
}

}  // namespace

core::result<void> control_server::open_remote(remote_options options,
                                               std::shared_ptr<asio::ssl::context> tls,
                                               authenticator authenticate) {
  const auto endpoint = parse_endpoint(options.listen);
  if (!endpoint) {
    return core::failure{
        fmt::format("remote.listen '{}': {}", options.listen, endpoint.error().message)};
  }
  boost::system::error_code ec;
  remote_acceptor_.open(endpoint->protocol(), ec);
  if (!ec) remote_acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) remote_acceptor_.bind(*endpoint, ec);
  if (!ec) remote_acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    remote_acceptor_.close();
    return core::failure{
        fmt::format("remote.listen {}: cannot listen: {}", options.listen, ec.message())};
  }
  remote_ = std::move(options);
  tls_ = std::move(tls);
  authenticate_ = std::move(authenticate);
  return {};
}

void control_server::set_remote_limits(std::chrono::milliseconds handshake_timeout,
                                       std::size_t max_connections) {
  remote_.handshake_timeout = handshake_timeout;
  remote_.max_connections = max_connections;
}

std::string control_server::remote_address() const {
  boost::system::error_code ec;
  if (!remote_acceptor_.is_open()) return {};
  const auto local = remote_acceptor_.local_endpoint(ec);
  return ec ? std::string() : format_endpoint(local);
}

asio::awaitable<void> control_server::accept_remote_loop() {
  asio::steady_timer pause(io_);
  bool failing = false;
  while (!stopped_) {
    auto [ec, sock] = co_await remote_acceptor_.async_accept(as_tuple(use_awaitable));
    if (stopped_) break;
    if (ec) {
      // Out of descriptors or memory: say so once and keep serving what is open. (No reserve
      // descriptor here: a TLS client could not read a plaintext `busy` anyway.)
      if (!failing)
        spdlog::warn("accept on remote.listen {} failed: {}", remote_.listen, ec.message());
      failing = true;
      pause.expires_after(descriptor_pause);
      co_await pause.async_wait(as_tuple(use_awaitable));
      continue;
    }
    failing = false;
    boost::system::error_code peer_ec;
    const auto remote_end = sock.remote_endpoint(peer_ec);
    peer_credentials peer = nobody(sock.native_handle());
    peer.remote = true;
    peer.address = peer_ec ? std::string("unknown") : remote_end.address().to_string();
    // Remote connections have a cap of their own, so that the hosts on the network cannot take
    // the slots local workers need; admins are unknown before the hello, so the slots kept for
    // them are not for remote connections either.
    std::optional<std::string> why;
    if (remote_open_ >= remote_.max_connections) {
      why = fmt::format("{} remote connections open (remote.max_connections)", remote_open_);
    } else {
      why = core::refuse_connection({options_.limits.max_connections, SIZE_MAX},
                                    connections_.size(), 0, peer.uid, false);
    }
    if (why) {
      note_refusal(*why);
      boost::system::error_code close_ec;
      sock.close(close_ec);
      continue;
    }
    if (!tls_) continue;  // cannot happen: open_remote() sets it
    sock.set_option(asio::ip::tcp::no_delay(true), peer_ec);  // one line, one reply: no Nagle
    ++remote_open_;
    connections_.push_back(connection{tls_stream(std::move(sock), *tls_), std::move(peer)});
    asio::co_spawn(io_, serve_remote(std::prev(connections_.end())),
                   [](const std::exception_ptr& e) {
                     if (e) std::rethrow_exception(e);
                   });
  }
}

asio::awaitable<std::optional<std::string>> control_server::read_first_line(
    tls_stream& stream, core::line_buffer& input) {
  for (;;) {
    if (const auto line = input.next_line()) {
      if (line->size() > options_.limits.max_line_bytes) co_return std::nullopt;
      co_return std::string(*line);
    }
    if (input.pending() > options_.limits.max_line_bytes) co_return std::nullopt;
    const std::span<char> room = input.writable(read_chunk);
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(room.data(), room.size()),
                                                   as_tuple(use_awaitable));
    input.commit(n);
    if (ec || stopped_) co_return std::nullopt;
  }
}

asio::awaitable<void> control_server::serve_remote(connection_list::iterator it) {
  connection& conn = *it;
  tls_stream& stream = std::get<tls_stream>(conn.stream);
  // One deadline for the handshake and the hello: a peer that connects and stalls (or speaks
  // plaintext and waits) holds its slot that long at most.
  // `armed` is cleared before the connection can go away: a timer that expired just as the
  // hello came may still run its handler after cancel().
  auto armed = std::make_shared<bool>(true);
  asio::steady_timer deadline(io_, remote_.handshake_timeout);
  deadline.async_wait([&conn, armed](boost::system::error_code ec) {
    if (!ec && *armed) conn.close();  // ends the pending handshake or read
  });
  const auto disarm = [&] {
    *armed = false;
    deadline.cancel();
  };
  auto [hs_ec] =
      co_await stream.async_handshake(asio::ssl::stream_base::server, as_tuple(use_awaitable));
  if (hs_ec) {
    // Plaintext on the TLS port, an untrusting client, a scanner: routine, so debug only.
    spdlog::debug("remote connection from {}: TLS handshake failed: {}", conn.peer.address,
                  hs_ec.message());
    disarm();
    release(it);
    co_return;
  }
  core::line_buffer input;
  const std::optional<std::string> first = co_await read_first_line(stream, input);
  authentication verdict;
  if (first) {
    verdict = authenticate_(*first, conn.peer.address);
  } else {
    verdict.reply = core::error_reply(
        {core::error_code::forbidden,
         fmt::format("no hello line with a token within {} ms (remote.handshake_timeout); closing",
                     remote_.handshake_timeout.count())});
  }
  std::string output;
  queue_reply(conn, output, std::move(verdict.reply));
  const bool written = co_await flush(conn, stream, output);
  if (!verdict.principal || !written) {
    // close_notify, so that the client reads the refusal and then a clean end; bounded by the
    // deadline still armed.
    if (written) co_await stream.async_shutdown(as_tuple(use_awaitable));
    disarm();
    release(it);
    co_return;
  }
  disarm();
  conn.peer.principal = std::move(*verdict.principal);
  co_await serve_lines(conn, stream, input);
  release(it);
}

}  // namespace sweepd::io
