#include "app/daemon.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>

#include "core/version.hpp"
#include "io/config_loader.hpp"
#include "io/logging.hpp"
#include "io/systemd.hpp"

namespace sweepd::app {

namespace {

using asio::as_tuple;
using asio::use_awaitable;

/// Runs marked `timeout` per turn of the event loop.
constexpr std::size_t expire_batch = 2048;

io::control_server_options server_options(const core::config& cfg) {
  return {cfg.socket.path, cfg.socket.mode, cfg.socket.group, cfg.socket.max_connections,
          cfg.socket.max_line_bytes};
}

/// "run ab12: running -> success (completed) objective=0.93 cost=3600.5"
std::string describe(const core::transition& t) {
  std::string line = fmt::format("run {}: {} -> {} ({})", t.run,
                                 t.from ? core::to_string(*t.from) : std::string_view("new"),
                                 core::to_string(t.to), core::to_string(t.reason));
  if (t.objective) line += fmt::format(" objective={}", *t.objective);
  if (t.cost) line += fmt::format(" cost={:.3f}", *t.cost);
  if (t.late_by_s) line += fmt::format(" late_by_s={:.3f}", *t.late_by_s);
  if (t.error) line += fmt::format(" error={:?}", t.error->substr(0, 200));
  return line;
}

void rethrow_if_failed(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);  // a bug: io_.run() throws, main logs it and exits non-zero
}

}  // namespace

core::supervisor_limits limits_from(const core::config& cfg) {
  return {cfg.timeouts.heartbeat, cfg.timeouts.max_runtime, cfg.timeouts.stall,
          cfg.state.max_runs,     cfg.wandb.entity,         cfg.wandb.project};
}

std::string effective_wandb_mode(const core::config& cfg) {
  return cfg.wandb.mode == core::config::wandb_mode::disabled ? "disabled" : "offline";
}

daemon::daemon(core::config cfg, std::string config_path)
    : cfg_(std::move(cfg)),
      config_path_(std::move(config_path)),
      runs_(limits_from(cfg_)),
      service_(runs_, core::version, core::mono_clock::now(), [this] { return stats(); }),
      server_(io_, server_options(cfg_),
              [this](std::string_view line, const io::peer_credentials& peer) {
                return on_line(line, peer);
              }),
      deadline_timer_(io_),
      signals_(io_, SIGTERM, SIGINT, SIGHUP) {}

std::optional<std::string> daemon::open() {
  if (cfg_.wandb.mode == core::config::wandb_mode::online) {
    spdlog::warn(
        "wandb.mode is online, but this build does not deliver to W&B yet: transitions wait in "
        "the outbox (mode offline)");
  }
  return server_.open();
}

int daemon::run() {
  server_.start();
  asio::co_spawn(io_, deadline_loop(), rethrow_if_failed);
  asio::co_spawn(io_, signal_loop(), rethrow_if_failed);
  spdlog::info("sweepd {} ready on {} (heartbeat timeout {}s, W&B {})", core::version,
               server_.path(), cfg_.timeouts.heartbeat, effective_wandb_mode(cfg_));
  io::notify_ready();
  io_.run();
  spdlog::info("sweepd stopped");
  return 0;
}

void daemon::stop() {
  if (stopping_) return;
  stopping_ = true;
  io::notify_stopping();
  server_.stop();
  signals_.cancel();
  deadline_timer_.cancel();
}

core::instant daemon::now() const {
  return {core::mono_clock::now(), std::chrono::system_clock::now()};
}

core::caller daemon::caller_of(const io::peer_credentials& peer) const {
  const auto& admins = cfg_.socket.admin_uids;
  const bool admin =
      peer.uid == 0 || std::find(admins.begin(), admins.end(), peer.uid) != admins.end();
  return {peer.uid, peer.pid, admin};
}

core::daemon_stats daemon::stats() const {
  core::daemon_stats s;
  s.connections = server_.connections();
  s.wandb = {{"mode", effective_wandb_mode(cfg_)},
             {"pending", outbox_.pending()},
             {"in_flight", 0},
             {"dead", 0}};
  return s;
}

std::string daemon::on_line(std::string_view line, const io::peer_credentials& peer) {
  core::handled h = service_.handle(line, caller_of(peer), now());
  if (h.result.change) {
    record(*h.result.change);
    rearm_if_earlier();
  }
  return std::move(h.reply);
}

void daemon::record(const core::transition& t) {
  spdlog::info("{}", describe(t));
  if (cfg_.wandb.mode != core::config::wandb_mode::disabled) outbox_.push(t);
}

void daemon::rearm_if_earlier() {
  const auto next = runs_.next_deadline();
  if (next && *next < armed_for_) deadline_timer_.cancel();
}

asio::awaitable<void> daemon::deadline_loop() {
  while (!stopping_) {
    const auto next = runs_.next_deadline();
    armed_for_ = next.value_or(core::mono_time::max());
    deadline_timer_.expires_at(armed_for_);
    co_await deadline_timer_.async_wait(as_tuple(use_awaitable));
    if (stopping_) break;
    // Woken early (a new, earlier deadline) or on time: either way expire what is due. In
    // batches: when many runs share a deadline, the next turn of the loop re-arms in the past
    // and requests queued meanwhile are served between batches.
    for (const core::transition& t : runs_.expire(now(), expire_batch)) record(t);
  }
}

asio::awaitable<void> daemon::signal_loop() {
  while (!stopping_) {
    auto [ec, signo] = co_await signals_.async_wait(as_tuple(use_awaitable));
    if (ec) break;
    if (signo == SIGHUP) {
      reload();
      continue;
    }
    spdlog::info("received {}, stopping", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    stop();
  }
}

void daemon::reload() {
  if (config_path_.empty()) {
    spdlog::info("SIGHUP: running on built-in defaults, nothing to reload");
    return;
  }
  io::notify_reloading();
  auto loaded = io::load_config_file(config_path_);
  if (!loaded.cfg) {
    for (const auto& e : loaded.errors) spdlog::error("reload refused: {}", e);
    spdlog::error("SIGHUP: {} is invalid; keeping the running config", config_path_);
  } else {
    apply_reloadable(*loaded.cfg);
    spdlog::info("SIGHUP: reloaded {}", config_path_);
  }
  io::notify_ready();
}

void daemon::apply_reloadable(const core::config& next) {
  const bool needs_restart =
      next.socket.path != cfg_.socket.path || next.socket.mode != cfg_.socket.mode ||
      next.socket.group != cfg_.socket.group || next.state.path != cfg_.state.path;
  if (needs_restart) {
    spdlog::warn("socket.path/mode/group and state.path changes take effect at the next restart");
  }
  core::config applied = next;
  applied.socket.path = cfg_.socket.path;
  applied.socket.mode = cfg_.socket.mode;
  applied.socket.group = cfg_.socket.group;
  applied.state.path = cfg_.state.path;
  cfg_ = std::move(applied);
  io::setup_logging(cfg_.log);
  runs_.set_limits(limits_from(cfg_));
  server_.set_limits(cfg_.socket.max_connections, cfg_.socket.max_line_bytes);
}

}  // namespace sweepd::app
