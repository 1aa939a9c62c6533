#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/delivery.hpp"
#include "core/metrics.hpp"
#include "core/run.hpp"
#include "core/supervisor.hpp"
#include "io/process_metrics.hpp"

namespace sweepd::app {

/// What is read fresh at each scrape rather than counted as it happens.
struct metrics_snapshot {
  std::array<std::size_t, std::size(core::all_run_states)> runs{};
  std::size_t connections = 0;
  std::string wandb_mode;  // online | offline | disabled
  std::size_t outbox_pending = 0;
  std::size_t outbox_in_flight = 0;
  std::size_t outbox_dead = 0;
  std::optional<io::process_sample> process;
};

/// sweepd's Prometheus series (docs/operations.md lists them with what to alert on). The daemon,
/// the W&B sink and the reconciler report what happens as it happens; render() adds the figures
/// of a snapshot. Every label value comes from a bounded set (ops, error codes, states, reasons,
/// actions): never a run id, a suggestion or anything a client chose.
class daemon_metrics {
 public:
  daemon_metrics();

  /// One request line answered: its op (a known op's name, or "invalid"), its result ("ok" or the
  /// error code) and how long it took to answer.
  void request(std::string_view op, std::string_view result, double seconds);
  /// A journal commit of transitions: how long it took and whether it stored them; when it did,
  /// each transition is counted by its target state and reason.
  void commit(std::span<const core::run_change> changes, double seconds, bool stored);
  /// A run marked `timeout` this long after its deadline.
  void expired(double lag_seconds);
  /// One W&B request (read_run, write_summary, list_runs): its result and duration.
  void wandb_request(std::string_view request, const core::attempt_result& result, double seconds);
  /// A W&B request that got its answer (a listed page has no attempt_result of its own).
  void wandb_request_ok(std::string_view request, double seconds);
  /// Runs an applied reconcile decided on, by action (adopt, repair, skip).
  void reconciled(std::string_view action, std::size_t runs);
  /// One periodic reconcile pass over a sweep, and whether it worked.
  void reconcile_pass(bool ok);

  /// The exposition text with the snapshot's figures.
  std::string render(const metrics_snapshot& now);

 private:
  /// The series one request line touches, found once per (op, result) and then kept: a request
  /// is answered in microseconds, and finding a series by its label values allocates.
  struct request_series {
    core::counter* answered;
    core::histogram* duration;
  };
  request_series& request_series_for(std::string_view op, std::string_view result);

  core::metric_registry registry_;
  core::metric_registry::family<core::gauge>& build_info_;
  core::metric_registry::family<core::gauge>& runs_;
  core::metric_registry::family<core::counter>& transitions_;
  core::metric_registry::family<core::counter>& requests_;
  core::metric_registry::family<core::histogram>& request_seconds_;
  core::metric_registry::family<core::gauge>& connections_;
  core::metric_registry::family<core::histogram>& commit_seconds_;
  core::metric_registry::family<core::counter>& commit_failures_;
  core::metric_registry::family<core::histogram>& expiry_lag_;
  core::metric_registry::family<core::gauge>& wandb_mode_;
  core::metric_registry::family<core::gauge>& outbox_pending_;
  core::metric_registry::family<core::gauge>& outbox_in_flight_;
  core::metric_registry::family<core::gauge>& outbox_dead_;
  core::metric_registry::family<core::counter>& wandb_requests_;
  core::metric_registry::family<core::histogram>& wandb_seconds_;
  core::metric_registry::family<core::counter>& reconciled_;
  core::metric_registry::family<core::counter>& reconcile_passes_;
  core::metric_registry::family<core::counter>& cpu_;
  core::metric_registry::family<core::gauge>& resident_;
  core::metric_registry::family<core::gauge>& virtual_;
  core::metric_registry::family<core::gauge>& open_fds_;
  core::metric_registry::family<core::gauge>& max_fds_;
  core::metric_registry::family<core::gauge>& start_time_;
  /// Keyed by op, a unit separator and result; bounded like the labels are.
  std::unordered_map<std::string, request_series> request_series_;
  /// sweepd_transitions_total's series by [target state][reason], found on first use.
  std::array<std::array<core::counter*, core::transition_reason_count>,
             std::size(core::all_run_states)>
      transition_series_{};
};

/// The result label of a W&B attempt: ok, retry, not_found, dead.
std::string_view wandb_result_label(const core::attempt_result& result);

}  // namespace sweepd::app
