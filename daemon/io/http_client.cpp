#include "io/http_client.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cerrno>
#include <exception>

#include "core/version.hpp"

namespace sweepd::io {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using asio::as_tuple;
using asio::use_awaitable;

namespace detail {

/// One connection to the base URL: plain TCP or TLS over TCP, with its read buffer.
struct http_connection {
  std::shared_ptr<ssl::context> tls_context;  // outlives `tls`
  std::optional<beast::tcp_stream> plain;
  std::optional<ssl::stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  unsigned generation = 0;

  beast::tcp_stream& tcp() { return plain ? *plain : tls->next_layer(); }
};

}  // namespace detail

namespace {

using request_type = http::request<http::string_body>;

// Idle connections kept per client; sweepd talks to one host, a handful is plenty.
constexpr std::size_t max_idle = 8;
constexpr std::uint32_t max_response_header = 64 * 1024;
// How long a TLS close_notify exchange may take when a connection is closed politely.
constexpr std::chrono::milliseconds max_tls_shutdown{2000};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

bool is_ip_address(const std::string& host) {
  boost::system::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

std::string default_port(std::string_view scheme) { return scheme == "https" ? "443" : "80"; }

std::string bracketed(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// host:port, always with the port, for messages.
std::string host_port(const url& u) { return bracketed(u.host) + ":" + u.port; }

// RFC 9110 token characters, for header names.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

bool is_safe_header_value(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// The server closed the connection (idle timeout, restart) rather than answering.
bool closed_by_peer(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == ssl::error::stream_truncated;
}

// Whether an idle connection still looks alive: the server has neither closed it nor sent anything
// unasked (a TLS close_notify, garbage). Catches the common case before a request is sent on it.
bool looks_usable(detail::http_connection& c) {
  auto& socket = c.tcp().socket();
  if (!socket.is_open() || c.buffer.size() != 0) return false;
  char byte = 0;
  const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct failure {
  std::string stage;  // "resolve", "connect", "TLS handshake", "write", "read"
  beast::error_code ec;
  std::string detail;  // extra words after the error message
};

struct request_context {
  std::string host_port;  // for messages
  std::chrono::milliseconds timeout;
  clock_type::time_point deadline;
  std::uint64_t max_body = 0;
};

std::string describe(const request_context& rc, const failure& f) {
  const bool timed_out = f.ec == beast::error::timeout || f.ec == asio::error::timed_out ||
                         clock_type::now() >= rc.deadline;
  if (timed_out) {
    return fmt::format("{}: timeout after {} ms {}", rc.host_port, rc.timeout.count(),
                       f.stage == "read" ? "waiting for the response" : "during " + f.stage);
  }
  if (f.ec == http::error::body_limit) {
    return fmt::format("{}: the response body is larger than {} bytes", rc.host_port, rc.max_body);
  }
  if (f.stage == "read" && closed_by_peer(f.ec)) {
    return fmt::format("{}: connection closed by the server before a complete response ({})",
                       rc.host_port, f.ec.message());
  }
  return fmt::format("{}: {} failed: {}{}", rc.host_port, f.stage, f.ec.message(), f.detail);
}

// The resolver has no deadline of its own and getaddrinfo cannot be interrupted, so the wait for
// it is bounded by a timer instead; a late answer is dropped.
asio::awaitable<std::pair<beast::error_code, tcp::resolver::results_type>> resolve(
    std::string host, std::string port, clock_type::time_point deadline) {
  struct state {
    explicit state(const asio::any_io_executor& ex) : resolver(ex), wake(ex) {}
    tcp::resolver resolver;
    asio::steady_timer wake;
    bool done = false;
    beast::error_code ec;
    tcp::resolver::results_type results;
  };
  auto st = std::make_shared<state>(co_await asio::this_coro::executor);
  st->wake.expires_at(deadline);
  st->resolver.async_resolve(host, port,
                             [st](beast::error_code ec, tcp::resolver::results_type results) {
                               st->done = true;
                               st->ec = ec;
                               st->results = std::move(results);
                               st->wake.cancel();
                             });
  co_await st->wake.async_wait(as_tuple(use_awaitable));
  if (!st->done) {
    st->resolver.cancel();
    co_return std::pair{beast::error_code(beast::error::timeout), tcp::resolver::results_type{}};
  }
  co_return std::pair{st->ec, st->results};
}

std::string tls_detail(ssl::stream<beast::tcp_stream>& stream) {
  const long verify = SSL_get_verify_result(stream.native_handle());
  if (verify == X509_V_OK) return {};
  return fmt::format(": {}", X509_verify_cert_error_string(verify));
}

struct exchange_outcome {
  std::optional<http_response> response;
  bool keep_alive = false;
  std::optional<failure> error;
  bool got_some = false;  // some of the response was read before the failure
};

template <class Stream>
asio::awaitable<exchange_outcome> exchange(Stream& stream, beast::flat_buffer& buffer,
                                           const request_type& req, const request_context& rc) {
  const clock_type::time_point deadline = rc.deadline;
  exchange_outcome out;
  beast::get_lowest_layer(stream).expires_at(deadline);
  auto [write_ec, written] = co_await http::async_write(stream, req, as_tuple(use_awaitable));
  (void)written;
  if (write_ec) {
    out.error = failure{"write", write_ec, {}};
    co_return out;
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(rc.max_body);
  parser.header_limit(max_response_header);
  beast::get_lowest_layer(stream).expires_at(deadline);
  auto [read_ec, read] = co_await http::async_read(stream, buffer, parser, as_tuple(use_awaitable));
  (void)read;
  if (read_ec) {
    out.error = failure{"read", read_ec, {}};
    out.got_some = parser.got_some();
    co_return out;
  }
  out.keep_alive = parser.keep_alive();
  auto message = parser.release();
  http_response response;
  response.status = message.result_int();
  for (const auto& field : message) {
    response.headers.emplace_back(lower(field.name_string()), std::string(field.value()));
  }
  response.body = std::move(message.body());
  out.response = std::move(response);
  co_return out;
}

asio::awaitable<exchange_outcome> exchange_on(detail::http_connection& c, const request_type& req,
                                              const request_context& rc) {
  if (c.tls) co_return co_await exchange(*c.tls, c.buffer, req, rc);
  co_return co_await exchange(*c.plain, c.buffer, req, rc);
}

asio::awaitable<void> close_tls(std::unique_ptr<detail::http_connection> c,
                                std::chrono::milliseconds limit) {
  auto& lowest = c->tcp();
  lowest.expires_after(limit);
  // ssl::error::stream_truncated (the server closed without its close_notify) is normal here, as
  // is any other failure: the connection is going away either way.
  auto [ec] = co_await c->tls->async_shutdown(as_tuple(use_awaitable));
  (void)ec;
  beast::error_code ignored;
  lowest.socket().shutdown(tcp::socket::shutdown_both, ignored);
  lowest.close();
}

}  // namespace

std::optional<std::string> http_response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return std::nullopt;
}

std::optional<url> parse_url(std::string_view text) {
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  url u;
  u.scheme = lower(text.substr(0, sep));
  if (u.scheme != "http" && u.scheme != "https") return std::nullopt;
  const std::string_view rest = text.substr(sep + 3);
  if (rest.find_first_of("?#@") != std::string_view::npos) return std::nullopt;
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);

  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
      has_port = true;
    }
    boost::system::error_code ec;
    (void)asio::ip::make_address_v6(std::string(host), ec);
    if (ec) return std::nullopt;
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      has_port = true;
    }
    const bool host_ok = std::all_of(host.begin(), host.end(), [](unsigned char c) {
      return std::isalnum(c) || c == '-' || c == '.' || c == '_';
    });
    if (!host_ok) return std::nullopt;
  }
  if (host.empty()) return std::nullopt;
  if (has_port) {
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); })) {
      return std::nullopt;
    }
    const int value = std::stoi(std::string(port));
    if (value < 1 || value > 65535) return std::nullopt;
    u.port = std::to_string(value);
  } else {
    u.port = default_port(u.scheme);
  }
  u.host = lower(host);
  const bool path_ok =
      std::all_of(path.begin(), path.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; });
  if (!path_ok) return std::nullopt;
  u.path_prefix = std::string(path);
  while (!u.path_prefix.empty() && u.path_prefix.back() == '/') u.path_prefix.pop_back();
  return u;
}

