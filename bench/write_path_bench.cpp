// The write path of a real sweepd binary (issue 11), each figure printed beside a baseline measured
// in the same run (the machine is shared, so only ratios compare across runs):
//
//   a  heartbeat requests/s against a bare line-echo server in this program (one epoll thread, a
//      fixed reply as long as sweepd's): 1 connection with one request in flight, 1000 connections
//      with one each, 64 connections pipelining 16 deep. Goals: >= 0.5x at 1000, >= 0.9x pipelined.
//   b  durable transitions/s (register, start, complete: each committed before its reply) from 100
//      connections pipelining 16 deep (each on 16 runs at a time: their registers, starts, then
//      completes), against the same clients asking `hello` (no commit).
//      Goal: >= 20 000/s.
//   c  expiry storm: N runs given one common deadline by a heartbeat each; how long after it until
//      `status` counts all of them `timeout`, and `status` latency meanwhile (baseline: `status`
//      just before). Goals: <= 1 s, p50/max <= 200 ms.
//   d  VmRSS per live run: before and after registering N runs as workers do (id, sweep, a small
//      suggestion). Goal: <= 900 bytes.
//   e  restart with N runs in the journal: exec until READY=1 (on a NOTIFY_SOCKET of ours) and
//      until `hello` is answered, against the same start on an empty state file. Goal: <= 1 s.
//
// `all` runs a, b, then d, c on that same daemon and e on the journal it leaves (N timed-out
// runs); `c` and `e` alone register their N runs first (for `e`: N live runs). sweepd runs as a
// separate process on a temp config (socket and state in a temp dir, W&B offline, log warn) and
// the temp dir is removed at the end. Prints figures; asserts nothing.
//
//   build/bench/write_path_bench [a|b|c|d|e|all] [sweepd_binary] [slices=8] [slice=1]
//       [warmup=0.3] [cases=1,1000,pipelined] [echo=1] [heartbeat_runs=1000] [rounds=3]
//       [seconds=3] [runs=100000] [margin=8]
//
// a: each figure is the median of `slices` measurements of `slice` seconds (after `warmup`),
// echo and sweepd alternating; `cases` picks a's cases; echo=0 leaves the echo server out (to
// profile sweepd alone); its heartbeats go to `heartbeat_runs` runs. b: the median of `rounds`
// rounds, each sending for `seconds`. e: the median of `rounds` starts. c, d, e: N = `runs`;
// `margin`: seconds from the start of c's heartbeats to the common deadline. sweepd's pid goes to
// stderr, for perf -p. b and c also print what a 4 KiB write + fdatasync costs on the disk then.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "io/posix.hpp"

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;

/// Anything that makes a figure meaningless: reported, and the program exits non-zero.
struct bench_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::atomic<bool> interrupted{false};

void check_interrupted() {
  if (interrupted.load()) throw bench_error("interrupted");
}

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

clock_type::duration to_duration(double seconds) {
  return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

std::string errno_text() { return sweepd::io::errno_text(errno); }

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) throw bench_error("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

/// A blocking connect; -1 when nothing listens there (yet).
int try_connect(const std::string& path) {
  const sockaddr_un addr = unix_address(path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw bench_error("socket: " + errno_text());
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;  // for the caller's message
    return -1;
  }
  return fd;
}

void set_non_blocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
double process_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(close_paren + 2));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  // After the command: state is field 3; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double thread_cpu_seconds(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double own_thread_cpu_seconds() { return thread_cpu_seconds(CLOCK_THREAD_CPUTIME_ID); }

/// A field of /proc/PID/status in KiB (VmRSS, RssAnon, ...); -1 when absent.
long status_kib(pid_t pid, std::string_view field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 &&
        line[field.size()] == ':') {
      return std::atol(line.c_str() + field.size() + 1);
    }
  }
  return -1;
}

class temp_dir {
 public:
  temp_dir() {
    char path[] = "/tmp/swwXXXXXX";  // short: socket paths are at most 107 bytes
    if (::mkdtemp(path) == nullptr) throw bench_error("mkdtemp: " + errno_text());
    path_ = path;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------------
// sweepd as a child process

/// How long a start took, from exec: until READY=1 reached our NOTIFY_SOCKET (-1 if it never
/// did), and until a `hello` sent over the control socket was answered.
struct startup_times {
  double ready_s = -1;
  double hello_s = 0;
  double cpu_s = 0;  // CPU time (user + system) sweepd had used when hello was answered
};

/// A sweepd binary run on a config in `dir` (socket, state file and log there).
class sweepd_process {
 public:
  sweepd_process(std::string binary, std::string dir)
      : binary_(std::move(binary)), dir_(std::move(dir)) {
    std::ofstream(config_path()) << "socket: {path: " << socket_path() << "}\n"
                                 << "state: {path: " << dir_ << "/state.db}\n"
                                 << "wandb: {mode: offline}\n"
                                 << "log: {level: warn}\n";
  }
  ~sweepd_process() { stop(); }
  sweepd_process(const sweepd_process&) = delete;
  sweepd_process& operator=(const sweepd_process&) = delete;

  std::string socket_path() const { return dir_ + "/s.sock"; }
  std::string config_path() const { return dir_ + "/sweepd.yaml"; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }

  /// Starts sweepd and waits until it answers `hello`; throws, with its log, if it exits or does
  /// not answer within `timeout_s`.
  startup_times start(double timeout_s = 120) {
    if (pid_ > 0) throw bench_error("sweepd already running");
    const std::string notify_path = dir_ + "/n.sock";
    ::unlink(notify_path.c_str());
    const int notify_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const sockaddr_un notify_addr = unix_address(notify_path);
    if (notify_fd < 0 ||
        ::bind(notify_fd, reinterpret_cast<const sockaddr*>(&notify_addr), sizeof(notify_addr))) {
      throw bench_error("cannot bind the notify socket " + notify_path + ": " + errno_text());
    }
    // Everything the child needs is built before fork (the echo thread may exist).
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0) env_strings.emplace_back(*e);
    }
    env_strings.push_back("NOTIFY_SOCKET=" + notify_path);
    std::vector<char*> envp;
    envp.reserve(env_strings.size() + 1);
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    const std::string config = config_path();
    const std::string log = log_path();
    char* const argv[] = {const_cast<char*>(binary_.c_str()), const_cast<char*>("--config"),
                          const_cast<char*>(config.c_str()), nullptr};

    const auto started = clock_type::now();
    pid_ = ::fork();
    if (pid_ < 0) throw bench_error("fork: " + errno_text());
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execve(binary_.c_str(), argv, envp.data());
      std::_Exit(127);
    }

