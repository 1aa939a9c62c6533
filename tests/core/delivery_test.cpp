#include "core/delivery.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

/// The fake monotonic clock: `d` after an arbitrary origin.
mono_time at(mono_clock::duration d) { return mono_time{} + d; }

outbox_entry entry(std::int64_t seq, const std::string& run, run_state to = run_state::running) {
  outbox_entry e;
  e.seq = seq;
  e.run = run;
  e.entity = "team";
  e.project = "proj";
  e.change.run = run;
  e.change.from = run_state::initializing;
  e.change.to = to;
  e.change.reason = transition_reason::started;
  return e;
}

attempt_result delivered(std::optional<std::string> wandb_state = "finished") {
  attempt_result r;
  r.what = attempt_result::kind::delivered;
  r.wandb_state = std::move(wandb_state);
  return r;
}

attempt_result retry(std::optional<double> retry_after_s = std::nullopt,
                     bool rate_limited = false) {
  attempt_result r;
  r.what = attempt_result::kind::retry;
  r.retry_after_s = retry_after_s;
  r.rate_limited = rate_limited;
  r.error = rate_limited ? "HTTP 429 from W&B" : "HTTP 503 from W&B";
  return r;
}

attempt_result not_found() {
  attempt_result r;
  r.what = attempt_result::kind::not_found;
  r.error = "run not found";
  return r;
}

attempt_result dead(const std::string& error) {
  attempt_result r;
  r.what = attempt_result::kind::dead;
  r.error = error;
  return r;
}

/// The one job start_jobs gives now; throws (failing the test) when there is none.
delivery_job only_job(delivery_queue& q, mono_time now) {
  auto jobs = q.start_jobs(now);
  EXPECT_EQ(jobs.size(), 1u);
  if (jobs.empty()) throw std::runtime_error("no job to start");
  return jobs[0];
}

/// start_jobs for a test that goes on with the jobs: throws (failing the test) when none start.
std::vector<delivery_job> start_some(delivery_queue& q, mono_time now) {
  auto jobs = q.start_jobs(now);
  if (jobs.empty()) throw std::runtime_error("no job to start");
  return jobs;
}

std::vector<std::int64_t> seqs(const std::vector<delivery_job>& jobs) {
  std::vector<std::int64_t> out;
  out.reserve(jobs.size());
  for (const auto& j : jobs) out.push_back(j.entry.seq);
  return out;
}

double seconds_after(mono_time from, std::optional<mono_time> to) {
  EXPECT_TRUE(to.has_value());
  return to ? seconds_between(from, *to) : -1.0;
}

delivery_policy with_in_flight(std::size_t n) {
  delivery_policy p;
  p.max_in_flight = n;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Concurrency and order

TEST(DeliveryQueue, EmptyQueueHasNothingToDo) {
  delivery_queue q{delivery_policy{}};
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
  EXPECT_THAT(q.start_jobs(at(0s)), IsEmpty());
  EXPECT_EQ(q.in_flight(), 0u);
  EXPECT_EQ(q.dead(), 0u);
}

TEST(DeliveryQueue, MaxInFlightOne) {
  delivery_queue q{with_in_flight(1)};
  q.enqueue(entry(1, "a"), at(0s));
  q.enqueue(entry(2, "b"), at(0s));
  q.enqueue(entry(3, "c"), at(0s));
  EXPECT_EQ(q.next_wakeup(), at(0s));
  const auto first = start_some(q, at(0s));
  EXPECT_THAT(seqs(first), ElementsAre(1));
  EXPECT_EQ(q.in_flight(), 1u);
  EXPECT_THAT(q.start_jobs(at(1s)), IsEmpty());
  EXPECT_EQ(q.next_wakeup(), std::nullopt);  // full: the next finish wakes the caller

  q.finished(first[0], delivered(), at(1s), 0.5);
  EXPECT_EQ(q.in_flight(), 0u);
  const auto second = start_some(q, at(1s));
  EXPECT_THAT(seqs(second), ElementsAre(2));
  q.finished(second[0], delivered(), at(2s), 0.5);
  EXPECT_THAT(seqs(q.start_jobs(at(2s))), ElementsAre(3));
}

TEST(DeliveryQueue, MaxInFlightFourOldestFirst) {
  delivery_queue q{with_in_flight(4)};
  // Enqueued in scrambled order at the same instant: the outbox order decides.
  for (std::int64_t seq : {5, 2, 6, 1, 4, 3}) {
    q.enqueue(entry(seq, "run" + std::to_string(seq)), at(0s));
  }
  const auto jobs = start_some(q, at(0s));
  EXPECT_THAT(seqs(jobs), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(q.in_flight(), 4u);
  for (const auto& j : jobs) EXPECT_FALSE(j.recheck);
  EXPECT_THAT(q.start_jobs(at(1s)), IsEmpty());

  q.finished(jobs[2], delivered(), at(1s), 0.5);
  EXPECT_THAT(seqs(q.start_jobs(at(1s))), ElementsAre(5));
  EXPECT_THAT(q.start_jobs(at(1s)), IsEmpty());
  q.finished(jobs[0], delivered(), at(2s), 0.5);
  EXPECT_THAT(seqs(q.start_jobs(at(2s))), ElementsAre(6));
}

TEST(DeliveryQueue, EarlierWriteGoesFirst) {
  delivery_queue q{with_in_flight(1)};
  q.enqueue(entry(7, "late"), at(5s));
  q.enqueue(entry(8, "later"), at(6s));
  EXPECT_THAT(seqs(q.start_jobs(at(6s))), ElementsAre(7));
}

TEST(DeliveryQueue, NotStartedBeforeEnqueued) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "a"), at(10s));
  EXPECT_EQ(q.next_wakeup(), at(10s));
  EXPECT_THAT(q.start_jobs(at(9s)), IsEmpty());
  EXPECT_THAT(seqs(q.start_jobs(at(10s))), ElementsAre(1));
}

