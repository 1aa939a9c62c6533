#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "app/metrics.hpp"
#include "core/config.hpp"
#include "core/delivery.hpp"
#include "core/result.hpp"
#include "io/clock.hpp"
#include "io/credentials.hpp"
#include "io/journal.hpp"
#include "io/wandb_client.hpp"

namespace sweepd::app {

namespace asio = boost::asio;

/// How sweepd will talk to W&B, decided from the config and the environment at start.
struct wandb_setup {
  core::config::wandb_mode mode = core::config::wandb_mode::offline;  // never auto_
  std::optional<io::url> base;                                        // online only
  std::string base_text;
  std::optional<std::string> key;  // online only; never logged
  std::string key_source;          // where the key came from, e.g. "$WANDB_API_KEY"
};

/// Resolves `wandb.mode`: auto becomes online when a key is found, else offline; online without a
/// key, an unusable key source or a bad base URL is a failure (sweepd cannot start with this
/// config). Shared by start and --check-config, so that both refuse the same configs with the
/// same message.
core::result<wandb_setup> resolve_wandb(const core::config& cfg, const io::env_lookup& env);

/// Delivers the durable outbox to W&B (DESIGN §4): the core delivery policy decides what to send
/// and when; this drives it on the event loop with the W&B client and records every settled row
/// in the journal. In mode offline it only counts; in mode disabled nothing is queued at all.
class wandb_sink {
 public:
  /// `time` dates deliveries and their retries.
  wandb_sink(asio::io_context& io, io::journal& journal, io::clock& time = io::real_clock());

  /// Resolves the mode (auto → online when a key is found, else offline) and, when online, loads
  /// the pending outbox. A failure when online is asked for and no key is found.
  /// `env` is where $WANDB_API_KEY and friends are looked up (the process environment by default).
  core::result<void> start(const core::config& cfg,
                           const io::env_lookup& env = io::process_environment());
  /// Replaces the delivery policy derived from the config (tests shorten the re-check schedule).
  void override_policy(core::delivery_policy policy);
  /// Queues freshly committed outbox rows (in commit order).
  void enqueue(std::vector<core::outbox_entry> entries);
  /// Stops sending. `on_idle` runs (posted) once no write is in flight: at once when none is.
  /// Writes still in flight when the daemon gives up waiting stay pending in the journal.
  void stop(std::function<void()> on_idle);
  /// New limits, timeout and names on SIGHUP (mode and key changes need a restart).
  void reconfigure(const core::config& cfg);
  /// Looks again at what is due (the clock moved).
  void wake() { wake_.cancel(); }

  /// One run's W&B delivery for `show`: {status, pending, dead, attempts, last_error,
  /// last_delivered_at, in_flight, converging}.
  nlohmann::json delivery_of(const core::run_record& run);
  /// Queues the run's newest transition again (`resync`); a failure when it could not be stored.
  core::result<void> resync(const core::run_record& run);
  /// {mode, pending, in_flight, dead, last_error} for `status`.
  nlohmann::json status() const;
  /// The mode's name for logs, `status` and metrics: "online", "offline" or "disabled".
  std::string_view mode() const { return core::to_string(mode_); }
  /// The W&B client when online (reconcile reads W&B with it), else nullptr.
  io::wandb_client* client() { return client_.get(); }
  bool online() const { return mode_ == core::config::wandb_mode::online; }
  /// Counts each W&B request and its duration there from now on (nullptr: nowhere).
  void set_metrics(daemon_metrics* metrics) { metrics_ = metrics; }

 private:
  asio::awaitable<void> loop();
  asio::awaitable<void> perform(core::delivery_job job);
  asio::awaitable<core::attempt_result> attempt(const core::delivery_job& job);
  void note_request(std::string_view request, const core::attempt_result& result,
                    core::mono_time started);
  /// Writes what the queue settled to the journal and logs each dead letter once.
  void settle();
  core::delivery_policy policy_from(const core::config& cfg) const;

  asio::io_context& io_;
  io::journal& journal_;
  io::clock& clock_;
  core::config::wandb_mode mode_ = core::config::wandb_mode::offline;  // never auto_
  std::string prefix_;
  std::map<std::string, std::string> state_names_;
  core::delivery_queue queue_{{}};
  std::optional<core::delivery_policy> policy_override_;
  std::unique_ptr<io::wandb_client> client_;
  asio::steady_timer wake_;
  std::minstd_rand jitter_{std::random_device{}()};
  bool stopping_ = false;
  std::size_t active_ = 0;  // perform() coroutines running
  std::function<void()> on_idle_;
  daemon_metrics* metrics_ = nullptr;
};

}  // namespace sweepd::app
