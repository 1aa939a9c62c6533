// How long one large W&B run summary holds up sweepd's event loop (a 60 MB summary once stalled
// `status` for 6.7 s; answers are now capped at io::default_max_response_body). Two figures:
//   1. core::merge_summary alone (parse, merge, dump) on summaries of growing size, with mixed
//      content and with a summary that is nearly all NaN tokens;
//   2. one whole delivery through the sink (read the run, merge, upsertBucket) of a run whose
//      summary is that large, against the fake W&B, with the longest gap between the ticks of a
//      1 ms timer on the same loop: how long a `status` request would have waited at worst.
//
//   build/bench/wandb_summary_bench [mib=7]
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <set>
#include <thread>

#include "app/wandb_sink.hpp"
#include "bench_support.hpp"
#include "core/supervisor.hpp"
#include "core/wandb_summary.hpp"
#include "fakes/fake_wandb.hpp"
#include "io/http_client.hpp"
#include "io/journal.hpp"

namespace {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

sweepd::core::instant now() { return {clock_type::now(), std::chrono::system_clock::now()}; }

/// A summary of at least `bytes` bytes that is nearly all bare NaN tokens.
std::string nan_summary(std::size_t bytes) {
  std::string out = "{";
  for (std::size_t i = 0; out.size() < bytes; ++i) {
    if (i > 0) out += ',';
    out += fmt::format("\"k{}\":NaN", i);
  }
  return out + "}";
}

/// The best of three merges of `summary`, in ms.
double merge_ms(const std::string& summary) {
  const nlohmann::json keys = {{"state", "success"}, {"objective", 0.5}};
  double best = 1e300;
  for (int i = 0; i < 3; ++i) {
    const auto start = clock_type::now();
    const auto merged = sweepd::core::merge_summary(summary, keys, "protein.");
    best = std::min(best, ms_since(start));
    if (!merged.text) {
      sweepd::bench::exit_with("merge failed: " + merged.error);
    }
  }
  return best;
}

struct delivery_figures {
  double total_ms = 0;
  double longest_gap_ms = 0;
  std::string dead;  // why the write was dead-lettered, if it was
};

/// Delivers one transition of a run whose summary is `summary`; the loop's longest stall.
delivery_figures deliver_one(const std::string& summary) {
  sweepd::test::fake_wandb wandb;
  wandb.add_run("team", "sweeps", "big", summary);
  char dir_template[] = "/tmp/swbXXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  auto journal = sweepd::io::journal::open(dir + "/state.db").value();
  journal->load(now()).value();  // throws when the fresh state file cannot be read
  sweepd::core::supervisor sup({300, 0, 0, 1000000, "team", "sweeps"});
  sweepd::core::register_params p;
  p.run = "big";
  std::vector<sweepd::core::outcome> outcomes{sup.register_run(p, {1000, 1, false}, now())};

  sweepd::core::config cfg;
  cfg.wandb.mode = sweepd::core::config::wandb_mode::online;
  cfg.wandb.base_url = wandb.base_url();
  cfg.wandb.request_timeout = 30;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  sweepd::app::wandb_sink sink(io, *journal);
  const std::string key = wandb.api_key();
  sweepd::bench::start_sink_or_exit(sink, cfg, key);

  // Ticks every 1 ms on the sink's loop and records the longest gap between two ticks.
  bool ticking = true;
  double longest_gap_ms = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(io);
        auto last = clock_type::now();
        while (ticking) {
          timer.expires_after(1ms);
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          longest_gap_ms = std::max(longest_gap_ms, ms_since(last));
          last = clock_type::now();
        }
      },
      asio::detached);
  std::thread loop([&] { io.run(); });

  const auto start = clock_type::now();
  asio::post(io, [&] {
    std::vector<sweepd::core::outbox_entry> queued;
    std::vector<sweepd::core::run_change> changes;
    changes.reserve(outcomes.size());
    for (const auto& o : outcomes) changes.push_back(*o.change);
    journal->commit(changes, sup, true, &queued);
    sink.enqueue(std::move(queued));
  });
  // Settled: delivered or dead-lettered (an answer over the cap is).
  const auto on_loop = [&](auto f) {
    std::packaged_task<nlohmann::json()> task(f);
    auto result = task.get_future();
    asio::post(io, [&] { task(); });
    return result.get();
  };
  delivery_figures out;
  for (;;) {
    const nlohmann::json status = on_loop([&] { return sink.status(); });
    if (status["pending"] == 0) {
      out.total_ms = ms_since(start);
      if (status["dead"] != 0) out.dead = status.value("last_error", "");
      break;
    }
    if (ms_since(start) > 120000) {
      sweepd::bench::exit_with("the write did not settle: " + status.dump());
    }
    std::this_thread::sleep_for(1ms);
  }

  std::promise<void> stopped;
  asio::post(io, [&] {
    ticking = false;
    out.longest_gap_ms = longest_gap_ms;
    sink.stop(nullptr);
    stopped.set_value();
  });
  stopped.get_future().wait();
  work.reset();
  io.stop();
  loop.join();
  std::filesystem::remove_all(dir);
  return out;
}

int run_benchmark(int argc, char** argv) {
  const std::size_t mib = argc > 1 ? static_cast<std::size_t>(std::atoi(argv[1])) : 7;
  spdlog::set_level(spdlog::level::warn);
  std::printf("answers are capped at %llu bytes\n",
              static_cast<unsigned long long>(sweepd::io::default_max_response_body));
  std::printf("merge_summary alone (best of 3):\n");
  for (std::size_t size : std::set<std::size_t>{1, std::max<std::size_t>(mib / 2, 1), mib}) {
    const std::string mixed = sweepd::test::fake_wandb::large_summary(size << 20);
    const std::string nans = nan_summary(size << 20);
    std::printf("  %zu MiB: mixed %.1f ms, all NaN %.1f ms\n", size, merge_ms(mixed),
                merge_ms(nans));
  }
  // The answer carries the summary escaped inside a string: an all-NaN summary grows by a sixth
  // and is over the cap at 7 MiB, so it is also shown at 6 MiB.
  const std::pair<const char*, std::string> summaries[] = {
      {"mixed", sweepd::test::fake_wandb::large_summary(mib << 20)},
      {"all NaN", nan_summary(mib << 20)},
      {"all NaN", nan_summary((mib - 1) << 20)}};
  for (const auto& [name, summary] : summaries) {
    if (summary.size() < 1024) continue;
    const delivery_figures f = deliver_one(summary);
    std::printf(
        "one delivery of a %.1f MiB %s summary (read + merge + upsertBucket): %.0f ms in all%s; "
        "longest the loop did not answer a 1 ms timer: %.0f ms\n",
        static_cast<double>(summary.size()) / (1 << 20), name, f.total_ms,
        f.dead.empty() ? "" : fmt::format(" (dead letter: {})", f.dead).c_str(), f.longest_gap_ms);
    (void)std::fflush(stdout);  // only so that each line shows at once; exit flushes again
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sweepd::bench::run_or_exit("wandb_summary_bench",
                                    [&] { return run_benchmark(argc, argv); });
}