    startup_times times;
    int conn = -1;
    std::string reply;
    const auto fail = [&](const std::string& why) {
      if (conn >= 0) ::close(conn);
      ::close(notify_fd);
      throw bench_error(fmt::format("{} {}; its log ({}):\n{}", binary_, why, log, log_tail()));
    };
    for (;;) {
      check_interrupted();
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        fail(fmt::format("exited during startup ({})", describe_exit(status)));
      }
      if (seconds_since(started) > timeout_s) {
        fail(fmt::format("did not answer hello within {:.0f} s", timeout_s));
      }
      if (conn < 0) {
        conn = try_connect(socket_path());
        if (conn >= 0) {
          const std::string hello = "{\"op\":\"hello\"}\n";
          if (::send(conn, hello.data(), hello.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(hello.size())) {
            ::close(conn);
            conn = -1;
          }
        }
      }
      pollfd fds[2] = {{notify_fd, POLLIN, 0}, {conn, POLLIN, 0}};
      ::poll(fds, conn >= 0 ? 2 : 1, 1);
      char buf[4096];
      for (ssize_t n; (n = ::recv(notify_fd, buf, sizeof(buf), 0)) > 0;) {
        if (std::string_view(buf, static_cast<std::size_t>(n)).find("READY=1") !=
                std::string_view::npos &&
            times.ready_s < 0) {
          times.ready_s = seconds_since(started);
        }
      }
      if (conn >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        const ssize_t n = ::recv(conn, buf, sizeof(buf), 0);
        if (n <= 0) {
          ::close(conn);  // connected between bind and listen, or refused: try again
          conn = -1;
          continue;
        }
        reply.append(buf, static_cast<std::size_t>(n));
        if (reply.find('\n') != std::string::npos) {
          times.hello_s = seconds_since(started);
          times.cpu_s = process_cpu_seconds(pid_);
          if (reply.find("\"ok\":true") == std::string::npos) fail("answered hello with " + reply);
          break;
        }
      }
    }
    ::close(conn);
    // READY=1 comes before the loop runs, so before any reply; a short look catches one sent
    // just before we stopped polling.
    for (int i = 0; i < 50 && times.ready_s < 0; ++i) {
      char buf[4096];
      const ssize_t n = ::recv(notify_fd, buf, sizeof(buf), 0);
      if (n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).find("READY=1") !=
                       std::string_view::npos) {
        times.ready_s = times.hello_s;  // already there when hello was answered
      }
      if (n <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::close(notify_fd);
    return times;
  }

  /// SIGTERM, then SIGKILL if it is still there after 30 s.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto asked = clock_type::now();
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (seconds_since(asked) > 30) {
        fmt::print(stderr, "sweepd {} ignored SIGTERM for 30 s; killing it\n", pid_);
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fmt::print(stderr, "sweepd {} {} on SIGTERM; log {}:\n{}\n", pid_, describe_exit(status),
                 log_path(), log_tail());
    }
    pid_ = -1;
  }

  long rss_kib(std::string_view field = "VmRSS") const { return status_kib(pid_, field); }
  double cpu_seconds() const { return process_cpu_seconds(pid_); }

 private:
  std::string log_path() const { return dir_ + "/sweepd.log"; }

  std::string log_tail() const {
    std::ifstream in(log_path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.size() > 4000 ? "..." + text.substr(text.size() - 4000) : text;
  }

  static std::string describe_exit(int status) {
    if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
    return "stopped";
  }

  std::string binary_;
  std::string dir_;
  pid_t pid_ = -1;
};

// ---------------------------------------------------------------------------------------------
// The physical limit: a line-echo server

/// Answers each '\n'-terminated line with `reply`, on one epoll thread, like sweepd's one loop
/// thread but doing nothing else.
class line_echo_server {
 public:
  line_echo_server(std::string path, std::string reply) : path_(std::move(path)) {
    reply_ = std::move(reply);
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const sockaddr_un addr = unix_address(path_);
    ::unlink(path_.c_str());
    if (listen_fd_ < 0 ||
        ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listen_fd_, SOMAXCONN) != 0) {
      throw bench_error("echo server cannot listen on " + path_ + ": " + errno_text());
    }
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    add(listen_fd_, EPOLLIN);
    add(stop_fd_, EPOLLIN);
    thread_ = std::thread([this] { loop(); });
    ::pthread_getcpuclockid(thread_.native_handle(), &cpu_clock_);
  }
  ~line_echo_server() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(stop_fd_, &one, sizeof(one));
    thread_.join();
    for (std::size_t fd = 0; fd < conns_.size(); ++fd) {
      if (conns_[fd].open) ::close(static_cast<int>(fd));
    }
    ::close(listen_fd_);
    ::close(stop_fd_);
    ::close(epoll_fd_);
    ::unlink(path_.c_str());
  }
  line_echo_server(const line_echo_server&) = delete;
  line_echo_server& operator=(const line_echo_server&) = delete;

  /// CPU seconds its thread has used.
  double cpu_seconds() const { return thread_cpu_seconds(cpu_clock_); }

 private:
  struct connection {
    bool open = false;
    bool want_out = false;
    std::string out;  // replies the socket did not take yet
  };

  void add(int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void loop() {
    std::vector<epoll_event> events(1024);
    std::vector<char> buf(std::size_t{16} * 1024);  // what sweepd asks for per read
    for (;;) {
      const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
      for (int i = 0; i < n; ++i) {
        const int fd = events[static_cast<std::size_t>(i)].data.fd;
        if (fd == stop_fd_) return;
        if (fd == listen_fd_) {
          for (int c;
               (c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
            if (conns_.size() <= static_cast<std::size_t>(c)) conns_.resize(c + 1);
            conns_[c] = {true, false, {}};
            add(c, EPOLLIN);
          }
          continue;
        }
        serve(fd, buf, events[static_cast<std::size_t>(i)].events);
      }
    }
  }

  void serve(int fd, std::vector<char>& buf, std::uint32_t events) {
    if (static_cast<std::size_t>(fd) >= conns_.size() || !conns_[fd].open) return;
    std::string& out = conns_[fd].out;
    bool closed = false;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN)) {
        closed = true;
      } else if (n > 0) {
        const auto lines = std::count(buf.data(), buf.data() + n, '\n');
        for (long k = 0; k < lines; ++k) out += reply_;
      }
    }
    if (!closed && !out.empty()) {
      const ssize_t sent = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
      if (sent < 0 && errno != EAGAIN) {
        closed = true;
      } else if (sent > 0) {
        out.erase(0, static_cast<std::size_t>(sent));
      }
      // Asks for EPOLLOUT only while replies wait: no extra system call per request.
      if (out.empty() == conns_[fd].want_out) {
        conns_[fd].want_out = !out.empty();
        epoll_event ev{};
        ev.events = EPOLLIN | (out.empty() ? 0u : static_cast<std::uint32_t>(EPOLLOUT));
        ev.data.fd = fd;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
      }
    }
    if (closed) {
      ::close(fd);
      conns_[fd] = {};
    }
  }

  std::string path_;
  std::string reply_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  int epoll_fd_ = -1;
  std::vector<connection> conns_;  // by descriptor
  std::thread thread_;
  clockid_t cpu_clock_{};
};

