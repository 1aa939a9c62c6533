// W&B delivery throughput (issue 4): transitions delivered per second to the fake W&B server
// answering every request after 20 ms, at wandb.max_in_flight 1, 4 and 8. Each delivery is a
// read-modify-write: two GraphQL requests (read the run, upsertBucket).
//
//   build/bench/wandb_bench [latency_ms=20] [runs_per_slot=40]
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include "app/wandb_sink.hpp"
#include "bench_support.hpp"
#include "core/supervisor.hpp"
#include "fakes/fake_wandb.hpp"
#include "io/journal.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

sweepd::core::instant now() { return {clock_type::now(), std::chrono::system_clock::now()}; }

/// Delivers `runs` completed-run transitions at `in_flight`; returns transitions per second.
double deliver(int runs, std::size_t in_flight, std::chrono::milliseconds latency,
               std::size_t& max_concurrent) {
  sweepd::test::fake_wandb wandb;
  wandb.set_latency(latency);
  char dir_template[] = "/tmp/swwXXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  auto journal = sweepd::io::journal::open(dir + "/state.db").value();
  journal->load(now()).value();  // throws when the fresh state file cannot be read

  sweepd::core::supervisor sup({300, 0, 0, 1000000, "team", "sweeps"});
  std::vector<sweepd::core::outcome> outcomes;
  for (int i = 0; i < runs; ++i) {
    const std::string id = fmt::format("run{}", i);
    wandb.add_run("team", "sweeps", id, R"({"loss":0.5,"_step":100})");
    sweepd::core::register_params p;
    p.run = id;
    outcomes.push_back(sup.register_run(p, {1000, 1, false}, now()));
  }

  sweepd::core::config cfg;
  cfg.wandb.mode = sweepd::core::config::wandb_mode::online;
  cfg.wandb.base_url = wandb.base_url();
  cfg.wandb.max_in_flight = static_cast<std::uint32_t>(in_flight);
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  sweepd::app::wandb_sink sink(io, *journal);
  const std::string key = wandb.api_key();
  sweepd::bench::start_sink_or_exit(sink, cfg, key);
  std::thread loop([&] { io.run(); });

  const auto start = clock_type::now();
  boost::asio::post(io, [&] {
    std::vector<sweepd::core::outbox_entry> queued;
    std::vector<sweepd::core::run_change> changes;
    changes.reserve(outcomes.size());
    for (const auto& o : outcomes) changes.push_back(*o.change);
    journal->commit(changes, sup, true, &queued);
    sink.enqueue(std::move(queued));
  });
  wandb.wait_until([&] { return wandb.upserts() >= static_cast<std::size_t>(runs); }, 300s);
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  max_concurrent = wandb.max_concurrent();

  std::promise<void> stopped;
  boost::asio::post(io, [&] {
    sink.stop(nullptr);
    stopped.set_value();
  });
  stopped.get_future().wait();
  work.reset();
  io.stop();
  loop.join();
  std::filesystem::remove_all(dir);
  return runs / seconds;
}

int run_benchmark(int argc, char** argv) {
  const auto latency = std::chrono::milliseconds(argc > 1 ? std::atoi(argv[1]) : 20);
  const int per_slot = argc > 2 ? std::atoi(argv[2]) : 40;
  spdlog::set_level(spdlog::level::warn);
  std::printf("fake W&B answering after %lld ms; a delivery = read + upsertBucket\n",
              static_cast<long long>(latency.count()));
  for (std::size_t in_flight : {1u, 4u, 8u}) {
    std::size_t concurrent = 0;
    const int runs = per_slot * static_cast<int>(in_flight);
    const double rate = deliver(runs, in_flight, latency, concurrent);
    std::printf(
        "max_in_flight=%zu: %d transitions in %.2f s: %.1f transitions/s "
        "(most requests at once at the fake: %zu)\n",
        in_flight, runs, runs / rate, rate, concurrent);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sweepd::bench::run_or_exit("wandb_bench", [&] { return run_benchmark(argc, argv); });
}
