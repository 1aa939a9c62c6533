// sweepctl exec (DESIGN §7): runs a command as a supervised sweep run.
//
// One thread does everything, in one poll loop over a signalfd and the connection to sweepd:
// SIGTERM/SIGINT/SIGHUP are passed on to the command, SIGCHLD says it ended, and a timer drives
// heartbeats and reconnects. The four signals are blocked from before the command is spawned (the
// command gets the original mask back), so none is lost or races with waitpid. sweepd is never
// waited on while the command runs: a request goes out and its reply is read when the socket
// becomes readable, so a slow, hung or absent daemon delays neither a signal nor the command's end.

#include "cli/exec.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "cli/spool.hpp"
#include "cli/table.hpp"
#include "core/lenient_json.hpp"
#include "core/protocol.hpp"
#include "core/time.hpp"

namespace sweepd::cli {

namespace {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr double default_interval_s = 30;
constexpr double min_interval_s = 0.1;
/// Reconnect attempts back off from min(--interval, 1 s) up to this.
constexpr steady::duration max_retry_delay = 30s;
/// How long the final complete/fail is retried before sweepctl exec exits anyway.
constexpr steady::duration report_budget = 5s;
constexpr std::size_t max_result_file_bytes = 1024 * 1024;
/// A result file is a flat object; deeper nesting than this is not one.
constexpr std::size_t max_result_depth = 64;
/// How long a command that sweepd timed out gets between SIGTERM and SIGKILL, by default.
constexpr steady::duration default_kill_grace = 30s;
/// How long one connection attempt to sweepd's TLS listener (TCP, TLS handshake and hello) may
/// take while the command runs. The poll loop waits that long at most, and signals for the command
/// with it: a host that does not answer must not hold SIGTERM back for the whole reply timeout.
/// A second is many round trips on the networks remote workers report over; a slower attempt
/// fails and is retried with backoff.
constexpr steady::duration remote_connect_budget = 1s;
/// How long delivering spooled reports at exec's start may take, at most.
constexpr steady::duration start_flush_budget = 2s;
/// A reply line longer than this is not from sweepd (its replies to exec are a few hundred bytes).
constexpr std::size_t max_reply_bytes = 1024 * 1024;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_text(int error) { return std::strerror(error); }

steady::duration to_duration(double seconds) {
  return std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
}

std::string seconds_text(steady::duration d) {
  return format_exact(std::chrono::duration<double>(d).count()) + " s";
}

/// "SIGTERM"; "signal 40" for one without a name.
std::string signal_name(int signo) {
  if (const char* abbrev = ::sigabbrev_np(signo)) return fmt::format("SIG{}", abbrev);
  return fmt::format("signal {}", signo);
}

/// A JSON value as a warning quotes it: numbers in full, anything else as short JSON.
std::string quoted(const json& v) {
  if (v.is_number()) return format_exact(v.get<double>());
  return printable(dump(v), 60);
}

// ---------------------------------------------------------------------------------------------
// The command line.

/// What exec does when sweepd reports the run `timeout` for good (max_runtime or stall).
enum class timeout_action { kill, keep };

struct exec_options {
  std::string run;
  json register_request;
  std::optional<std::string> result_file;
  steady::duration interval{};
  timeout_action on_timeout = timeout_action::kill;
  steady::duration kill_grace = default_kill_grace;
  std::optional<std::string> spool_dir;
  std::vector<std::string> argv;
  std::string problem;  // the first usage error, naming the option
};

/// A duration option in seconds: nullopt when absent or refused (then `problem` says why).
std::optional<double> duration_option(const arguments& args, std::string_view option, double min,
                                      bool min_inclusive, std::string& problem) {
  const std::string* text = args.value(option);
  if (text == nullptr || !problem.empty()) return std::nullopt;
  const parsed_number parsed = parse_duration(option, *text);
  if (!parsed.value) {
    problem = parsed.problem;
  } else if (*parsed.value < min || (!min_inclusive && *parsed.value == min)) {
    problem = fmt::format("option '{}': must be {} {} seconds, got '{}'", option,
                          min_inclusive ? "at least" : "more than", min, printable(*text, 40));
  } else if (*parsed.value > core::max_timeout_s) {
    problem = fmt::format("option '{}': at most {} seconds (a year), got '{}'", option,
                          core::max_timeout_s, printable(*text, 40));
  } else {
    return parsed.value;
  }
  return std::nullopt;
}

exec_options parse_options(const arguments& args) {
  exec_options o;
  std::string& problem = o.problem;
  const std::string* run = args.value("--run");
  if (run == nullptr) {
    problem = "missing --run ID, the id of the run to register";
  } else if (!core::is_valid_run_id(*run)) {
    problem = fmt::format(
        "option '--run': '{}' is not a valid run id (1-{} characters of "
        "[A-Za-z0-9._-])",
        printable(*run, 40), core::max_run_id_chars);
  } else {
    o.run = *run;
  }
  json& r = o.register_request;
  r = {{"op", "register"}, {"run", o.run}, {"watch_peer", true}};
  for (const auto& [option, key] : {std::pair{"--sweep", "sweep"}, std::pair{"--entity", "entity"},
                                    std::pair{"--project", "project"}}) {
    if (const std::string* v = args.value(option)) r[key] = *v;
  }
  if (const std::string* v = args.value("--suggestion"); v != nullptr && problem.empty()) {
    json suggestion = json::parse(*v, nullptr, false);
    if (suggestion.is_discarded() || !suggestion.is_object()) {
      problem = fmt::format(
          "option '--suggestion': expected a JSON object such as '{{\"lr\": 0.01}}', got '{}'",
          printable(*v, 60));
    } else if (const std::size_t size = dump(suggestion).size();
               size > core::max_suggestion_bytes) {
      problem = fmt::format("option '--suggestion': {} bytes of JSON, more than the {} allowed",
                            size, core::max_suggestion_bytes);
    } else {
      r["suggestion"] = std::move(suggestion);
    }
  }
  const auto timeout = duration_option(args, "--heartbeat-timeout", 0, false, problem);
  if (timeout) r["heartbeat_timeout_s"] = *timeout;
  if (auto s = duration_option(args, "--max-runtime", 0, true, problem)) r["max_runtime_s"] = *s;
  const auto interval = duration_option(args, "--interval", min_interval_s, true, problem);
  if (timeout && interval.value_or(default_interval_s) >= *timeout && problem.empty()) {
    problem = fmt::format(
        "option '--interval': heartbeats every {} s would come too late for a "
        "--heartbeat-timeout of {} s",
        format_exact(interval.value_or(default_interval_s)), format_exact(*timeout));
  }
  o.interval = to_duration(interval.value_or(default_interval_s));
  if (const std::string* v = args.value("--result-file")) {
    if (v->empty() && problem.empty()) problem = "option '--result-file': the path is empty";
    o.result_file = *v;
  }
  if (const std::string* v = args.value("--on-timeout"); v != nullptr && problem.empty()) {
    if (*v == "kill" || *v == "keep") {
      o.on_timeout = *v == "kill" ? timeout_action::kill : timeout_action::keep;
    } else {
      problem =
          fmt::format("option '--on-timeout': expected kill or keep, got '{}'", printable(*v, 40));
    }
  }
  if (const auto grace = duration_option(args, "--kill-grace", 0, true, problem)) {
    o.kill_grace = to_duration(*grace);
    if (o.on_timeout == timeout_action::keep && problem.empty()) {
      problem = "option '--kill-grace': applies only with --on-timeout kill, not keep";
    }
  }
  if (const std::string* v = args.value("--spool-dir")) {
    if (v->empty() && problem.empty()) problem = "option '--spool-dir': the path is empty";
    o.spool_dir = *v;
  }
  o.argv = args.operands;
  if (problem.empty() && o.argv.empty()) {
    problem =
        "missing the command to run (usage: sweepctl exec --run ID [OPTIONS] -- CMD "
        "[ARGS...])";
  } else if (problem.empty() && o.argv.front().empty()) {
    problem = "the command to run is an empty string";
  }
  return o;
}

int usage_error(const invocation& in, std::string_view problem) {
  in.err << fmt::format("sweepctl: {}\nTry 'sweepctl exec --help'.\n", problem);
  return exit_usage;
}

// ---------------------------------------------------------------------------------------------
// The result file.

/// Which file is at a path and when it last changed, to tell whether the command wrote it.
struct file_stamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  timespec ctime{};

