#include "io/client.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "core/protocol.hpp"
#include "io/posix.hpp"

namespace sweepd::io {

client::~client() { close(); }

client::client(client&& other) noexcept
    : fd_(other.fd_),
      tls_(std::move(other.tls_)),
      buffer_(std::move(other.buffer_)),
      error_(std::move(other.error_)),
      path_(std::move(other.path_)),
      refused_(other.refused_) {
  other.fd_ = -1;
}

client& client::operator=(client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
    tls_ = std::move(other.tls_);
    buffer_ = std::move(other.buffer_);
    error_ = std::move(other.error_);
    path_ = std::move(other.path_);
    refused_ = other.refused_;
  }
  return *this;
}

void client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  tls_.reset();
  buffer_.clear();
}

bool client::connect(const std::string& path) {
  close();
  refused_ = false;
  path_ = path;
  auto fd = connect_unix(path);
  if (!fd) {
    error_ = std::move(fd.error().message);
    return false;
  }
  fd_ = *fd;
  return true;
}

bool client::connect(const daemon_address& address, const tls_client_options& tls,
                     const std::string& token, std::chrono::milliseconds timeout) {
  if (!address.remote) return connect(address.path);
  close();
  refused_ = false;
  path_ = fmt::format(
      "tls://{}:{}",
      address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host,
      address.port);
  auto connection = std::make_unique<tls_connection>();
  if (!connection->connect(address.host, address.port, tls,
                           std::chrono::steady_clock::now() + timeout)) {
    error_ = connection->error();
    return false;
  }
  tls_ = std::move(connection);
  fd_ = tls_->fd();
  // The first line authenticates the connection; the token is sent nowhere else.
  const auto hello = call({{"op", "hello"}, {"token", token}}, timeout);
  if (!hello) {
    close();
    return false;
  }
  if (hello->value("ok", false) != true) {
    const core::reply_error e = core::error_of_reply(*hello);
    error_ = fmt::format("sweepd at {} refused the connection: {}: {}", path_,
                         e.code.empty() ? "forbidden" : e.code, e.message);
    refused_ = true;
    close();
    return false;
  }
  return true;
}

long client::receive(char* buffer, std::size_t size,
                     std::chrono::steady_clock::time_point deadline) {
  if (tls_) {
    const long n = tls_->receive(buffer, size, deadline);
    if (n < 0) error_ = tls_->error();
    return n;
  }
  for (;;) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = left.count() <= 0 ? 0 : ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      error_ = fmt::format("cannot wait for sweepd: {}", errno_text(errno));
      return -1;
    }
    if (ready == 0) {
      error_ = fmt::format("no reply from sweepd at {} in time", path_);
      return -1;
    }
    const ssize_t n = ::recv(fd_, buffer, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error_ = fmt::format("cannot read from sweepd at {}: {}", path_, errno_text(errno));
    return n;
  }
}

bool client::send_raw(std::string_view bytes) {
  if (tls_) {
    if (tls_->send(bytes, std::chrono::steady_clock::now() + std::chrono::seconds(10))) return true;
    error_ = tls_->error();
    return false;
  }
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = fmt::format("cannot send to sweepd at {}: {}", path_, errno_text(errno));
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<std::string> client::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (fd_ < 0) {
      error_ = "not connected to sweepd";
      return std::nullopt;
    }
    char chunk[65536];
    const long n = receive(chunk, sizeof(chunk), deadline);
    if (n == 0) error_ = fmt::format("sweepd at {} closed the connection", path_);
    if (n <= 0) return std::nullopt;
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

std::optional<nlohmann::json> client::call(const nlohmann::json& request,
                                           std::chrono::milliseconds timeout) {
  if (fd_ < 0) {
    error_ = "not connected to sweepd";
    return std::nullopt;
  }
  if (!send_raw(request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n")) {
    return std::nullopt;
  }
  auto line = read_line(timeout);
  if (!line) return std::nullopt;
  auto reply = nlohmann::json::parse(*line, nullptr, false);
  if (reply.is_discarded() || !reply.is_object()) {
    error_ = fmt::format("sweepd at {} sent a reply that is not a JSON object", path_);
    return std::nullopt;
  }
  return reply;
}

}  // namespace sweepd::io
