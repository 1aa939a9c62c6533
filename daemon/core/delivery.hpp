#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/run.hpp"
#include "core/time.hpp"

namespace sweepd::core {

/// One pending W&B write: the newest transition of a run, from the durable outbox.
struct outbox_entry {
  std::int64_t seq = 0;  // the write's identity: the transition it carries (its journal seq)
  std::string run;
  std::string entity;
  std::string project;
  transition change;
};

/// How one attempt to write (or re-check) a run's summary ended, as the W&B client saw it.
struct attempt_result {
  enum class kind {
    delivered,  // written (or, for a re-check, found right or re-applied)
    retry,      // transport error, 408, 429, 5xx but 501: try again later
    not_found,  // W&B does not know the run (yet): retried for the grace period
    dead,       // 400/401/403/409/410/413/422/501 or a 200 with `errors`: never retried
  };
  kind what = kind::delivered;
  std::optional<double> retry_after_s;     // Retry-After or RateLimit-Reset, when the server said
  bool rate_limited = false;               // a 429: every run waits, not only this one
  std::string error;                       // for logs and `status` (never contains the API key)
  std::optional<std::string> wandb_state;  // the W&B run state seen while writing
};

/// A write or re-check to start now.
struct delivery_job {
  outbox_entry entry;
  bool recheck = false;  // read first; write only if the summary's state differs
};

/// Policy figures (DESIGN §4), overridable for tests.
struct delivery_policy {
  std::size_t max_in_flight = 4;
  double run_not_found_grace_s = 600;
  double backoff_min_s = 0.5;
  double backoff_max_s = 60;
  double retry_after_max_s = 3600;
  /// Re-checks of a write made while W&B showed the run live, counted from the write.
  std::vector<double> recheck_after_s = {30, 120, 600};
  /// After the schedule, keep re-checking this often until W&B shows the run finished…
  double recheck_every_s = 600;
  /// …but not for longer than this after the write.
  double recheck_for_s = 24 * 3600;
};

/// A dead letter: a write W&B refused for good.
struct dead_letter {
  std::int64_t seq = 0;
  std::string run;
  std::string reason;
};

/// What is known of one run's W&B delivery in memory (the journal has the rest).
struct run_delivery {
  bool in_flight = false;   // a write or re-check of the run is being sent now
  int failed_attempts = 0;  // of the write waiting to be sent, since it was queued
  std::string last_error;   // of the last failed attempt for this run
  bool converging = false;  // re-checks of the last write are scheduled
};

/// The W&B delivery policy, pure: which writes to start, when to retry, what supersedes what, when
/// to re-check. Per run at most one request is in flight and only the newest transition is
/// pending (a newer unsent write supersedes an older one: each write carries the run's whole
/// sweepd state), so writes land in transition order. The caller performs jobs and reports back.
class delivery_queue {
 public:
  explicit delivery_queue(delivery_policy policy);

  /// Queues a run's newest transition; an older unsent one of the same run is superseded.
  void enqueue(outbox_entry entry, mono_time now);
  /// Outbox rows superseded since the last call (to be marked done in the journal).
  std::vector<std::int64_t> take_superseded();
  /// Jobs to start now, oldest first, within max_in_flight.
  std::vector<delivery_job> start_jobs(mono_time now);
  /// Reports how a started job ended. `jitter` in [0, 1) spreads retries.
  void finished(const delivery_job& job, const attempt_result& result, mono_time now,
                double jitter);
  /// Rows delivered or dead-lettered since the last call, for the journal.
  struct settled_rows {
    std::vector<std::int64_t> delivered;
    std::vector<dead_letter> dead;
    /// Delivered while W&B showed the run live: re-checks are scheduled (and must survive a
    /// restart, see resume_rechecks).
    std::vector<std::int64_t> converging;
    /// Rows whose re-checks are over: W&B shows the run finished, a newer write replaced them,
    /// or the re-check period ended.
    std::vector<std::int64_t> converged;
    /// Attempts made for each delivered or dead-lettered row.
    std::map<std::int64_t, int> attempts;
  };
  settled_rows take_settled();
  /// Resumes the re-checks of a write delivered `since_delivery_s` ago (before a restart) while
  /// W&B showed the run live: at once when a re-check came due meanwhile, else at the first one;
  /// past the re-check period the row is settled as converged instead.
  void resume_rechecks(outbox_entry delivered, double since_delivery_s, mono_time now);
  /// What the queue knows of `run` right now; nullopt when it has nothing for it.
  std::optional<run_delivery> run_info(std::string_view run) const;
  /// When start_jobs() next has something to do; nullopt when nothing waits.
  std::optional<mono_time> next_wakeup() const;

