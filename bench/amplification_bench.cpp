// What clients that pipeline expensive requests cost everyone else (the adversarial pass of the
// control socket). Runs a real sweepd binary (any build: pass an older one to compare) and
//
//   show: N clients each pipeline `show` of a run with a 60 KB suggestion and never read their
//         replies; they keep writing whenever the socket takes more;
//   list: N clients each pipeline `list` (1000 runs a reply, out of 20 000) and read as fast as
//         they can;
//
// while one more client asks `status` every 10 ms, timing each answer, and sweepd's resident
// memory is sampled from /proc/PID/status. Prints figures; asserts nothing.
//
//   build/bench/amplification_bench [mode=show] [clients=40] [seconds=5] [sweepd=build/sweepd]
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "io/client.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

long rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

using sweepd::bench::spawn_sweepd;

/// A client that writes without reading (or reads and drops), on a non-blocking socket.
class pipeliner {
 public:
  pipeliner(const std::string& path, std::string line) : line_(std::move(line)) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~pipeliner() { ::close(fd_); }
  pipeliner(const pipeliner&) = delete;
  pipeliner& operator=(const pipeliner&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  /// Writes whole requests while the socket takes them; returns how many lines went out.
  std::size_t push() {
    std::size_t lines = 0;
    for (;;) {
      if (pending_.empty()) {
        for (int i = 0; i < 64; ++i) pending_ += line_;
      }
      const ssize_t n = ::send(fd_, pending_.data(), pending_.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      written_ += static_cast<std::size_t>(n);
      pending_.erase(0, static_cast<std::size_t>(n));
    }
    lines = written_ / line_.size() - counted_;
    counted_ += lines;
    return lines;
  }

  /// Reads and drops what has arrived; returns the replies (lines) it held.
  std::size_t drain() {
    std::size_t replies = 0;
    char chunk[65536];
    for (;;) {
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) break;
      replies += static_cast<std::size_t>(std::count(chunk, chunk + n, '\n'));
    }
    return replies;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string line_;
  std::string pending_;
  std::size_t written_ = 0;
  std::size_t counted_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "show";
  const int clients = argc > 2 ? std::atoi(argv[2]) : 40;
  const double seconds = argc > 3 ? std::atof(argv[3]) : 5.0;
  const std::string binary = argc > 4 ? argv[4] : SWEEPD_BINARY;
  if (mode != "show" && mode != "list") {
    fmt::print(stderr, "mode is show or list\n");
    return 2;
  }
  if (std::signal(SIGPIPE, SIG_IGN) == SIG_ERR) sweepd::bench::exit_with("cannot ignore SIGPIPE");
  char dir_template[] = "/tmp/swaXXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string socket = dir + "/s.sock";
  const std::string config = dir + "/sweepd.yaml";
  std::ofstream(config) << "socket: {path: " << socket << "}\nstate: {path: " << dir
                        << "/state.db}\nwandb: {mode: disabled}\nlog: {level: warn}\n";
  const pid_t pid = spawn_sweepd(binary, config, dir + "/sweepd.log");

  sweepd::io::client control;
  const auto start_deadline = clock_type::now() + std::chrono::seconds(10);
  while (!control.connect(socket)) {
    if (clock_type::now() > start_deadline) {
      fmt::print(stderr, "sweepd did not start; see {}/sweepd.log\n", dir);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  std::string line;
  if (mode == "show") {
    const std::string pad(60000, 'x');
    control.call({{"op", "register"}, {"run", "big"}, {"suggestion", {{"pad", pad}}}});
    line = R"({"op":"show","run":"big"})"
           "\n";
  } else {
    constexpr int runs = 20000;
    constexpr int batch = 1000;
    for (int i = 0; i < runs; i += batch) {
      std::string lines;
      for (int k = 0; k < batch; ++k) {
        lines += R"({"op":"register","sweep":"s","run":"r)" + std::to_string(i + k) + "\"}\n";
      }
      control.send_raw(lines);
      for (int k = 0; k < batch; ++k) control.read_line(std::chrono::seconds(60));
    }
    line = R"({"op":"list"})"
           "\n";
  }
  const long rss_before = rss_kib(pid);

  std::vector<std::unique_ptr<pipeliner>> attackers;
  for (int i = 0; i < clients; ++i) {
    attackers.push_back(std::make_unique<pipeliner>(socket, line));
    if (!attackers.back()->connected()) {
      fmt::print(stderr, "client {} could not connect\n", i);
      return 1;
    }
  }

  std::vector<double> status_ms;
  std::size_t sent = 0;
  std::size_t answered = 0;
  long rss_peak = rss_before;
  const auto end = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                           std::chrono::duration<double>(seconds));
  while (clock_type::now() < end) {
    for (auto& a : attackers) {
      sent += a->push();
      if (mode == "list") answered += a->drain();
    }
    const auto t = clock_type::now();
    auto reply = control.call({{"op", "status"}}, std::chrono::seconds(60));
    status_ms.push_back(ms_since(t));
    if (!reply) {
      fmt::print(stderr, "status failed: {}\n", control.last_error());
      break;
    }
    rss_peak = std::max(rss_peak, rss_kib(pid));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::sort(status_ms.begin(), status_ms.end());
  const auto at = [&](double q) {
    return status_ms.empty()
               ? 0.0
               : status_ms[static_cast<std::size_t>(q * static_cast<double>(status_ms.size() - 1))];
  };
  std::printf("sweepd %s, mode %s: %d clients, %.1f s\n", binary.c_str(), mode.c_str(), clients,
              seconds);
  std::printf("requests pipelined: %zu%s\n", sent,
              mode == "list" ? (", replies read: " + std::to_string(answered)).c_str()
                             : " (replies never read)");
  std::printf("status: %zu calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", status_ms.size(),
              at(0.5), at(0.99), status_ms.empty() ? 0.0 : status_ms.back());
  std::printf("sweepd VmRSS: %.1f MiB before, %.1f MiB at most during\n",
              static_cast<double>(rss_before) / 1024.0, static_cast<double>(rss_peak) / 1024.0);

  attackers.clear();
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::filesystem::remove_all(dir);
  return 0;
}
