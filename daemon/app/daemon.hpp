#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "app/metrics.hpp"
#include "app/reconciler.hpp"
#include "app/wandb_sink.hpp"
#include "core/config.hpp"
#include "core/service.hpp"
#include "core/supervisor.hpp"
#include "core/tokens.hpp"
#include "io/clock.hpp"
#include "io/control_server.hpp"
#include "io/journal.hpp"
#include "io/logging.hpp"
#include "io/metrics_server.hpp"
#include "io/process_watch.hpp"
#include "io/tokens.hpp"

namespace sweepd::app {

namespace asio = boost::asio;

/// sweepd itself: one io_context on one thread, the control socket, the run supervisor, the one
/// deadline timer (armed at the earliest deadline of any run), signals and config reload.
class daemon {
 public:
  /// `config_path` is re-read on SIGHUP; empty when running on built-in defaults. Every deadline,
  /// timestamp and policy timer reads `time` (tests pass a clock they move by hand).
  daemon(core::config cfg, std::string config_path, io::clock& time = io::real_clock());
  ~daemon();
  daemon(const daemon&) = delete;
  daemon& operator=(const daemon&) = delete;

  /// Opens the journal, restores its runs, then binds the control socket; an error message on
  /// failure (a locked, unreadable or corrupt state file stops startup).
  core::result<void> open();
  /// Serves until SIGTERM/SIGINT or stop(); returns the process exit code.
  int run();
  /// Stops serving (safe to call from the loop's thread only, or via post()).
  void stop();
  /// What SIGHUP does: re-reads the config file; an invalid one is refused and the running config
  /// kept (loop's thread only; public so that tests need not signal their own process).
  void reload();

  asio::io_context& io() { return io_; }
  /// The journal once open(), for tests that inject storage failures.
  io::journal* journal() { return journal_.get(); }
  /// The metrics endpoint's address once open() ("" when metrics.listen is off).
  std::string metrics_address() const;

 private:
  /// Answers a request line; `behind_earlier`: the connection's earlier replies wait for a commit
  /// (io::control_server::line_handler).
  io::reply on_line(std::string_view line, const io::peer_credentials& peer, bool behind_earlier);
  /// Whether a line handled behind waiting replies must wait for them: all but a change of a run
  /// the current batch does not change.
  bool must_follow_earlier(const core::handled& h) const;
  /// Answers `reconcile` later, once W&B has been read (other clients are served meanwhile).
  io::reply reconcile(core::reconcile_request r, const core::caller& who);
  /// Queues the run's W&B summary again (`resync`); the reply line.
  std::string resync(const core::run_record& run);
  /// The run's W&B delivery, for `show`.
  nlohmann::json delivery_of(const core::run_record& run);
  /// Stores planned changes in one transaction (then logs them and hands their W&B writes to the
  /// sink); false when they could not be stored, and then nothing changed.
  bool store(std::span<const core::run_change> changes);
  /// Queues a planned change for this turn's group commit; the reply, sent once it is stored.
  io::reply batch(core::run_change c, std::string reply, int pidfd);
  /// Stores the changes batched this turn, applies them and releases their replies.
  void commit_batch();
  core::result<void> restore_from_journal();
  void prune_expired_runs();
  /// Binds a live watch_peer run to its worker's process (register, restore); `pidfd` (taken
  /// over) when the binding found one.
  void watch_process_of(const core::run_record& run, int pidfd = -1);
  /// A watched worker exited: its live runs become `crashed` at once.
  void on_process_exit(std::int32_t pid);
  /// Wakes the deadline loop if a run now has a deadline earlier than the armed one.
  void rearm_if_earlier();
  asio::awaitable<void> deadline_loop();
  /// Notes a turn of the loop; until when expiry should wait for queued input after the loop
  /// stood still (in the past when it did not).
  core::mono_time catch_up_until();
  /// The next batch of timeouts to store: from the backlog of due runs, listed anew when it ran
  /// out.
  std::vector<core::run_change> plan_expiry_batch(core::instant marked);
  /// Sizes the next batch of timeouts after how long the last one (`runs` of them) took.
  void size_next_expiry_batch(std::size_t runs, core::mono_clock::duration took);
  /// Ticks a few times a second, so that a loop that stood still is noticed.
  asio::awaitable<void> tick_loop();
  asio::awaitable<void> signal_loop();
  asio::awaitable<void> retention_loop();
  /// The clock jumped (a test moved it): every timer looks again at what is due.
  void on_clock_moved();
  void apply_reloadable(const core::config& next);
  core::instant now() const;
  core::caller caller_of(const io::peer_credentials& peer) const;
  // Remote workers (remote.*): the TLS listener, its tokens and certificate.
  /// Loads the certificate, key and tokens and binds remote.listen, when it is set.
  core::result<void> open_remote();
  /// Decides a remote connection's first line (io::control_server::authenticator).
  io::authentication authenticate(std::string_view line, const std::string& address);
  /// authenticate() but for the count: the verdict on a remote connection's first line.
  io::authentication check_hello(std::string_view line, const std::string& address);
  /// Re-reads the certificate, key and tokens (SIGHUP); a file that cannot be used keeps the
  /// ones in use, and the log says why.
  void reload_remote();
  /// The socket limits of `cfg`, with max_connections lowered (and logged) to fit the open-files
  /// limit.
  io::control_server_limits server_limits(const core::config& cfg) const;
  core::daemon_stats stats() const;