  bool same_as(const file_stamp& o) const {
    auto same = [](const timespec& a, const timespec& b) {
      return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
    };
    return dev == o.dev && ino == o.ino && size == o.size && same(mtime, o.mtime) &&
           same(ctime, o.ctime);
  }
};

/// The file's stamp, or nullopt with `error` set to the errno of the failed stat.
std::optional<file_stamp> stamp_of(const std::string& path, int& error) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    error = errno;
    return std::nullopt;
  }
  return file_stamp{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
}

std::optional<file_stamp> stamp_of(const std::string& path) {
  int error = 0;
  return stamp_of(path, error);
}

/// The file's bytes, or nullopt with `why` set.
std::optional<std::string> read_small_file(const std::string& path, std::string& why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    why = error_text(errno);
    return std::nullopt;
  }
  std::string text;
  char chunk[8192];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = error_text(errno);
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    if (text.size() > max_result_file_bytes) {
      why = fmt::format("it is larger than {} bytes", max_result_file_bytes);
      ::close(fd);
      return std::nullopt;
    }
  }
  ::close(fd);
  return text;
}

/// A value as an error message quotes it: NaN and Infinity as the bare tokens, anything else as
/// short JSON.
std::string described(const json& v) {
  if (const auto token = core::nonfinite_token_of(v)) return std::string(*token);
  return quoted(v);
}