// ---------------------------------------------------------------------------------------------
// The load: one epoll client thread keeping a window of requests in flight per connection

struct load_spec {
  std::size_t connections = 1;
  std::size_t window = 1;  // requests in flight per connection
  /// Timed load: replies are counted from `warmup_s` on for `measure_s` seconds, then the
  /// requests still in flight are drained.
  double warmup_s = 0;
  double measure_s = 0;
  /// Timed load counted whole instead: requests are sent for measure_s seconds, and every reply,
  /// the drain included, counts over the time from the first request to the last reply. For a
  /// server that answers a connection's pipelined requests only once it has done them all, which
  /// with slow commits can take longer than any window.
  bool count_drain = false;
  /// Counted load instead (measure_s == 0): how many requests connection i sends in all.
  std::function<std::uint64_t(std::size_t conn)> requests_per_connection;
  /// Appends request number `seq` (from 0) of connection `conn`, with its '\n', to `out`.
  std::function<void(std::string& out, std::size_t conn, std::uint64_t seq)> request;
  double time_limit_s = 600;
};

struct load_result {
  std::uint64_t answered = 0;     // replies counted (in the measured window when timed)
  std::uint64_t all_replies = 0;  // warm-up and drain included
  double seconds = 0;             // over which they were counted
  std::uint64_t failed = 0;       // replies without "ok":true
  std::string first_failure;
  double client_cpu_s = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(answered) / seconds : 0; }
};

load_result drive(const std::string& socket, const load_spec& spec) {
  struct conn_state {
    int fd = -1;
    std::uint64_t sent = 0;
    std::uint64_t limit = UINT64_MAX;
    std::size_t in_flight = 0;
    std::string partial;  // the start of a reply line
    std::string out;      // requests the socket has not taken yet
    bool want_out = false;
  };
  std::vector<conn_state> conns(spec.connections);
  const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  const auto cleanup = [&] {
    for (auto& c : conns) {
      if (c.fd >= 0) ::close(c.fd);
    }
    ::close(epoll_fd);
  };
  for (std::size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = try_connect(socket);
    if (conns[i].fd < 0) {
      const std::string why = errno_text();
      cleanup();
      throw bench_error(fmt::format("connection {} to {} failed: {}", i, socket, why));
    }
    set_non_blocking(conns[i].fd);
    if (spec.requests_per_connection) conns[i].limit = spec.requests_per_connection(i);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }
  const bool timed = spec.measure_s > 0;
  load_result result;
  const double cpu_before = own_thread_cpu_seconds();
  const auto started = clock_type::now();
  const auto counting_from = started + to_duration(spec.warmup_s);
  const auto counting_until = counting_from + to_duration(spec.measure_s);
  const auto give_up_at = started + to_duration(spec.time_limit_s);
  auto last_reply = started;
  std::size_t in_flight = 0;
  bool sending = true;

  const auto flush = [&](std::size_t i) {
    conn_state& c = conns[i];
    const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) throw bench_error("send: " + errno_text());
    if (n > 0) c.out.erase(0, static_cast<std::size_t>(n));
    if (c.out.empty() != !c.want_out) return;
    c.want_out = !c.out.empty();
    epoll_event ev{};
    ev.events = EPOLLIN | (c.want_out ? static_cast<std::uint32_t>(EPOLLOUT) : 0u);
    ev.data.u64 = i;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  };
  const auto issue = [&](std::size_t i, std::size_t count) {
    conn_state& c = conns[i];
    std::size_t issued = 0;
    for (; issued < count && c.sent < c.limit; ++issued) spec.request(c.out, i, c.sent++);
    c.in_flight += issued;
    in_flight += issued;
    if (!c.out.empty()) flush(i);
  };

  try {
    for (std::size_t i = 0; i < conns.size(); ++i) issue(i, spec.window);
    std::vector<epoll_event> events(1024);
    std::vector<char> buf(std::size_t{64} * 1024);
    for (;;) {
      check_interrupted();
      const auto now = clock_type::now();
      if (timed && sending && now >= counting_until) sending = false;
      if (in_flight == 0 && (!timed || !sending)) break;
      if (now > give_up_at) {
        throw bench_error(fmt::format("load not done within {:.0f} s ({} requests in flight)",
                                      spec.time_limit_s, in_flight));
      }
      const bool counting =
          !timed || spec.count_drain || (now >= counting_from && now < counting_until);
      const int n = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), 5);
      for (int e = 0; e < n; ++e) {
        const epoll_event& ev = events[static_cast<std::size_t>(e)];
        const std::size_t i = ev.data.u64;
        conn_state& c = conns[i];
        if ((ev.events & EPOLLOUT) != 0) flush(i);
        if ((ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) continue;
        const ssize_t got = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (got < 0 && errno == EAGAIN) continue;
        if (got <= 0) {
          throw bench_error(fmt::format("the server closed connection {} ({} in flight){}", i,
                                        c.in_flight,
                                        c.partial.empty() ? "" : "; it had sent: " + c.partial));
        }
        std::size_t lines = 0;
        std::string_view data(buf.data(), static_cast<std::size_t>(got));
        for (std::size_t nl; (nl = data.find('\n')) != std::string_view::npos;) {
          std::string_view line = data.substr(0, nl);
          if (!c.partial.empty()) {
            c.partial.append(line);
            line = c.partial;
          }
          if (line.find("\"ok\":true") == std::string_view::npos) {
            if (result.failed++ == 0) result.first_failure = std::string(line);
          }
          c.partial.clear();
          data.remove_prefix(nl + 1);
          ++lines;
        }
        c.partial.append(data);
        if (lines == 0) continue;
        if (lines > c.in_flight) throw bench_error("more replies than requests");
        c.in_flight -= lines;
        in_flight -= lines;
        if (counting) result.answered += lines;
        result.all_replies += lines;
        last_reply = now;
        if (sending) issue(i, lines);
      }
    }
  } catch (...) {
    cleanup();
    throw;
  }
  result.seconds = timed && !spec.count_drain
                       ? spec.measure_s
                       : std::chrono::duration<double>(last_reply - started).count();
  result.client_cpu_s = own_thread_cpu_seconds() - cpu_before;
  cleanup();
  return result;
}

