#include "app/metrics.hpp"

#include "core/protocol.hpp"
#include "core/version.hpp"

namespace sweepd::app {

namespace {

// Seconds. Requests are answered in microseconds to a few ms (a commit), reconcile in seconds.
const std::vector<double> request_bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                            0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                            1,      2.5,     5,      10,    30};
// A commit is an fsync: 0.2–2 ms on an SSD, much more on a busy or failing disk.
const std::vector<double> commit_bounds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
// A run is due to be marked within milliseconds of its deadline; seconds mean the loop stalled.
const std::vector<double> expiry_bounds = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5,   1,     2.5,  5,     10,   30,  60};
// W&B answers in tens to hundreds of ms; wandb.request_timeout (30 s) caps it.
const std::vector<double> wandb_bounds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

}  // namespace

std::string_view wandb_result_label(const core::attempt_result& result) {
  switch (result.what) {
    case core::attempt_result::kind::delivered:
      return "ok";
    case core::attempt_result::kind::retry:
      return "retry";
    case core::attempt_result::kind::not_found:
      return "not_found";
    case core::attempt_result::kind::dead:
      return "dead";
  }
  return "dead";
}

daemon_metrics::daemon_metrics()
    : build_info_(registry_.gauges("sweepd_build_info",
                                   "sweepd's version and protocol version; always 1.",
                                   {"version", "protocol"})),
      runs_(registry_.gauges("sweepd_runs", "Runs tracked, by state.", {"state"})),
      transitions_(registry_.counters("sweepd_transitions_total",
                                      "Run transitions stored, by target state and reason.",
                                      {"state", "reason"})),
      requests_(registry_.counters(
          "sweepd_requests_total",
          "Request lines answered on the control socket, by op and result (ok or the error code).",
          {"op", "result"})),
      request_seconds_(registry_.histograms(
          "sweepd_request_duration_seconds",
          "Time from reading a request line to having its reply, including the journal commit.",
          request_bounds, {"op"})),
      connections_(registry_.gauges("sweepd_connections", "Open control-socket connections.")),
      commit_seconds_(registry_.histograms(
          "sweepd_journal_commit_duration_seconds",
          "Time to store a group of transitions in the journal (SQLite, synchronous=FULL).",
          commit_bounds)),
      commit_failures_(registry_.counters(
          "sweepd_journal_commit_failures_total",
          "Journal commits that failed (the request was answered internal, nothing changed).")),
      expiry_lag_(registry_.histograms("sweepd_expiry_lag_seconds",
                                       "Time from a run's deadline to sweepd marking it timeout.",
                                       expiry_bounds)),
      wandb_mode_(registry_.gauges("sweepd_wandb_mode",
                                   "The W&B mode in force: 1 for the mode named, 0 for the others.",
                                   {"mode"})),
      outbox_pending_(registry_.gauges("sweepd_wandb_outbox_pending",
                                       "W&B summary writes stored and not yet delivered.")),
      outbox_in_flight_(
          registry_.gauges("sweepd_wandb_outbox_in_flight", "W&B summary writes being sent now.")),
      outbox_dead_(registry_.gauges("sweepd_wandb_outbox_dead",
                                    "W&B summary writes given up on (dead letters) and kept.")),
      wandb_requests_(
          registry_.counters("sweepd_wandb_requests_total",
                             "Requests to W&B, by request and result (ok, retry, not_found, dead).",
                             {"request", "result"})),
      wandb_seconds_(registry_.histograms("sweepd_wandb_request_duration_seconds",
                                          "Duration of requests to W&B.", wandb_bounds,
                                          {"request"})),
      reconciled_(registry_.counters(
          "sweepd_reconcile_runs_total",
          "Runs an applied reconcile decided on, by action (adopt, repair, skip).", {"action"})),
      reconcile_passes_(registry_.counters("sweepd_reconcile_passes_total",
                                           "Periodic reconcile passes over a sweep, by result.",
                                           {"result"})),
      cpu_(registry_.counters("process_cpu_seconds_total", "User and system CPU time spent.")),
      resident_(registry_.gauges("process_resident_memory_bytes", "Resident memory size.")),
      virtual_(registry_.gauges("process_virtual_memory_bytes", "Virtual memory size.")),
      open_fds_(registry_.gauges("process_open_fds", "Open file descriptors.")),
      max_fds_(registry_.gauges("process_max_fds", "The open-files limit (soft RLIMIT_NOFILE).")),
      start_time_(registry_.gauges("process_start_time_seconds",
                                   "When the process started, in seconds since the Unix epoch.")) {
  build_info_.with({core::version, std::to_string(core::protocol_version)}).set(1);
  // Present from the start, so that rate() and alerts see a 0 before the first event.
  for (core::run_state s : core::all_run_states) runs_.with({core::to_string(s)});
  commit_seconds_.get();
  commit_failures_.get();
  expiry_lag_.get();
}