std::string netloc(const url& u) {
  std::string out = bracketed(u.host);
  if (u.port != default_port(u.scheme)) out += ":" + u.port;
  return out;
}

http_client::http_client(asio::io_context& io, url base, std::chrono::milliseconds timeout)
    : io_(io), base_(std::move(base)), timeout_(timeout) {
  if (base_.scheme != "https") return;
  tls_ = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(tls_->native_handle(), TLS1_2_VERSION);
  tls_->set_verify_mode(ssl::verify_peer);
  beast::error_code ec;
  tls_->set_default_verify_paths(ec);
  if (ec) tls_error_ = fmt::format("cannot load the system CA store: {}", ec.message());
}

http_client::~http_client() = default;

core::result<void> http_client::add_certificate_authority(std::string_view pem) {
  if (!tls_) return core::failure{"not an https:// base URL"};
  beast::error_code ec;
  tls_->add_certificate_authority(asio::buffer(pem.data(), pem.size()), ec);
  if (ec)
    return core::failure{fmt::format("cannot use the certificate authority: {}", ec.message())};
  return {};
}

asio::awaitable<http_result> http_client::post(
    std::string path, std::string body, std::vector<std::pair<std::string, std::string>> headers) {
  try {
    co_return co_await post_impl(std::move(path), std::move(body), std::move(headers));
  } catch (const std::exception& e) {
    // Only resource exhaustion gets here; it is still reported as a value.
    co_return http_result{std::nullopt,
                          fmt::format("{}: request failed: {}", host_port(base_), e.what())};
  }
}