// ---------------------------------------------------------------------------------------------
// Requests as workers send them

constexpr std::string_view run_prefix = "r";

std::string run_id(std::uint64_t i) { return fmt::format("{}{:07d}", run_prefix, i); }

/// A registration as a worker sends it: its id, its sweep, the few hyperparameters suggested.
void append_register(std::string& out, std::string_view run, std::uint64_t i,
                     double heartbeat_timeout_s = 3600) {
  static constexpr std::string_view optimizers[] = {"adam", "sgd", "adamw", "lion"};
  fmt::format_to(std::back_inserter(out),
                 R"({{"op":"register","run":"{}","sweep":"sweep-{}","suggestion":{{"lr":{:.6g},)"
                 R"("batch_size":{},"dropout":{:.3g},"optimizer":"{}"}},"heartbeat_timeout_s":{}}})"
                 "\n",
                 run, i % 10, 1e-4 * static_cast<double>(1 + i % 97), 16 << (i % 5),
                 0.05 * static_cast<double>(i % 10), optimizers[i % 4], heartbeat_timeout_s);
}

void append_heartbeat(std::string& out, std::string_view run) {
  fmt::format_to(std::back_inserter(out),
                 R"({{"op":"heartbeat","run":"{}"}})"
                 "\n",
                 run);
}

/// Registers runs 0..n-1 (and starts each when `start`), pipelined over a few connections.
double populate(const std::string& socket, std::uint64_t n, bool start) {
  load_spec spec;
  spec.connections = 8;
  spec.window = 32;
  const std::uint64_t per_run = start ? 2 : 1;
  spec.requests_per_connection = [&](std::size_t conn) {
    // Connection c registers runs c, c + 8, c + 16, ...
    const std::uint64_t runs = n > conn ? (n - conn + spec.connections - 1) / spec.connections : 0;
    return runs * per_run;
  };
  spec.request = [&](std::string& out, std::size_t conn, std::uint64_t seq) {
    const std::uint64_t i = conn + (seq / per_run) * spec.connections;
    if (seq % per_run == 0) {
      append_register(out, run_id(i), i);
    } else {
      fmt::format_to(std::back_inserter(out),
                     R"({{"op":"start","run":"{}"}})"
                     "\n",
                     run_id(i));
    }
  };
  spec.time_limit_s = 1800;
  const load_result r = drive(socket, spec);
  if (r.failed > 0) {
    throw bench_error(
        fmt::format("{} of the registrations failed, the first: {}", r.failed, r.first_failure));
  }
  return r.seconds;
}

/// One request, one reply, on a blocking connection; the reply line and how long it took.
struct call_result {
  std::string line;
  double seconds = 0;
};

class blocking_client {
 public:
  explicit blocking_client(const std::string& socket) : fd_(try_connect(socket)) {
    if (fd_ < 0) throw bench_error("cannot connect to " + socket + ": " + errno_text());
  }
  ~blocking_client() { ::close(fd_); }
  blocking_client(const blocking_client&) = delete;
  blocking_client& operator=(const blocking_client&) = delete;

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw bench_error("send: " + errno_text());
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  /// The next reply line, without its '\n'.
  std::string read_line(double timeout_s = 60) {
    const auto started = clock_type::now();
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      check_interrupted();
      if (seconds_since(started) > timeout_s) {
        throw bench_error(fmt::format("no reply within {:.0f} s", timeout_s));
      }
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 10) <= 0) continue;
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) throw bench_error("sweepd closed the connection");
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  /// Sends one request (without '\n') and waits for its reply.
  call_result call(std::string_view request, double timeout_s = 60) {
    const auto started = clock_type::now();
    send(std::string(request) + "\n");
    std::string line = read_line(timeout_s);
    return {std::move(line), seconds_since(started)};
  }

  nlohmann::json call_json(std::string_view request, double* seconds = nullptr) {
    const call_result r = call(request);
    if (seconds != nullptr) *seconds = r.seconds;
    auto j = nlohmann::json::parse(r.line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.value("ok", false)) {
      throw bench_error(fmt::format("{} answered {}", request, r.line));
    }
    return j;
  }

 private:
  int fd_;
  std::string buffer_;
};

/// What one small synchronous write costs on a disk right now: a 4 KiB write, then fdatasync,
/// `n` times, in milliseconds each. The floor of a commit before reply (SQLite in WAL mode with
/// synchronous=FULL syncs the WAL once per commit), for the transition figures to be read against.
std::vector<double> disk_sync_ms(const std::string& dir, int n = 50) {
  const std::string path = dir + "/sync-probe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw bench_error("cannot create " + path + ": " + errno_text());
  const std::string block(4096, 'x');
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    const auto t = clock_type::now();
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      ::close(fd);
      throw bench_error("cannot write and sync " + path + ": " + errno_text());
    }
    ms.push_back(seconds_since(t) * 1000);
  }
  ::close(fd);
  ::unlink(path.c_str());
  return ms;
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

