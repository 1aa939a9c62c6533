#pragma once

#include <openssl/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace sweepd::io {

/// Where a client finds sweepd: a Unix socket path, or `tls://HOST:PORT` for the TLS listener.
struct daemon_address {
  bool remote = false;
  std::string path;  // the Unix socket
  std::string host;  // remote: a name or an IP address (IPv6 in brackets in the text)
  std::string port;
};

/// Reads "tls://HOST:PORT", "unix:PATH" or a plain path; a failure naming the text otherwise.
core::result<daemon_address> parse_daemon_address(std::string_view text);

/// What a remote client needs besides the address.
struct tls_client_options {
  std::string ca_file;  // PEM; empty: the system's trusted CAs
};

/// A blocking TLS client connection with deadlines, on a non-blocking socket (so that every wait
/// is a poll() bounded by the caller's deadline). TLS 1.2 or newer; the server's certificate must
/// chain to the CA and name the host (DNS name or IP address). Errors are values.
class tls_connection {
 public:
  using clock = std::chrono::steady_clock;
  tls_connection() = default;
  ~tls_connection();
  tls_connection(const tls_connection&) = delete;
  tls_connection& operator=(const tls_connection&) = delete;

  /// Connects and completes the handshake before `deadline`; false with error() set.
  bool connect(const std::string& host, const std::string& port, const tls_client_options& options,
               clock::time_point deadline);
  /// Writes all of `bytes` before `deadline`.
  bool send(std::string_view bytes, clock::time_point deadline);
  /// Reads what is available, waiting until `deadline` for something: the number of bytes (> 0),
  /// 0 at the end of the stream, -1 on an error or when the deadline passed (error() says which).
  long receive(char* buffer, std::size_t size, clock::time_point deadline);
  /// Reads only what can be read without waiting: > 0 bytes, 0 at the end, -1 on error, -2 when
  /// nothing is there now.
  long receive_now(char* buffer, std::size_t size);
  void close();

  bool open() const { return ssl_ != nullptr; }
  int fd() const { return fd_; }
  const std::string& error() const { return error_; }

 private:
  /// Waits for the socket as SSL asked (`ssl_error` is SSL_ERROR_WANT_READ/WRITE); false when the
  /// deadline passed or poll failed.
  bool wait(int ssl_error, clock::time_point deadline);
  bool connect_tcp(const std::string& host, const std::string& port, clock::time_point deadline);

  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  std::string error_;
  std::string peer_;  // "host:port", for messages
};

}  // namespace sweepd::io
