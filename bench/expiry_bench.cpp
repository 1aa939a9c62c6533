// How late are runs marked `timeout` when N runs share one deadline, and does `status` still
// answer while they expire? DESIGN §9: 100 000 runs marked within 1 s, status within 200 ms.
//
// Runs an in-process sweepd (the real app::daemon on its own thread, real Unix socket), registers
// N runs pipelined on one connection with the same heartbeat timeout, then polls `status` from a
// second connection until every run is `timeout`, timing each status call.
//
//   build/bench/expiry_bench [runs=100000] [timeout_s=3] [log_level=warn] 2>/dev/null
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "app/daemon.hpp"
#include "bench_support.hpp"
#include "io/client.hpp"
#include "io/logging.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

int run_benchmark(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 100000;
  const double timeout_s = argc > 2 ? std::atof(argv[2]) : 3.0;
  char dir_template[] = "/tmp/swbXXXXXX";
  const std::string dir = ::mkdtemp(dir_template);

  sweepd::core::config cfg;
  cfg.socket.path = dir + "/s.sock";
  cfg.state.path = dir + "/state.db";
  cfg.timeouts.heartbeat = timeout_s;
  // At info, sweepd logs one line per transition; send stderr to /dev/null to time the logging
  // itself rather than a terminal.
  cfg.log.level = argc > 3 ? argv[3] : "warn";
  sweepd::io::setup_logging(cfg.log);
  sweepd::app::daemon d(cfg, "");
  if (auto opened = d.open(); !opened) {
    fmt::print(stderr, "open: {}\n", opened.error().message);
    return 1;
  }
  std::thread loop([&] { d.run(); });

  sweepd::io::client writer;
  sweepd::io::client watcher;
  if (!writer.connect(cfg.socket.path) || !watcher.connect(cfg.socket.path)) return 1;

  const auto reg_start = clock_type::now();
  constexpr int batch = 1000;
  for (int i = 0; i < runs; i += batch) {
    std::string lines;
    const int n = std::min(batch, runs - i);
    for (int k = 0; k < n; ++k) {
      // A long first timeout: registering is durable (a commit each) and takes a while; the
      // heartbeats below then give every run the same deadline.
      lines += R"({"op":"register","heartbeat_timeout_s":3600,"run":"r)" + std::to_string(i + k) +
               "\"}\n";
    }
    writer.send_raw(lines);
    for (int k = 0; k < n; ++k) writer.read_line();
  }
  const double reg_ms = ms_since(reg_start);

  // Give every run the same deadline: each heartbeat's timeout_s reaches the common instant.
  const auto common_deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                                       std::chrono::duration<double>(timeout_s));
  for (int i = 0; i < runs; i += batch) {
    std::string lines;
    const int n = std::min(batch, runs - i);
    const double left = std::chrono::duration<double>(common_deadline - clock_type::now()).count();
    for (int k = 0; k < n; ++k) {
      lines += R"({"op":"heartbeat","run":"r)" + std::to_string(i + k) + R"(","timeout_s":)" +
               std::to_string(left) + "}\n";
    }
    writer.send_raw(lines);
    for (int k = 0; k < n; ++k) writer.read_line();
  }

  std::vector<double> status_ms;
  int timed_out = 0;
  while (timed_out < runs) {
    const auto t = clock_type::now();
    auto reply = watcher.call({{"op", "status"}});
    status_ms.push_back(ms_since(t));
    if (!reply) return 1;
    timed_out = (*reply)["runs"]["timeout"].get<int>();
    if (clock_type::now() > common_deadline + std::chrono::seconds(30)) break;
  }
  const double late_ms =
      std::chrono::duration<double, std::milli>(clock_type::now() - common_deadline).count();
  std::sort(status_ms.begin(), status_ms.end());
  std::printf("runs=%d heartbeat_timeout=%.1fs log=%s\n", runs, timeout_s, cfg.log.level.c_str());
  std::printf("register (pipelined, batches of %d): %.0f ms, %.0f runs/s\n", batch, reg_ms,
              runs / (reg_ms / 1000));
  std::printf("all %d timed out %.0f ms after their common deadline (goal: < 1000 ms)\n", timed_out,
              late_ms);
  std::printf("status calls while waiting: %zu, p50 %.2f ms, max %.2f ms (goal: < 200 ms)\n",
              status_ms.size(), status_ms[status_ms.size() / 2], status_ms.back());

  boost::asio::post(d.io(), [&] { d.stop(); });
  loop.join();
  std::filesystem::remove_all(dir);
  return timed_out == runs ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  return sweepd::bench::run_or_exit("expiry_bench", [&] { return run_benchmark(argc, argv); });
}