void print_disk(const std::vector<double>& ms) {
  std::printf(
      "disk meanwhile: 4 KiB write + fdatasync mean %.2f ms, p50 %.2f ms, p90 %.2f ms (%zu "
      "samples): one sync at a time does ~%.0f/s\n",
      mean(ms), quantile(ms, 0.5), quantile(ms, 0.9), ms.size(), 1000 / mean(ms));
}

// ---------------------------------------------------------------------------------------------
// The cases

struct options {
  std::string what = "all";
  std::string binary = SWEEPD_BINARY;
  double seconds = 3;
  double warmup = 0.3;
  int rounds = 3;
  // (a): echo and sweepd alternate in short slices, so that both see the same load from whatever
  // else runs on the machine (one 1-connection round trip varied 4x between 3 s rounds).
  double slice = 1;
  int slices = 8;
  std::uint64_t runs = 100000;
  std::uint64_t heartbeat_runs = 1000;
  std::set<std::string> cases = {"1", "1000", "pipelined"};
  bool echo = true;
  double margin = 8;
};

void print_rule() { std::printf("%s\n", std::string(100, '-').c_str()); }

/// (a) Heartbeats against the echo server, each case alternating echo and sweepd `rounds` times.
void heartbeat_throughput(const options& o) {
  temp_dir dir;
  sweepd_process sweepd(o.binary, dir.path());
  sweepd.start();
  fmt::print(stderr, "(a) sweepd pid {}; registering and starting {} runs\n", sweepd.pid(),
             static_cast<unsigned long long>(o.heartbeat_runs));
  populate(sweepd.socket_path(), o.heartbeat_runs, true);

  std::string sample_reply;
  {
    blocking_client probe(sweepd.socket_path());
    std::string request;
    append_heartbeat(request, run_id(0));
    request.pop_back();
    sample_reply = probe.call(request).line + "\n";
  }
  // As long as sweepd's own heartbeat reply, so both move the same bytes.
  const std::string echo_reply = fmt::format(R"({{"ok":true,"run":"{}","state":"running"}})"
                                             "\n",
                                             run_id(0));
  std::printf("\n(a) heartbeat throughput vs a bare line-echo server\n");
  std::printf("sweepd %s\nrequest %s", o.binary.c_str(),
              [&] {
                std::string r;
                append_heartbeat(r, run_id(0));
                return r;
              }()
                  .c_str());
  std::printf("sweepd's reply (%zu bytes) %secho's reply (%zu bytes) %s", sample_reply.size(),
              sample_reply.c_str(), echo_reply.size(), echo_reply.c_str());
  std::printf(
      "each figure: median of %d slices of %.1f s (after %.1f s warm-up), echo and sweepd "
      "alternating\n",
      o.slices, o.slice, o.warmup);
  const std::string echo_path = dir.path() + "/e.sock";

  struct shape {
    std::string key;
    std::string label;
    std::size_t connections;
    std::size_t window;
    double goal;
  };
  const std::vector<shape> shapes = {
      {"1", "1 connection, 1 in flight", 1, 1, 0},
      {"1000", "1000 connections, 1 in flight each", 1000, 1, 0.5},
      {"pipelined", "64 connections x 16 pipelined", 64, 16, 0.9},
  };
  struct row {
    std::string label;
    double echo = 0;
    double sweepd = 0;
    double goal = 0;
    double echo_us = 0;  // server CPU per reply
    double sweepd_us = 0;
    double sweepd_busy = 0;  // share of one core
    double client_busy = 0;
  };
  std::vector<row> rows;
  for (const shape& s : shapes) {
    if (o.cases.count(s.key) == 0) continue;
    load_spec spec;
    spec.connections = s.connections;
    spec.window = s.window;
    spec.warmup_s = o.warmup;
    spec.measure_s = o.slice;
    const std::uint64_t runs = o.heartbeat_runs;
    spec.request = [&spec, runs](std::string& out, std::size_t conn, std::uint64_t seq) {
      append_heartbeat(out, run_id((conn + seq * spec.connections) % runs));
    };
    std::vector<double> echo_rates, sweepd_rates, echo_us, sweepd_us, sweepd_busy, client_busy;
    for (int round = 0; round < o.slices; ++round) {
      if (o.echo) {
        line_echo_server echo(echo_path, echo_reply);
        const double cpu0 = echo.cpu_seconds();
        const load_result r = drive(echo_path, spec);
        echo_us.push_back((echo.cpu_seconds() - cpu0) * 1e6 /
                          static_cast<double>(std::max<std::uint64_t>(r.all_replies, 1)));
        echo_rates.push_back(r.rate());
        fmt::print(stderr, "  {} round {}: echo {:.0f}/s\n", s.label, round + 1, r.rate());
      }
      const double cpu0 = sweepd.cpu_seconds();
      const auto t0 = clock_type::now();
      const load_result r = drive(sweepd.socket_path(), spec);
      const double wall = seconds_since(t0);
      const double cpu = sweepd.cpu_seconds() - cpu0;
      sweepd_us.push_back(cpu * 1e6 /
                          static_cast<double>(std::max<std::uint64_t>(r.all_replies, 1)));
      sweepd_busy.push_back(cpu / wall);
      client_busy.push_back(r.client_cpu_s / wall);
      sweepd_rates.push_back(r.rate());
      if (r.failed > 0) {
        throw bench_error(
            fmt::format("{} heartbeats failed, the first: {}", r.failed, r.first_failure));
      }
      fmt::print(stderr, "  {} round {}: sweepd {:.0f}/s\n", s.label, round + 1, r.rate());
      // Let the closed connections go before the next round.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    rows.push_back({s.label, median(echo_rates), median(sweepd_rates), s.goal, median(echo_us),
                    median(sweepd_us), median(sweepd_busy), median(client_busy)});
  }
  print_rule();
  std::printf("%-36s %12s %12s %7s %6s | %21s %7s | %s\n", "case", "echo req/s", "sweepd req/s",
              "ratio", "goal", "CPU us/reply: echo sw", "ratio", "busy: sweepd client");
  for (const row& r : rows) {
    std::printf("%-36s %12.0f %12.0f %6.2fx %6s | %14.2f %6.2f %6.1fx | %10.0f%% %5.0f%%\n",
                r.label.c_str(), r.echo, r.sweepd, r.echo > 0 ? r.sweepd / r.echo : 0.0,
                r.goal > 0 ? fmt::format(">={:.1f}x", r.goal).c_str() : "-", r.echo_us, r.sweepd_us,
                r.echo_us > 0 ? r.sweepd_us / r.echo_us : 0.0, r.sweepd_busy * 100,
                r.client_busy * 100);
  }
  std::printf(
      "CPU us/reply: the server's CPU time (user + system) per reply; busy: CPU time over wall "
      "time, of one core\n");
  print_rule();
}

