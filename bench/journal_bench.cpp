// What durability costs (DESIGN §5, §9):
//  1. commit cost per transition, one transaction per transition (a request's commit before its
//     reply) and grouped (one transaction per batch, as expiry does), with synchronous=FULL (what
//     sweepd uses) and NORMAL (for comparison);
//  2. startup with 100 000 runs in the journal: open (lock, quick_check, schema), load, restore
//     into the supervisor, and the whole daemon open() including the socket. Goal: < 2 s.
//
//  3. with `storm`: only the journal's and the supervisor's share of an expiry storm of `runs`.
//
//   build/bench/journal_bench [runs=100000] [single_commits=2000] [storm]
#include <fmt/format.h>
#include <sqlite3.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "app/daemon.hpp"
#include "bench_support.hpp"
#include "core/supervisor.hpp"
#include "io/journal.hpp"
#include "io/logging.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

sweepd::core::instant now() { return {clock_type::now(), std::chrono::system_clock::now()}; }

sweepd::core::caller owner() { return {1000, 1, false}; }

/// Registers `n` runs named prefix-i and returns the outcomes (each one transition).
std::vector<sweepd::core::outcome> register_runs(sweepd::core::supervisor& sup,
                                                 const std::string& prefix, int n) {
  std::vector<sweepd::core::outcome> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    sweepd::core::register_params p;
    p.run = fmt::format("{}{}", prefix, i);
    p.sweep = "s1";
    p.suggestion = sweepd::core::json_text(nlohmann::json{{"lr", 0.001 * i}, {"batch", 64}});
    out.push_back(sup.register_run(p, owner(), now()));
  }
  return out;
}

/// The changes of outcomes planned and applied at once, to store them.
std::vector<sweepd::core::run_change> changes_of(const std::vector<sweepd::core::outcome>& os) {
  std::vector<sweepd::core::run_change> changes;
  for (const auto& o : os) {
    if (o.change) changes.push_back(*o.change);
  }
  return changes;
}

void commit_costs(const std::string& dir, const char* sync, int single_commits) {
  const std::string path = fmt::format("{}/commit-{}.db", dir, sync);
  auto opened = sweepd::io::journal::open(path);
  if (!opened) sweepd::bench::exit_with(opened.error().message);
  auto& j = **opened;
  const std::string pragma = fmt::format("PRAGMA synchronous={}", sync);
  sqlite3_exec(j.handle(), pragma.c_str(), nullptr, nullptr, nullptr);
  sweepd::core::supervisor sup({});

  auto singles = register_runs(sup, "single-", single_commits);
  auto t = clock_type::now();
  for (auto& o : singles) j.commit({&*o.change, 1}, sup, true);
  const double single_us = ms_since(t) * 1000 / single_commits;

  constexpr int batch = 2048;
  constexpr int batches = 10;
  double grouped_ms = 0;
  for (int b = 0; b < batches; ++b) {
    auto group = register_runs(sup, fmt::format("group-{}-", b), batch);
    t = clock_type::now();
    j.commit(changes_of(group), sup, true);
    grouped_ms += ms_since(t);
  }
  const double grouped_us = grouped_ms * 1000 / (batch * batches);
  std::printf("synchronous=%-6s one transaction per transition: %8.1f us/transition (%6.0f/s)\n",
              sync, single_us, 1e6 / single_us);
  std::printf("synchronous=%-6s grouped, %d per transaction:   %8.1f us/transition (%6.0f/s)\n",
              sync, batch, grouped_us, 1e6 / grouped_us);
}

/// CPU time of this thread, in ms: the machines are shared, and wall time on a busy one says
/// little about a loop that is CPU-bound.
double thread_cpu_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

