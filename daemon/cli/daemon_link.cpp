#include "cli/daemon_link.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <ostream>
#include <thread>
#include <utility>

#include "cli/render.hpp"
#include "cli/spool.hpp"
#include "cli/table.hpp"
#include "core/time.hpp"
#include "io/posix.hpp"

namespace sweepd::cli {

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

/// Reconnect attempts back off from min(--interval, 1 s) up to this.
constexpr steady::duration max_retry_delay = 30s;
/// How long one connection attempt to sweepd's TLS listener (TCP, TLS handshake and hello) may
/// take while the command runs. The poll loop waits that long at most, and signals for the command
/// with it: a host that does not answer must not hold SIGTERM back for the whole reply timeout.
/// A second is many round trips on the networks remote workers report over; a slower attempt
/// fails and is retried with backoff.
constexpr steady::duration remote_connect_budget = 1s;
/// A reply line longer than this is not from sweepd (its replies to exec are a few hundred bytes).
constexpr std::size_t max_reply_bytes = std::size_t{1024} * 1024;

std::string seconds_text(steady::duration d) {
  return format_exact(std::chrono::duration<double>(d).count()) + " s";
}

}  // namespace

bool is_refusal(std::string_view code) {
  return code == "bad_request" || code == "conflict" || code == "forbidden" ||
         code == "too_large" || code == "unknown_op" || code == "bad_json";
}

daemon_link::daemon_link(std::string socket, core::register_params register_request,
                         steady::duration interval, steady::duration reply_timeout,
                         bool warn_on_timeout, std::ostream& err)
    : socket_(std::move(socket)),
      run_(register_request.run),
      register_request_(std::move(register_request)),
      interval_(interval),
      reply_timeout_(reply_timeout),
      warn_on_timeout_(warn_on_timeout),
      err_(err),
      random_(std::random_device{}()) {}

void daemon_link::use_remote(const io::daemon_address& address,
                             const io::tls_client_options& options, std::string token) {
  remote_ = address;
  tls_options_ = options;
  token_ = std::move(token);
}

steady::time_point daemon_link::wake_at() const {
  if (disabled_) return steady::time_point::max();
  if (fd_ < 0) return retry_at_;
  if (pending_ != request_kind::none) return reply_deadline_;
  return up_ ? next_heartbeat_ : steady::time_point::max();
}

void daemon_link::step(steady::time_point now, bool readable) {
  if (disabled_) return;
  if (fd_ >= 0 && readable) receive(now);
  // A refusal read just now ends all talk: no reconnect, and no socket left for poll to report.
  if (disabled_) return;
  if (fd_ >= 0 && pending_ != request_kind::none && now >= reply_deadline_) {
    lost(now, fmt::format("no reply from sweepd at {} within {}", socket_,
                          seconds_text(reply_timeout_)));
  }
  if (fd_ < 0) {
    if (now >= retry_at_) connect_and_register(now);
    return;
  }
  if (up_ && pending_ == request_kind::none && now >= next_heartbeat_) {
    send(request_kind::heartbeat, now);
  }
}

bool daemon_link::finish(const core::request& report, bool started, steady::time_point deadline,
                         const spool_plan& spool) {
  if (disabled_) return false;
  settle(deadline);
  if (disabled_) return false;
  if (pending_ != request_kind::none) close();  // its reply would come before the report's
  std::string why;
  std::optional<std::filesystem::path> spooled;
  std::string spool_problem;
  steady::duration delay = 100ms;
  for (bool first = true;; first = false) {
    std::optional<spool_claim> claim;
    bool attempt = true;
    if (spooled) {
      // Another client (a flush, a new sweepctl exec) may be delivering the file right now.
      claim.emplace(*spooled);
      if (claim->state() == spool_claim::status::gone) return true;
      attempt = claim->state() != spool_claim::status::busy;
      if (!attempt) why = fmt::format("another client is delivering {}", spooled->string());
    }
    if (attempt && try_report(report, started, deadline, why)) {
      std::string problem;
      if (claim && claim->state() == spool_claim::status::claimed && !claim->remove(problem)) {
        err_ << fmt::format(
            "sweepctl exec: run {} is recorded, but its spool file stays ({}); delivering it "
            "again is harmless\n",
            run_, problem);
      }
      return true;
    }
    close();
    claim.reset();  // no lock held while waiting
    if (first) spooled = write_spool(report, spool, spool_problem);
    const auto now = steady::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(std::min(delay, deadline - now));
    delay = std::min<steady::duration>(delay * 2, 1s);
  }
  err_ << fmt::format("sweepctl exec: could not record the end of run {} in sweepd: {}\n", run_,
                      why);
  if (spooled) {
    err_ << fmt::format(
        "sweepctl exec: the report of run {} is spooled at {}; the next sweepctl exec or "
        "SweepRun start for this socket, or 'sweepctl spool flush', delivers it\n",
        run_, spooled->string());
  } else {
    err_ << fmt::format("sweepctl exec: the report of run {} is lost: {}\n", run_, spool_problem);
  }
  return false;
}

