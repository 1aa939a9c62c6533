#include "io/metrics_server.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "core/version.hpp"

namespace sweepd::io {

namespace {

using asio::as_tuple;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
namespace beast = boost::beast;
namespace http = beast::http;

/// HOST:PORT split into its parts; an IPv6 host loses its brackets.
std::optional<std::pair<std::string, std::string>> split_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) return std::nullopt;
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, listen.substr(colon + 1));
}

bool is_http_parse_error(const beast::error_code& ec) {
  return ec.category() == make_error_code(http::error::bad_target).category();
}

/// Ends of a connection that are no one's fault: the client closed, went quiet, or we stopped.
bool is_quiet_end(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
         ec == http::error::partial_message;
}

http::response<http::string_body> plain(unsigned status, std::string body) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  return res;
}

}  // namespace

metrics_server::metrics_server(asio::io_context& io, metrics_server_options options,
                               std::map<std::string, route> routes)
    : io_(io), options_(std::move(options)), routes_(std::move(routes)), acceptor_(io) {}

metrics_server::~metrics_server() { stop(); }

core::result<void> metrics_server::open() {
  const auto parts = split_listen(options_.listen);
  if (!parts)
    return core::failure{fmt::format("metrics.listen '{}' is not HOST:PORT", options_.listen)};
  tcp::resolver resolver(io_);
  boost::system::error_code ec;
  const auto results =
      resolver.resolve(parts->first, parts->second, tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    return core::failure{fmt::format("metrics.listen {}: cannot resolve '{}': {}", options_.listen,
                                     parts->first, ec ? ec.message() : std::string("no address"))};
  }
  const tcp::endpoint endpoint = results.begin()->endpoint();
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return core::failure{
        fmt::format("metrics.listen {}: cannot listen: {}", options_.listen, ec.message())};
  }
  return {};
}

std::string metrics_server::local_address() const {
  boost::system::error_code ec;
  const auto ep = acceptor_.local_endpoint(ec);
  if (ec) return options_.listen;
  const std::string host = ep.address().to_string();
  return ep.address().is_v6() ? fmt::format("[{}]:{}", host, ep.port())
                              : fmt::format("{}:{}", host, ep.port());
}

std::uint16_t metrics_server::local_port() const {
  boost::system::error_code ec;
  const auto ep = acceptor_.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void metrics_server::start() {
  asio::co_spawn(io_, accept_loop(), [](const std::exception_ptr& e) {
    if (e) std::rethrow_exception(e);  // a bug: let the daemon stop non-zero
  });
}

void metrics_server::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& sock : connections_) {
    sock.shutdown(asio::socket_base::shutdown_both, ec);
    sock.close(ec);
  }
}

asio::awaitable<void> metrics_server::accept_loop() {
  asio::steady_timer pause(io_);
  while (!stopped_) {
    auto [ec, sock] = co_await acceptor_.async_accept(as_tuple(use_awaitable));
    if (stopped_) break;
    if (ec) {
      // Out of descriptors or memory: the control socket matters more; try again shortly.
      spdlog::warn("metrics: accept on {} failed: {}", local_address(), ec.message());
      pause.expires_after(std::chrono::milliseconds(100));
      co_await pause.async_wait(as_tuple(use_awaitable));
      continue;
    }
    if (connections_.size() >= options_.max_connections) {
      boost::system::error_code ignored;
      sock.close(ignored);
      continue;
    }
    connections_.push_back(std::move(sock));
    asio::co_spawn(io_, serve(std::prev(connections_.end())), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
  }
}

asio::awaitable<void> metrics_server::serve(std::list<socket_type>::iterator it) {
  socket_type& sock = *it;
  // One deadline per request: a client that sends slowly, or keeps an idle connection, is cut
  // off when it passes (cancelling the socket's read or write).
  asio::steady_timer deadline(io_);
  const auto arm = [&] {
    deadline.expires_after(options_.read_timeout);
    deadline.async_wait([&sock](boost::system::error_code ec) {
      if (!ec) sock.cancel();
    });
  };
  beast::flat_buffer buffer;
  for (bool keep_alive = true; keep_alive && !stopped_;) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
    arm();
    auto [ec, n] = co_await http::async_read(sock, buffer, parser, as_tuple(use_awaitable));
    if (stopped_) break;
    http::response<http::string_body> res;
    if (ec == http::error::header_limit) {
      res = plain(431, "request header fields too large\n");
      keep_alive = false;
    } else if (ec == http::error::unexpected_body) {
      res = plain(400, "a request here has no body\n");
      keep_alive = false;
    } else if (ec && !is_quiet_end(ec) && is_http_parse_error(ec)) {
      res = plain(400, "malformed request\n");
      keep_alive = false;
    } else if (ec) {
      break;  // closed, timed out, reset: nothing to answer
    } else {
      const auto& req = parser.get();
      std::string_view target = req.target();
      target = target.substr(0, target.find('?'));
      const auto found = routes_.find(std::string(target));
      if (found == routes_.end()) {
        res = plain(404, "not found; try /metrics or /healthz\n");
      } else if (req.method() != http::verb::get) {
        res = plain(405, "only GET is allowed here\n");
        res.set(http::field::allow, "GET");
      } else {
        http_answer answer = found->second();
        res = plain(answer.status, std::move(answer.body));
        res.set(http::field::content_type, answer.content_type);
        res.set(http::field::cache_control, "no-store");
      }
      keep_alive = req.keep_alive();
    }
    res.set(http::field::server, "sweepd/" + std::string(core::version));
    res.keep_alive(keep_alive);
    res.prepare_payload();
    arm();
    auto [wec, written] = co_await http::async_write(sock, res, as_tuple(use_awaitable));
    if (wec || stopped_) break;
  }
  deadline.cancel();
  if (!stopped_) {
    boost::system::error_code ec;
    sock.shutdown(asio::socket_base::shutdown_send, ec);
    sock.close(ec);
    connections_.erase(it);
  }
}

}  // namespace sweepd::io