void daemon_metrics::request(std::string_view op, std::string_view result, double seconds) {
  request_series& s = request_series_for(op, result);
  s.answered->inc();
  s.duration->observe(seconds);
}

daemon_metrics::request_series& daemon_metrics::request_series_for(std::string_view op,
                                                                   std::string_view result) {
  // Short enough for the string's inline buffer on the hot path ("heartbeat", "ok"): no allocation.
  std::string key(op);
  key += '\x1f';
  key += result;
  if (auto it = request_series_.find(key); it != request_series_.end()) return it->second;
  request_series s{&requests_.with({op, result}), &request_seconds_.with({op})};
  return request_series_.emplace(std::move(key), s).first->second;
}

void daemon_metrics::commit(std::span<const core::run_change> changes, double seconds,
                            bool stored) {
  commit_seconds_.get().observe(seconds);
  if (!stored) {
    commit_failures_.get().inc();
    return;
  }
  for (const core::run_change& c : changes) {
    core::counter*& series = transition_series_.at(static_cast<std::size_t>(c.to))
                                 .at(static_cast<std::size_t>(c.reason));
    if (!series) series = &transitions_.with({core::to_string(c.to), core::to_string(c.reason)});
    series->inc();
  }
}

void daemon_metrics::expired(double lag_seconds) { expiry_lag_.get().observe(lag_seconds); }

void daemon_metrics::wandb_request(std::string_view request, const core::attempt_result& result,
                                   double seconds) {
  wandb_requests_.with({request, wandb_result_label(result)}).inc();
  wandb_seconds_.with({request}).observe(seconds);
}

void daemon_metrics::wandb_request_ok(std::string_view request, double seconds) {
  wandb_requests_.with({request, "ok"}).inc();
  wandb_seconds_.with({request}).observe(seconds);
}

void daemon_metrics::reconciled(std::string_view action, std::size_t runs) {
  reconciled_.with({action}).inc(static_cast<double>(runs));
}

void daemon_metrics::reconcile_pass(bool ok) {
  reconcile_passes_.with({ok ? "ok" : "error"}).inc();
}

std::string daemon_metrics::render(const metrics_snapshot& now) {
  for (core::run_state s : core::all_run_states) {
    runs_.with({core::to_string(s)})
        .set(static_cast<double>(now.runs[static_cast<std::size_t>(s)]));
  }
  connections_.get().set(static_cast<double>(now.connections));
  for (std::string_view mode : {"online", "offline", "disabled"}) {
    wandb_mode_.with({mode}).set(mode == now.wandb_mode ? 1 : 0);
  }
  outbox_pending_.get().set(static_cast<double>(now.outbox_pending));
  outbox_in_flight_.get().set(static_cast<double>(now.outbox_in_flight));
  outbox_dead_.get().set(static_cast<double>(now.outbox_dead));
  if (now.process) {
    cpu_.get().advance_to(now.process->cpu_seconds);
    resident_.get().set(now.process->resident_bytes);
    virtual_.get().set(now.process->virtual_bytes);
    start_time_.get().set(now.process->start_time_seconds);
    if (now.process->open_fds) open_fds_.get().set(*now.process->open_fds);
    if (now.process->max_fds) max_fds_.get().set(*now.process->max_fds);
  }
  return registry_.render();
}

}  // namespace sweepd::app
