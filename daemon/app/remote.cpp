// Remote workers (DESIGN §11): the TLS listener's certificate and tokens, and the verdict on each
// remote connection's first line. Kept apart from daemon.cpp: the request path is the same for
// both sockets once a connection is authenticated.
#include <spdlog/spdlog.h>

#include <cmath>
#include <utility>

#include "app/daemon.hpp"
#include "core/protocol.hpp"
#include "io/tls.hpp"

namespace sweepd::app {

namespace {

io::remote_options remote_options_of(const core::config& cfg) {
  io::remote_options options;
  options.listen = cfg.remote.listen;
  options.handshake_timeout =
      std::chrono::ceil<std::chrono::milliseconds>(core::seconds_d(cfg.remote.handshake_timeout));
  options.max_connections = cfg.remote.max_connections;
  return options;
}

io::authentication refuse(std::string message) {
  return {std::nullopt, core::error_reply({core::error_code::forbidden, std::move(message)})};
}

}  // namespace

core::result<void> daemon::open_remote() {
  if (cfg_.remote.listen.empty()) return {};
  auto tls = io::load_server_tls(cfg_.remote.cert_file, cfg_.remote.key_file);
  if (!tls) return tls.error();
  auto tokens = io::token_store::load(cfg_.remote.tokens_file);
  if (!tokens) return core::failure{fmt::format("remote.tokens_file: {}", tokens.error().message)};
  if (tokens->size() == 0) {
    spdlog::warn("remote.tokens_file {} lists no token: every remote connection is refused",
                 cfg_.remote.tokens_file);
  }
  tokens_ = std::move(*tokens);
  return server_.open_remote(remote_options_of(cfg_), std::move(*tls),
                             [this](std::string_view line, const std::string& address) {
                               return authenticate(line, address);
                             });
}

void daemon::reload_remote() {
  if (!tokens_) {
    if (!cfg_.remote.listen.empty()) {
      spdlog::warn("remote.listen is set but the listener was off at start: restart sweepd");
    }
    return;
  }
  const io::remote_options options = remote_options_of(cfg_);
  server_.set_remote_limits(options.handshake_timeout, options.max_connections);
  if (auto tls = io::load_server_tls(cfg_.remote.cert_file, cfg_.remote.key_file); tls) {
    server_.set_tls_context(std::move(*tls));
    spdlog::info("remote: certificate {} and key {} reloaded", cfg_.remote.cert_file,
                 cfg_.remote.key_file);
  } else {
    spdlog::error("remote: {}; keeping the certificate and key in use", tls.error().message);
  }
  if (auto tokens = io::token_store::load(cfg_.remote.tokens_file); tokens) {
    const io::token_store before = std::exchange(*tokens_, std::move(*tokens));
    spdlog::info("remote: {} token(s) reloaded from {}", tokens_->size(), cfg_.remote.tokens_file);
    // A token taken out of the file, or replaced by another (rotated, say because it leaked), is
    // revoked: the connections it opened must not outlive it.
    const auto closed = server_.close_remote_of([&](const std::string& principal) {
      const auto now = tokens_->digest_of(principal);
      return !now || now != before.digest_of(principal);
    });
    for (const auto& [principal, count] : closed) {
      spdlog::warn("remote: token:{} {} in {}; closed its {} connection(s)", principal,
                   tokens_->has_principal(principal) ? "has a new token" : "has no token any more",
                   cfg_.remote.tokens_file, count);
    }
  } else {
    spdlog::error("remote.tokens_file: {}; keeping the {} token(s) in use", tokens.error().message,
                  tokens_->size());
  }
}

io::authentication daemon::authenticate(std::string_view line, const std::string& address) {
  const auto started = clock_.mono();
  io::authentication verdict = check_hello(line, address);
  // Counted like every request, as op "hello": refusals show as result "forbidden", which is what
  // an alert on guessed or revoked tokens watches.
  metrics_.request("hello", core::reply_result(verdict.reply),
                   core::seconds_between(started, clock_.mono()));
  return verdict;
}

io::authentication daemon::check_hello(std::string_view line, const std::string& address) {
  const auto now = clock_.mono();
  if (const auto wait = auth_failures_.blocked_for(address, now)) {
    // Refused without looking at the token: guessing gets no faster by trying harder.
    return refuse(fmt::format("too many failed attempts from {}; try again in {:.0f} s", address,
                              std::ceil(core::seconds_d(*wait).count())));
  }
  const core::parse_result parsed = core::parse_request(line);
  const auto* hello = parsed.req ? std::get_if<core::hello_request>(&*parsed.req) : nullptr;
  std::optional<std::string> principal;
  if (hello != nullptr && hello->token && tokens_) principal = tokens_->verify(*hello->token);
  if (!principal) {
    auth_failures_.failed(address, now);
    // The reasons never quote the line: it may hold a token (a wrong one, or a right one in a
    // malformed request).
    const std::string why = hello == nullptr ? "the first line was not a hello"
                            : !hello->token  ? "the hello had no token"
                                             : "the token is not valid";
    std::size_t held_back = 0;
    if (auth_failure_log_.allow(clock_.mono(), held_back)) {
      spdlog::warn("remote connection from {} refused: {}{}", address, why,
                   held_back == 0 ? std::string()
                                  : fmt::format(" ({} more refusals not logged)", held_back));
    }
    return refuse(fmt::format(
        "{}: a remote connection must start with {{\"op\":\"hello\",\"token\":\"…\"}} carrying a "
        "token listed in remote.tokens_file; closing",
        why));
  }
  auth_failures_.succeeded(address);
  spdlog::debug("remote connection from {} is token:{}", address, *principal);
  io::peer_credentials peer;
  peer.remote = true;
  peer.principal = *principal;
  core::handled h = service_.handle(line, caller_of(peer), this->now());
  return {std::move(principal), std::move(h.reply)};
}

}  // namespace sweepd::app
