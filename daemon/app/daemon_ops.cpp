// The daemon's operational surface: the Prometheus endpoint and /healthz, the counting that feeds
// them, and the systemd watchdog. Kept apart from daemon.cpp, which holds the request and storage
// paths these only observe.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>

#include "app/daemon.hpp"
#include "core/metrics.hpp"
#include "core/protocol.hpp"
#include "io/posix.hpp"
#include "io/process_metrics.hpp"
#include "io/systemd.hpp"

namespace sweepd::app {

io::reply daemon::answer(std::string_view line, const io::peer_credentials& peer,
                         bool behind_earlier) {
  const auto started = clock_.mono();
  io::reply r = on_line(line, peer, behind_earlier);
  if (r.after_earlier) return r;                   // asked again, and counted then
  const std::string_view op = service_.last_op();  // static storage: outlives the line
  if (!r.later) {
    metrics_.request(op, core::reply_result(r.text), core::seconds_between(started, clock_.mono()));
    return r;
  }
  // Answered later (reconcile reads W&B): counted when the reply is ready.
  r.later = [this, op, started, later = std::move(r.later)]() -> asio::awaitable<std::string> {
    std::string text = co_await later();
    metrics_.request(op, core::reply_result(text), core::seconds_between(started, clock_.mono()));
    co_return text;
  };
  return r;
}

core::result<void> daemon::journal_commit(std::span<const core::run_change> changes, bool to_outbox,
                                          std::vector<core::outbox_entry>* queued) {
  const auto started = clock_.mono();
  auto committed = journal_->commit(changes, runs_, to_outbox, queued);
  metrics_.commit(changes, core::seconds_between(started, clock_.mono()), committed.has_value());
  last_commit_error_ = committed ? std::string() : committed.error().message;
  if (auto failing = journal_->checkpoint_failure()) spdlog::warn("{}", *failing);
  return committed;
}

void daemon::note_expired(std::span<const core::run_change> due, core::mono_time marked) {
  for (const core::run_change& c : due) {
    const core::run_record* run = runs_.target_of(c);
    if (run == nullptr || run->deadline == core::mono_time::max()) continue;
    metrics_.expired(std::max(0.0, core::seconds_between(run->deadline, marked)));
  }
}

core::result<void> daemon::open_metrics() {
  if (cfg_.metrics.listen.empty()) return {};
  io::metrics_server_options options;
  options.listen = cfg_.metrics.listen;
  metrics_server_ =
      std::make_unique<io::metrics_server>(io_, options,
                                           std::map<std::string, io::metrics_server::route>{
                                               {"/metrics", [this] { return metrics_page(); }},
                                               {"/healthz", [this] { return health_page(); }}});
  if (auto opened = metrics_server_->open(); !opened) {
    metrics_server_.reset();
    return opened;
  }
  spdlog::info("metrics on http://{}/metrics (and /healthz)", metrics_server_->local_address());
  return {};
}

std::string daemon::metrics_address() const {
  return metrics_server_ ? metrics_server_->local_address() : std::string();
}

io::http_answer daemon::metrics_page() {
  metrics_snapshot now;
  now.runs = runs_.counts();
  now.connections = server_.connections();
  if (sink_) {
    now.wandb_mode = sink_->mode();
    const nlohmann::json status = sink_->status();
    now.outbox_pending = status.value("pending", std::size_t{0});
    now.outbox_in_flight = status.value("in_flight", std::size_t{0});
    now.outbox_dead = status.value("dead", std::size_t{0});
  }
  now.process = io::sample_process();
  return {200, std::string(core::metrics_content_type), metrics_.render(now)};
}

io::http_answer daemon::health_page() {
  // This runs on the event loop: that it answers at all says the loop turns. What remains is
  // whether a transition could be stored now.
  std::vector<std::string> problems;
  if (!last_commit_error_.empty()) {
    problems.push_back("journal: the last commit failed: " + last_commit_error_);
  }
  const std::filesystem::path state(cfg_.state.path);
  const std::filesystem::path dir = state.has_parent_path() ? state.parent_path() : ".";
  if (::access(state.c_str(), W_OK) != 0) {
    problems.push_back(
        fmt::format("journal: {} is not writable: {}", state.string(), io::errno_text(errno)));
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    problems.push_back(fmt::format("journal: its directory {} is not writable: {}", dir.string(),
                                   io::errno_text(errno)));
  }
  if (problems.empty()) return {200, "text/plain; charset=utf-8", "ok\n"};
  std::string body;
  for (const std::string& p : problems) body += p + "\n";
  return {503, "text/plain; charset=utf-8", body};
}

asio::awaitable<void> daemon::watchdog_loop(std::chrono::microseconds interval) {
  const auto every =
      std::max<std::chrono::microseconds>(interval / 2, std::chrono::milliseconds(1));
  spdlog::info("systemd watchdog: {} ms, pinged every {} ms", interval.count() / 1000,
               every.count() / 1000);
  while (!stopping_) {
    io::notify_watchdog();
    watchdog_timer_.expires_after(every);
    co_await watchdog_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace sweepd::app