/// Adds "objective" and "cost" from the result file to a complete request. The run is only
/// complete with a finite objective: a missing, stale, unreadable or malformed file, a missing
/// or non-finite objective and an invalid cost each give the error (naming the file and what is
/// wrong) that fails the run instead. Keys other than objective and cost are warned about.
std::optional<std::string> add_results(json& complete, const exec_options& o,
                                       const std::optional<file_stamp>& before, std::ostream& err) {
  const std::string& path = *o.result_file;
  auto problem = [&](std::string_view what) {
    return fmt::format("result file {}: {}", path, what);
  };
  const std::string command = printable(o.argv.front(), 60);
  int stat_error = 0;
  const auto after = stamp_of(path, stat_error);
  if (!after && stat_error == ENOENT) {
    return problem(fmt::format("does not exist ({} exited 0 without writing it)", command));
  }
  if (before && after && before->same_as(*after)) {
    return problem(fmt::format("unchanged since {} started (left from an earlier run?)", command));
  }
  std::string why;
  const auto text = read_small_file(path, why);
  if (!text) return problem("cannot read it: " + why);
  const core::lenient_parse parsed = core::parse_lenient_json(*text, max_result_depth);
  if (!parsed.problem.empty()) return problem(parsed.problem);
  const json& results = parsed.value;
  if (!results.is_object()) {
    return problem(
        fmt::format("{} is not a JSON object such as {{\"objective\": 0.93, \"cost\": 12.5}}",
                    described(results)));
  }
  std::string unknown;
  for (const auto& [key, value] : results.items()) {
    if (key == "objective" || key == "cost") continue;
    unknown += fmt::format("{}'{}'", unknown.empty() ? "" : ", ", printable(key, 40));
  }
  if (!unknown.empty()) {
    err << fmt::format(
        "sweepctl exec: result file {}: ignoring {} (only 'objective' and 'cost' are read)\n", path,
        unknown);
  }
  std::vector<std::string> problems;
  if (const auto it = results.find("objective"); it == results.end()) {
    problems.push_back("no 'objective' key");
  } else if (it->is_number() && std::isfinite(it->get<double>())) {
    complete["objective"] = it->get<double>();
  } else {
    problems.push_back(fmt::format("'objective' is {} (not a finite number)", described(*it)));
  }
  // An optional value: null (Python's None) says "no cost", and sweepd uses the runtime.
  if (const auto it = results.find("cost"); it != results.end() && !it->is_null()) {
    if (it->is_number() && std::isfinite(it->get<double>()) && it->get<double>() >= 0) {
      complete["cost"] = it->get<double>();
    } else {
      problems.push_back(
          fmt::format("'cost' is {} (not a finite number of at least 0)", described(*it)));
    }
  }
  if (problems.empty()) return std::nullopt;
  std::string all;
  for (const std::string& p : problems) all += (all.empty() ? "" : "; ") + p;
  return problem(all);
}

// ---------------------------------------------------------------------------------------------
// The connection to sweepd.

/// An error reply's code and message.
std::pair<std::string, std::string> error_of(const json& reply) {
  std::string code = "error";
  std::string message = "sweepd refused the request without saying why";
  if (const auto e = reply.find("error"); e != reply.end() && e->is_object()) {
    if (const auto c = e->find("code"); c != e->end() && c->is_string())
      code = c->get<std::string>();
    if (const auto m = e->find("message"); m != e->end() && m->is_string()) {
      message = m->get<std::string>();
    }
  }
  return {printable(code, 64), printable(message, 300)};
}

/// Errors that asking again does not fix: sweepd refuses the request itself.
bool is_refusal(std::string_view code) {
  return code == "bad_request" || code == "conflict" || code == "forbidden" ||
         code == "too_large" || code == "unknown_op" || code == "bad_json";
}

/// Where a report that sweepd cannot take goes.
struct spool_plan {
  std::filesystem::path dir;
  uid_t uid = 0;
};

/// sweepd as sweepctl exec sees it: one connection with at most one request in flight, driven by
/// the poll loop without ever blocking it. The first connection registers the run (bound to this
/// process by watch_peer) and starts it; then a heartbeat goes out every interval. Any failure
/// closes the connection and schedules connect + register + start again, with jittered exponential
/// backoff; the first failure of each outage is reported on stderr, and so is the recovery.
/// A refusal to register (conflict, bad_request, forbidden) ends all talk with sweepd.
class daemon_link {
 public:
  /// `warn_on_timeout`: say on stderr that the command keeps running when sweepd reports the run
  /// timeout (with --on-timeout keep; with kill the caller says what it does instead).
  daemon_link(std::string socket, json register_request, steady::duration interval,
              steady::duration reply_timeout, bool warn_on_timeout, std::ostream& err)
      : socket_(std::move(socket)),
        run_(register_request.value("run", "")),
        register_request_(std::move(register_request)),
        interval_(interval),
        reply_timeout_(reply_timeout),
        warn_on_timeout_(warn_on_timeout),
        err_(err),
        random_(std::random_device{}()) {}
  ~daemon_link() { close(); }
  daemon_link(const daemon_link&) = delete;
  daemon_link& operator=(const daemon_link&) = delete;

  /// The socket to poll for input, or -1.
  int fd() const { return fd_; }

  /// Reaches sweepd's TLS listener instead of its socket: connects, shakes hands and sends the
  /// hello with `token` within remote_connect_budget while the command runs (the poll loop waits
  /// that long at most), within the reply timeout for the final report.
  void use_remote(const io::daemon_address& address, const io::tls_client_options& options,
                  std::string token) {
    remote_ = address;
    tls_options_ = options;
    token_ = std::move(token);
  }

