#include "app/reconciler.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <unordered_set>

namespace sweepd::app {

namespace {

using asio::as_tuple;
using asio::use_awaitable;
using json = nlohmann::json;

/// Runs W&B lists per page (its API takes up to a few hundred; 100 keeps one answer small).
constexpr int per_page = 100;
/// A page that W&B fails transiently is asked again this often before the listing gives up.
constexpr int page_attempts = 3;
constexpr auto page_retry_pause = std::chrono::milliseconds(500);
/// Adopted runs stored per transaction: other clients are served between batches (10 000 in
/// one transaction held the loop for 280 ms).
constexpr std::size_t adopt_batch = 512;
/// Rows a reply lists; the counts always cover every run.
constexpr std::size_t max_reply_rows = 10000;

std::string describe_counts(const std::map<std::string, std::size_t>& counts) {
  std::string text;
  for (const auto& [key, n] : counts) {
    if (!text.empty()) text += ", ";
    text += fmt::format("{} {}", n, key);
  }
  return text.empty() ? "nothing listed" : text;
}

/// Decisions per action, with every action present.
std::map<std::string_view, std::size_t> count_actions(
    const std::vector<core::reconcile_decision>& decisions) {
  using action = core::reconcile_decision::action;
  std::map<std::string_view, std::size_t> counts;
  for (action a : {action::adopt, action::repair, action::skip}) counts[core::to_string(a)] = 0;
  for (const core::reconcile_decision& d : decisions) ++counts[core::to_string(d.what)];
  return counts;
}

}  // namespace

json reconcile_reply(const std::vector<core::reconcile_decision>& decisions,
                     const core::reconcile_rules& rules, bool applied, std::size_t max_rows) {
  json rows = json::array();
  for (const core::reconcile_decision& d : decisions) {
    if (rows.size() >= max_rows) break;
    json row = {{"run", d.run},
                {"wandb_state", d.wandb_state},
                {"summary_state", d.summary_state ? json(*d.summary_state) : json()},
                {"heartbeat_at", d.heartbeat_at ? json(core::format_utc(*d.heartbeat_at)) : json()},
                {"action", core::to_string(d.what)},
                {"state", d.state ? json(core::to_string(*d.state)) : json()},
                {"reason", d.reason}};
    rows.push_back(std::move(row));
  }
  json counts = json::object();
  for (const auto& [key, n] : core::count_decisions(decisions)) counts[key] = n;
  return {{"sweep", rules.sweep},
          {"entity", rules.entity},
          {"project", rules.project},
          {"apply", applied},
          {"runs", std::move(rows)},
          {"counts", std::move(counts)},
          {"truncated", decisions.size() > max_rows}};
}

reconciler::reconciler(asio::io_context& io, core::supervisor& runs, wandb_sink& sink,
                       commit_fn commit, io::clock& time)
    : io_(io), runs_(runs), sink_(sink), commit_(std::move(commit)), clock_(time), timer_(io) {}

void reconciler::stop() {
  stopping_ = true;
  timer_.cancel();
}

json reconciler::status() const {
  json s = {{"passes", passes_}, {"adopted", adopted_}, {"errors", errors_}};
  s["last_pass_at"] = last_pass_at_ ? json(core::format_utc(*last_pass_at_)) : json();
  if (!last_error_.empty()) s["last_error"] = last_error_;
  return s;
}

asio::awaitable<core::result<std::vector<core::reconcile_decision>, core::error>>
reconciler::list_and_classify(const core::reconcile_rules& rules, const core::config& cfg) {
  std::vector<core::reconcile_decision> decisions;
  io::wandb_client* client = sink_.client();
  if (client == nullptr) {
    co_return core::error{core::error_code::unavailable,
                          fmt::format("W&B is {} here; reconcile reads W&B, it needs wandb.mode "
                                      "online and an API key",
                                      sink_.mode())};
  }
  const std::string filter = core::reconcile_filter(rules.sweep, rules.prefix,
                                                    core::live_summary_names(rules.state_names));
  std::optional<std::string> cursor;
  for (std::size_t page = 0;; ++page) {
    std::optional<io::wandb_runs_page> got;
    core::attempt_result result;
    for (int attempt = 1; attempt <= page_attempts && !stopping_; ++attempt) {
      const auto started = clock_.mono();
      std::tie(result, got) =
          co_await client->list_runs(rules.entity, rules.project, filter, cursor, per_page);
      if (metrics_ != nullptr) {
        const double took = core::seconds_between(started, clock_.mono());
        if (got) {
          metrics_->wandb_request_ok("list_runs", took);
        } else {
          metrics_->wandb_request("list_runs", result, took);
        }
      }
      if (got || result.what != core::attempt_result::kind::retry) break;
      asio::steady_timer pause(io_, page_retry_pause * attempt);  // not timer_: passes overlap
      co_await pause.async_wait(as_tuple(use_awaitable));
    }
    if (!got) {
      co_return core::error{
          core::error_code::unavailable,
          fmt::format("listing the runs of sweep {} in {}/{} failed at page {}: {}; nothing was "
                      "changed",
                      rules.sweep, rules.entity, rules.project, page + 1,
                      result.error.empty() ? "W&B did not answer" : result.error)};
    }
    // Classified page by page, so the summaries need not be kept; what sweepd knows is looked
    // at again when the decisions are applied.
    const core::wall_time now = clock_.wall();
    for (const core::wandb_listed_run& listed : got->runs) {
      decisions.push_back(
          core::classify_for_reconcile(listed, runs_.find(listed.name), rules, now));
    }
    if (!got->next_cursor || decisions.size() >= cfg.state.max_runs) break;
    cursor = got->next_cursor;
  }
  co_return decisions;
}

asio::awaitable<core::result<std::size_t, core::error>> reconciler::apply(
    std::vector<core::reconcile_decision>& decisions, const core::caller& who) {
  using action = core::reconcile_decision::action;
  std::size_t adopted_total = 0;
  std::vector<core::run_change> batch;
  // Stores a batch in one transaction, then applies it; the loop serves other clients between
  // batches. Nothing is applied that was not stored.
  const auto store = [&]() -> bool {
    if (batch.empty()) return true;
    if (!commit_(batch)) return false;
    for (core::run_change& c : batch) runs_.apply(std::move(c));
    adopted_total += batch.size();
    batch.clear();
    return true;
  };
  std::unordered_set<std::string> planned;
  for (core::reconcile_decision& d : decisions) {
    if (d.what != action::adopt) continue;
    if (const core::run_record* known = runs_.find(d.run); known || planned.contains(d.run)) {
      // Its worker talked to sweepd while W&B was being read: sweepd's own state stands.
      const bool final = known && is_terminal(known->state);
      d.what = final ? action::repair : action::skip;
      d.reason = final ? "final_in_sweepd" : "live_in_sweepd";
      if (known) d.state = known->state;
      continue;
    }
    const core::instant now = clock_.now();
    core::outcome o = runs_.plan_adopt(d.adopted, who, now);
    if (!o.ok()) {
      co_return core::error{o.err.code, fmt::format("{} ({} runs were adopted before)",
                                                    o.err.message, adopted_total)};
    }
    planned.insert(d.run);
    batch.push_back(std::move(*o.change));
    if (batch.size() >= adopt_batch) {
      if (!store()) break;
      co_await asio::post(io_, use_awaitable);
    }
  }
  if (!store()) {
    co_return core::error{core::error_code::internal,
                          fmt::format("sweepd could not store the adopted runs ({} were stored "
                                      "before; see the daemon's log); apply again to adopt the "
                                      "rest",
                                      adopted_total)};
  }
  for (const core::reconcile_decision& d : decisions) {
    if (d.what != action::repair) continue;
    if (const core::run_record* known = runs_.find(d.run)) {
      if (auto queued = sink_.resync(*known); !queued) {
        spdlog::error("reconcile: re-queueing run {} failed: {}", d.run, queued.error().message);
      }
    }
  }
  co_return adopted_total;
}

asio::awaitable<core::result<json, core::error>> reconciler::run(core::reconcile_request r,
                                                                 core::caller who,
                                                                 core::config cfg) {
  core::reconcile_rules rules;
  rules.prefix = cfg.wandb.summary_prefix;
  rules.state_names = cfg.wandb.state_names;
  rules.stale_after_s = r.stale_after_s.value_or(cfg.reconcile.stale_after);
  rules.sweep = r.sweep;
  rules.entity = r.entity.value_or(cfg.wandb.entity);
  rules.project = r.project.value_or(cfg.wandb.project);
  if (rules.entity.empty() || rules.project.empty()) {
    co_return core::error{core::error_code::bad_request,
                          "reconcile needs the W&B entity and project: give 'entity' and "
                          "'project', or set wandb.entity and wandb.project"};
  }
  auto listed = co_await list_and_classify(rules, cfg);
  if (!listed) co_return listed.error();
  auto& decisions = *listed;
  if (r.apply) {
    auto applied = co_await apply(decisions, who);
    if (!applied) co_return applied.error();
    adopted_ += *applied;
    if (metrics_ != nullptr) {
      for (const auto& [action, n] : count_actions(decisions)) metrics_->reconciled(action, n);
    }
  }
  // In place: a json converts to almost anything, core::error included, so the result cannot
  // tell by itself which side it is.
  co_return core::result<json, core::error>(
      boost::system::in_place_value, reconcile_reply(decisions, rules, r.apply, max_reply_rows));
}

asio::awaitable<void> reconciler::periodic(std::function<const core::config&()> config) {
  while (!stopping_) {
    timer_.expires_at(
        clock_.expiry_for(clock_.mono() + core::to_duration(config().reconcile.interval)));
    co_await timer_.async_wait(as_tuple(use_awaitable));
    if (stopping_) break;
    // A copy on purpose: a reload may replace the config while W&B is read.
    // NOLINTNEXTLINE(performance-unnecessary-copy-initialization)
    const core::config cfg = config();
    if (cfg.reconcile.sweeps.empty() || sink_.client() == nullptr) continue;
    for (const auto& entry : cfg.reconcile.sweeps) {
      core::reconcile_request r;
      r.sweep = entry.sweep_id;
      if (!entry.entity.empty()) r.entity = entry.entity;
      if (!entry.project.empty()) r.project = entry.project;
      r.apply = true;
      const auto before = adopted_;
      auto result = co_await run(r, core::caller{0, 0, true}, cfg);
      if (stopping_) co_return;
      if (metrics_ != nullptr) metrics_->reconcile_pass(result.has_value());
      if (!result) {
        ++errors_;
        last_error_ = result.error().message;
        spdlog::warn("reconcile of sweep {}: {} (tried again next pass)", entry.sweep_id,
                     result.error().message);
        continue;
      }
      const json& body = *result;
      std::map<std::string, std::size_t> counts;
      for (const auto& [key, n] : body["counts"].items()) counts[key] = n.get<std::size_t>();
      spdlog::info("reconcile of sweep {} in {}/{}: {}; {} adopted", entry.sweep_id,
                   body["entity"].get<std::string>(), body["project"].get<std::string>(),
                   describe_counts(counts), adopted_ - before);
    }
    ++passes_;
    last_pass_at_ = clock_.wall();
  }
}

}  // namespace sweepd::app