  // Operations (daemon_ops.cpp): metrics, /healthz and the systemd watchdog.
  /// Answers a request line (on_line) and counts it by op and result, with its latency.
  io::reply answer(std::string_view line, const io::peer_credentials& peer, bool behind_earlier);
  /// journal_->commit, timed and counted (transitions by state and reason, failures).
  core::result<void> journal_commit(std::span<const core::run_change> changes, bool to_outbox,
                                    std::vector<core::outbox_entry>* queued);
  /// Counts how late each run of `due` (planned timeouts, not applied yet) is marked at `marked`.
  void note_expired(std::span<const core::run_change> due, core::mono_time marked);
  /// Binds metrics.listen when set.
  core::result<void> open_metrics();
  io::http_answer metrics_page();
  io::http_answer health_page();
  /// Sends WATCHDOG=1 at half the interval systemd asked for, from the event loop: a loop that
  /// stands still stops them, and systemd restarts sweepd.
  asio::awaitable<void> watchdog_loop(std::chrono::microseconds interval);

  core::config cfg_;
  std::string config_path_;
  io::clock& clock_;
  asio::io_context io_{1};
  core::supervisor runs_;
  std::unique_ptr<io::journal> journal_;
  std::unique_ptr<wandb_sink> sink_;
  std::unique_ptr<reconciler> reconciler_;
  core::service service_;
  io::control_server server_;
  asio::steady_timer deadline_timer_;
  asio::steady_timer retention_timer_;
  asio::steady_timer tick_timer_;
  core::mono_time last_tick_{};
  core::mono_time stalled_until_{};
  asio::steady_timer shutdown_timer_;
  core::mono_time armed_for_ = core::mono_time::max();
  /// Runs found due and not yet timed out, in id order (core::supervisor::due_runs); expiry takes
  /// them a batch at a time from `expiry_next_`.
  core::supervisor::due_listing expiry_backlog_;
  std::size_t expiry_next_ = 0;
  std::size_t expiry_batch_size_ = 512;  // the first batch's; then size_next_expiry_batch()
  asio::signal_set signals_;
  io::process_watch process_watch_;
  std::multimap<std::int32_t, std::string> runs_by_pid_;
  std::string boot_id_;                    // this boot's, stored with watch_peer runs
  std::optional<io::token_store> tokens_;  // remote.tokens_file, once the listener is open
  core::failure_limiter auth_failures_;
  io::log_limiter auth_failure_log_;

  /// What the requests of one batch wait for: the batch stored (or refused).
  struct batch_result {
    explicit batch_result(asio::io_context& io)
        : stored(io, asio::steady_timer::time_point::max()) {}
    asio::steady_timer stored;  // cancelled once the batch is settled
    bool done = false;
    std::vector<std::string> replies;
  };
  /// The changes planned in the current turn of the loop, not stored yet.
  struct pending_batch {
    explicit pending_batch(asio::io_context& io) : result(std::make_shared<batch_result>(io)) {}
    /// A change of a run (or a new sweep) this batch already changes must wait for it.
    bool conflicts(const core::run_change& c) const;
    std::vector<core::run_change> changes;
    std::vector<int> pidfds;  // the bound worker of a watch_peer registration, else -1
    std::unordered_set<std::string> runs;
    std::unordered_set<std::string> new_sweeps;
    std::shared_ptr<batch_result> result;
  };
  std::unique_ptr<pending_batch> batch_;
  io::log_limiter commit_errors_;
  std::uint64_t fd_limit_ = 0;  // RLIMIT_NOFILE once open(); 0 before
  bool stopping_ = false;

  daemon_metrics metrics_;
  std::unique_ptr<io::metrics_server> metrics_server_;
  std::string last_commit_error_;  // empty while the last journal commit worked
  asio::steady_timer watchdog_timer_;
};

/// The supervisor's defaults for new runs, from the config.
core::supervisor_limits limits_from(const core::config& cfg);

}  // namespace sweepd::app
