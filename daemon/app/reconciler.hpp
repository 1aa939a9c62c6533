#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "app/wandb_sink.hpp"
#include "core/config.hpp"
#include "core/errors.hpp"
#include "core/protocol.hpp"
#include "core/reconcile.hpp"
#include "core/result.hpp"
#include "core/supervisor.hpp"
#include "io/clock.hpp"

namespace sweepd::app {

namespace asio = boost::asio;

/// Reconcile (cleaning up the runs W&B shows stuck in a live state): lists a sweep's stuck runs
/// through the W&B client, every page, classifies each by the core rules, and on `apply` adopts
/// them into the journal (their W&B writes then go through the outbox like any
/// transition) and re-queues sweepd's own state for the runs it has final. Nothing is adopted
/// unless the whole listing worked; adoptions are stored in batches of a few hundred, so a disk
/// failure in the middle keeps the batches before it (an apply again adopts the rest). The W&B
/// reads run on the event loop: other clients are served meanwhile.
class reconciler {
 public:
  /// Stores planned adoptions (the daemon's store: journal, log, W&B outbox); false when it failed
  /// and nothing was kept.
  using commit_fn = std::function<bool(std::span<const core::run_change>)>;

  /// `time` dates adoptions and passes.
  reconciler(asio::io_context& io, core::supervisor& runs, wandb_sink& sink, commit_fn commit,
             io::clock& time);

  /// One reconcile; the reply body, or the error to answer with (`unavailable` when W&B cannot
  /// be asked, `bad_request` without an entity/project, `internal` when the journal refused).
  asio::awaitable<core::result<nlohmann::json, core::error>> run(core::reconcile_request r,
                                                                 core::caller who,
                                                                 core::config cfg);

  /// Every `reconcile.interval`, applies reconcile to each entry of `reconcile.sweeps` (the
  /// config is asked for anew each pass, so a reload applies). One info line per pass.
  asio::awaitable<void> periodic(std::function<const core::config&()> config);
  void stop();
  /// Counts W&B listings, applied decisions and periodic passes there (nullptr: nowhere).
  void set_metrics(daemon_metrics* metrics) { metrics_ = metrics; }

  /// {last_pass_at, passes, adopted, errors, last_error} for `status`.
  nlohmann::json status() const;

 private:
  /// Lists every page; the decisions, or why the listing failed.
  asio::awaitable<core::result<std::vector<core::reconcile_decision>, core::error>>
  list_and_classify(const core::reconcile_rules& rules, const core::config& cfg);
  /// Adopts (in batches, one transaction each) and repairs; the decisions as they ended (a run
  /// sweepd learnt of meanwhile is skipped). How many were adopted, or why it stopped.
  asio::awaitable<core::result<std::size_t, core::error>> apply(
      std::vector<core::reconcile_decision>& decisions, const core::caller& who);

  asio::io_context& io_;
  core::supervisor& runs_;
  wandb_sink& sink_;
  commit_fn commit_;
  io::clock& clock_;
  asio::steady_timer timer_;
  bool stopping_ = false;
  std::optional<core::wall_time> last_pass_at_;
  std::size_t passes_ = 0;
  std::size_t adopted_ = 0;
  std::size_t errors_ = 0;
  std::string last_error_;
  daemon_metrics* metrics_ = nullptr;
};

/// The reply body of a reconcile: rows (at most `max_rows`), counts, and whether it was applied.
nlohmann::json reconcile_reply(const std::vector<core::reconcile_decision>& decisions,
                               const core::reconcile_rules& rules, bool applied,
                               std::size_t max_rows);

}  // namespace sweepd::app
