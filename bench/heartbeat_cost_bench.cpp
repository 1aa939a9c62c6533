// What one heartbeat costs sweepd in user space, without sockets, next to what a JSON library
// costs merely to read the line. write_path_bench a measures the echo server's whole CPU per reply
// (kernel included) at about 0.24 µs pipelined; this says how much of sweepd's ~1.5 µs is the
// request itself, and whether any JSON library parse fits in what 0.9× the echo server leaves.
//
//   build/bench/heartbeat_cost_bench [iterations=2000000] [runs=1000]
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "core/protocol.hpp"
#include "core/service.hpp"
#include "core/supervisor.hpp"

namespace {

using sweepd::bench::thread_cpu_us;

/// CPU µs per call of `f` over `n` calls; `sink` keeps the compiler from dropping the work.
template <typename F>
double per_call_us(int n, std::size_t& sink, F f) {
  const double start = thread_cpu_us();
  for (int i = 0; i < n; ++i) sink += f(i);
  return (thread_cpu_us() - start) / n;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 2'000'000;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 1000;
  if (n <= 0 || runs <= 0) {
    fmt::print(stderr, "usage: heartbeat_cost_bench [iterations>0] [runs>0]\n");
    return 2;
  }
  sweepd::core::supervisor sup({300, 0, 0, 1'000'000, "team", "sweeps"});
  const sweepd::core::caller worker{1000, 4242, false};
  const auto now = [] {
    return sweepd::core::instant{sweepd::core::mono_clock::now(), std::chrono::system_clock::now()};
  };
  std::vector<std::string> lines;
  for (int i = 0; i < runs; ++i) {
    const std::string id = fmt::format("r{:07}", i);
    sweepd::core::register_params p;
    p.run = id;
    (void)sup.register_run(p, worker, now());
    (void)sup.start(id, worker, now());
    lines.push_back(std::string(R"({"op":"heartbeat","run":")") + id + "\"}");
  }
  sweepd::core::service service(sup, "bench", now().mono,
                                [] { return sweepd::core::daemon_stats{}; });
  const auto line = [&](int i) -> const std::string& {
    return lines[static_cast<std::size_t>(i) % lines.size()];
  };
  std::size_t sink = 0;
  const double accept =
      per_call_us(n, sink, [&](int i) { return nlohmann::json::accept(line(i)); });
  const double parse =
      per_call_us(n, sink, [&](int i) { return nlohmann::json::parse(line(i)).size(); });
  const double request = per_call_us(
      n, sink, [&](int i) { return sweepd::core::parse_request(line(i)).req.has_value(); });
  const sweepd::core::instant at = now();
  const double handled =
      per_call_us(n, sink, [&](int i) { return service.handle(line(i), worker, at).reply.size(); });
  std::printf("one heartbeat line, e.g. %s, %d runs, CPU of this thread per call:\n",
              lines[42].c_str(), runs);
  std::printf("  nlohmann::json::accept (validate only, no value built)  %6.3f us\n", accept);
  std::printf("  nlohmann::json::parse (the DOM)                         %6.3f us\n", parse);
  std::printf("  core::parse_request (the DOM and the field checks)      %6.3f us\n", request);
  std::printf("  core::service::handle (parse, lookup, deadline, reply)  %6.3f us\n", handled);
  std::printf("(checksum %zu)\n", sink);
  return 0;
}
