#include "bench_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string_view>

namespace sweepd::bench {

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
  if (!started) {
    std::fprintf(stderr, "%s\n", started.error().message.c_str());
    std::exit(1);
  }
}

}  // namespace sweepd::bench