  /// True once sweepd has acknowledged the register.
  bool registered() const { return registered_; }

  /// True once a heartbeat or start reply said the run is `timeout`. Both revive a run that timed
  /// out for silence, so this one timed out for max_runtime or a stall, for good.
  bool timed_out() const { return timed_out_; }

  /// When step() next has something to do without input.
  steady::time_point wake_at() const {
    if (disabled_) return steady::time_point::max();
    if (fd_ < 0) return retry_at_;
    if (pending_ != request_kind::none) return reply_deadline_;
    return up_ ? next_heartbeat_ : steady::time_point::max();
  }

  /// Does what is due at `now`: reads replies when `readable`, notices a reply that is late,
  /// reconnects, sends the next heartbeat.
  void step(steady::time_point now, bool readable) {
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

  /// Once the command has ended: sends `report` (complete or fail) after the register and start
  /// that sweepd has not acknowledged yet (no start when `started` is false: the command never
  /// ran), on a fresh connection if need be; retries until `deadline`. When the first attempt
  /// fails the report is written to the spool at once (docs/spool.md), and removed again if a
  /// retry gets through; when time runs out, says on stderr that the run's end is not recorded
  /// and where it waits. True when sweepd answered the report (recorded or refused it).
  bool finish(const json& report, bool started, steady::time_point deadline,
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

 private:
  enum class request_kind { none, register_run, start, heartbeat };

  json request_for(request_kind what) const {
    switch (what) {
      case request_kind::register_run:
        return register_request_;
      case request_kind::start:
        return {{"op", "start"}, {"run", run_}};
      case request_kind::heartbeat:
        return {{"op", "heartbeat"}, {"run", run_}};
      case request_kind::none:
        break;
    }
    return {};
  }

  bool open_remote(std::string& why, steady::time_point deadline) {
    auto connection = std::make_unique<io::tls_connection>();
    if (!connection->connect(remote_->host, remote_->port, tls_options_, deadline)) {
      why = connection->error();
      return false;
    }
    tls_ = std::move(connection);
    fd_ = tls_->fd();
    // The first line authenticates; it is the only place the token goes.
    const auto hello = exchange({{"op", "hello"}, {"token", token_}}, deadline, why);
    if (!hello) {
      close();
      return false;
    }
    if ((*hello)["ok"] != true) {
      const auto [code, message] = error_of(*hello);
      why = fmt::format("sweepd at {} refused the connection: {}: {}", socket_, code, message);
      close();
      return false;
    }
    return true;
  }

  /// Connects (and over TLS shakes hands and says hello) before `deadline`.
  bool open_socket(std::string& why, steady::time_point deadline) {
    close();
    if (remote_) return open_remote(why, deadline);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_.size() >= sizeof(addr.sun_path)) {
      why = fmt::format("socket path '{}' is too long ({} bytes, at most {})", socket_,
                        socket_.size(), sizeof(addr.sun_path) - 1);
      return false;
    }
    std::memcpy(addr.sun_path, socket_.c_str(), socket_.size() + 1);
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) {
      why = fmt::format("cannot create a socket: {}", error_text(errno));
      return false;
    }
    // A Unix socket connects at once or not at all; EAGAIN means sweepd's backlog is full.
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      why = fmt::format("cannot connect to sweepd at {}: {}", socket_, error_text(errno));
      close();
      return false;
    }
    return true;
  }

  /// Sends one request line. One request is in flight at a time, so the socket's buffer has room;
  /// a send that would block means sweepd is not reading.
  bool send_line(const json& request, std::string& why) {
    const std::string line = dump(request) + "\n";
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
                  : fmt::format("cannot send to sweepd at {}: {}", socket_, error_text(errno));
        return false;
      }
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  void connect_and_register(steady::time_point now) {
    std::string why;
    if (!open_socket(why,
                     now + std::min<steady::duration>(reply_timeout_, remote_connect_budget))) {
      return lost(now, why);
    }
    send(request_kind::register_run, now);
  }

  void send(request_kind what, steady::time_point now) {
    std::string why;
    if (!send_line(request_for(what), why)) return lost(now, why);
    pending_ = what;
    reply_deadline_ = now + reply_timeout_;
    if (what == request_kind::heartbeat) next_heartbeat_ = now + interval_;
  }

  /// Reads what has arrived; false (with `why`) when the connection is gone.
  bool read_available(std::string& why) {
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
          why = fmt::format("sweepd at {} sent a reply longer than {} bytes", socket_,
                            max_reply_bytes);
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
      why = fmt::format("cannot read from sweepd at {}: {}", socket_, error_text(errno));
      return false;
    }
  }

  /// The next complete line in the buffer, if any.
  std::optional<std::string> take_line() {
    const auto nl = buffer_.find('\n');
    if (nl == std::string::npos) return std::nullopt;
    std::string line = buffer_.substr(0, nl);
    buffer_.erase(0, nl + 1);
    return line;
  }

  /// A protocol reply (an object with a boolean "ok"), or nullopt with `why` set.
  std::optional<json> parse_reply(const std::string& line, std::string& why) const {
    json reply = json::parse(line, nullptr, false);
    if (reply.is_object()) {
      if (const auto ok = reply.find("ok"); ok != reply.end() && ok->is_boolean()) return reply;
    }
    why = fmt::format("sweepd at {} sent a reply sweepctl does not understand: {}", socket_,
                      printable(line, 200));
    return std::nullopt;
  }

  void receive(steady::time_point now) {
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

  void handle_reply(const std::string& line, steady::time_point now) {
    const request_kind what = std::exchange(pending_, request_kind::none);
    std::string why;
    const auto reply = parse_reply(line, why);
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
    const auto [code, message] = error_of(*reply);
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

  void up(const json& reply, steady::time_point now) {
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

  /// Says so, once per state, when sweepd no longer counts the run as live: it gave up on it
  /// (timeout) or it ended; the command runs on, and its end is still reported. A timeout is
  /// only noted (not warned about) when the caller is going to stop the command.
  void note_state(const json& reply) {
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

  void lost(steady::time_point now, const std::string& why) {
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

  /// min(interval, 1 s) doubled for each failure in a row, at most 30 s, times a random factor in
  /// [0.5, 1] so that workers cut off together do not come back together.
  steady::duration retry_delay() {
    const steady::duration base = std::min<steady::duration>(interval_, 1s);
    steady::duration delay = base;
    for (int i = 1; i < failures_ && delay < max_retry_delay; ++i) delay *= 2;
    delay = std::min(delay, max_retry_delay);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return std::chrono::duration_cast<steady::duration>(delay * jitter(random_));
  }

  /// Sends `request` on the open connection and waits for its reply until `deadline` (and no
  /// longer than the reply timeout); a protocol reply, or nullopt with `why` set.
  std::optional<json> exchange(const json& request, steady::time_point deadline, std::string& why) {
    if (!send_line(request, why)) return std::nullopt;
    const steady::time_point until = std::min(deadline, steady::now() + reply_timeout_);
    for (;;) {
      if (auto line = take_line()) return parse_reply(*line, why);
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - steady::now());
      if (left.count() <= 0) {
        why = fmt::format("no reply from sweepd at {} in time", socket_);
        return std::nullopt;
      }
      pollfd pfd{fd_, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno != EINTR) {
        why = fmt::format("cannot wait for sweepd: {}", error_text(errno));
        return std::nullopt;
      }
      if (ready > 0 && !read_available(why) && buffer_.find('\n') == std::string::npos) {
        return std::nullopt;
      }
    }
  }

  /// Waits (until `deadline`) for the replies to the requests in flight, and for the ones they
  /// lead to: a command that ends at once still has its run registered, then started.
  void settle(steady::time_point deadline) {
    while (fd_ >= 0 && pending_ != request_kind::none) {
      const auto until = std::min(reply_deadline_, deadline);
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - steady::now());
      if (left.count() <= 0 && until == deadline) return;
      pollfd pfd{fd_, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
      step(steady::now(), ready > 0);
    }
  }

  /// One attempt at the final report; true when it is settled (recorded, or refused and said so).
  bool try_report(const json& report, bool started, steady::time_point deadline, std::string& why) {
    if (fd_ < 0 && !open_socket(why, std::min(deadline, steady::now() + reply_timeout_))) {
      return false;
    }
    if (!registered_) {
      const auto reply = exchange(register_request_, deadline, why);
      if (!reply) return false;
      if ((*reply)["ok"] != true) {
        const auto [code, message] = error_of(*reply);
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
    const auto [code, message] = error_of(*reply);
    if (code == "unknown_run") {
      registered_ = false;  // sweepd lost the run: register it again, then report
    } else if (is_refusal(code)) {
      err_ << fmt::format("sweepctl exec: sweepd refused to record the end of run {}: {}: {}\n",
                          run_, code, message);
      return true;
    }
    why = fmt::format("sweepd answered {}: {}", code, message);
    return false;
  }

  /// Writes `report` to the spool file of the run; its path, or nullopt with `problem` set.
  std::optional<std::filesystem::path> write_spool(const json& report, const spool_plan& spool,
                                                   std::string& problem) const {
    json register_request = register_request_;
    register_request.erase("watch_peer");  // the process it names is about to be gone
    const spool_record record{normal_socket_path(socket_),
                              run_,
                              std::move(register_request),
                              report,
                              core::format_utc(std::chrono::system_clock::now()),
                              "sweepctl exec"};
    auto path = write_spool_file(spool.dir, record, spool.uid, problem);
    if (!path) problem = "cannot spool it: " + problem;
    return path;
  }

  void close() {
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

  std::string socket_;
  std::string run_;
  json register_request_;
  steady::duration interval_;
  steady::duration reply_timeout_;
  bool warn_on_timeout_;
  std::ostream& err_;
  std::minstd_rand random_;

  int fd_ = -1;
  std::optional<io::daemon_address> remote_;  // the TLS listener, when not the Unix socket
  io::tls_client_options tls_options_;
  std::string token_;
  std::unique_ptr<io::tls_connection> tls_;
  std::string buffer_;
  request_kind pending_ = request_kind::none;
  steady::time_point reply_deadline_{};
  steady::time_point retry_at_{};  // the epoch: connect at the first step
  steady::time_point next_heartbeat_{};
  bool up_ = false;          // registered and started on this connection
  bool registered_ = false;  // sweepd acknowledged the register at least once
  bool started_ = false;     // and the start
  bool warned_ = false;      // the current outage has been reported
  bool disabled_ = false;    // sweepd refused the run: stop talking to it
  bool timed_out_ = false;   // sweepd reported the run timeout for good
  int failures_ = 0;         // in a row, for the backoff
  std::string last_state_;
};

// ---------------------------------------------------------------------------------------------
// The command.

/// A file descriptor closed when it goes out of scope.
struct scoped_fd {
  int fd = -1;
  ~scoped_fd() {
    if (fd >= 0) ::close(fd);
  }
};

/// Starts the command with the signal mask this process had before exec blocked its signals;
/// its pid, or the errno of the failure (posix_spawnp reports a failed execve too).
std::pair<pid_t, int> spawn(const std::vector<std::string>& argv, const sigset_t& mask) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawnattr_t attr;
  ::posix_spawnattr_init(&attr);
  ::posix_spawnattr_setsigmask(&attr, &mask);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int error = ::posix_spawnp(&pid, args[0], nullptr, &attr, args.data(), environ);
  ::posix_spawnattr_destroy(&attr);
  return {error == 0 ? pid : -1, error};
}

/// The child's wait status once it has ended.
std::optional<int> reap(pid_t child) {
  int status = 0;
  const pid_t r = ::waitpid(child, &status, WNOHANG);
  if (r == child) return status;
  if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "waitpid");
  return std::nullopt;
}

/// Passes a signal on to the child, unless it came from the terminal and the child is in our
/// process group: the terminal has sent it to the child already, and a second SIGINT would
/// interrupt the child's own clean-up (Python raises KeyboardInterrupt again). `received` keeps
/// the last one, for the error message.
void forward(const signalfd_siginfo& info, pid_t child, std::optional<int>& received) {
  const int signo = static_cast<int>(info.ssi_signo);
  received = signo;
  if (info.ssi_code == SI_KERNEL && ::getpgid(child) == ::getpgrp()) return;
  ::kill(child, signo);
}

/// Delivers the reports spooled for this socket (docs/spool.md) within start_flush_budget, and
/// says on stderr what became of each file it settled.
void flush_spooled_reports(const global_options& global, const spool_plan& spool,
                           std::ostream& err) {
  const auto budget = std::chrono::duration_cast<std::chrono::milliseconds>(start_flush_budget);
  daemon_spool_link link(global.socket, global.address, global.tls, global.token,
                         std::min(global.timeout, budget), steady::now() + budget);
  const flush_result result = flush_spool(spool.dir, global.socket, spool.uid, link);
  if (!result.problem.empty()) {
    err << fmt::format("sweepctl exec: not delivering spooled reports: {}\n", result.problem);
    return;
  }
  std::size_t left = 0;
  for (const delivery& d : result.files) {
    if (d.what == delivery::outcome::left) ++left;
    if (d.what == delivery::outcome::delivered || d.what == delivery::outcome::refused ||
        d.what == delivery::outcome::malformed) {
      err << fmt::format("sweepctl exec: spooled report of run {}: {}\n", d.run,
                         printable(describe(d), 400));
    }
  }
  if (result.stopped && left > 0) {
    err << fmt::format(
        "sweepctl exec: {} spooled report{} left in {} ('sweepctl spool flush' delivers them)\n",
        left, left == 1 ? "" : "s", spool.dir.string());
  }
}

/// How the child ended: exec's exit status and the words for it.
struct ending {
  bool success = false;  // exit code 0
  int exit_status = 0;
  std::string description;  // "exit code 3", "killed by SIGTERM"
};

ending ending_of(int status, std::optional<int> received) {
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    std::string description = fmt::format("exit code {}", code);
    if (received) description += " after " + signal_name(*received);
    return {code == 0, code, std::move(description)};
  }
  const int signo = WTERMSIG(status);
  std::string description = "killed by " + signal_name(signo);
  if (WCOREDUMP(status)) description += " (core dumped)";
  return {false, 128 + signo, std::move(description)};
}

/// The command while it runs: one poll loop over the signalfd and sweepd's socket that passes on
/// signals, keeps sweepd informed, delivers spooled reports once sweepd answered, and ends the
/// command (SIGTERM, then SIGKILL after the grace) when sweepd timed the run out for good.
class session {
 public:
  session(pid_t child, int signal_fd, daemon_link& link, const exec_options& o,
          const invocation& in, spool_plan spool)
      : child_(child),
        signal_fd_(signal_fd),
        link_(link),
        o_(o),
        in_(in),
        spool_(std::move(spool)) {}

  /// Waits for the child to end; its wait status.
  int supervise() {
    for (;;) {
      auto wake = link_.wake_at();
      if (sigterm_sent_ && !sigkill_sent_) wake = std::min(wake, sigkill_at_);
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - steady::now());
      const int timeout_ms = static_cast<int>(std::clamp<std::int64_t>(wait.count(), 0, 60000));
      pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {link_.fd(), POLLIN, 0}};
      const nfds_t count = link_.fd() >= 0 ? 2 : 1;
      if (::poll(fds, count, timeout_ms) < 0 && errno != EINTR) {
        throw std::system_error(errno, std::generic_category(), "poll");
      }
      if (fds[0].revents != 0) {
        signalfd_siginfo infos[16];
        ssize_t n = 0;
        while ((n = ::read(signal_fd_, infos, sizeof(infos))) > 0) {
          for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof(infos[0]); ++i) {
            if (infos[i].ssi_signo != SIGCHLD) forward(infos[i], child_, received_);
          }
        }
      }
      if (const auto status = reap(child_)) return *status;
      link_.step(steady::now(), count == 2 && fds[1].revents != 0);
      if (!flushed_ && link_.registered()) {
        // Bounded, and the command is running already: signals wait at most this long.
        flushed_ = true;
        flush_spooled_reports(in_.global, spool_, in_.err);
      }
      end_timed_out_command(steady::now());
    }
  }

  /// The last signal passed on (or sent by the terminal).
  std::optional<int> received() const { return received_; }
  /// True when exec ended the command because sweepd timed the run out.
  bool killed_for_timeout() const { return sigterm_sent_; }
  /// True when the spool has been flushed already.
  bool flushed() const { return flushed_; }

 private:
  void end_timed_out_command(steady::time_point now) {
    if (o_.on_timeout != timeout_action::kill) return;
    const std::string command = printable(o_.argv.front(), 60);
    if (link_.timed_out() && !sigterm_sent_) {
      in_.err << fmt::format(
          "sweepctl exec: sweepd marked run {} timeout; sending SIGTERM to {} (SIGKILL in {})\n",
          o_.run, command, seconds_text(o_.kill_grace));
      ::kill(child_, SIGTERM);
      sigterm_sent_ = true;
      sigkill_at_ = now + o_.kill_grace;
    }
    if (sigterm_sent_ && !sigkill_sent_ && now >= sigkill_at_) {
      in_.err << fmt::format("sweepctl exec: {} still runs {} after SIGTERM; sending SIGKILL\n",
                             command, seconds_text(o_.kill_grace));
      ::kill(child_, SIGKILL);
      sigkill_sent_ = true;
    }
  }

  pid_t child_;
  int signal_fd_;
  daemon_link& link_;
  const exec_options& o_;
  const invocation& in_;
  spool_plan spool_;
  std::optional<int> received_;
  // GCC 12 takes an optional<time_point> member for maybe-uninitialized: a flag and a time instead.
  bool sigterm_sent_ = false;  // to a command that sweepd timed out
  steady::time_point sigkill_at_{};
  bool sigkill_sent_ = false;
  bool flushed_ = false;
};