TEST(DeliveryQueue, OneRequestPerRunAtATime) {
  delivery_queue q{with_in_flight(4)};
  q.enqueue(entry(1, "r"), at(0s));
  const auto first = start_some(q, at(0s));
  ASSERT_THAT(seqs(first), ElementsAre(1));

  q.enqueue(entry(2, "r"), at(1s));
  q.enqueue(entry(3, "other"), at(1s));
  // Capacity is free, but run r has a write in flight: only the other run starts.
  EXPECT_THAT(seqs(q.start_jobs(at(1s))), ElementsAre(3));
  EXPECT_THAT(q.start_jobs(at(100s)), IsEmpty());
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
  EXPECT_THAT(q.take_superseded(), IsEmpty());  // 1 was sent, not superseded

  q.finished(first[0], delivered(), at(101s), 0.5);
  const auto second = start_some(q, at(101s));
  ASSERT_THAT(seqs(second), ElementsAre(2));
  EXPECT_FALSE(second[0].recheck);
  EXPECT_THAT(q.take_settled().delivered, ElementsAre(1));
}

TEST(DeliveryQueue, NewerWriteSupersedesUnsentOne) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r", run_state::initializing), at(0s));
  q.enqueue(entry(2, "r", run_state::running), at(0s));
  q.enqueue(entry(3, "r", run_state::success), at(1s));
  EXPECT_THAT(q.take_superseded(), ElementsAre(1, 2));
  EXPECT_THAT(q.take_superseded(), IsEmpty());

  const auto jobs = start_some(q, at(1s));
  ASSERT_THAT(seqs(jobs), ElementsAre(3));
  EXPECT_EQ(jobs[0].entry.change.to, run_state::success);
  q.finished(jobs[0], delivered(), at(2s), 0.5);
  EXPECT_THAT(q.start_jobs(at(2s)), IsEmpty());
  const auto settled = q.take_settled();
  EXPECT_THAT(settled.delivered, ElementsAre(3));
  EXPECT_THAT(settled.dead, IsEmpty());
}

TEST(DeliveryQueue, NewerWritesWhileOneIsInFlightKeepOnlyTheNewest) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  const auto first = start_some(q, at(0s));
  q.enqueue(entry(2, "r"), at(1s));
  q.enqueue(entry(3, "r"), at(2s));
  EXPECT_THAT(q.take_superseded(), ElementsAre(2));
  q.finished(first[0], delivered(), at(3s), 0.5);
  EXPECT_THAT(seqs(q.start_jobs(at(3s))), ElementsAre(3));
  EXPECT_THAT(q.take_settled().delivered, ElementsAre(1));
}

// ---------------------------------------------------------------------------------------------
// Retries

// Fails the same write again and again; returns the waits between a failure and its retry.
std::vector<double> backoff_waits(double jitter, int failures) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  std::vector<double> waits;
  mono_time now = at(0s);
  for (int n = 0; n < failures; ++n) {
    const auto jobs = q.start_jobs(now);
    EXPECT_THAT(seqs(jobs), ElementsAre(1));
    if (jobs.empty()) break;
    q.finished(jobs[0], retry(), now, jitter);
    const auto wake = q.next_wakeup();
    EXPECT_TRUE(wake.has_value());
    if (!wake) break;
    waits.push_back(seconds_between(now, *wake));
    EXPECT_THAT(q.start_jobs(*wake - 1ms), IsEmpty());
    EXPECT_EQ(q.in_flight(), 0u);
    now = *wake;
  }
  EXPECT_THAT(q.take_superseded(), IsEmpty());
  EXPECT_THAT(q.take_settled().delivered, IsEmpty());
  return waits;
}

void expect_waits(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-6) << "retry " << i + 1;
    EXPECT_GE(got[i], 0.5 - 1e-9) << "retry " << i + 1;
    EXPECT_LE(got[i], 60 + 1e-9) << "retry " << i + 1;
  }
}

TEST(DeliveryBackoff, DoublesFromHalfASecondToTheCapWithLowJitter) {
  // Base 0.5, 1, 2, … 32, 60 (capped); jitter 0 takes 25 % off, never below 0.5 s.
  expect_waits(backoff_waits(0.0, 10), {0.5, 0.75, 1.5, 3, 6, 12, 24, 45, 45, 45});
}

TEST(DeliveryBackoff, DoublesFromHalfASecondToTheCapWithHighJitter) {
  // Jitter 0.999 adds almost 25 %, never above 60 s.
  const double f = 0.75 + 0.5 * 0.999;
  expect_waits(backoff_waits(0.999, 10),
               {0.5 * f, 1 * f, 2 * f, 4 * f, 8 * f, 16 * f, 32 * f, 60, 60, 60});
}

TEST(DeliveryBackoff, RestartsAfterADelivery) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  mono_time now = at(0s);
  for (int n = 0; n < 5; ++n) {
    const auto jobs = q.start_jobs(now);
    ASSERT_EQ(jobs.size(), 1u);
    q.finished(jobs[0], retry(), now, 0.5);
    now = q.next_wakeup().value();
  }
  const auto jobs = q.start_jobs(now);
  ASSERT_EQ(jobs.size(), 1u);
  q.finished(jobs[0], delivered(), now, 0.5);
  q.enqueue(entry(2, "r"), now + 10s);
  const auto next = start_some(q, now + 10s);
  ASSERT_THAT(seqs(next), ElementsAre(2));
  q.finished(next[0], retry(), now + 10s, 0.5);
  EXPECT_NEAR(seconds_after(now + 10s, q.next_wakeup()), 0.5, 1e-6);
}

