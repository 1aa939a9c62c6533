// How long does reconcile take on a large sweep, how many W&B requests does it make, and does
// sweepd keep answering other clients while it reads W&B?
//
// An in-process sweepd (the real app::daemon, real Unix socket, W&B online) against the fake W&B
// answering every request after `latency_ms`. The sweep holds N runs stuck in `running` (all
// silent for an hour, so all of them are adopted on apply). One client asks `reconcile` (a dry
// run, then an apply); another asks `status` every 5 ms meanwhile and times each answer.
//
//   build/bench/reconcile_bench [runs=10000] [latency_ms=20] 2>/dev/null
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "app/daemon.hpp"
#include "bench_support.hpp"
#include "core/time.hpp"
#include "fakes/fake_wandb.hpp"
#include "io/client.hpp"
#include "io/logging.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

struct latencies {
  std::vector<double> ms;
  double percentile(double p) {
    if (ms.empty()) return 0;
    std::sort(ms.begin(), ms.end());
    return ms[static_cast<std::size_t>(p * static_cast<double>(ms.size() - 1))];
  }
};

/// Times `reconcile` while another connection polls `status`.
void measure(const std::string& socket, bool apply, sweepd::test::fake_wandb& wandb) {
  std::atomic<bool> done{false};
  latencies status;
  std::thread poller([&] {
    sweepd::io::client c;
    if (!c.connect(socket)) return;
    while (!done) {
      const auto t = clock_type::now();
      if (!c.call({{"op", "status"}})) return;
      status.ms.push_back(ms_since(t));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  sweepd::io::client c;
  if (!c.connect(socket)) return;
  const std::size_t requests = wandb.requests();
  const auto started = clock_type::now();
  const auto reply =
      c.call({{"op", "reconcile"}, {"sweep", "sw"}, {"apply", apply}}, std::chrono::minutes(10));
  const double took = ms_since(started);
  done = true;
  poller.join();
  if (!reply || (*reply)["ok"] != true) {
    std::printf("reconcile failed: %s\n", reply ? reply->dump().c_str() : c.last_error().c_str());
    return;
  }
  std::printf(
      "%-8s %6.0f ms, %zu W&B requests, adopt %d; status during it: %zu calls, p50 %.2f ms, "
      "p99 %.2f ms, max %.2f ms\n",
      apply ? "apply" : "dry run", took, wandb.requests() - requests,
      (*reply)["counts"].value("adopt", 0), status.ms.size(), status.percentile(0.5),
      status.percentile(0.99), status.percentile(1.0));
}

int run_benchmark(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int latency_ms = argc > 2 ? std::atoi(argv[2]) : 20;
  char dir_template[] = "/tmp/swbXXXXXX";
  const std::string dir = ::mkdtemp(dir_template);

  sweepd::test::fake_wandb wandb;
  const std::string hour_ago =
      sweepd::core::format_utc(std::chrono::system_clock::now() - std::chrono::hours(1));
  const std::string two_hours_ago =
      sweepd::core::format_utc(std::chrono::system_clock::now() - std::chrono::hours(2));
  for (int i = 0; i < runs; ++i) {
    const std::string name = "r" + std::to_string(i);
    wandb.add_run("team", "sweeps", name, R"({"protein.state":"running","loss":0.5})");
    wandb.set_run_meta("team", "sweeps", name, "sw", two_hours_ago, hour_ago);
  }
  wandb.set_latency(std::chrono::milliseconds(latency_ms));
  // The fake's thread never reads the environment; the daemon reads it below, on this thread.
  ::setenv("WANDB_API_KEY", wandb.api_key().c_str(), 1);  // NOLINT(concurrency-mt-unsafe)

  sweepd::core::config cfg;
  cfg.socket.path = dir + "/s.sock";
  cfg.state.path = dir + "/state.db";
  cfg.wandb.mode = sweepd::core::config::wandb_mode::online;
  cfg.wandb.base_url = wandb.base_url();
  cfg.wandb.entity = "team";
  cfg.wandb.project = "sweeps";
  cfg.log.level = "warn";
  sweepd::io::setup_logging(cfg.log);
  sweepd::app::daemon d(cfg, "");
  if (auto opened = d.open(); !opened) {
    fmt::print(stderr, "open: {}\n", opened.error().message);
    return 1;
  }
  std::thread loop([&] { d.run(); });

  std::printf("reconcile of a sweep of %d stuck runs (100 per page), W&B answering after %d ms\n",
              runs, latency_ms);
  measure(cfg.socket.path, false, wandb);
  measure(cfg.socket.path, true, wandb);

  boost::asio::post(d.io(), [&] { d.stop(); });
  loop.join();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sweepd::bench::run_or_exit("reconcile_bench", [&] { return run_benchmark(argc, argv); });
}