  std::size_t in_flight() const { return in_flight_; }
  std::size_t dead() const { return dead_count_; }
  const std::string& last_error() const { return last_error_; }
  void set_policy(delivery_policy policy) { policy_ = std::move(policy); }

 private:
  using ready_key = std::tuple<mono_time, std::int64_t, std::string>;

  struct run_slot {
    std::optional<outbox_entry> pending;
    std::optional<outbox_entry> sending;  // the write in flight
    bool busy = false;                    // a job of this run is in flight
    std::optional<ready_key> key;         // its place in ready_, when it waits for a turn
    mono_time not_before{};
    int attempts = 0;
    std::optional<mono_time> first_not_found;
    std::string last_error;
    // Convergence of the last delivered write.
    std::optional<outbox_entry> delivered;
    std::optional<mono_time> recheck_at;
    mono_time delivered_at{};
    std::size_t rechecks_done = 0;
  };

  void retry_later(run_slot& slot, const delivery_job& job, const attempt_result& result,
                   mono_time now, double jitter);
  void after_delivery(run_slot& slot, const delivery_job& job, const attempt_result& result,
                      mono_time now);
  void bury(run_slot& slot, const delivery_job& job, std::string reason);
  /// Schedules the next re-check of the slot's delivered write, or ends them (converged).
  void schedule_recheck(run_slot& slot, bool wandb_live, mono_time now);
  /// Ends the re-checks of the slot's delivered write, recording the row as converged.
  void stop_rechecks(run_slot& slot);
  double backoff_s(int attempts, double jitter) const;
  /// Puts the run in ready_ at its next turn, or forgets it when it has nothing left to do.
  void requeue(const std::string& run);

  delivery_policy policy_;
  std::map<std::string, run_slot, std::less<>> runs_;
  std::set<ready_key> ready_;  // (turn, write seq, run): oldest write first among those due
  std::size_t in_flight_ = 0;
  std::size_t dead_count_ = 0;
  mono_time paused_until_{};  // a 429 pauses everyone
  std::string last_error_;
  std::vector<std::int64_t> superseded_;
  settled_rows settled_;
};

/// Classifies an HTTP answer from W&B's GraphQL endpoint (DESIGN §4). `retry_after` and
/// `ratelimit_reset` are the raw header values; `graphql_errors` is the joined `errors[].message`
/// of a 200 body (empty when none); `now` resolves an HTTP-date Retry-After; `body_is_json` is
/// false when the body could not be parsed (a 200 that is not JSON is retried).
attempt_result classify_http(unsigned status, std::optional<std::string_view> retry_after,
                             std::optional<std::string_view> ratelimit_reset,
                             const std::string& graphql_errors, wall_time now,
                             bool body_is_json = true);

/// Seconds from `now` that a Retry-After value asks for: delta-seconds or an HTTP-date
/// (IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT"); nullopt when unreadable.
std::optional<double> parse_retry_after(std::string_view value, wall_time now);

/// A W&B run state that means the run is over (finished, crashed, failed, killed, preempted).
bool is_finished_wandb_state(std::string_view state);

}  // namespace sweepd::core