TEST(DeliveryBackoff, RetryAfterIsHonouredOverBackoff) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  auto jobs = start_some(q, at(0s));
  q.finished(jobs[0], retry(7.0), at(1s), 0.999);
  EXPECT_EQ(q.next_wakeup(), at(8s));
  EXPECT_THAT(q.start_jobs(at(8s) - 1ms), IsEmpty());
  jobs = start_some(q, at(8s));
  ASSERT_THAT(seqs(jobs), ElementsAre(1));

  // Shorter than the backoff would be: still honoured, down to the backoff floor (0.5 s), so a
  // server that keeps saying 0 cannot make a tight loop of it.
  q.finished(jobs[0], retry(0.7), at(8s), 0.999);
  EXPECT_EQ(q.next_wakeup(), at(8700ms));
  jobs = start_some(q, at(8700ms));
  ASSERT_EQ(jobs.size(), 1u);
  q.finished(jobs[0], retry(0.0), at(8700ms), 0.999);
  EXPECT_EQ(q.next_wakeup(), at(9200ms));
  jobs = start_some(q, at(9200ms));
  ASSERT_EQ(jobs.size(), 1u);

  // Absurdly long: capped at retry_after_max_s.
  q.finished(jobs[0], retry(1e9), at(9s), 0.0);
  EXPECT_EQ(q.next_wakeup(), at(9s + 3600s));
}

TEST(DeliveryBackoff, RateLimitPausesEveryRun) {
  delivery_queue q{with_in_flight(4)};
  q.enqueue(entry(1, "a"), at(0s));
  const auto a = start_some(q, at(0s));
  q.enqueue(entry(2, "b"), at(1s));
  q.enqueue(entry(3, "c"), at(1s));
  // b and c are due, but a's 429 arrives first.
  q.finished(a[0], retry(10.0, true), at(1s), 0.5);
  EXPECT_THAT(q.start_jobs(at(1s)), IsEmpty());
  EXPECT_THAT(q.start_jobs(at(11s) - 1ms), IsEmpty());
  EXPECT_EQ(q.next_wakeup(), at(11s));
  EXPECT_THAT(seqs(q.start_jobs(at(11s))), UnorderedElementsAre(1, 2, 3));
}

TEST(DeliveryBackoff, RateLimitWithoutRetryAfterPausesForTheBackoff) {
  delivery_queue q{with_in_flight(4)};
  q.enqueue(entry(1, "a"), at(0s));
  const auto a = start_some(q, at(0s));
  q.enqueue(entry(2, "b"), at(0s));
  q.finished(a[0], retry(std::nullopt, true), at(0s), 0.0);
  EXPECT_EQ(q.next_wakeup(), at(500ms));
  EXPECT_THAT(q.start_jobs(at(499ms)), IsEmpty());
  EXPECT_THAT(seqs(q.start_jobs(at(500ms))), UnorderedElementsAre(1, 2));
}

TEST(DeliveryBackoff, OtherRetriesDelayOnlyTheirRun) {
  delivery_queue q{with_in_flight(4)};
  q.enqueue(entry(1, "a"), at(0s));
  const auto a = start_some(q, at(0s));
  q.enqueue(entry(2, "b"), at(1s));
  q.finished(a[0], retry(10.0), at(1s), 0.5);  // a 503 with Retry-After
  EXPECT_EQ(q.next_wakeup(), at(1s));
  const auto b = start_some(q, at(1s));
  EXPECT_THAT(seqs(b), ElementsAre(2));
  EXPECT_EQ(q.next_wakeup(), at(11s));
}

TEST(DeliveryBackoff, FailedWriteIsSupersededByANewerOne) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  const auto first = start_some(q, at(0s));
  q.enqueue(entry(2, "r", run_state::success), at(1s));
  EXPECT_THAT(q.take_superseded(), IsEmpty());
  q.finished(first[0], retry(), at(2s), 0.0);
  EXPECT_THAT(q.take_superseded(), ElementsAre(1));

  // The newer write waits for the backoff and goes alone; 1 is never resent.
  EXPECT_THAT(q.start_jobs(at(2s)), IsEmpty());
  EXPECT_EQ(q.next_wakeup(), at(2500ms));
  const auto second = start_some(q, at(2500ms));
  ASSERT_THAT(seqs(second), ElementsAre(2));
  EXPECT_EQ(second[0].entry.change.to, run_state::success);
  q.finished(second[0], delivered(), at(3s), 0.0);
  EXPECT_THAT(q.start_jobs(at(1000s)), IsEmpty());
  EXPECT_THAT(q.take_settled().delivered, ElementsAre(2));
  EXPECT_THAT(q.take_superseded(), IsEmpty());
}

TEST(DeliveryBackoff, NotFoundWriteIsSupersededByANewerOne) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  const auto first = start_some(q, at(0s));
  q.enqueue(entry(2, "r"), at(1s));
  q.finished(first[0], not_found(), at(2s), 0.0);
  EXPECT_THAT(q.take_superseded(), ElementsAre(1));
  EXPECT_THAT(seqs(q.start_jobs(q.next_wakeup().value())), ElementsAre(2));
}

// ---------------------------------------------------------------------------------------------
// Dead letters

