#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/tls_client.hpp"

namespace sweepd::io {

/// A blocking JSON-lines client for the control socket or the TLS listener, for sweepctl and
/// tests. Every call has a deadline; errors are values (a message naming the socket), never
/// exceptions.
class client {
 public:
  client() = default;
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  client(client&& other) noexcept;
  client& operator=(client&& other) noexcept;

  /// Connects to the Unix socket at `path`; false with last_error() set on failure.
  bool connect(const std::string& path);
  /// Connects to `address`: a Unix socket, or the TLS listener, where it then sends the hello
  /// with `token` and takes its reply (a refusal is an error naming the daemon's reason).
  bool connect(const daemon_address& address, const tls_client_options& tls,
               const std::string& token,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Sends one request object and waits up to `timeout` for its reply line.
  std::optional<nlohmann::json> call(const nlohmann::json& request,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Sends raw bytes as they are (tests use it for malformed input).
  bool send_raw(std::string_view bytes);
  /// Reads one reply line (without its '\n'); nullopt on timeout, error or EOF.
  std::optional<std::string> read_line(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void close();

  bool connected() const { return fd_ >= 0; }
  const std::string& last_error() const { return error_; }
  /// True when the last connect() reached sweepd's TLS listener and the hello was refused (a
  /// token it does not accept, or too many failed attempts from this address): unlike a daemon
  /// that is down, trying again as such will not help.
  bool refused() const { return refused_; }

 private:
  /// Sends or receives on whichever connection is open.
  long receive(char* buffer, std::size_t size, std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::unique_ptr<tls_connection> tls_;  // the TLS listener, instead of fd_
  std::string buffer_;
  std::string error_;
  std::string path_;
  bool refused_ = false;
};

}  // namespace sweepd::io