asio::awaitable<http_result> http_client::post_impl(
    std::string path, std::string body, std::vector<std::pair<std::string, std::string>> headers) {
  const request_context rc{host_port(base_), timeout_, clock_type::now() + timeout_,
                           max_response_body_};
  http_result result;
  if (base_.scheme != "http" && base_.scheme != "https") {
    result.error = fmt::format("{}: unsupported URL scheme \"{}\"", rc.host_port, base_.scheme);
    co_return result;
  }
  if (!tls_error_.empty()) {
    result.error = fmt::format("{}: {}", rc.host_port, tls_error_);
    co_return result;
  }

  std::string target = base_.path_prefix;
  if (path.empty() || path.front() != '/') target += '/';
  target += path;
  request_type req{http::verb::post, target, 11};
  req.set(http::field::host, netloc(base_));
  req.set(http::field::content_type, "application/json");
  req.set(http::field::user_agent, fmt::format("sweepd/{}", core::version));
  for (const auto& [name, value] : headers) {
    // Values are never echoed: one of them is the Authorization header.
    if (!is_token(name)) {
      result.error = fmt::format("{}: invalid header name", rc.host_port);
      co_return result;
    }
    if (!is_safe_header_value(value)) {
      result.error =
          fmt::format("{}: invalid value for header {} (CR, LF or NUL)", rc.host_port, name);
      co_return result;
    }
    req.set(name, value);
  }
  req.body() = std::move(body);
  req.prepare_payload();

  // An idle connection first; if the server closed it meanwhile, once more on a fresh one.
  while (!idle_.empty()) {
    connection_ptr c = std::move(idle_.back());
    idle_.pop_back();
    if (!looks_usable(*c)) {
      discard(std::move(c), false);
      continue;
    }
    auto out = co_await exchange_on(*c, req, rc);
    if (out.response) {
      release(std::move(c), out.keep_alive);
      result.response = std::move(out.response);
      co_return result;
    }
    // Whatever failed (the answer over the cap is left unread, say), the connection is unusable.
    discard(std::move(c), false);
    const bool retry =
        !out.got_some && closed_by_peer(out.error->ec) && clock_type::now() < rc.deadline;
    if (!retry) {
      result.error = describe(rc, *out.error);
      result.too_large = out.error->ec == http::error::body_limit;
      co_return result;
    }
    spdlog::debug("{}: kept-alive connection closed by the server ({}); retrying on a new one",
                  rc.host_port, out.error->ec.message());
    break;
  }

  auto [resolve_ec, endpoints] = co_await resolve(base_.host, base_.port, rc.deadline);
  if (resolve_ec) {
    result.error = describe(rc, failure{"resolve", resolve_ec, {}});
    co_return result;
  }
  auto c = std::make_unique<detail::http_connection>();
  c->generation = generation_;
  if (tls_) {
    c->tls_context = tls_;
    c->tls.emplace(io_, *tls_);
  } else {
    c->plain.emplace(io_);
  }
  c->tcp().expires_at(rc.deadline);
  auto [connect_ec, endpoint] = co_await c->tcp().async_connect(endpoints, as_tuple(use_awaitable));
  (void)endpoint;
  if (connect_ec) {
    result.error = describe(rc, failure{"connect", connect_ec, {}});
    co_return result;
  }
  beast::error_code ignored;
  c->tcp().socket().set_option(tcp::no_delay(true), ignored);

  if (c->tls) {
    SSL* native = c->tls->native_handle();
    // SNI takes host names only (RFC 6066); OpenSSL checks the name or address in the
    // certificate (a clear "hostname mismatch" error) and so does Asio's verify callback.
    if (is_ip_address(base_.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(native), base_.host.c_str());
    } else {
      // SSL_set_tlsext_host_name without the macro's C cast.
      SSL_ctrl(native, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(base_.host.c_str()));
      SSL_set1_host(native, base_.host.c_str());
    }
    c->tls->set_verify_mode(ssl::verify_peer);
    c->tls->set_verify_callback(ssl::host_name_verification(base_.host));
    c->tcp().expires_at(rc.deadline);
    auto [handshake_ec] =
        co_await c->tls->async_handshake(ssl::stream_base::client, as_tuple(use_awaitable));
    if (handshake_ec) {
      result.error = describe(rc, failure{"TLS handshake", handshake_ec, tls_detail(*c->tls)});
      co_return result;
    }
  }

  auto out = co_await exchange_on(*c, req, rc);
  if (!out.response) {
    discard(std::move(c), false);
    result.error = describe(rc, *out.error);
    result.too_large = out.error->ec == http::error::body_limit;
    co_return result;
  }
  release(std::move(c), out.keep_alive);
  result.response = std::move(out.response);
  co_return result;
}

void http_client::release(connection_ptr c, bool reusable) {
  if (!reusable || c->buffer.size() != 0 || c->generation != generation_ ||
      idle_.size() >= max_idle) {
    discard(std::move(c), reusable);
    return;
  }
  c->tcp().expires_never();
  idle_.push_back(std::move(c));
}

void http_client::discard(connection_ptr c, bool graceful) {
  if (c->tls && graceful && c->tcp().socket().is_open()) {
    asio::co_spawn(io_, close_tls(std::move(c), std::min(timeout_, max_tls_shutdown)),
                   [](const std::exception_ptr& e) {
                     if (!e) return;
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& x) {
                       spdlog::warn("closing a TLS connection failed: {}", x.what());
                     }
                   });
    return;
  }
  beast::error_code ignored;
  c->tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
  c->tcp().close();
}

void http_client::close() {
  ++generation_;
  auto idle = std::move(idle_);
  idle_.clear();
  for (auto& c : idle) discard(std::move(c), true);
}

}  // namespace sweepd::io