TEST(DeliveryDead, RefusedWriteIsDeadLetteredAndTheNextWriteProceeds) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  const auto first = start_some(q, at(0s));
  q.finished(first[0], dead("HTTP 400 from W&B"), at(1s), 0.5);
  EXPECT_EQ(q.dead(), 1u);
  EXPECT_EQ(q.last_error(), "HTTP 400 from W&B");
  auto settled = q.take_settled();
  ASSERT_EQ(settled.dead.size(), 1u);
  EXPECT_EQ(settled.dead[0].seq, 1);
  EXPECT_EQ(settled.dead[0].run, "r");
  EXPECT_EQ(settled.dead[0].reason, "HTTP 400 from W&B");
  EXPECT_THAT(settled.delivered, IsEmpty());
  EXPECT_THAT(q.take_settled().dead, IsEmpty());
  // Never retried.
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
  EXPECT_THAT(q.start_jobs(at(10000s)), IsEmpty());

  q.enqueue(entry(2, "r", run_state::success), at(20s));
  const auto second = start_some(q, at(20s));
  ASSERT_THAT(seqs(second), ElementsAre(2));
  q.finished(second[0], delivered(), at(21s), 0.5);
  settled = q.take_settled();
  EXPECT_THAT(settled.delivered, ElementsAre(2));
  EXPECT_THAT(settled.dead, IsEmpty());
  EXPECT_EQ(q.dead(), 1u);
}

TEST(DeliveryDead, DeadWriteDoesNotBlockTheNewerPendingOne) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  const auto first = start_some(q, at(0s));
  q.enqueue(entry(2, "r"), at(1s));
  q.finished(first[0], dead("HTTP 422 from W&B"), at(2s), 0.5);
  const auto settled = q.take_settled();
  ASSERT_EQ(settled.dead.size(), 1u);
  EXPECT_EQ(settled.dead[0].seq, 1);
  EXPECT_THAT(seqs(q.start_jobs(at(2s))), ElementsAre(2));
}

TEST(DeliveryDead, DeadLettersAreCounted) {
  delivery_queue q{with_in_flight(4)};
  for (std::int64_t seq = 1; seq <= 3; ++seq)
    q.enqueue(entry(seq, "r" + std::to_string(seq)), at(0s));
  for (const auto& j : q.start_jobs(at(0s))) q.finished(j, dead("HTTP 403"), at(1s), 0.5);
  EXPECT_EQ(q.dead(), 3u);
  EXPECT_EQ(q.take_settled().dead.size(), 3u);
  EXPECT_EQ(q.in_flight(), 0u);
}

TEST(DeliveryDead, UnknownRunIsRetriedForTheGraceThenDead) {
  delivery_queue q{delivery_policy{}};  // grace 600 s
  q.enqueue(entry(1, "r1"), at(0s));
  mono_time now = at(0s);
  std::optional<mono_time> first_not_found;
  int attempts = 0;
  while (true) {
    const auto jobs = q.start_jobs(now);
    ASSERT_THAT(seqs(jobs), ElementsAre(1));
    ++attempts;
    if (!first_not_found) first_not_found = now;
    q.finished(jobs[0], not_found(), now, 0.5);
    const auto settled = q.take_settled();
    if (!settled.dead.empty()) {
      ASSERT_EQ(settled.dead.size(), 1u);
      EXPECT_GE(seconds_between(*first_not_found, now), 600.0);
      EXPECT_EQ(settled.dead[0].seq, 1);
      EXPECT_THAT(settled.dead[0].reason, HasSubstr("team/proj/r1"));
      EXPECT_THAT(settled.dead[0].reason, HasSubstr("600"));
      EXPECT_THAT(settled.dead[0].reason, HasSubstr("run_not_found_grace"));
      break;
    }
    EXPECT_LT(seconds_between(*first_not_found, now), 600.0);
    ASSERT_TRUE(q.next_wakeup().has_value());
    ASSERT_LT(attempts, 100);
    now = q.next_wakeup().value();
  }
  EXPECT_GT(attempts, 5);
  // The last try came less than one backoff step after the grace ran out.
  EXPECT_LT(seconds_between(*first_not_found, now), 600.0 + 60.0);
  EXPECT_EQ(q.dead(), 1u);
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
}

TEST(DeliveryDead, ZeroGraceDeadLettersAtOnce) {
  delivery_policy p;
  p.run_not_found_grace_s = 0;
  delivery_queue q{p};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), not_found(), at(1s), 0.5);
  EXPECT_EQ(q.take_settled().dead.size(), 1u);
}

TEST(DeliveryDead, GraceRestartsAfterTheRunWasFound) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  auto jobs = start_some(q, at(0s));
  q.finished(jobs[0], not_found(), at(0s), 0.5);
  jobs = start_some(q, q.next_wakeup().value());
  // Found while W&B still shows it running: the run stays known to the queue (re-checks).
  q.finished(jobs[0], delivered("running"), at(500s), 0.5);
  EXPECT_THAT(q.take_settled().delivered, ElementsAre(1));

  // 1000 s after the first not-found, but the run was found meanwhile: not dead.
  q.enqueue(entry(2, "r"), at(1000s));
  jobs = start_some(q, at(1000s));
  q.finished(jobs[0], not_found(), at(1000s), 0.5);
  EXPECT_THAT(q.take_settled().dead, IsEmpty());
  EXPECT_TRUE(q.next_wakeup().has_value());
}

// ---------------------------------------------------------------------------------------------
// Convergence re-checks

