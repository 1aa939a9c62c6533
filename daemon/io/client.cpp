#include "io/client.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sweepd::io {

namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

client::~client() { close(); }

client::client(client&& other) noexcept
    : fd_(other.fd_),
      buffer_(std::move(other.buffer_)),
      error_(std::move(other.error_)),
      path_(std::move(other.path_)) {
  other.fd_ = -1;
}

client& client::operator=(client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
    buffer_ = std::move(other.buffer_);
    error_ = std::move(other.error_);
    path_ = std::move(other.path_);
  }
  return *this;
}

void client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

bool client::connect(const std::string& path) {
  close();
  path_ = path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    error_ = fmt::format("socket path '{}' is too long ({} bytes, at most {})", path, path.size(),
                         sizeof(addr.sun_path) - 1);
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = fmt::format("cannot create a socket: {}", errno_text());
    return false;
  }
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    error_ = fmt::format("cannot connect to sweepd at {}: {}", path, errno_text());
    close();
    return false;
  }
  return true;
}

bool client::send_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = fmt::format("cannot send to sweepd at {}: {}", path_, errno_text());
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
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      error_ = fmt::format("no reply from sweepd at {} within {} ms", path_, timeout.count());
      return std::nullopt;
    }
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) {
      error_ = fmt::format("cannot wait for sweepd: {}", errno_text());
      return std::nullopt;
    }
    if (ready <= 0) continue;
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error_ = n == 0 ? fmt::format("sweepd at {} closed the connection", path_)
                      : fmt::format("cannot read from sweepd at {}: {}", path_, errno_text());
      return std::nullopt;
    }
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
