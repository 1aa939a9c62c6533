#include "bench_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <optional>
#include <string_view>

namespace sweepd::bench {

namespace {

[[noreturn]] void exit_naming(std::string_view benchmark, std::string_view why) noexcept {
  (void)std::fprintf(stderr, "%.*s: ", static_cast<int>(benchmark.size()), benchmark.data());
  exit_with(why);
}

}  // namespace

pid_t spawn_sweepd(const std::string& binary, const std::string& config, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(binary.c_str(), binary.c_str(), "--config", config.c_str(), nullptr);
    std::_Exit(127);
  }
  return pid;
}

double thread_cpu_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

void start_sink_or_exit(app::wandb_sink& sink, const core::config& cfg, const std::string& key) {
  auto started = sink.start(cfg, [&](std::string_view name) -> std::optional<std::string> {
    if (name == "WANDB_API_KEY") return key;
    return std::nullopt;
  });
  if (!started) exit_with(started.error().message);
}

void exit_with(std::string_view why) noexcept {
  // Unchecked: the program ends next whether or not stderr took the message.
  (void)std::fprintf(stderr, "%.*s\n", static_cast<int>(why.size()), why.data());
  // exit, not _Exit, flushes the figures already printed; a failed run needs no other teardown.
  std::exit(1);  // NOLINT(concurrency-mt-unsafe): only one thread ever exits
}

int run_or_exit(std::string_view name, const std::function<int()>& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    exit_naming(name, e.what());
  } catch (...) {
    exit_naming(name, "an exception that is not a std::exception");
  }
}

}  // namespace sweepd::bench
