#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

#include "core/result.hpp"

namespace sweepd::io {

namespace detail {
struct http_connection;
}  // namespace detail

/// One HTTP response, whatever its status.
struct http_response {
  unsigned status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  /// The first header called `name` (any case); nullopt when absent.
  std::optional<std::string> header(std::string_view name) const;
};

/// A response, or why there is none. The error names host:port and what failed (resolve, connect,
/// TLS handshake, write, read, timeout after N ms, connection closed); it never contains the
/// request's headers or body.
struct http_result {
  std::optional<http_response> response;
  std::string error;
  /// The answer's body was over the client's cap (max_response_body); its connection was closed.
  bool too_large = false;
};

/// The largest response body an http_client reads unless told otherwise. Every byte of a W&B
/// answer is parsed, merged and written back on the one event-loop thread, so the cap bounds how
/// long one answer can hold up everything else (bench/wandb_summary_bench); W&B run summaries are
/// usually kilobytes.
inline constexpr std::uint64_t default_max_response_body = 8ull * 1024 * 1024;

/// An http:// or https:// base URL. The host is lower-cased and stored without IPv6 brackets; the
/// port is always set (80/443 by default); path_prefix has no trailing '/'.
struct url {
  std::string scheme;
  std::string host;
  std::string port;
  std::string path_prefix;
};

/// Parses an http:// or https:// URL; nullopt for other schemes, user info, a query or fragment,
/// a bad host or port. Trailing '/'s are stripped, as the W&B SDK does for base_url.
std::optional<url> parse_url(std::string_view text);
/// host, or host:port when the port is not the scheme's default (the Host header, the .netrc
/// machine name); IPv6 hosts in brackets.
std::string netloc(const url& u);

/// An HTTP/1.1 client for one base URL (DESIGN §4): POST only, keep-alive connections reused,
/// https:// verified against the system CA store with SNI and host-name checks. One thread; a
/// post() may run while others are in flight (each uses its own connection).
class http_client {
 public:
  /// Requests to `base`; every request (resolve+connect+TLS+write+read) must finish within
  /// `timeout`.
  http_client(boost::asio::io_context& io, url base, std::chrono::milliseconds timeout);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// POSTs `body` to base path_prefix + `path` with the given extra headers (Host, Content-Type:
  /// application/json, Content-Length and User-Agent "sweepd/<version>" are set by the client;
  /// an extra header of the same name replaces the default, except Content-Length). Reuses an
  /// idle keep-alive connection when one is available, else opens a new one; a request that
  /// fails on a reused connection because the server closed it meanwhile is retried once on a
  /// fresh connection (only if nothing of the response was read). Never throws.
  boost::asio::awaitable<http_result> post(
      std::string path, std::string body, std::vector<std::pair<std::string, std::string>> headers);

  /// Applies to requests started from now on.
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  /// A response whose body is larger fails with `too_large` (checked against Content-Length
  /// before the body is read, else as it arrives); applies to requests started from now on.
  void set_max_response_body(std::uint64_t bytes) { max_response_body_ = bytes; }
  std::uint64_t max_response_body() const { return max_response_body_; }
  /// Trusts the PEM certificate(s) in addition to the system CA store (a private CA of a
  /// self-hosted server, tests); a failure when the PEM cannot be used.
  core::result<void> add_certificate_authority(std::string_view pem);
  std::size_t idle_connections() const { return idle_.size(); }
  /// Closes idle connections (TLS ones with a close_notify, in the background, bounded); those of
  /// requests in flight are closed when their request ends instead of being kept.
  void close();

  const url& base() const { return base_; }

 private:
  using connection_ptr = std::unique_ptr<detail::http_connection>;

  boost::asio::awaitable<http_result> post_impl(
      std::string path, std::string body, std::vector<std::pair<std::string, std::string>> headers);
  /// Keeps `c` for the next request when it may be reused, else closes it.
  void release(connection_ptr c, bool reusable);
  /// Closes `c`; with a TLS close_notify (in the background) when `graceful`.
  void discard(connection_ptr c, bool graceful);

  boost::asio::io_context& io_;
  url base_;
  std::chrono::milliseconds timeout_;
  std::uint64_t max_response_body_ = default_max_response_body;
  std::shared_ptr<boost::asio::ssl::context> tls_;  // https only
  std::string tls_error_;                           // set when the CA store cannot be loaded
  std::vector<connection_ptr> idle_;                // most recently used last
  unsigned generation_ = 0;                         // bumped by close()
};

}  // namespace sweepd::io
