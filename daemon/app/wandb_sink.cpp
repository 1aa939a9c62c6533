#include "app/wandb_sink.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/wandb_summary.hpp"
#include "io/credentials.hpp"

namespace sweepd::app {

namespace {

using asio::as_tuple;
using asio::use_awaitable;

std::chrono::milliseconds timeout_of(const core::config& cfg) {
  return std::chrono::milliseconds(static_cast<long>(cfg.wandb.request_timeout * 1000));
}

void rethrow_if_failed(const std::exception_ptr& e) {
  if (e) std::rethrow_exception(e);
}

}  // namespace

wandb_sink::wandb_sink(asio::io_context& io, io::journal& journal, io::clock& time)
    : io_(io), journal_(journal), clock_(time), wake_(io) {}

core::delivery_policy wandb_sink::policy_from(const core::config& cfg) const {
  if (policy_override_) return *policy_override_;
  core::delivery_policy p;
  p.max_in_flight = cfg.wandb.max_in_flight;
  p.run_not_found_grace_s = cfg.wandb.run_not_found_grace;
  return p;
}

void wandb_sink::override_policy(core::delivery_policy policy) {
  policy_override_ = policy;
  queue_.set_policy(std::move(policy));
}

core::result<wandb_setup> resolve_wandb(const core::config& cfg, const io::env_lookup& env) {
  using mode = core::config::wandb_mode;
  wandb_setup out;
  if (cfg.wandb.mode == mode::disabled || cfg.wandb.mode == mode::offline) {
    out.mode = cfg.wandb.mode;
    return out;
  }
  out.base_text = io::base_url_from(cfg.wandb.base_url, env);
  out.base = io::parse_url(out.base_text);
  if (!out.base) {
    return core::failure{"wandb.base_url '" + out.base_text +
                         "' is not an http:// or https:// URL"};
  }
  const auto key = io::find_api_key(cfg.wandb.api_key_file, *out.base, env);
  if (!key) return key.error();
  if (!*key) {
    if (cfg.wandb.mode == mode::online) {
      return core::failure{
          "wandb.mode is online but no W&B API key was found ($WANDB_API_KEY, "
          "wandb.api_key_file, $CREDENTIALS_DIRECTORY/wandb-api-key, ~/.netrc)"};
    }
    out.mode = mode::offline;
    return out;
  }
  out.mode = mode::online;
  out.key = (*key)->key;
  out.key_source = (*key)->source;
  return out;
}

core::result<void> wandb_sink::start(const core::config& cfg, const io::env_lookup& env) {
  prefix_ = cfg.wandb.summary_prefix;
  state_names_ = cfg.wandb.state_names;
  queue_.set_policy(policy_from(cfg));
  auto resolved = resolve_wandb(cfg, env);
  if (!resolved) return resolved.error();
  const wandb_setup& setup = *resolved;
  mode_ = setup.mode;
  if (setup.mode != core::config::wandb_mode::online) {
    if (cfg.wandb.mode == core::config::wandb_mode::auto_) {
      spdlog::info("W&B: no API key found, mode offline (writes wait in the outbox)");
    }
    return {};
  }
  client_ =
      std::make_unique<io::wandb_client>(io_, *setup.base, *setup.key, timeout_of(cfg), clock_);
  spdlog::info("W&B: online at {} (key from {})", setup.base_text, setup.key_source);
  const auto now = clock_.mono();
  for (core::outbox_entry& e : journal_.pending_outbox()) queue_.enqueue(std::move(e), now);
  // Re-checks of writes that W&B may still overwrite resume where they were: a live run that
  // overwrote protein.state around a restart is put right.
  const auto wall_now = clock_.wall();
  for (io::journal::outbox_row& row : journal_.converging_outbox()) {
    const double since =
        row.delivered_at ? core::seconds_d(wall_now - *row.delivered_at).count() : 0.0;
    queue_.resume_rechecks(std::move(row.entry), since, now);
  }
  settle();
  asio::co_spawn(io_, loop(), rethrow_if_failed);
  return {};
}

void wandb_sink::reconfigure(const core::config& cfg) {
  prefix_ = cfg.wandb.summary_prefix;
  state_names_ = cfg.wandb.state_names;
  queue_.set_policy(policy_from(cfg));
  if (client_) client_->set_timeout(timeout_of(cfg));
  wake_.cancel();
}

void wandb_sink::enqueue(std::vector<core::outbox_entry> entries) {
  if (!online()) return;
  const auto now = clock_.mono();
  for (core::outbox_entry& e : entries) queue_.enqueue(std::move(e), now);
  settle();
  wake_.cancel();
}

void wandb_sink::stop(std::function<void()> on_idle) {
  stopping_ = true;
  on_idle_ = std::move(on_idle);
  wake_.cancel();
  if (client_) client_->close();
  if (active_ == 0 && on_idle_) asio::post(io_, std::exchange(on_idle_, nullptr));
}

nlohmann::json wandb_sink::status() const {
  nlohmann::json s = {{"mode", mode()},
                      {"pending", journal_.outbox_pending()},
                      {"in_flight", queue_.in_flight()},
                      {"dead", journal_.outbox_dead()}};
  if (!queue_.last_error().empty()) s["last_error"] = queue_.last_error();
  return s;
}

asio::awaitable<void> wandb_sink::loop() {
  while (!stopping_) {
    for (core::delivery_job& job : queue_.start_jobs(clock_.mono())) {
      asio::co_spawn(io_, perform(std::move(job)), rethrow_if_failed);
    }
    wake_.expires_at(clock_.expiry_for(queue_.next_wakeup().value_or(core::mono_time::max())));
    co_await wake_.async_wait(as_tuple(use_awaitable));
  }
}

asio::awaitable<void> wandb_sink::perform(core::delivery_job job) {
  ++active_;
  core::attempt_result result = co_await attempt(job);
  --active_;
  if (result.what != core::attempt_result::kind::delivered) {
    spdlog::debug("W&B write for run {} (transition {}): {}", job.entry.run, job.entry.seq,
                  result.error);
  }
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  queue_.finished(job, result, clock_.mono(), unit(jitter_));
  // Recorded while stopping too: a write that landed during the shutdown grace is not sent again.
  settle();
  if (stopping_) {
    if (active_ == 0 && on_idle_) std::exchange(on_idle_, nullptr)();
    co_return;
  }
  wake_.cancel();
}

asio::awaitable<core::attempt_result> wandb_sink::attempt(const core::delivery_job& job) {
  const core::outbox_entry& e = job.entry;
  if (e.entity.empty() || e.project.empty()) {
    core::attempt_result r;
    r.what = core::attempt_result::kind::dead;
    r.error = "run " + e.run +
              " has no W&B entity/project (set wandb.entity/wandb.project or "
              "send them at register)";
    co_return r;
  }
  const auto read_started = clock_.mono();
  auto [read, run] = co_await client_->read_run(e.entity, e.project, e.run);
  note_request("read_run", read, read_started);
  if (!run) co_return read;
  const nlohmann::json keys = core::summary_keys_for(e.change, state_names_);
  if (job.recheck && core::summary_state(run->summary_text, prefix_) == keys["state"]) {
    co_return read;  // still right: nothing to re-apply
  }
  const core::summary_merge merged = core::merge_summary(run->summary_text, keys, prefix_);
  if (!merged.text) {
    core::attempt_result r;
    r.what = core::attempt_result::kind::dead;
    r.error = "run " + e.run + ": " + merged.error;
    co_return r;
  }
  const auto write_started = clock_.mono();
  core::attempt_result written = co_await client_->write_summary(*run, *merged.text);
  note_request("write_summary", written, write_started);
  written.wandb_state = run->state;
  co_return written;
}

void wandb_sink::note_request(std::string_view request, const core::attempt_result& result,
                              core::mono_time started) {
  if (metrics_ == nullptr) return;
  metrics_->wandb_request(request, result, core::seconds_between(started, clock_.mono()));
}

void wandb_sink::settle() {
  const auto superseded = queue_.take_superseded();
  const auto settled = queue_.take_settled();
  for (const core::dead_letter& d : settled.dead) {
    spdlog::warn("W&B write for run {} dead-lettered (transition {}): {}", d.run, d.seq, d.reason);
  }
  if (auto stored = journal_.settle(settled, superseded, clock_.wall()); !stored) {
    // The rows stay pending on disk: after a restart they are sent again (at-least-once).
    spdlog::error("recording W&B deliveries in the journal failed: {}", stored.error().message);
  }
}

nlohmann::json wandb_sink::delivery_of(const core::run_record& run) {
  const io::journal::run_delivery stored = journal_.delivery_of(run.id);
  nlohmann::json j = {{"status", stored.latest_status.empty() ? "none" : stored.latest_status},
                      {"pending", stored.pending},
                      {"dead", stored.dead},
                      {"attempts", stored.attempts}};
  if (stored.last_error) j["last_error"] = *stored.last_error;
  if (stored.last_delivered_at)
    j["last_delivered_at"] = core::format_utc(*stored.last_delivered_at);
  bool converging = stored.converging;
  if (const auto live = queue_.run_info(run.id)) {
    // What is in flight or being retried is known only in memory.
    if (live->in_flight) j["in_flight"] = true;
    if (stored.latest_status == "pending") j["attempts"] = live->failed_attempts;
    if (!live->last_error.empty()) j["last_error"] = live->last_error;
    converging = converging || live->converging;
  }
  if (converging) j["converging"] = true;
  if (!online()) j["mode"] = mode();
  return j;
}

core::result<void> wandb_sink::resync(const core::run_record& run) {
  auto queued = journal_.requeue_latest(run);
  if (!queued) return queued.error();
  std::vector<core::outbox_entry> entries;
  entries.push_back(std::move(*queued));
  enqueue(std::move(entries));
  return {};
}

}  // namespace sweepd::app