TEST(DeliveryRecheck, WriteToALiveRunIsReCheckedOnSchedule) {
  delivery_queue q{delivery_policy{}};
  const outbox_entry e = entry(1, "r", run_state::success);
  q.enqueue(e, at(0s));
  auto jobs = start_some(q, at(0s));
  q.finished(jobs[0], delivered("running"), at(10s), 0.5);
  std::vector<std::int64_t> delivered_seqs = q.take_settled().delivered;
  EXPECT_THAT(delivered_seqs, ElementsAre(1));

  // 30, 120 and 600 s after the write, then every 600 s after the previous re-check.
  const std::vector<mono_time> expected = {at(40s),   at(130s),  at(610s),
                                           at(1210s), at(1810s), at(2410s)};
  for (mono_time when : expected) {
    EXPECT_EQ(q.next_wakeup(), when);
    EXPECT_THAT(q.start_jobs(when - 1ms), IsEmpty());
    jobs = start_some(q, when);
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_TRUE(jobs[0].recheck);
    EXPECT_EQ(jobs[0].entry.seq, e.seq);
    EXPECT_EQ(jobs[0].entry.run, e.run);
    EXPECT_EQ(jobs[0].entry.entity, e.entity);
    EXPECT_EQ(jobs[0].entry.project, e.project);
    EXPECT_EQ(jobs[0].entry.change.to, run_state::success);
    q.finished(jobs[0], delivered("running"), when, 0.5);
    const auto settled = q.take_settled();
    EXPECT_THAT(settled.delivered, IsEmpty());  // re-checks never settle again
    EXPECT_THAT(settled.dead, IsEmpty());
  }
  EXPECT_THAT(q.take_superseded(), IsEmpty());
}

TEST(DeliveryRecheck, StopsWhenWandbShowsTheRunFinished) {
  for (const char* state : {"finished", "crashed", "failed", "killed"}) {
    SCOPED_TRACE(state);
    delivery_queue q{delivery_policy{}};
    q.enqueue(entry(1, "r"), at(0s));
    q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
    EXPECT_EQ(q.next_wakeup(), at(30s));
    auto jobs = start_some(q, at(30s));
    ASSERT_EQ(jobs.size(), 1u);
    q.finished(jobs[0], delivered("running"), at(30s), 0.5);
    EXPECT_EQ(q.next_wakeup(), at(120s));
    jobs = start_some(q, at(120s));
    ASSERT_EQ(jobs.size(), 1u);
    q.finished(jobs[0], delivered(state), at(120s), 0.5);
    EXPECT_EQ(q.next_wakeup(), std::nullopt);
    EXPECT_THAT(q.start_jobs(at(100000s)), IsEmpty());
    EXPECT_THAT(q.take_settled().delivered, ElementsAre(1));
  }
}

TEST(DeliveryRecheck, NoReCheckWhenTheWriteSawAFinishedRun) {
  for (const char* state : {"finished", "crashed", "failed", "killed"}) {
    SCOPED_TRACE(state);
    delivery_queue q{delivery_policy{}};
    q.enqueue(entry(1, "r"), at(0s));
    q.finished(only_job(q, at(0s)), delivered(state), at(1s), 0.5);
    EXPECT_EQ(q.next_wakeup(), std::nullopt);
    EXPECT_THAT(q.start_jobs(at(100000s)), IsEmpty());
    EXPECT_THAT(q.take_settled().delivered, ElementsAre(1));
  }
}

TEST(DeliveryRecheck, UnknownWandbStateCountsAsLive) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered(std::nullopt), at(0s), 0.5);
  EXPECT_EQ(q.next_wakeup(), at(30s));
}

TEST(DeliveryRecheck, StopsAfterRecheckFor) {
  delivery_queue q{delivery_policy{}};  // 30, 120, 600, then every 600 s for 24 h
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  std::vector<double> times;
  while (auto wake = q.next_wakeup()) {
    const auto jobs = q.start_jobs(*wake);
    ASSERT_EQ(jobs.size(), 1u);
    ASSERT_TRUE(jobs[0].recheck);
    times.push_back(seconds_between(at(0s), *wake));
    q.finished(jobs[0], delivered("running"), *wake, 0.5);
    ASSERT_LT(times.size(), 1000u);
  }
  ASSERT_EQ(times.size(), 3u + 143u);
  EXPECT_DOUBLE_EQ(times[0], 30);
  EXPECT_DOUBLE_EQ(times[1], 120);
  EXPECT_DOUBLE_EQ(times[2], 600);
  EXPECT_DOUBLE_EQ(times[3], 1200);
  EXPECT_DOUBLE_EQ(times.back(), 86400);
  EXPECT_THAT(q.take_settled().delivered, ElementsAre(1));
}

TEST(DeliveryRecheck, ShortRecheckForStopsEarly) {
  delivery_policy p;
  p.recheck_for_s = 200;
  delivery_queue q{p};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  int rechecks = 0;
  while (auto wake = q.next_wakeup()) {
    const auto jobs = q.start_jobs(*wake);
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_LE(seconds_between(at(0s), *wake), 600.0);
    q.finished(jobs[0], delivered("running"), *wake, 0.5);
    ASSERT_LT(++rechecks, 10);
  }
  EXPECT_EQ(rechecks, 3);  // 30, 120, 600: the first at or past 200 s is the last
}

TEST(DeliveryRecheck, NewerWriteCancelsTheOlderReChecks) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r", run_state::running), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  EXPECT_EQ(q.next_wakeup(), at(30s));

  q.enqueue(entry(2, "r", run_state::success), at(20s));
  EXPECT_THAT(q.take_superseded(), IsEmpty());
  auto jobs = start_some(q, at(20s));
  ASSERT_THAT(seqs(jobs), ElementsAre(2));
  EXPECT_FALSE(jobs[0].recheck);
  q.finished(jobs[0], delivered("running"), at(21s), 0.5);

  // The re-checks now follow write 2, counted from its delivery; none of 1 is left.
  EXPECT_EQ(q.next_wakeup(), at(51s));
  EXPECT_THAT(q.start_jobs(at(50s)), IsEmpty());
  jobs = start_some(q, at(51s));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_TRUE(jobs[0].recheck);
  EXPECT_EQ(jobs[0].entry.seq, 2);
  q.finished(jobs[0], delivered("finished"), at(52s), 0.5);
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
  EXPECT_THAT(q.take_settled().delivered, ElementsAre(1, 2));
}