/// The journal's share of an expiry storm (write_path_bench c): `runs` running runs time out
/// together and are stored in batches in id order, as the daemon does. Journal commits only.
void storm_commit_cost(const std::string& dir, int runs) {
  auto opened = sweepd::io::journal::open(dir + "/storm.db");
  auto& j = **opened;
  sweepd::core::supervisor sup({});
  constexpr int batch = 4096;
  for (int i = 0; i < runs; i += batch) {
    auto outs = register_runs(sup, fmt::format("r{:06}-", i), std::min(batch, runs - i));
    j.commit(changes_of(outs), sup, true);
    std::vector<sweepd::core::outcome> started;
    started.reserve(outs.size());
    for (const auto& o : outs) started.push_back(sup.start(o.change->run, owner(), now()));
    j.commit(changes_of(started), sup, true);
  }
  const auto after = sweepd::core::instant{clock_type::now() + std::chrono::hours(1),
                                           std::chrono::system_clock::now()};
  double commit_ms = 0;
  double plan_apply_ms = 0;
  std::size_t expired = 0;
  for (;;) {
    double t = thread_cpu_ms();
    const auto listed = sup.due_runs(after.mono, batch);
    if (listed.runs.empty()) break;
    auto due = sup.plan_expiry_of(listed.runs, after);
    plan_apply_ms += (thread_cpu_ms() - t);
    t = thread_cpu_ms();
    j.commit(due, sup, true);
    commit_ms += (thread_cpu_ms() - t);
    t = thread_cpu_ms();
    for (auto& c : due) sup.apply(std::move(c));
    plan_apply_ms += (thread_cpu_ms() - t);
    expired += due.size();
  }
  const double n = static_cast<double>(expired);
  std::printf(
      "storm of %zu timeouts, %d per transaction: CPU of the loop thread: journal %.2f "
      "us/timeout, plan+apply %.2f us/timeout\n",
      expired, batch, commit_ms * 1000 / n, plan_apply_ms * 1000 / n);
}

void startup_cost(const std::string& dir, int runs) {
  const std::string path = dir + "/startup.db";
  {
    auto opened = sweepd::io::journal::open(path);
    auto& j = **opened;
    sweepd::core::supervisor sup({});
    // Three of four runs finished (register, start, end: 3 transitions), one in four running.
    constexpr int batch = 5000;
    for (int i = 0; i < runs; i += batch) {
      auto outs = register_runs(sup, fmt::format("r{}-", i), batch);
      std::vector<sweepd::core::outcome> more;
      for (int k = 0; k < batch; ++k) {
        const std::string id = fmt::format("r{}-{}", i, k);
        more.push_back(sup.start(id, owner(), now()));
        if (k % 4 != 0) more.push_back(sup.complete({id, 0.5, 10.0}, owner(), now()));
      }
      j.commit(changes_of(outs), sup, true);
      j.commit(changes_of(more), sup, true);
    }
  }
  const auto size_mb = static_cast<double>(std::filesystem::file_size(path)) / 1e6;

  auto t = clock_type::now();
  auto opened = sweepd::io::journal::open(path);
  const double open_ms = ms_since(t);
  t = clock_type::now();
  auto contents = (*opened)->load(now()).value();
  const double load_ms = ms_since(t);
  t = clock_type::now();
  sweepd::core::supervisor sup({});
  const auto at = now();
  for (auto& r : contents.runs) sup.restore(std::move(r), at);
  const double restore_ms = ms_since(t);
  opened->reset();
  std::printf(
      "startup with %zu runs (%.0f MB journal): open %.0f ms (lock, quick_check, schema), "
      "load %.0f ms, restore %.0f ms\n",
      sup.size(), size_mb, open_ms, load_ms, restore_ms);

  sweepd::core::config cfg;
  cfg.socket.path = dir + "/s.sock";
  cfg.state.path = path;
  cfg.log.level = "warn";
  sweepd::app::daemon d(cfg, "");
  t = clock_type::now();
  if (auto started = d.open(); !started) {
    sweepd::bench::exit_with(started.error().message);
  }
  std::printf("whole daemon open() (journal + restore + socket): %.0f ms (goal: < 2000 ms)\n",
              ms_since(t));
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 100000;
  const int single_commits = argc > 2 ? std::atoi(argv[2]) : 2000;
  sweepd::io::setup_logging({"warn", sweepd::core::config::log_format::text});
  char dir_template[] = "/tmp/swjXXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  std::printf("journal in %s\n", dir.c_str());
  if (argc > 3 && std::string(argv[3]) == "storm") {
    storm_commit_cost(dir, runs);
    std::filesystem::remove_all(dir);
    return 0;
  }
  commit_costs(dir, "FULL", single_commits);
  commit_costs(dir, "NORMAL", single_commits);
  startup_cost(dir, runs);
  std::filesystem::remove_all(dir);
  return 0;
}
