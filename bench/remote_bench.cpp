// Heartbeats per second over the TLS listener beside the Unix socket, in the same run, against a
// real sweepd (DESIGN §11). For each transport and each connection count, every connection has
// one heartbeat in flight at a time: a round sends one on each connection, then reads each reply.
// The TLS handshakes (and hellos) are made before the clock starts. Prints figures; asserts
// nothing.
//
//   build/bench/remote_bench [seconds=3] [sweepd=build/sweepd]
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "core/tokens.hpp"
#include "io/client.hpp"
#include "io/tokens.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

using sweepd::bench::spawn_sweepd;

bool make_certificates(const std::string& dir) {
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  std::ofstream(dir + "/ext") << "subjectAltName=IP:127.0.0.1\n";
  const std::string script =
      "cd " + dir + " && openssl req -x509 " + ec +
      " -keyout ca.key -out ca.crt -days 1 -subj /CN=ca 2>/dev/null && openssl req " + ec +
      " -keyout s.key -out s.csr -subj /CN=s 2>/dev/null && openssl x509 -req -in s.csr -CA "
      "ca.crt -CAkey ca.key -CAcreateserial -out s.crt -days 1 -extfile ext 2>/dev/null";
  // Run before the benchmark starts any thread of its own.
  return std::system(script.c_str()) == 0;  // NOLINT(concurrency-mt-unsafe)
}

/// Heartbeats per second over `clients`, for `seconds`.
double heartbeats_per_second(std::vector<sweepd::io::client>& clients, double seconds) {
  const std::string line = R"({"op":"heartbeat","run":"bench"})"
                           "\n";
  std::size_t answered = 0;
  const auto started = clock_type::now();
  const auto end = started + std::chrono::duration_cast<clock_type::duration>(
                                 std::chrono::duration<double>(seconds));
  while (clock_type::now() < end) {
    for (auto& c : clients) c.send_raw(line);
    for (auto& c : clients) {
      if (c.read_line(std::chrono::seconds(10))) ++answered;
    }
  }
  return static_cast<double>(answered) /
         std::chrono::duration<double>(clock_type::now() - started).count();
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const std::string binary = argc > 2 ? argv[2] : SWEEPD_BINARY;
  if (std::signal(SIGPIPE, SIG_IGN) == SIG_ERR) sweepd::bench::exit_with("cannot ignore SIGPIPE");
  char dir_template[] = "/tmp/swrbXXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  if (!make_certificates(dir)) {
    fmt::print(stderr, "openssl could not make the certificates in {}\n", dir);
    return 1;
  }
  const std::string token = sweepd::io::random_token();
  std::ofstream(dir + "/tokens") << "bench " << sweepd::core::to_hex(sweepd::io::sha256(token))
                                 << "\n";
  const std::string socket = dir + "/s.sock";
  const std::string port = "47443";
  std::ofstream(dir + "/sweepd.yaml")
      << "socket: {path: " << socket << "}\nstate: {path: " << dir
      << "/state.db}\nwandb: {mode: disabled}\nlog: {level: warn}\nremote: {listen: "
         "\"127.0.0.1:"
      << port << "\", cert_file: " << dir << "/s.crt, key_file: " << dir
      << "/s.key, tokens_file: " << dir << "/tokens}\n";
  const pid_t pid = spawn_sweepd(binary, dir + "/sweepd.yaml", dir + "/sweepd.log");

  sweepd::io::daemon_address local;
  local.path = socket;
  sweepd::io::daemon_address remote{true, "", "127.0.0.1", port};
  const sweepd::io::tls_client_options tls{dir + "/ca.crt"};
  sweepd::io::client control;
  const auto start_deadline = clock_type::now() + std::chrono::seconds(10);
  while (!control.connect(remote, tls, token)) {
    if (clock_type::now() > start_deadline) {
      fmt::print(stderr, "sweepd did not start: {}; see {}/sweepd.log\n", control.last_error(),
                 dir);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // The run belongs to the bench principal, so that both transports may heartbeat it: the Unix
  // clients run as root here, an admin.
  control.call({{"op", "register"}, {"run", "bench"}});

  std::printf("heartbeats/s, one in flight per connection, %.0f s each\n", seconds);
  std::printf("%-12s %12s %12s %8s\n", "connections", "unix", "tls", "tls/unix");
  for (const int n : {1, 100}) {
    double rate[2] = {0, 0};
    for (int transport = 0; transport < 2; ++transport) {
      std::vector<sweepd::io::client> clients(static_cast<std::size_t>(n));
      for (auto& c : clients) {
        const bool ok = transport == 0 ? c.connect(local, tls, "") : c.connect(remote, tls, token);
        if (!ok) {
          fmt::print(stderr, "connect: {}\n", c.last_error());
          return 1;
        }
      }
      rate[transport] = heartbeats_per_second(clients, seconds);
    }
    std::printf("%-12d %12.0f %12.0f %8.2f\n", n, rate[0], rate[1], rate[1] / rate[0]);
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);
  return 0;
}