/// (b) Durable transitions against `hello` from the same clients.
void durable_transitions(const options& o) {
  temp_dir dir;
  sweepd_process sweepd(o.binary, dir.path());
  sweepd.start();
  fmt::print(stderr, "(b) sweepd pid {}\n", sweepd.pid());
  std::vector<double> sync_ms = disk_sync_ms(dir.path());
  constexpr std::size_t connections = 100;
  constexpr std::size_t window = 16;
  std::printf(
      "\n(b) durable transitions/s: %zu connections x %zu in flight, each connection "
      "register, start, complete of its own runs in waves of %zu\n",
      connections, window, window);
  std::printf(
      "each figure: median of %d rounds, hello and transitions alternating; a round "
      "sends for %.1f s, then waits for every reply: all replies / (last reply - first "
      "request)\n",
      o.rounds, o.seconds);
  std::vector<double> hello_rates, transition_rates, hello_us, transition_us, busy;
  const auto cpu_per_reply_us = [](double cpu_s, const load_result& r) {
    return cpu_s * 1e6 / static_cast<double>(std::max<std::uint64_t>(r.all_replies, 1));
  };
  for (int round = 0; round < o.rounds; ++round) {
    load_spec spec;
    spec.connections = connections;
    spec.window = window;
    spec.measure_s = o.seconds;
    spec.count_drain = true;
    spec.time_limit_s = o.seconds + 600;
    spec.request = [](std::string& out, std::size_t, std::uint64_t) {
      out += "{\"op\":\"hello\"}\n";
    };
    const double hello_cpu0 = sweepd.cpu_seconds();
    const load_result hello = drive(sweepd.socket_path(), spec);
    if (hello.failed > 0) throw bench_error("hello failed: " + hello.first_failure);
    hello_rates.push_back(hello.rate());
    hello_us.push_back(cpu_per_reply_us(sweepd.cpu_seconds() - hello_cpu0, hello));

    spec.request = [round](std::string& out, std::size_t conn, std::uint64_t seq) {
      // A connection works on `window` runs at a time, like an agent launching a wave of runs:
      // the wave's registers, then its starts, then its completes. Consecutive requests are of
      // different runs, and one run's next request is sent only once its last was answered.
      const std::uint64_t wave = seq / (3 * window);
      const std::uint64_t run_index = wave * window + seq % window;
      const std::string run = fmt::format("t{}c{}n{}", round, conn, run_index);
      switch ((seq / window) % 3) {
        case 0:
          append_register(out, run, run_index);
          break;
        case 1:
          fmt::format_to(std::back_inserter(out),
                         R"({{"op":"start","run":"{}"}})"
                         "\n",
                         run);
          break;
        default:
          fmt::format_to(std::back_inserter(out),
                         R"({{"op":"complete","run":"{}","objective":{:.4f},"cost":{}}})"
                         "\n",
                         run, 0.5 + 0.001 * static_cast<double>(seq % 400), 60 + seq % 600);
      }
    };
    const double cpu0 = sweepd.cpu_seconds();
    const auto t0 = clock_type::now();
    const load_result transitions = drive(sweepd.socket_path(), spec);
    const double cpu = sweepd.cpu_seconds() - cpu0;
    busy.push_back(cpu / seconds_since(t0));
    transition_us.push_back(cpu_per_reply_us(cpu, transitions));
    if (transitions.failed > 0) {
      throw bench_error(fmt::format("{} transitions failed, the first: {}", transitions.failed,
                                    transitions.first_failure));
    }
    transition_rates.push_back(transitions.rate());
    fmt::print(stderr, "  round {}: hello {:.0f}/s, transitions {:.0f}/s\n", round + 1,
               hello.rate(), transitions.rate());
  }
  for (double ms : disk_sync_ms(dir.path())) sync_ms.push_back(ms);
  const double hello = median(hello_rates);
  const double transitions = median(transition_rates);
  print_disk(sync_ms);
  std::printf("transitions per sync time (transitions/s x mean sync): %.2f\n",
              transitions * mean(sync_ms) / 1000);
  print_rule();
  std::printf("%-32s %12s %14s %7s %9s | %24s | %s\n", "case", "hello req/s", "transitions/s",
              "ratio", "goal", "CPU us/reply: hello trans", "busy");
  std::printf("%-32s %12.0f %14.0f %6.3fx %9s | %18.2f %6.1f | %3.0f%%\n",
              "100 connections x 16 pipelined", hello, transitions,
              hello > 0 ? transitions / hello : 0.0, ">=20000/s", median(hello_us),
              median(transition_us), median(busy) * 100);
  std::printf(
      "CPU us/reply: sweepd's CPU time (user + system) per reply; busy: its CPU time over wall "
      "time while transitions ran, of one core\n");
  print_rule();
}