/// What sweepctl exec exits with and tells sweepd, from how the child ended.
struct outcome {
  int exit_status = 0;
  json report;
};

outcome outcome_of(int status, const exec_options& o, const std::optional<file_stamp>& before,
                   std::optional<int> received, std::ostream& err) {
  ending e = ending_of(status, received);
  if (e.success) {
    json complete = {{"op", "complete"}, {"run", o.run}};
    if (!o.result_file) return {0, std::move(complete)};
    if (auto error = add_results(complete, o, before, err)) {
      err << fmt::format("sweepctl exec: {} exited 0, but {}; failing run {}\n",
                         printable(o.argv.front(), 60), *error, o.run);
      return {0, {{"op", "fail"}, {"run", o.run}, {"error", std::move(*error)}}};
    }
    return {0, std::move(complete)};
  }
  return {e.exit_status, {{"op", "fail"}, {"run", o.run}, {"error", std::move(e.description)}}};
}

}  // namespace

int run_exec(const invocation& in) {
  const exec_options o = parse_options(in.args);
  if (!o.problem.empty()) return usage_error(in, o.problem);

  // An inherited SIG_IGN for SIGCHLD would have the kernel reap the child, status and all.
  std::signal(SIGCHLD, SIG_DFL);
  // Blocked here and read from a signalfd; left blocked on return, since exec exits right after
  // and a pending SIGTERM must not kill it on the way out with a status that is not the child's.
  sigset_t handled;
  sigemptyset(&handled);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&handled, s);
  sigset_t original;
  if (const int e = ::pthread_sigmask(SIG_BLOCK, &handled, &original); e != 0) {
    throw std::system_error(e, std::generic_category(), "pthread_sigmask");
  }
  const scoped_fd signals{::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK)};
  if (signals.fd < 0) throw std::system_error(errno, std::generic_category(), "signalfd");

  const spool_plan spool{
      spool_dir_for(o.spool_dir, process_environment(), in.global.socket, ::getuid()), ::getuid()};
  json register_request = o.register_request;
  if (in.global.address.remote) {
    // No process watch across hosts: the run lives on its heartbeats (sweepd refuses watch_peer).
    register_request.erase("watch_peer");
  }
  daemon_link link(in.global.socket, std::move(register_request), o.interval, in.global.timeout,
                   o.on_timeout == timeout_action::keep, in.err);
  if (in.global.address.remote) link.use_remote(in.global.address, in.global.tls, in.global.token);
  const std::optional<file_stamp> before = o.result_file ? stamp_of(*o.result_file) : std::nullopt;
  const auto [child, error] = spawn(o.argv, original);
  if (child < 0) {
    const std::string why =
        fmt::format("cannot start {}: {}", printable(o.argv.front(), 200), error_text(error));
    in.err << "sweepctl exec: " << why << '\n';
    link.finish({{"op", "fail"}, {"run", o.run}, {"error", why}}, false,
                steady::now() + report_budget, spool);
    return error == ENOENT ? 127 : 126;  // as a shell says "not found" and "cannot execute"
  }

  link.step(steady::now(), false);  // connect, register and start while the command runs
  session s(child, signals.fd, link, o, in, spool);
  const int status = s.supervise();
  if (s.killed_for_timeout()) {
    // sweepd gave up on the run for good; a fail for the killed command would overwrite that.
    const ending e = ending_of(status, std::nullopt);
    in.err << fmt::format("sweepctl exec: {} ended ({}); run {} stays timeout in sweepd\n",
                          printable(o.argv.front(), 60), e.description, o.run);
    return e.exit_status;
  }
  const outcome result = outcome_of(status, o, before, s.received(), in.err);
  const bool answered = link.finish(result.report, true, steady::now() + report_budget, spool);
  if (answered && !s.flushed()) {
    flush_spooled_reports(in.global, spool, in.err);
  }
  return result.exit_status;
}

