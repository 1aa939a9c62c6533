#include "io/control_server.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/errors.hpp"
#include "core/protocol.hpp"
#include "io/process_watch.hpp"

namespace sweepd::io {

namespace {

using asio::as_tuple;
using asio::use_awaitable;
using stream = asio::local::stream_protocol;

/// How much a connection asks for per read; its buffer grows only as far as a line needs.
constexpr std::size_t read_chunk = 16 * 1024;

peer_credentials credentials_of(stream::socket& sock) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    // Unknown peer: treat as the most restricted identity rather than as root.
    return {static_cast<std::uint32_t>(-1), static_cast<std::uint32_t>(-1), 0, 0,
            sock.native_handle()};
  }
  const process_probe peer = probe_process(cred.pid);
  return {cred.uid, cred.gid, cred.pid,
          peer.what == process_probe::state::alive ? peer.start_time : 0, sock.native_handle()};
}

std::string errno_text(int err) { return std::strerror(err); }

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
    : io_(io), options_(std::move(options)), handler_(std::move(handler)), acceptor_(io) {}

control_server::~control_server() { stop(); }

std::optional<std::string> control_server::open() {
  if (const int fd = systemd_socket(); fd >= 0) {
    boost::system::error_code ec;
    acceptor_.assign(stream(), fd, ec);
    if (ec) return fmt::format("cannot adopt the socket passed by systemd: {}", ec.message());
    spdlog::info("listening on the socket passed by systemd");
    return std::nullopt;
  }
  if (auto err = bind_socket()) return err;
  return apply_permissions();
}

std::optional<std::string> control_server::bind_socket() {
  namespace fs = std::filesystem;
  const fs::path path(options_.path);
  std::error_code fec;
  if (path.has_parent_path() && !fs::exists(path.parent_path(), fec)) {
    fs::create_directories(path.parent_path(), fec);
    if (fec) {
      return fmt::format("cannot create the socket directory {}: {}", path.parent_path().string(),
                         fec.message());
    }
  }
  const auto status = fs::symlink_status(path, fec);
  if (fs::exists(status)) {
    if (!fs::is_socket(status)) {
      return fmt::format("{} exists and is not a socket; remove it or set socket.path",
                         options_.path);
    }
    if (someone_listens(options_.path)) {
      return fmt::format("another process (a running sweepd?) is listening on {}", options_.path);
    }
    fs::remove(path, fec);  // a stale socket left by a daemon that died
  }
  boost::system::error_code ec;
  acceptor_.open(stream(), ec);
  if (!ec) acceptor_.bind(stream::endpoint(options_.path), ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.close();
    return fmt::format("cannot listen on {}: {}", options_.path, ec.message());
  }
  created_file_ = true;
  return std::nullopt;
}

std::optional<std::string> control_server::apply_permissions() {
  if (::chmod(options_.path.c_str(), options_.mode) != 0) {
    return fmt::format("cannot set mode {:04o} on {}: {}", options_.mode, options_.path,
                       errno_text(errno));
  }
  if (options_.group.empty()) return std::nullopt;
  const group* g = ::getgrnam(options_.group.c_str());
  if (g == nullptr) {
    return fmt::format("socket.group '{}' is not a group on this system", options_.group);
  }
  if (::chown(options_.path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
    return fmt::format("cannot give {} to group '{}': {}", options_.path, options_.group,
                       errno_text(errno));
  }
  return std::nullopt;
}

void control_server::start() {
  asio::co_spawn(io_, accept_loop(), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);  // a bug: let the daemon stop non-zero
  });
}

void control_server::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& sock : connections_) {
    sock.shutdown(asio::socket_base::shutdown_both, ec);
    sock.close(ec);
  }
  if (created_file_) {
    std::error_code fec;
    std::filesystem::remove(options_.path, fec);
    created_file_ = false;
  }
}

void control_server::set_limits(std::size_t max_connections, std::size_t max_line_bytes) {
  options_.max_connections = max_connections;
  options_.max_line_bytes = max_line_bytes;
}

asio::awaitable<void> control_server::accept_loop() {
  while (!stopped_) {
    auto [ec, sock] = co_await acceptor_.async_accept(as_tuple(use_awaitable));
    if (stopped_) break;
    if (ec) {
      // EMFILE and friends: say so and keep serving the connections we have.
      spdlog::warn("accept on {} failed: {}", options_.path, ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(100));
      co_await pause.async_wait(as_tuple(use_awaitable));
      continue;
    }
    if (connections_.size() >= options_.max_connections) {
      asio::co_spawn(io_, refuse_busy(std::move(sock)), asio::detached);
      continue;
    }
    connections_.push_back(std::move(sock));
    asio::co_spawn(io_, serve(std::prev(connections_.end())), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
  }
}

asio::awaitable<void> control_server::refuse_busy(socket_type sock) {
  const std::string reply = core::error_reply(
      {core::error_code::busy, fmt::format("too many connections (socket.max_connections = {})",
                                           options_.max_connections)});
  co_await asio::async_write(sock, asio::buffer(reply), as_tuple(use_awaitable));
  boost::system::error_code ec;
  sock.shutdown(asio::socket_base::shutdown_both, ec);
}

asio::awaitable<void> control_server::serve(std::list<socket_type>::iterator conn) {
  socket_type& sock = *conn;
  const peer_credentials peer = credentials_of(sock);
  std::string buffer;
  for (;;) {
    const std::size_t filled = buffer.size();
    buffer.resize(filled + read_chunk);
    auto [ec, n] = co_await sock.async_read_some(asio::buffer(buffer.data() + filled, read_chunk),
                                                 as_tuple(use_awaitable));
    buffer.resize(filled + n);
    if (ec || stopped_) break;  // EOF (a half line is dropped: it was never a request) or error
    std::string replies = answer_complete_lines(buffer, peer);
    const bool too_large = buffer.size() > options_.max_line_bytes;
    if (too_large) {
      replies += core::error_reply(
          {core::error_code::too_large,
           fmt::format("request line longer than {} bytes (socket.max_line_bytes); closing",
                       options_.max_line_bytes)});
    }
    if (!replies.empty()) {
      auto [wec, written] =
          co_await asio::async_write(sock, asio::buffer(replies), as_tuple(use_awaitable));
      if (wec) break;
    }
    if (too_large) break;
    if (buffer.capacity() > 4 * read_chunk && buffer.size() < read_chunk) buffer.shrink_to_fit();
  }
  if (!stopped_) {
    boost::system::error_code ec;
    sock.shutdown(asio::socket_base::shutdown_both, ec);
    sock.close(ec);
    connections_.erase(conn);
  }
}

std::string control_server::answer_complete_lines(std::string& buffer,
                                                  const peer_credentials& peer) {
  std::string replies;
  std::size_t begin = 0;
  for (std::size_t nl; (nl = buffer.find('\n', begin)) != std::string::npos; begin = nl + 1) {
    std::string_view line(buffer.data() + begin, nl - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > options_.max_line_bytes) {
      // A whole over-long line arrived in one read: refuse it like a partial one.
      buffer.assign(options_.max_line_bytes + 1, ' ');
      return replies;
    }
    replies += answer_line(line, peer);
  }
  buffer.erase(0, begin);
  return replies;
}

std::string control_server::answer_line(std::string_view line, const peer_credentials& peer) {
  try {
    return handler_(line, peer);
  } catch (const std::exception& e) {
    spdlog::error("request failed: {}", e.what());
    return core::error_reply({core::error_code::internal, "sweepd could not handle the request"});
  }
}

}  // namespace sweepd::io