/// (d) Registers `runs` runs into a fresh sweepd and prints VmRSS per run; leaves it running.
void rss_per_run(const options& o, sweepd_process& sweepd) {
  const std::string socket = sweepd.socket_path();
  // Before: the daemon after the same connections have come and gone once (their buffers are
  // then part of both figures), and before any run exists.
  {
    load_spec warm;
    warm.connections = 8;
    warm.window = 32;
    warm.requests_per_connection = [](std::size_t) { return 1000; };
    warm.request = [](std::string& out, std::size_t, std::uint64_t) {
      out += "{\"op\":\"hello\"}\n";
    };
    drive(socket, warm);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const long before = sweepd.rss_kib();
  const long before_anon = sweepd.rss_kib("RssAnon");
  const long before_file = sweepd.rss_kib("RssFile") + sweepd.rss_kib("RssShmem");
  fmt::print(stderr, "(d) sweepd pid {}; registering {} runs\n", sweepd.pid(),
             static_cast<unsigned long long>(o.runs));
  const double took = populate(socket, o.runs, false);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const long after = sweepd.rss_kib();
  const long after_anon = sweepd.rss_kib("RssAnon");
  const long after_file = sweepd.rss_kib("RssFile") + sweepd.rss_kib("RssShmem");
  const auto per_run = [&](long a, long b) {
    return static_cast<double>(b - a) * 1024.0 / static_cast<double>(o.runs);
  };
  std::printf("\n(d) VmRSS per live run: %llu registrations like a worker's, e.g.\n",
              static_cast<unsigned long long>(o.runs));
  std::string example;
  append_register(example, run_id(12345), 12345);
  std::printf("    %s", example.c_str());
  std::printf("registering them (8 connections x 32 pipelined, each committed): %.1f s, %.0f/s\n",
              took, static_cast<double>(o.runs) / took);
  print_rule();
  std::printf("%-36s %10s %10s %14s %9s %7s\n", "", "before KiB", "after KiB", "per run bytes",
              "goal", "ratio");
  std::printf("%-36s %10ld %10ld %14.0f %9s %6.2fx\n", "VmRSS", before, after,
              per_run(before, after), "<=900", per_run(before, after) / 900);
  std::printf("%-36s %10ld %10ld %14.0f\n", "  of which RssAnon (heap)", before_anon, after_anon,
              per_run(before_anon, after_anon));
  std::printf("%-36s %10ld %10ld %14.0f\n", "  of which RssFile + RssShmem", before_file,
              after_file, per_run(before_file, after_file));
  print_rule();
}

/// (c) On a sweepd holding `runs` live runs 0..runs-1: one heartbeat each gives them a common
/// deadline; then `status` is polled until all are `timeout`.
void expiry_storm(const options& o, sweepd_process& sweepd) {
  blocking_client watcher(sweepd.socket_path());
  std::vector<double> idle_ms;
  for (int i = 0; i < 100; ++i) {
    double s = 0;
    watcher.call_json(R"({"op":"status"})", &s);
    idle_ms.push_back(s * 1000);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }

  fmt::print(stderr, "(c) giving {} runs one deadline {:.0f} s from now\n",
             static_cast<unsigned long long>(o.runs), o.margin);
  const auto deadline = clock_type::now() + to_duration(o.margin);
  {
    blocking_client writer(sweepd.socket_path());
    constexpr std::uint64_t batch = 1000;
    for (std::uint64_t i = 0; i < o.runs; i += batch) {
      const double left = std::chrono::duration<double>(deadline - clock_type::now()).count();
      if (left < 0.5) {
        throw bench_error(fmt::format(
            "heartbeats too slow: {} of {} sent with under 0.5 s to the deadline; raise margin=", i,
            o.runs));
      }
      std::string lines;
      const std::uint64_t n = std::min(batch, o.runs - i);
      for (std::uint64_t k = 0; k < n; ++k) {
        fmt::format_to(std::back_inserter(lines),
                       R"({{"op":"heartbeat","run":"{}","timeout_s":{:.6f}}})"
                       "\n",
                       run_id(i + k), left);
      }
      // Sent whole, then every reply read: the socket buffers hold a batch either way.
      writer.send(lines);
      for (std::uint64_t k = 0; k < n; ++k) {
        const std::string reply = writer.read_line();
        if (reply.find("\"ok\":true") == std::string::npos) {
          throw bench_error("heartbeat failed: " + reply);
        }
      }
    }
  }
  const double sent_before_s = std::chrono::duration<double>(deadline - clock_type::now()).count();

  std::vector<double> storm_ms;
  double first_timeout_s = -1;
  double all_timeout_s = -1;
  std::uint64_t timed_out = 0;
  // sweepd's CPU time from the deadline until all are timed out: on shared cores the wall time
  // also counts other processes' turns, this does not.
  std::this_thread::sleep_until(deadline);
  const double cpu_at_deadline = sweepd.cpu_seconds();
  double storm_cpu_s = -1;
  while (all_timeout_s < 0) {
    double s = 0;
    const nlohmann::json status = watcher.call_json(R"({"op":"status"})", &s);
    const double since_deadline =
        std::chrono::duration<double>(clock_type::now() - deadline).count();
    if (since_deadline >= 0) storm_ms.push_back(s * 1000);
    timed_out = status["runs"].value("timeout", std::uint64_t{0});
    if (timed_out > 0 && first_timeout_s < 0) first_timeout_s = since_deadline;
    if (timed_out >= o.runs) {
      all_timeout_s = since_deadline;
      storm_cpu_s = sweepd.cpu_seconds() - cpu_at_deadline;
    }
    if (since_deadline > 300) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::printf(
      "\n(c) expiry storm: %llu runs given one deadline %.0f s ahead (heartbeats done "
      "%.1f s before it)\n",
      static_cast<unsigned long long>(o.runs), o.margin, sent_before_s);
  // Right after the storm, not during it: expiry is a commit per batch of 512 timeouts.
  print_disk(disk_sync_ms(sweepd.dir()));
  print_rule();
  if (all_timeout_s < 0) {
    std::printf("NOT all timed out 300 s after the deadline: %llu of %llu\n",
                static_cast<unsigned long long>(timed_out),
                static_cast<unsigned long long>(o.runs));
  }
  std::printf("%-44s %12s %12s %9s %7s\n", "", "baseline", "storm", "goal", "ratio");
  std::printf("%-44s %12s %10.0f ms %9s %6.2fx\n", "all timeout, after the deadline", "-",
              all_timeout_s * 1000, "<=1000ms", all_timeout_s);
  std::printf("%-44s %12s %10.0f ms\n", "first timeout seen, after the deadline", "-",
              first_timeout_s * 1000);
  std::printf("%-44s %12s %10.0f ms %9s %6.2fx\n", "sweepd CPU time (user+sys) until all timeout",
              "-", storm_cpu_s * 1000, "<=1000ms", storm_cpu_s);
  std::printf("%-44s %9.2f ms %9.2f ms %9s %6.2fx\n", "status p50 (baseline: idle, same runs)",
              quantile(idle_ms, 0.5), quantile(storm_ms, 0.5), "<=200ms",
              quantile(storm_ms, 0.5) / 200);
  std::printf("%-44s %9.2f ms %9.2f ms %9s %6.2fx\n", "status max", quantile(idle_ms, 1.0),
              quantile(storm_ms, 1.0), "<=200ms", quantile(storm_ms, 1.0) / 200);
  std::printf("%-44s %12zu %12zu\n", "status calls", idle_ms.size(), storm_ms.size());
  print_rule();
}

/// (e) Restarts of the sweepd whose state is in `dir`, against starts on an empty state file.
void restart_time(const options& o, const std::string& binary, const std::string& dir,
                  std::string_view journal_holds) {
  std::vector<double> ready, hello, cpu, empty_ready, empty_hello, empty_cpu;
  nlohmann::json counts;
  for (int round = 0; round < o.rounds; ++round) {
    {
      temp_dir empty;
      sweepd_process fresh(binary, empty.path());
      const startup_times t = fresh.start();
      empty_ready.push_back(t.ready_s);
      empty_hello.push_back(t.hello_s);
      empty_cpu.push_back(t.cpu_s);
    }
    sweepd_process restarted(binary, dir);
    const startup_times t = restarted.start();
    ready.push_back(t.ready_s);
    hello.push_back(t.hello_s);
    cpu.push_back(t.cpu_s);
    fmt::print(stderr, "(e) round {}: empty {:.0f} ms, with the journal {:.0f} ms to hello\n",
               round + 1, empty_hello.back() * 1000, t.hello_s * 1000);
    if (round == 0) {
      blocking_client c(restarted.socket_path());
      counts = c.call_json(R"({"op":"status"})")["runs"];
    }
  }
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(dir + "/state.db", ec);
  std::printf("\n(e) restart with %s in the journal (%.0f MB; status after restart: %s)\n",
              std::string(journal_holds).c_str(), static_cast<double>(ec ? 0 : bytes) / 1e6,
              counts.dump().c_str());
  std::printf(
      "each figure: median of %d starts; baseline: the same start on an empty state "
      "file\n",
      o.rounds);
  print_rule();
  std::printf("%-36s %12s %12s %9s %9s %9s\n", "exec until", "empty state", "with journal", "ratio",
              "goal", "vs goal");
  std::printf("%-36s %9.0f ms %9.0f ms %8.1fx %9s %8.2fx\n", "READY=1 on NOTIFY_SOCKET",
              median(empty_ready) * 1000, median(ready) * 1000, median(ready) / median(empty_ready),
              "<=1000ms", median(ready));
  std::printf("%-36s %9.0f ms %9.0f ms %8.1fx %9s %8.2fx\n", "hello answered",
              median(empty_hello) * 1000, median(hello) * 1000, median(hello) / median(empty_hello),
              "<=1000ms", median(hello));
  std::printf("%-36s %9.0f ms %9.0f ms\n", "  CPU time sweepd used until then",
              median(empty_cpu) * 1000, median(cpu) * 1000);
  std::printf(
      "(CPU time from /proc, in 10 ms ticks: less at the mercy of the shared cores than wall "
      "time)\n");
  print_rule();
}

options parse(int argc, char** argv) {
  options o;
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (eq == std::string::npos) {
      if (positional == 0) {
        o.what = arg;
      } else if (positional == 1) {
        o.binary = arg;
      } else {
        throw bench_error("unexpected argument " + arg);
      }
      ++positional;
      continue;
    }
    const std::string key = arg.substr(0, eq);
    const std::string value = arg.substr(eq + 1);
    if (key == "seconds") {
      o.seconds = std::stod(value);
    } else if (key == "slice") {
      o.slice = std::stod(value);
    } else if (key == "slices") {
      o.slices = std::stoi(value);
    } else if (key == "warmup") {
      o.warmup = std::stod(value);
    } else if (key == "rounds") {
      o.rounds = std::stoi(value);
    } else if (key == "runs") {
      o.runs = std::stoull(value);
    } else if (key == "heartbeat_runs") {
      o.heartbeat_runs = std::stoull(value);
    } else if (key == "cases") {
      o.cases.clear();
      std::stringstream list(value);
      for (std::string c; std::getline(list, c, ',');) o.cases.insert(c);
    } else if (key == "echo") {
      o.echo = value != "0";
    } else if (key == "margin") {
      o.margin = std::stod(value);
    } else {
      throw bench_error("unknown option " + key);
    }
  }
  static const std::set<std::string> whats = {"a", "b", "c", "d", "e", "all"};
  if (whats.count(o.what) == 0) throw bench_error("the case is one of a, b, c, d, e, all");
  if (o.rounds < 1 || o.slices < 1 || o.runs < 1 || o.heartbeat_runs < 1 || o.seconds <= 0 ||
      o.slice <= 0) {
    throw bench_error("rounds, slices, runs, heartbeat_runs, seconds and slice must be positive");
  }
  if (::access(o.binary.c_str(), X_OK) != 0) throw bench_error(o.binary + " is not executable");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  // Line-buffered so that figures and progress (stderr) interleave in order; only cosmetic.
  (void)std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (std::signal(SIGPIPE, SIG_IGN) == SIG_ERR ||
      std::signal(SIGINT, [](int) { interrupted = true; }) == SIG_ERR ||
      std::signal(SIGTERM, [](int) { interrupted = true; }) == SIG_ERR) {
    fmt::print(stderr, "write_path_bench: cannot install its signal handlers\n");
    return 1;
  }
  // 1000 connections and more: as many descriptors as allowed.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  try {
    const options o = parse(argc, argv);
    const bool all = o.what == "all";
    if (all || o.what == "a") heartbeat_throughput(o);
    if (all || o.what == "b") durable_transitions(o);
    if (all || o.what == "c" || o.what == "d" || o.what == "e") {
      temp_dir dir;
      std::string holds;
      {
        sweepd_process sweepd(o.binary, dir.path());
        sweepd.start();
        rss_per_run(o, sweepd);
        if (all || o.what == "c") {
          expiry_storm(o, sweepd);
          holds = fmt::format("{} runs, all timed out", o.runs);
        } else {
          holds = fmt::format("{} live runs", o.runs);
        }
      }  // stopped: SIGTERM, as systemd would
      if (all || o.what == "e") restart_time(o, o.binary, dir.path(), holds);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "write_path_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