command exec_command() {
  return {
      "exec",
      "--run ID [OPTIONS] -- CMD [ARGS...]",
      "run a command as a supervised run: register, start, heartbeat, then complete or fail",
      "Registers run ID with sweepd, bound to this process (if sweepctl exec dies, sweepd marks\n"
      "the run crashed), marks it running, starts CMD (looked up in PATH) and sends a heartbeat\n"
      "every --interval while CMD runs. Any exit but 0 fails the run (\"exit code N\"), and so\n"
      "does a signal (\"killed by SIGKILL\"). Exit 0 completes it; with --result-file, only when "
      "F\n"
      "was written while CMD ran and holds a JSON object with a finite \"objective\" (NaN and\n"
      "Infinity are not) and, if any, a \"cost\" of at least 0: otherwise the run fails with an\n"
      "error saying what is wrong with F (missing, unchanged, not JSON, no objective, ...). Other\n"
      "keys in F are ignored with a warning.\n"
      "SIGTERM, SIGINT and SIGHUP sent to sweepctl exec are passed on to CMD (except those a\n"
      "terminal already sent to both). When sweepd reports the run timeout (past --max-runtime,\n"
      "or stalled), CMD gets SIGTERM, then SIGKILL after --kill-grace, and the run stays timeout;\n"
      "with --on-timeout keep, CMD runs on and its end is still reported.\n"
      "CMD runs even when sweepd cannot be reached: sweepctl exec warns once, keeps trying in the\n"
      "background, and tries to record the end for up to 5 seconds. A report that does not get\n"
      "through at once is written to the spool (see 'sweepctl spool --help'), and delivered by\n"
      "the next sweepctl exec for the same socket once sweepd answers, or by 'sweepctl spool\n"
      "flush'; that sweepctl exec delivers what waits in the spool, too, for up to 2 seconds.\n"
      "Put -- before CMD so that CMD's options are not taken for sweepctl's. sweepctl exec writes\n"
      "nothing on standard output. Durations are seconds, or a number with a unit: 90s, 15m, 2h.\n"
      "\n"
      "Exit status: CMD's own, or 128+N when signal N killed it (143 after the SIGTERM of a\n"
      "timeout); 127 when CMD is not found, 126 when it cannot be run; 2 on a usage error (then\n"
      "CMD is not started).",
      {{"--run", "ID", "the run to register (required): 1-128 characters of [A-Za-z0-9._-]"},
       {"--sweep", "S", "the sweep the run belongs to"},
       {"--entity", "E", "the W&B entity (default: sweepd's wandb.entity)"},
       {"--project", "P", "the W&B project (default: sweepd's wandb.project)"},
       {"--suggestion", "JSON", "the hyperparameters, as a JSON object such as '{\"lr\":0.01}'"},
       {"--result-file", "F",
        "when CMD exits 0, read the objective and cost from F, a JSON object such as "
        "{\"objective\": 0.93, \"cost\": 12.5} (objective required and finite; cost optional, "
        "at least 0); a bad or missing F fails the run"},
       {"--interval", "S", "send a heartbeat every S seconds while CMD runs (default: 30)"},
       {"--heartbeat-timeout", "S", "mark the run timeout after S seconds without a heartbeat"},
       {"--max-runtime", "S", "mark the run timeout S seconds after registration (0: off)"},
       {"--on-timeout", "kill|keep",
        "when sweepd marks the run timeout: kill CMD (default), or keep it running"},
       {"--kill-grace", "S",
        "with --on-timeout kill, send SIGKILL S seconds after SIGTERM "
        "(default: 30)"},
       {"--spool-dir", "DIR",
        "where a report sweepd cannot take waits (default: $SWEEPD_SPOOL_DIR, "
        "$XDG_STATE_HOME/sweepd/spool, ~/.local/state/sweepd/spool, spool-UID beside the "
        "socket)"}},
      0,
      std::numeric_limits<std::size_t>::max(),
      run_exec};
}

}  // namespace sweepd::cli