core::request daemon_link::request_for(request_kind what) const {
  switch (what) {
    case request_kind::register_run:
      return register_request_;
    case request_kind::start:
      return core::start_request{run_};
    case request_kind::heartbeat:
    case request_kind::none:
      break;
  }
  core::heartbeat_params heartbeat;
  heartbeat.run = run_;
  return heartbeat;
}

bool daemon_link::open_remote(std::string& why, steady::time_point deadline) {
  auto connection = std::make_unique<io::tls_connection>();
  if (!connection->connect(remote_->host, remote_->port, tls_options_, deadline)) {
    why = connection->error();
    return false;
  }
  tls_ = std::move(connection);
  fd_ = tls_->fd();
  // The first line authenticates; it is the only place the token goes.
  const auto hello = exchange(core::hello_request{token_}, deadline, why);
  if (!hello) {
    close();
    return false;
  }
  if ((*hello)["ok"] != true) {
    const auto [code, message] = shown_error_of(*hello, 300);
    why = fmt::format("sweepd at {} refused the connection: {}: {}", socket_, code, message);
    close();
    return false;
  }
  return true;
}

bool daemon_link::open_socket(std::string& why, steady::time_point deadline) {
  close();
  if (remote_) return open_remote(why, deadline);
  if (opener_) {
    fd_ = opener_(why);
    return fd_ >= 0;
  }
  // Non-blocking: a full backlog fails at once instead of holding up exec's poll loop.
  const auto fd = io::connect_unix(socket_, {true, socket_});
  if (!fd) {
    why = fd.error().message;
    return false;
  }
  fd_ = *fd;
  return true;
}