TEST(DeliveryRecheck, NewerWriteThatDiesStillCancelsTheOlderReChecks) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r", run_state::running), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  q.enqueue(entry(2, "r", run_state::success), at(10s));
  q.finished(only_job(q, at(10s)), dead("HTTP 400 from W&B"), at(11s), 0.5);
  EXPECT_EQ(q.take_settled().dead.size(), 1u);
  // Re-applying write 1 would put an older state back over the newer one.
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
  EXPECT_THAT(q.start_jobs(at(30s)), IsEmpty());
  EXPECT_THAT(q.start_jobs(at(700s)), IsEmpty());
}

TEST(DeliveryRecheck, NewerWriteWaitsForAReCheckInFlight) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  const auto recheck = start_some(q, at(30s));
  ASSERT_EQ(recheck.size(), 1u);
  ASSERT_TRUE(recheck[0].recheck);

  q.enqueue(entry(2, "r", run_state::success), at(31s));
  EXPECT_THAT(q.start_jobs(at(31s)), IsEmpty());  // one request per run
  q.finished(recheck[0], delivered("running"), at(32s), 0.5);
  const auto jobs = start_some(q, at(32s));
  ASSERT_THAT(seqs(jobs), ElementsAre(2));
  EXPECT_FALSE(jobs[0].recheck);
  q.finished(jobs[0], delivered("finished"), at(33s), 0.5);
  EXPECT_EQ(q.next_wakeup(), std::nullopt);  // no re-check of 1 survived
  EXPECT_THAT(q.take_settled().delivered, ElementsAre(1, 2));
}

TEST(DeliveryRecheck, FailedReCheckIsRetriedAsAReCheckAndNeverDeadLettered) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  EXPECT_THAT(q.take_settled().delivered, ElementsAre(1));

  auto jobs = start_some(q, at(30s));
  ASSERT_EQ(jobs.size(), 1u);
  q.finished(jobs[0], retry(), at(30s), 0.0);
  EXPECT_EQ(q.next_wakeup(), at(30500ms));
  jobs = start_some(q, at(30500ms));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_TRUE(jobs[0].recheck);
  EXPECT_EQ(jobs[0].entry.seq, 1);

  q.finished(jobs[0], dead("HTTP 400 from W&B"), at(31s), 0.0);
  const auto settled = q.take_settled();
  EXPECT_THAT(settled.dead, IsEmpty());
  EXPECT_THAT(settled.delivered, IsEmpty());
  EXPECT_EQ(q.dead(), 0u);
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
}

TEST(DeliveryRecheck, SuccessfulReCheckKeepsTheSchedule) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  auto jobs = start_some(q, at(30s));
  q.finished(jobs[0], retry(), at(30s), 0.0);
  jobs = start_some(q, q.next_wakeup().value());
  q.finished(jobs[0], delivered("running"), at(31s), 0.0);
  EXPECT_EQ(q.next_wakeup(), at(120s));  // the failed try did not shift the schedule
}

TEST(DeliveryConvergence, LiveWriteIsConvergingUntilWandbShowsTheRunFinished) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  auto settled = q.take_settled();
  EXPECT_THAT(settled.delivered, ElementsAre(1));
  EXPECT_THAT(settled.converging, ElementsAre(1));
  EXPECT_THAT(settled.converged, IsEmpty());
  EXPECT_EQ(settled.attempts.at(1), 1);
  q.finished(only_job(q, at(30s)), delivered("running"), at(30s), 0.5);
  EXPECT_THAT(q.take_settled().converged, IsEmpty());
  q.finished(only_job(q, at(120s)), delivered("finished"), at(120s), 0.5);
  settled = q.take_settled();
  EXPECT_THAT(settled.converged, ElementsAre(1));
  EXPECT_THAT(settled.delivered, IsEmpty());
}

TEST(DeliveryConvergence, WriteThatSawAFinishedRunNeverConverges) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("finished"), at(0s), 0.5);
  const auto settled = q.take_settled();
  EXPECT_THAT(settled.converging, IsEmpty());
  EXPECT_THAT(settled.converged, IsEmpty());
}

TEST(DeliveryConvergence, NewerWriteEndsTheOlderRowsConvergence) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  q.take_settled();
  q.enqueue(entry(2, "r", run_state::success), at(10s));
  EXPECT_THAT(q.take_settled().converged, ElementsAre(1));
}

TEST(DeliveryConvergence, GivingUpAfterRecheckForEndsIt) {
  delivery_policy p;
  p.recheck_for_s = 100;
  delivery_queue q{p};
  q.enqueue(entry(1, "r"), at(0s));
  q.finished(only_job(q, at(0s)), delivered("running"), at(0s), 0.5);
  q.take_settled();
  q.finished(only_job(q, at(30s)), delivered("running"), at(30s), 0.5);
  EXPECT_THAT(q.take_settled().converged, IsEmpty());
  q.finished(only_job(q, at(120s)), delivered("running"), at(120s), 0.5);
  EXPECT_THAT(q.take_settled().converged, ElementsAre(1));
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
}

TEST(DeliveryConvergence, ResumedBeforeTheFirstRecheckKeepsTheSchedule) {
  // Delivered 10 s before the restart: the first re-check is still 20 s away.
  delivery_queue q{delivery_policy{}};
  q.resume_rechecks(entry(7, "r", run_state::success), 10, at(1000s));
  EXPECT_EQ(q.next_wakeup(), at(1020s));
  const delivery_job job = only_job(q, at(1020s));
  EXPECT_TRUE(job.recheck);
  EXPECT_EQ(job.entry.seq, 7);
  EXPECT_EQ(job.entry.change.to, run_state::success);
  q.finished(job, delivered("finished"), at(1020s), 0.5);
  EXPECT_THAT(q.take_settled().converged, ElementsAre(7));
}

