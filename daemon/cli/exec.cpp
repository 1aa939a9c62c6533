// sweepctl exec (DESIGN §7): runs a command as a supervised sweep run.
//
// One thread does everything, in one poll loop over a signalfd and the connection to sweepd:
// SIGTERM/SIGINT/SIGHUP are passed on to the command, SIGCHLD says it ended, and a timer drives
// heartbeats and reconnects. The four signals are blocked from before the command is spawned (the
// command gets the original mask back), so none is lost or races with waitpid. sweepd is never
// waited on while the command runs: a request goes out and its reply is read when the socket
// becomes readable, so a slow, hung or absent daemon delays neither a signal nor the command's end.

#include "cli/exec.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "cli/daemon_link.hpp"
#include "cli/exec_options.hpp"
#include "cli/parse.hpp"
#include "cli/spool.hpp"
#include "cli/table.hpp"
#include "core/lenient_json.hpp"
#include "core/protocol.hpp"
#include "core/time.hpp"
#include "io/posix.hpp"

namespace sweepd::cli {

namespace {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

/// How long the final complete/fail is retried before sweepctl exec exits anyway.
constexpr steady::duration report_budget = 5s;
constexpr std::size_t max_result_file_bytes = std::size_t{1024} * 1024;
/// A result file is a flat object; deeper nesting than this is not one.
constexpr std::size_t max_result_depth = 64;
/// How long delivering spooled reports at exec's start may take, at most.
constexpr steady::duration start_flush_budget = 2s;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

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
std::optional<std::string> add_results(core::complete_params& complete, const exec_options& o,
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
  const auto text = io::read_file_bounded(path, max_result_file_bytes);
  if (!text) return problem("cannot read it: " + text.error().reason);
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
    complete.objective = it->get<double>();
  } else {
    problems.push_back(fmt::format("'objective' is {} (not a finite number)", described(*it)));
  }
  // An optional value: null (Python's None) says "no cost", and sweepd uses the runtime.
  if (const auto it = results.find("cost"); it != results.end() && !it->is_null()) {
    if (it->is_number() && std::isfinite(it->get<double>()) && it->get<double>() >= 0) {
      complete.cost = it->get<double>();
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
  args.reserve(argv.size() + 1);
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
  core::request report;
};

outcome outcome_of(int status, const exec_options& o, const std::optional<file_stamp>& before,
                   std::optional<int> received, std::ostream& err) {
  ending e = ending_of(status, received);
  if (e.success) {
    core::complete_params complete;
    complete.run = o.run;
    if (!o.result_file) return {0, std::move(complete)};
    if (auto error = add_results(complete, o, before, err)) {
      err << fmt::format("sweepctl exec: {} exited 0, but {}; failing run {}\n",
                         printable(o.argv.front(), 60), *error, o.run);
      return {0, core::fail_params{o.run, std::move(*error)}};
    }
    return {0, std::move(complete)};
  }
  return {e.exit_status, core::fail_params{o.run, std::move(e.description)}};
}

}  // namespace

int run_exec(const invocation& in) {
  const exec_options o = parse_exec_options(in.args);
  if (!o.problem.empty()) return usage_error(in, o.problem);

  // An inherited SIG_IGN for SIGCHLD would have the kernel reap the child, status and all.
  // signal() fails only for an invalid signal number, which SIGCHLD is not.
  (void)std::signal(SIGCHLD, SIG_DFL);
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
  core::register_params register_request = o.register_request;
  if (in.global.address.remote) {
    // No process watch across hosts: the run lives on its heartbeats (sweepd refuses watch_peer).
    register_request.watch_peer = false;
  }
  daemon_link link(in.global.socket, std::move(register_request), o.interval, in.global.timeout,
                   o.on_timeout == timeout_action::keep, in.err);
  if (in.global.address.remote) link.use_remote(in.global.address, in.global.tls, in.global.token);
  const std::optional<file_stamp> before = o.result_file ? stamp_of(*o.result_file) : std::nullopt;
  const auto [child, error] = spawn(o.argv, original);
  if (child < 0) {
    const std::string why =
        fmt::format("cannot start {}: {}", printable(o.argv.front(), 200), io::errno_text(error));
    in.err << "sweepctl exec: " << why << '\n';
    link.finish(core::fail_params{o.run, why}, false, steady::now() + report_budget, spool);
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