bool daemon_link::send_line(const core::request& request, std::string& why) {
  const std::string line = core::encode_request(request);
  if (tls_) {
    if (tls_->send(line, steady::now() + reply_timeout_)) return true;
    why = tls_->error();
    return false;
  }
  std::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = errno == EAGAIN || errno == EWOULDBLOCK
                ? fmt::format("sweepd at {} is not reading its socket", socket_)
                : fmt::format("cannot send to sweepd at {}: {}", socket_, io::errno_text(errno));
      return false;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void daemon_link::connect_and_register(steady::time_point now) {
  std::string why;
  if (!open_socket(why, now + std::min<steady::duration>(reply_timeout_, remote_connect_budget))) {
    return lost(now, why);
  }
  send(request_kind::register_run, now);
}

void daemon_link::send(request_kind what, steady::time_point now) {
  std::string why;
  if (!send_line(request_for(what), why)) return lost(now, why);
  pending_ = what;
  reply_deadline_ = now + reply_timeout_;
  if (what == request_kind::heartbeat) next_heartbeat_ = now + interval_;
}

bool daemon_link::read_available(std::string& why) {
  char chunk[4096];
  for (;;) {
    // TLS: read until OpenSSL has nothing buffered, so that poll() on the socket tells the
    // truth about what is left.
    const ssize_t n = tls_ ? tls_->receive_now(chunk, sizeof(chunk))
                           : ::recv(fd_, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (tls_ && n < 0) {
      if (n == -2) return true;
      why = tls_->error();
      return false;
    }
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      if (buffer_.size() > max_reply_bytes) {
        why =
            fmt::format("sweepd at {} sent a reply longer than {} bytes", socket_, max_reply_bytes);
        return false;
      }
      continue;
    }
    if (n == 0) {
      why = fmt::format("sweepd at {} closed the connection", socket_);
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    why = fmt::format("cannot read from sweepd at {}: {}", socket_, io::errno_text(errno));
    return false;
  }
}

std::optional<std::string> daemon_link::take_line() {
  const auto nl = buffer_.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  std::string line = buffer_.substr(0, nl);
  buffer_.erase(0, nl + 1);
  return line;
}

void daemon_link::receive(steady::time_point now) {
  std::string why;
  if (!read_available(why)) {
    // Replies that arrived before the end still count (a restart right after an answer).
    while (fd_ >= 0) {
      auto line = take_line();
      if (!line) break;
      handle_reply(*line, now);
    }
    if (fd_ >= 0) lost(now, why);
    return;
  }
  while (fd_ >= 0) {
    auto line = take_line();
    if (!line) break;
    handle_reply(*line, now);
  }
}

void daemon_link::handle_reply(const std::string& line, steady::time_point now) {
  const request_kind what = std::exchange(pending_, request_kind::none);
  std::string why;
  const auto reply = protocol_reply(line, socket_, why);
  if (!reply) return lost(now, why);
  if (what == request_kind::none) {
    return lost(now, fmt::format("sweepd at {} sent a reply to no request", socket_));
  }
  if ((*reply)["ok"] == true) {
    switch (what) {
      case request_kind::register_run:
        registered_ = true;
        return send(request_kind::start, now);
      case request_kind::start:
        started_ = true;
        return up(*reply, now);
      case request_kind::heartbeat:
        return note_state(*reply);
      case request_kind::none:
        break;
    }
    return;
  }
  const auto [code, message] = shown_error_of(*reply, 300);
  if (what == request_kind::register_run && code == "conflict" && registered_) {
    // Registered before, and the run is terminal now: it timed out while sweepd was out of
    // reach. start revives it if it can, and tells its state if not.
    return send(request_kind::start, now);
  }
  if (what == request_kind::register_run && is_refusal(code)) {
    disabled_ = true;
    close();
    err_ << fmt::format(
        "sweepctl exec: sweepd refused to register run {}: {}: {}; the command "
        "runs without supervision\n",
        run_, code, message);
    return;
  }
  if (code == "unknown_run") registered_ = false;
  lost(now, fmt::format("sweepd at {} answered {}: {}", socket_, code, message));
}

void daemon_link::up(const json& reply, steady::time_point now) {
  up_ = true;
  failures_ = 0;
  next_heartbeat_ = now + interval_;
  if (warned_) {
    err_ << fmt::format("sweepctl exec: sweepd at {} is back; run {} is {}\n", socket_, run_,
                        printable(reply.value("state", "registered"), 40));
    warned_ = false;
    last_state_ = reply.value("state", "");
    timed_out_ = timed_out_ || last_state_ == "timeout";
    return;
  }
  note_state(reply);
}

void daemon_link::note_state(const json& reply) {
  const std::string state = reply.value("state", "");
  if (state == "timeout") timed_out_ = true;
  const bool quiet = state == "timeout" && !warn_on_timeout_;
  if (state != last_state_ && !state.empty() && state != "initializing" && state != "running" &&
      !quiet) {
    err_ << fmt::format("sweepctl exec: sweepd reports run {} as {}; the command keeps running\n",
                        run_, printable(state, 40));
  }
  last_state_ = state;
}

void daemon_link::lost(steady::time_point now, const std::string& why) {
  close();
  ++failures_;
  retry_at_ = now + retry_delay();
  if (!warned_) {
    warned_ = true;
    err_ << fmt::format(
        "sweepctl exec: {}; the command keeps running and sweepctl keeps trying in the "
        "background\n",
        why);
  }
}

steady::duration daemon_link::retry_delay() {
  const steady::duration base = std::min<steady::duration>(interval_, 1s);
  steady::duration delay = base;
  for (int i = 1; i < failures_ && delay < max_retry_delay; ++i) delay *= 2;
  delay = std::min(delay, max_retry_delay);
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::duration_cast<steady::duration>(delay * jitter(random_));
}

std::optional<json> daemon_link::exchange(const core::request& request, steady::time_point deadline,
                                          std::string& why) {
  if (!send_line(request, why)) return std::nullopt;
  const steady::time_point until = std::min(deadline, steady::now() + reply_timeout_);
  for (;;) {
    if (auto line = take_line()) return protocol_reply(*line, socket_, why);
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - steady::now());
    if (left.count() <= 0) {
      why = fmt::format("no reply from sweepd at {} in time", socket_);
      return std::nullopt;
    }
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) {
      why = fmt::format("cannot wait for sweepd: {}", io::errno_text(errno));
      return std::nullopt;
    }
    if (ready > 0 && !read_available(why) && buffer_.find('\n') == std::string::npos) {
      return std::nullopt;
    }
  }
}