TEST(DeliveryConvergence, RecheckMissedWhileDownIsDoneAtOnceThenTheScheduleGoesOn) {
  // Delivered 50 s before the restart: the 30 s re-check came due meanwhile.
  delivery_queue q{delivery_policy{}};
  q.resume_rechecks(entry(7, "r"), 50, at(1000s));
  EXPECT_EQ(q.next_wakeup(), at(1000s));
  q.finished(only_job(q, at(1000s)), delivered("running"), at(1000s), 0.5);
  EXPECT_EQ(q.next_wakeup(), at(1070s));  // 120 s after the write
}

TEST(DeliveryConvergence, OverdueResumedRecheckIsDueAtOnce) {
  // sweepd was down from 100 s to 900 s after the write: the 600 s re-check is overdue.
  delivery_queue q{delivery_policy{}};
  q.resume_rechecks(entry(7, "r"), 900, at(5000s));
  EXPECT_EQ(q.next_wakeup(), at(5000s));
  q.finished(only_job(q, at(5000s)), delivered("running"), at(5000s), 0.5);
  EXPECT_EQ(q.next_wakeup(), at(5600s));
}

TEST(DeliveryConvergence, ResumePastTheRecheckPeriodConvergesAtOnce) {
  delivery_queue q{delivery_policy{}};
  q.resume_rechecks(entry(7, "r"), 2 * 86400, at(5000s));
  EXPECT_EQ(q.next_wakeup(), std::nullopt);
  EXPECT_THAT(q.take_settled().converged, ElementsAre(7));
}

TEST(DeliveryConvergence, ResumeBehindAPendingWriteConvergesAtOnce) {
  delivery_queue q{delivery_policy{}};
  q.enqueue(entry(8, "r", run_state::success), at(5000s));
  q.resume_rechecks(entry(7, "r"), 10, at(5000s));
  EXPECT_THAT(q.take_settled().converged, ElementsAre(7));
  const delivery_job job = only_job(q, at(5000s));
  EXPECT_FALSE(job.recheck);
  EXPECT_EQ(job.entry.seq, 8);
}

TEST(DeliveryRunInfo, ReportsFailedAttemptsAndTheLastErrorOfItsRun) {
  delivery_queue q{delivery_policy{}};
  EXPECT_EQ(q.run_info("r"), std::nullopt);
  q.enqueue(entry(1, "r"), at(0s));
  q.enqueue(entry(2, "other"), at(0s));
  auto jobs = start_some(q, at(0s));
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_TRUE(q.run_info("r")->in_flight);
  q.finished(jobs[0], retry(), at(1s), 0.0);
  q.finished(jobs[1], delivered("finished"), at(1s), 0.0);
  const auto info = q.run_info("r");
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->in_flight);
  EXPECT_EQ(info->failed_attempts, 1);
  EXPECT_EQ(info->last_error, "HTTP 503 from W&B");
  EXPECT_EQ(q.run_info("other"), std::nullopt);  // delivered: nothing left in memory
  q.finished(only_job(q, *q.next_wakeup()), delivered("finished"), at(2s), 0.0);
  EXPECT_EQ(q.take_settled().attempts.at(1), 2);
}

TEST(DeliveryStates, FinishedWandbStates) {
  for (const char* s : {"finished", "crashed", "failed", "killed"}) {
    EXPECT_TRUE(is_finished_wandb_state(s)) << s;
  }
  for (const char* s : {"running", "pending", "preempting", "", "Finished"}) {
    EXPECT_FALSE(is_finished_wandb_state(s)) << s;
  }
}

// ---------------------------------------------------------------------------------------------
// classify_http and Retry-After

const wall_time wall_origin = wall_time{} + std::chrono::seconds(1795900000);
// wall_origin is Sat, 28 Nov 2026 21:06:40 GMT.

TEST(ClassifyHttp, OkIsDelivered) {
  const attempt_result r = classify_http(200, std::nullopt, std::nullopt, "", wall_origin);
  EXPECT_EQ(r.what, attempt_result::kind::delivered);
  EXPECT_EQ(r.error, "");
  EXPECT_FALSE(r.rate_limited);
  EXPECT_EQ(r.retry_after_s, std::nullopt);
}

TEST(ClassifyHttp, GraphqlErrorsInA200AreDead) {
  const attempt_result r =
      classify_http(200, "5", std::nullopt, "[permission denied; run locked]", wall_origin);
  EXPECT_EQ(r.what, attempt_result::kind::dead);
  EXPECT_THAT(r.error, HasSubstr("permission denied; run locked"));
  EXPECT_EQ(r.retry_after_s, std::nullopt);
}

TEST(ClassifyHttp, NeverRetriedStatusesAreDead) {
  for (unsigned status : {400u, 401u, 403u, 404u, 409u, 410u, 413u, 422u, 501u}) {
    SCOPED_TRACE(status);
    const attempt_result r = classify_http(status, "5", "7", "", wall_origin);
    EXPECT_EQ(r.what, attempt_result::kind::dead);
    EXPECT_THAT(r.error, HasSubstr(std::to_string(status)));
    EXPECT_FALSE(r.rate_limited);
    EXPECT_EQ(r.retry_after_s, std::nullopt);
  }
}

