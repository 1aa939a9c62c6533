#include "core/delivery.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>

namespace sweepd::core {

namespace {

constexpr unsigned never_retried[] = {400, 401, 403, 404, 409, 410, 413, 422, 501};

std::string describe_status(unsigned status) {
  switch (status) {
    case 401:
      return "HTTP 401 from W&B: the API key was refused";
    case 403:
      return "HTTP 403 from W&B: the API key may not write to this project";
    case 404:
      return "HTTP 404 from W&B: check wandb.base_url";
    default:
      return fmt::format("HTTP {} from W&B", status);
  }
}

}  // namespace

delivery_queue::delivery_queue(delivery_policy policy) : policy_(std::move(policy)) {}

void delivery_queue::enqueue(outbox_entry entry, mono_time now) {
  run_slot& slot = runs_[entry.run];
  if (slot.pending) superseded_.push_back(slot.pending->seq);
  if (!slot.pending && !slot.busy) slot.attempts = 0;
  // A newer write replaces the re-checks of an older one: it carries the newer state.
  stop_rechecks(slot);
  if (slot.not_before < now && slot.attempts == 0) slot.not_before = now;
  const std::string run = entry.run;
  slot.pending = std::move(entry);
  requeue(run);
}

std::vector<std::int64_t> delivery_queue::take_superseded() {
  return std::exchange(superseded_, {});
}

delivery_queue::settled_rows delivery_queue::take_settled() { return std::exchange(settled_, {}); }

void delivery_queue::requeue(const std::string& run) {
  auto it = runs_.find(run);
  if (it == runs_.end()) return;
  run_slot& slot = it->second;
  if (slot.key) {
    ready_.erase(*slot.key);
    slot.key.reset();
  }
  if (slot.busy) return;
  if (slot.pending) {
    slot.key = ready_key{slot.not_before, slot.pending->seq, run};
  } else if (slot.recheck_at && slot.delivered) {
    slot.key = ready_key{*slot.recheck_at, slot.delivered->seq, run};
  } else {
    runs_.erase(it);  // nothing left to do for this run
    return;
  }
  ready_.insert(*slot.key);
}

std::vector<delivery_job> delivery_queue::start_jobs(mono_time now) {
  std::vector<delivery_job> jobs;
  if (now < paused_until_) return jobs;
  while (in_flight_ < policy_.max_in_flight && !ready_.empty() &&
         std::get<0>(*ready_.begin()) <= now) {
    const std::string run = std::get<2>(*ready_.begin());
    ready_.erase(ready_.begin());
    run_slot& slot = runs_.at(run);
    slot.key.reset();
    slot.busy = true;
    ++in_flight_;
    if (slot.pending) {
      slot.sending = std::move(slot.pending);
      slot.pending.reset();
      jobs.push_back({*slot.sending, false});
    } else {
      jobs.push_back({*slot.delivered, true});
    }
  }
  return jobs;
}

double delivery_queue::backoff_s(int attempts, double jitter) const {
  const double base = std::min(policy_.backoff_max_s,
                               policy_.backoff_min_s * std::pow(2.0, std::max(attempts - 1, 0)));
  // ±25 % spreads the retries of many runs, but never below the first step nor above the cap
  // (DESIGN §4: 0.5 s → 60 s).
  return std::clamp(base * (0.75 + 0.5 * jitter), policy_.backoff_min_s, policy_.backoff_max_s);
}

void delivery_queue::finished(const delivery_job& job, const attempt_result& result, mono_time now,
                              double jitter) {
  run_slot& slot = runs_.at(job.entry.run);
  slot.busy = false;
  --in_flight_;
  switch (result.what) {
    case attempt_result::kind::delivered:
      after_delivery(slot, job, result, now);
      break;
    case attempt_result::kind::not_found:
      if (!slot.first_not_found) slot.first_not_found = now;
      if (seconds_between(*slot.first_not_found, now) >= policy_.run_not_found_grace_s) {
        bury(slot, job,
             fmt::format("W&B still does not know run {}/{}/{} after {}s "
                         "(wandb.run_not_found_grace)",
                         job.entry.entity, job.entry.project, job.entry.run,
                         policy_.run_not_found_grace_s));
      } else {
        retry_later(slot, job, result, now, jitter);
      }
      break;
    case attempt_result::kind::retry:
      retry_later(slot, job, result, now, jitter);
      break;
    case attempt_result::kind::dead:
      bury(slot, job, result.error);
      break;
  }
  requeue(job.entry.run);
}

void delivery_queue::after_delivery(run_slot& slot, const delivery_job& job,
                                    const attempt_result& result, mono_time now) {
  const int attempts = slot.attempts + 1;
  slot.attempts = 0;
  slot.first_not_found.reset();
  slot.last_error.clear();
  // While W&B shows the run live, its own summary uploads may overwrite ours: look again later.
  const bool live = !result.wandb_state || !is_finished_wandb_state(*result.wandb_state);
  if (!job.recheck) {
    settled_.delivered.push_back(job.entry.seq);
    settled_.attempts[job.entry.seq] = attempts;
    slot.sending.reset();
    if (slot.pending) return;  // a newer write follows; it brings its own re-checks
    if (!live) return;
    slot.delivered = job.entry;
    slot.delivered_at = now;
    slot.rechecks_done = 0;
    settled_.converging.push_back(job.entry.seq);
  } else {
    ++slot.rechecks_done;
  }
  schedule_recheck(slot, live, now);
}

void delivery_queue::schedule_recheck(run_slot& slot, bool wandb_live, mono_time now) {
  const double since_write = seconds_between(slot.delivered_at, now);
  if (!wandb_live || slot.pending || since_write >= policy_.recheck_for_s) {
    stop_rechecks(slot);
    return;
  }
  const double at = slot.rechecks_done < policy_.recheck_after_s.size()
                        ? policy_.recheck_after_s[slot.rechecks_done]
                        : since_write + policy_.recheck_every_s;
  slot.recheck_at = slot.delivered_at + to_duration(std::max(at, since_write));
}

void delivery_queue::stop_rechecks(run_slot& slot) {
  if (slot.delivered) settled_.converged.push_back(slot.delivered->seq);
  slot.recheck_at.reset();
  slot.delivered.reset();
  slot.rechecks_done = 0;
}

void delivery_queue::resume_rechecks(outbox_entry delivered, double since_delivery_s,
                                     mono_time now) {
  run_slot& slot = runs_[delivered.run];
  if (slot.pending || slot.busy || slot.delivered) {
    // A newer write is on its way (it brings its own re-checks): this row is done.
    settled_.converged.push_back(delivered.seq);
    requeue(delivered.run);
    return;
  }
  const std::string run = delivered.run;
  slot.delivered = std::move(delivered);
  slot.delivered_at = now - to_duration(std::max(since_delivery_s, 0.0));
  if (since_delivery_s >= policy_.recheck_for_s) {
    stop_rechecks(slot);
  } else {
    // A re-check due while sweepd was down may have been missed, and a restart is when an
    // overwrite goes unseen: then look at once, in place of the last re-check that came due.
    std::size_t passed = 0;
    while (passed < policy_.recheck_after_s.size() &&
           policy_.recheck_after_s[passed] <= since_delivery_s) {
      ++passed;
    }
    if (passed == 0) {
      slot.rechecks_done = 0;
      schedule_recheck(slot, true, now);
    } else {
      slot.rechecks_done = passed - 1;
      slot.recheck_at = now;
    }
  }
  requeue(run);
}

std::optional<run_delivery> delivery_queue::run_info(std::string_view run) const {
  auto it = runs_.find(run);
  if (it == runs_.end()) return std::nullopt;
  const run_slot& slot = it->second;
  return run_delivery{slot.busy, slot.attempts, slot.last_error, slot.delivered.has_value()};
}

void delivery_queue::retry_later(run_slot& slot, const delivery_job& job,
                                 const attempt_result& result, mono_time now, double jitter) {
  ++slot.attempts;
  last_error_ = result.error;
  slot.last_error = result.error;
  double wait = backoff_s(slot.attempts, jitter);
  // The server's word wins over our backoff, but never below its floor: a Retry-After of 0
  // repeated by a struggling server must not become a tight loop.
  if (result.retry_after_s) {
    wait = std::clamp(*result.retry_after_s, policy_.backoff_min_s, policy_.retry_after_max_s);
  }
  slot.not_before = now + to_duration(wait);
  if (result.rate_limited) paused_until_ = std::max(paused_until_, slot.not_before);
  if (job.recheck) {
    slot.recheck_at = slot.not_before;
    return;
  }
  // The failed write goes back in line, unless a newer one arrived meanwhile and replaces it.
  if (slot.pending) {
    superseded_.push_back(job.entry.seq);
  } else {
    slot.pending = std::move(slot.sending);
  }
  slot.sending.reset();
}

void delivery_queue::bury(run_slot& slot, const delivery_job& job, std::string reason) {
  last_error_ = reason;
  slot.last_error = reason;
  const int attempts = slot.attempts + 1;
  slot.attempts = 0;
  slot.first_not_found.reset();
  if (job.recheck) {
    stop_rechecks(slot);
    return;
  }
  settled_.attempts[job.entry.seq] = attempts;
  settled_.dead.push_back({job.entry.seq, job.entry.run, std::move(reason)});
  ++dead_count_;
  slot.sending.reset();
}

std::optional<mono_time> delivery_queue::next_wakeup() const {
  if (ready_.empty() || in_flight_ >= policy_.max_in_flight) return std::nullopt;
  return std::max(std::get<0>(*ready_.begin()), paused_until_);
}

attempt_result classify_http(unsigned status, std::optional<std::string_view> retry_after,
                             std::optional<std::string_view> ratelimit_reset,
                             const std::string& graphql_errors, wall_time now, bool body_is_json) {
  attempt_result r;
  if (status == 200 && body_is_json) {
    if (!graphql_errors.empty()) {
      r.what = attempt_result::kind::dead;
      r.error = "W&B answered with errors: " + graphql_errors;
    }
    return r;
  }
  if (status == 200) {
    // W&B's GraphQL always answers JSON: this is a proxy's or load balancer's error page served
    // as 200, which passes like any other outage.
    r.what = attempt_result::kind::retry;
    r.error = "W&B answered 200 with a body that is not JSON";
  } else if (std::find(std::begin(never_retried), std::end(never_retried), status) !=
                 std::end(never_retried) ||
             (status >= 400 && status < 500 && status != 408 && status != 429)) {
    r.what = attempt_result::kind::dead;
    r.error = describe_status(status);
    return r;
  } else {
    r.what = attempt_result::kind::retry;
    r.error = describe_status(status);
    r.rate_limited = status == 429;
  }
  if (retry_after) r.retry_after_s = parse_retry_after(*retry_after, now);
  if (!r.retry_after_s && ratelimit_reset)
    r.retry_after_s = parse_retry_after(*ratelimit_reset, now);
  return r;
}

std::optional<double> parse_retry_after(std::string_view value, wall_time now) {
  const std::string text(value);
  char* end = nullptr;
  const double seconds = std::strtod(text.c_str(), &end);
  if (end != text.c_str() && *end == '\0' && std::isfinite(seconds) && seconds >= 0) {
    return seconds;
  }
  std::tm tm{};
  const char* parsed = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (parsed == nullptr || *parsed != '\0') return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(::timegm(&tm));
  return std::max(0.0, std::chrono::duration<double>(at - now).count());
}

bool is_finished_wandb_state(std::string_view state) {
  // DESIGN §4's list; `preempted` is left out on purpose: a preempted run may resume and upload
  // its summary again, so it is still worth re-checking.
  return state == "finished" || state == "crashed" || state == "failed" || state == "killed";
}

}  // namespace sweepd::core