void daemon_link::settle(steady::time_point deadline) {
  while (fd_ >= 0 && pending_ != request_kind::none) {
    const auto until = std::min(reply_deadline_, deadline);
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - steady::now());
    if (left.count() <= 0 && until == deadline) return;
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    step(steady::now(), ready > 0);
  }
}

bool daemon_link::try_report(const core::request& report, bool started, steady::time_point deadline,
                             std::string& why) {
  if (fd_ < 0 && !open_socket(why, std::min(deadline, steady::now() + reply_timeout_))) {
    return false;
  }
  if (!registered_) {
    const auto reply = exchange(register_request_, deadline, why);
    if (!reply) return false;
    if ((*reply)["ok"] != true) {
      const auto [code, message] = shown_error_of(*reply, 300);
      if (is_refusal(code)) {
        err_ << fmt::format("sweepctl exec: sweepd refused to register run {}: {}: {}\n", run_,
                            code, message);
        return true;
      }
      why = fmt::format("sweepd answered {}: {}", code, message);
      return false;
    }
    registered_ = true;
  }
  if (started && !started_) {
    // A refused start changes nothing; the report's own answer says what sweepd thinks.
    const auto reply = exchange(request_for(request_kind::start), deadline, why);
    if (!reply) return false;
    started_ = (*reply)["ok"] == true;
  }
  const auto reply = exchange(report, deadline, why);
  if (!reply) return false;
  if ((*reply)["ok"] == true) {
    if (warned_) {
      err_ << fmt::format("sweepctl exec: sweepd at {} is back; run {} is {}\n", socket_, run_,
                          printable(reply->value("state", "recorded"), 40));
    }
    return true;
  }
  const auto [code, message] = shown_error_of(*reply, 300);
  if (code == "unknown_run") {
    registered_ = false;  // sweepd lost the run: register it again, then report
  } else if (is_refusal(code)) {
    err_ << fmt::format("sweepctl exec: sweepd refused to record the end of run {}: {}: {}\n", run_,
                        code, message);
    return true;
  }
  why = fmt::format("sweepd answered {}: {}", code, message);
  return false;
}

std::optional<std::filesystem::path> daemon_link::write_spool(const core::request& report,
                                                              const spool_plan& spool,
                                                              std::string& problem) const {
  core::register_params register_request = register_request_;
  register_request.watch_peer = false;  // the process it names is about to be gone
  const spool_record record{normal_socket_path(socket_),
                            run_,
                            core::request_json(register_request),
                            core::request_json(report),
                            core::format_utc(std::chrono::system_clock::now()),
                            "sweepctl exec"};
  auto path = write_spool_file(spool.dir, record, spool.uid, problem);
  if (!path) problem = "cannot spool it: " + problem;
  return path;
}

void daemon_link::close() {
  if (tls_) {
    tls_.reset();  // it owns the socket
  } else if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = -1;
  buffer_.clear();
  pending_ = request_kind::none;
  up_ = false;
}

}  // namespace sweepd::cli