TEST(ClassifyHttp, UnauthorizedNamesTheKeyButNeverShowsOne) {
  const attempt_result r = classify_http(401, std::nullopt, std::nullopt, "", wall_origin);
  EXPECT_EQ(r.what, attempt_result::kind::dead);
  EXPECT_THAT(r.error, HasSubstr("API key"));
  EXPECT_THAT(r.error, Not(HasSubstr("api:")));
  EXPECT_THAT(r.error, Not(HasSubstr("Basic")));
}

TEST(ClassifyHttp, TransientStatusesAreRetried) {
  for (unsigned status : {408u, 429u, 500u, 502u, 503u, 504u}) {
    SCOPED_TRACE(status);
    const attempt_result r = classify_http(status, std::nullopt, std::nullopt, "", wall_origin);
    EXPECT_EQ(r.what, attempt_result::kind::retry);
    EXPECT_THAT(r.error, HasSubstr(std::to_string(status)));
    EXPECT_EQ(r.rate_limited, status == 429);
    EXPECT_EQ(r.retry_after_s, std::nullopt);
  }
}

TEST(ClassifyHttp, RetryAfterSeconds) {
  EXPECT_EQ(classify_http(503, "2", std::nullopt, "", wall_origin).retry_after_s, 2.0);
  EXPECT_EQ(classify_http(429, "1.5", std::nullopt, "", wall_origin).retry_after_s, 1.5);
  EXPECT_EQ(classify_http(429, "0", std::nullopt, "", wall_origin).retry_after_s, 0.0);
}

// A proxy's error page served as 200 is an outage, not W&B refusing the write.
TEST(ClassifyHttp, TwoHundredWhoseBodyIsNotJsonIsRetried) {
  const attempt_result r = classify_http(200, std::nullopt, std::nullopt, "", wall_origin, false);
  EXPECT_EQ(r.what, attempt_result::kind::retry);
  EXPECT_EQ(r.error, "W&B answered 200 with a body that is not JSON");
  EXPECT_FALSE(r.rate_limited);
  EXPECT_EQ(r.retry_after_s, std::nullopt);
  EXPECT_EQ(classify_http(200, "4", std::nullopt, "", wall_origin, false).retry_after_s, 4.0);
  // Statuses that are never retried stay so whatever their body.
  EXPECT_EQ(classify_http(401, std::nullopt, std::nullopt, "", wall_origin, false).what,
            attempt_result::kind::dead);
  EXPECT_EQ(classify_http(503, std::nullopt, std::nullopt, "", wall_origin, false).what,
            attempt_result::kind::retry);
}

TEST(ClassifyHttp, RetryAfterHttpDateIsRelativeToNow) {
  const auto r = classify_http(503, "Sat, 28 Nov 2026 21:08:10 GMT", std::nullopt, "", wall_origin);
  ASSERT_TRUE(r.retry_after_s.has_value());
  EXPECT_DOUBLE_EQ(*r.retry_after_s, 90.0);
  const auto past = classify_http(503, "Sun, 06 Nov 1994 08:49:37 GMT", "30", "", wall_origin);
  EXPECT_EQ(past.retry_after_s, 0.0);  // readable, so RateLimit-Reset is not used
}

TEST(ClassifyHttp, RateLimitResetWhenRetryAfterIsAbsentOrUnreadable) {
  EXPECT_EQ(classify_http(429, std::nullopt, "30", "", wall_origin).retry_after_s, 30.0);
  EXPECT_EQ(classify_http(429, "soon", "30", "", wall_origin).retry_after_s, 30.0);
  EXPECT_EQ(classify_http(429, "", "12.5", "", wall_origin).retry_after_s, 12.5);
  EXPECT_EQ(classify_http(429, "5", "30", "", wall_origin).retry_after_s, 5.0);
  EXPECT_EQ(classify_http(429, "soon", "later", "", wall_origin).retry_after_s, std::nullopt);
  EXPECT_TRUE(classify_http(429, "soon", "later", "", wall_origin).rate_limited);
}

TEST(RetryAfter, DeltaSeconds) {
  EXPECT_EQ(parse_retry_after("2", wall_origin), 2.0);
  EXPECT_EQ(parse_retry_after("1.5", wall_origin), 1.5);
  EXPECT_EQ(parse_retry_after("0", wall_origin), 0.0);
  EXPECT_EQ(parse_retry_after("120", wall_origin), 120.0);
}

TEST(RetryAfter, HttpDate) {
  EXPECT_EQ(parse_retry_after("Sat, 28 Nov 2026 21:08:10 GMT", wall_origin), 90.0);
  EXPECT_EQ(parse_retry_after("Sat, 28 Nov 2026 21:06:40 GMT", wall_origin), 0.0);
  // Sub-second "now": the date is whole seconds.
  const auto r = parse_retry_after("Sat, 28 Nov 2026 21:08:10 GMT", wall_origin + 250ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_NEAR(*r, 89.75, 1e-9);
  // The RFC 9110 example, ten seconds ahead of now.
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT",
                              wall_time{} + std::chrono::seconds(784111777) - 10s),
            10.0);
}

TEST(RetryAfter, DateInThePastIsZero) {
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", wall_origin), 0.0);
  EXPECT_EQ(parse_retry_after("Sat, 28 Nov 2026 21:06:39 GMT", wall_origin), 0.0);
}

TEST(RetryAfter, GarbageIsUnreadable) {
  for (const char* v : {"", "soon", "-1", "1s", "nan", "inf", "2 s", "Sat, 28 Nov 2026",
                        "Sat, 28 Nov 2026 21:08:10 PST", "2026-11-28T21:08:10Z",
                        "Sat, 28 Nov 2026 21:08:10 GMT trailing"}) {
    EXPECT_EQ(parse_retry_after(v, wall_origin), std::nullopt) << '"' << v << '"';
  }
}

}  // namespace
}  // namespace sweepd::core
