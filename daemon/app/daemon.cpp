#include "app/daemon.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <span>

#include "core/connection_limits.hpp"
#include "core/version.hpp"
#include "io/config_loader.hpp"
#include "io/logging.hpp"
#include "io/resource_limits.hpp"
#include "io/systemd.hpp"

namespace sweepd::app {

namespace {

using asio::as_tuple;
using asio::use_awaitable;

/// Runs marked `timeout` per turn of the event loop, each batch one transaction: sized after the
/// previous batch's time per run so that a batch takes about `expire_batch_time` (requests queued
/// behind it wait that long; fewer, larger batches pay fewer syncs), within these bounds.
constexpr std::size_t expire_batch_min = 256;
constexpr std::size_t expire_batch_max = 8192;
constexpr auto expire_batch_time = std::chrono::milliseconds(30);
/// How many due runs are listed at once to be timed out in id order, batch by batch.
constexpr std::size_t expiry_backlog_limit = 131072;
/// How long a stopping daemon waits for W&B requests in flight.
constexpr auto shutdown_grace = std::chrono::seconds(2);
/// The loop ticks this often; a gap between ticks over the threshold means it stood still (the
/// process was stopped or starved), and then it reads queued input for a moment before expiring
/// anything.
constexpr auto tick_interval = std::chrono::milliseconds(250);
constexpr auto stall_threshold = std::chrono::seconds(1);
constexpr auto stall_catch_up = std::chrono::milliseconds(500);
/// How long expiry waits after a failed commit before trying again.
constexpr auto storage_retry_pause = std::chrono::seconds(1);

/// The socket's limits as configured; max_connections is fitted to the open-files limit later.
io::control_server_limits configured_limits(const core::config& cfg) {
  io::control_server_limits limits;
  limits.max_connections = cfg.socket.max_connections;
  limits.max_connections_per_uid = cfg.socket.max_connections_per_uid;
  limits.max_line_bytes = cfg.socket.max_line_bytes;
  limits.admin_uids = cfg.socket.admin_uids;
  limits.admin_uids.push_back(0);
  return limits;
}

io::control_server_options server_options(const core::config& cfg) {
  io::control_server_options options;
  options.path = cfg.socket.path;
  options.mode = cfg.socket.mode;
  options.group = cfg.socket.group;
  options.limits = configured_limits(cfg);
  return options;
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

void rethrow_if_failed(const std::exception_ptr& e) {
  if (e) std::rethrow_exception(e);  // a bug: io_.run() throws, main logs it and exits non-zero
}

}  // namespace

core::supervisor_limits limits_from(const core::config& cfg) {
  return {cfg.timeouts.heartbeat, cfg.timeouts.max_runtime, cfg.timeouts.stall,
          cfg.state.max_runs,     cfg.wandb.entity,         cfg.wandb.project};
}

daemon::daemon(core::config cfg, std::string config_path, io::clock& time)
    : cfg_(std::move(cfg)),
      config_path_(std::move(config_path)),
      clock_(time),
      runs_(limits_from(cfg_)),
      service_(
          runs_, core::version, clock_.mono(), [this] { return stats(); },
          [this](const core::run_record& run) { return delivery_of(run); }),
      server_(io_, server_options(cfg_),
              [this](std::string_view line, const io::peer_credentials& peer, bool behind) {
                return answer(line, peer, behind);
              }),
      deadline_timer_(io_),
      retention_timer_(io_),
      tick_timer_(io_),
      shutdown_timer_(io_),
      signals_(io_, SIGTERM, SIGINT, SIGHUP),
      process_watch_(io_, [this](std::int32_t pid) { on_process_exit(pid); }),
      boot_id_(io::current_boot_id()),
      watchdog_timer_(io_) {
  clock_.on_moved([this] { on_clock_moved(); });
}

daemon::~daemon() { clock_.on_moved(nullptr); }

void daemon::on_clock_moved() {
  // A jump is not the loop standing still: no catch-up pause for it.
  last_tick_ = clock_.mono();
  deadline_timer_.cancel();
  retention_timer_.cancel();
  if (sink_) sink_->wake();
}

core::result<void> daemon::open() {
  const auto raised = io::raise_open_files_limit();
  const io::open_files_limit files = raised ? *raised : raised.error().unchanged;
  if (!raised) {
    spdlog::warn("cannot raise the open-files limit from {} to {} (its hard limit): {}", files.soft,
                 files.hard, raised.error().reason);
  } else if (files.soft != files.before) {
    spdlog::info("open-files limit raised from {} to {}", files.before, files.soft);
  } else {
    spdlog::info("open-files limit {}", files.soft);
  }
  fd_limit_ = files.soft;
  server_.set_limits(server_limits(cfg_));
  if (auto done = restore_from_journal(); !done) return done;
  sink_ = std::make_unique<wandb_sink>(io_, *journal_, clock_);
  if (auto started = sink_->start(cfg_); !started) return started;
  reconciler_ = std::make_unique<reconciler>(
      io_, runs_, *sink_,
      [this](std::span<const core::run_change> adopted) {
        commit_batch();  // what requests planned this turn first
        return store(adopted);
      },
      clock_);
  sink_->set_metrics(&metrics_);
  reconciler_->set_metrics(&metrics_);
  if (auto done = server_.open(); !done) return done;
  if (auto done = open_remote(); !done) return done;
  return open_metrics();
}

core::result<void> daemon::restore_from_journal() {
  const auto started = clock_.mono();
  auto opened = io::journal::open(cfg_.state.path);
  if (!opened) return opened.error();
  journal_ = std::move(*opened);
  auto loaded = journal_->load(now());
  if (!loaded) return loaded.error();
  io::journal::contents& contents = *loaded;
  for (const std::string& w : contents.warnings) spdlog::warn("{}: {}", cfg_.state.path, w);
  const core::instant restored_at = now();
  runs_.reserve(runs_.size() + contents.runs.size());
  for (core::run_record& r : contents.runs) {
    if (const core::run_record* restored = runs_.restore(std::move(r), restored_at)) {
      watch_process_of(*restored);
    }
  }
  contents.runs = {};  // the moved-from records, before anything else is allocated
  prune_expired_runs();
  spdlog::info("restored {} runs ({} live) and {} pending W&B writes from {} in {:.0f} ms",
               runs_.size(),
               runs_.counts()[static_cast<std::size_t>(core::run_state::initializing)] +
                   runs_.counts()[static_cast<std::size_t>(core::run_state::running)],
               journal_->outbox_pending(), cfg_.state.path,
               core::seconds_between(started, clock_.mono()) * 1000);
  return {};
}

void daemon::prune_expired_runs() {
  const auto cutoff =
      clock_.wall() - std::chrono::duration_cast<std::chrono::system_clock::duration>(
                          core::seconds_d(cfg_.state.retention));
  const auto pruned = runs_.prune(cutoff);
  if (pruned.empty()) return;
  if (auto done = journal_->prune(pruned); !done) {
    // Already forgotten in memory; the rows are pruned again after the next restart.
    spdlog::error("pruning {} runs from the journal failed: {}", pruned.size(),
                  done.error().message);
    return;
  }
  spdlog::info("pruned {} runs finished more than {}s ago (state.retention)", pruned.size(),
               cfg_.state.retention);
}

int daemon::run() {
  last_tick_ = clock_.mono();
  server_.start();
  asio::co_spawn(io_, deadline_loop(), rethrow_if_failed);
  asio::co_spawn(io_, signal_loop(), rethrow_if_failed);
  asio::co_spawn(io_, retention_loop(), rethrow_if_failed);
  asio::co_spawn(io_, tick_loop(), rethrow_if_failed);
  asio::co_spawn(io_, reconciler_->periodic([this]() -> const core::config& { return cfg_; }),
                 rethrow_if_failed);
  if (metrics_server_) metrics_server_->start();
  if (const auto watchdog = io::watchdog_interval()) {
    asio::co_spawn(io_, watchdog_loop(*watchdog), rethrow_if_failed);
  }
  spdlog::info("sweepd {} ready on {} (heartbeat timeout {}s, W&B {})", core::version,
               server_.path(), cfg_.timeouts.heartbeat, sink_->mode());
  if (tokens_) spdlog::info("remote workers on tls://{}", server_.remote_address());
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
  if (metrics_server_) metrics_server_->stop();
  watchdog_timer_.cancel();
  signals_.cancel();
  deadline_timer_.cancel();
  retention_timer_.cancel();
  tick_timer_.cancel();
  if (reconciler_) reconciler_->stop();
  process_watch_.stop();
  if (sink_ && sink_->online()) {
    // Stop at once when no W&B request is in flight. One in flight may take up to
    // wandb.request_timeout; what it carries stays pending in the journal, so it gets a moment
    // to land and then the loop stops regardless.
    sink_->stop([this] { io_.stop(); });
    shutdown_timer_.expires_after(shutdown_grace);
    shutdown_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) io_.stop();
    });
  }
}

io::control_server_limits daemon::server_limits(const core::config& cfg) const {
  io::control_server_limits limits = configured_limits(cfg);
  if (fd_limit_ == 0) return limits;
  const std::uint32_t fit = core::connections_within_fd_limit(fd_limit_, cfg.wandb.max_in_flight);
  if (fit < limits.max_connections) {
    spdlog::warn(
        "socket.max_connections lowered from {} to {}: the open-files limit is {} and each "
        "connection may take {} descriptors (a worker's socket and pidfd); raise LimitNOFILE= "
        "for more",
        limits.max_connections, fit, fd_limit_, core::descriptors_per_connection);
    limits.max_connections = fit;
  }
  return limits;
}

core::instant daemon::now() const { return clock_.now(); }

core::caller daemon::caller_of(const io::peer_credentials& peer) const {
  if (peer.remote) {
    const auto& admins = cfg_.remote.admin_principals;
    core::caller who(peer.uid, 0,
                     std::find(admins.begin(), admins.end(), peer.principal) != admins.end());
    who.principal = peer.principal;
    return who;
  }
  const auto& admins = cfg_.socket.admin_uids;
  const bool admin =
      peer.uid == 0 || std::find(admins.begin(), admins.end(), peer.uid) != admins.end();
  return {peer.uid, peer.pid, admin, peer.start_time, boot_id_};
}

core::daemon_stats daemon::stats() const {
  core::daemon_stats s;
  s.connections = server_.connections();
  if (sink_) s.wandb = sink_->status();
  if (reconciler_) s.reconcile = reconciler_->status();
  if (tokens_) {
    s.remote = {{"listen", server_.remote_address()},
                {"connections", server_.remote_connections()},
                {"principals", tokens_->size()}};
  }
  return s;
}

io::reply daemon::on_line(std::string_view line, const io::peer_credentials& peer,
                          bool behind_earlier) {
  const core::caller who = caller_of(peer);
  core::handled h = service_.handle(line, who, now());
  if (behind_earlier && must_follow_earlier(h)) return io::reply::after_earlier_replies();
  if (h.resync != nullptr) return resync(*h.resync);
  if (h.reconcile) return reconcile(std::move(*h.reconcile), who);
  if (h.result.change && batch_ && batch_->conflicts(*h.result.change)) {
    // A second change of one run (or of one new sweep) in a turn: the first is stored and
    // applied, and this one planned again against it.
    commit_batch();
    h = service_.handle(line, who, now());
  }
  if (!h.result.change) {
    // Heartbeats and reads never touch the disk, but a heartbeat's timeout_s can bring a deadline
    // forward without a transition: the timer must not stay armed for the later one.
    rearm_if_earlier();
    return std::move(h.reply);
  }
  io::peer_binding binding;
  if (h.result.change->created && h.result.change->created->watch_peer) {
    // Bound before anything is stored: a run bound to a process that is already gone would be
    // crashed at once, though its real worker (a child the connector handed the socket to) lives.
    binding = io::bind_connected_peer(peer.socket_fd, peer.pid, peer.start_time);
    if (binding.what == io::peer_binding::result::gone) {
      return core::error_reply(
          {core::error_code::bad_request,
           fmt::format("watch_peer: the process that opened this connection (pid {}) has exited; "
                       "process watch binds a run to the process that connected, so connect "
                       "from the worker itself",
                       peer.pid)});
    }
  }
  return batch(std::move(*h.result.change), std::move(h.reply), binding.pidfd);
}

bool daemon::must_follow_earlier(const core::handled& h) const {
  // Only a change of a run (or sweep) the batch does not touch yet may join it ahead of the
  // connection's waiting replies: anything else reads or builds on what they change, and a read
  // answered now would not see the connection's own writes.
  if (!h.result.change || h.resync != nullptr || h.reconcile) return true;
  return batch_ && batch_->conflicts(*h.result.change);
}

bool daemon::pending_batch::conflicts(const core::run_change& c) const {
  if (runs.contains(c.run)) return true;
  return c.created && !c.created->sweep.empty() && new_sweeps.contains(c.created->sweep);
}

io::reply daemon::batch(core::run_change c, std::string reply, int pidfd) {
  if (!batch_) {
    batch_ = std::make_unique<pending_batch>(io_);
    // Every change decoded in this turn of the loop, from every connection, is stored in one
    // transaction when the turn's ready work is done (group commit).
    asio::post(io_, [this] { commit_batch(); });
  }
  pending_batch& b = *batch_;
  const std::size_t index = b.changes.size();
  b.runs.insert(c.run);
  if (c.created && !c.created->sweep.empty() && !runs_.sweep_owner(c.created->sweep.str())) {
    b.new_sweeps.insert(c.created->sweep);
  }
  b.changes.push_back(std::move(c));
  b.pidfds.push_back(pidfd);
  b.result->replies.push_back(std::move(reply));
  // The reply goes out once the batch is stored (commit before reply); the connection's later
  // requests wait for it, others are served meanwhile.
  io::reply later;
  later.later = [result = b.result, index]() -> asio::awaitable<std::string> {
    if (!result->done) co_await result->stored.async_wait(as_tuple(use_awaitable));
    co_return std::move(result->replies[index]);
  };
  return later;
}

void daemon::commit_batch() {
  if (!batch_) return;
  const std::unique_ptr<pending_batch> b = std::move(batch_);
  if (store(b->changes)) {
    for (std::size_t i = 0; i < b->changes.size(); ++i) {
      const bool created = b->changes[i].created.has_value();
      const core::run_record& run = runs_.apply(std::move(b->changes[i]));
      if (created) {
        watch_process_of(run, b->pidfds[i]);
      } else if (b->pidfds[i] >= 0) {
        ::close(b->pidfds[i]);
      }
    }
  } else {
    for (int fd : b->pidfds) {
      if (fd >= 0) ::close(fd);
    }
    const std::string refused = core::error_reply(
        {core::error_code::internal,
         "sweepd could not store the transition; nothing was changed (see the daemon's log)"});
    for (std::string& reply : b->result->replies) reply = refused;
  }
  b->result->done = true;
  b->result->stored.cancel();
  rearm_if_earlier();
}

io::reply daemon::reconcile(core::reconcile_request r, const core::caller& who) {
  if (!sink_->online()) {
    return core::error_reply(
        {core::error_code::unavailable,
         fmt::format("W&B is {} here; reconcile reads W&B, it needs wandb.mode online and an "
                     "API key",
                     sink_->mode())});
  }
  io::reply later;
  later.later = [this, r = std::move(r), who]() -> asio::awaitable<std::string> {
    auto result = co_await reconciler_->run(r, who, cfg_);
    if (!result) co_return core::error_reply(result.error());
    co_return core::ok_reply(std::move(*result));
  };
  return later;
}

std::string daemon::resync(const core::run_record& run) {
  if (cfg_.wandb.mode == core::config::wandb_mode::disabled) {
    return core::error_reply({core::error_code::unavailable,
                              "wandb.mode is disabled: sweepd keeps no W&B writes to resync"});
  }
  if (auto queued = sink_->resync(run); !queued) {
    spdlog::error("resync of run {} could not be stored: {}", run.id, queued.error().message);
    return core::error_reply({core::error_code::internal,
                              "sweepd could not queue the W&B write; nothing was changed "
                              "(see the daemon's log)"});
  }
  spdlog::info("run {}: W&B summary queued again (resync, state {})", run.id,
               core::to_string(run.state));
  return core::ok_reply({{"run", run.id}, {"state", core::to_string(run.state)}, {"queued", true}});
}

nlohmann::json daemon::delivery_of(const core::run_record& run) {
  if (!sink_) return nlohmann::json::object();
  return sink_->delivery_of(run);
}

void daemon::watch_process_of(const core::run_record& run, int pidfd) {
  const bool live =
      run.state == core::run_state::initializing || run.state == core::run_state::running;
  if (!run.watch_peer || run.peer_pid <= 0 || !live) {
    if (pidfd >= 0) ::close(pidfd);
    return;
  }
  runs_by_pid_.emplace(run.peer_pid, run.id);
  if (!run.peer_boot_id.empty() && run.peer_boot_id != boot_id_) {
    // Registered before the machine rebooted: that process is gone, whatever has its pid now.
    asio::post(io_, [this, pid = run.peer_pid] { on_process_exit(pid); });
    return;
  }
  // A worker restored after a restart may have died meanwhile, and its pid been reused: the
  // start time stored with the run tells. Either way it is reported at once.
  process_watch_.watch(run.peer_pid, pidfd, run.peer_start_time);
}

void daemon::on_process_exit(std::int32_t pid) {
  const auto [first, last] = runs_by_pid_.equal_range(pid);
  std::vector<std::string> runs;
  for (auto it = first; it != last; ++it) runs.push_back(it->second);
  runs_by_pid_.erase(pid);
  commit_batch();  // what this turn decoded first: a run's own report wins over its crash
  for (const std::string& id : runs) {
    core::outcome o = runs_.plan_process_exited(id, now());
    if (!o.change) continue;  // already finished, or gone
    if (!store({&*o.change, 1})) {
      spdlog::error(
          "run {}: its process {} exited but the crash could not be stored; the run "
          "will time out instead",
          id, pid);
      continue;
    }
    runs_.apply(std::move(*o.change));
  }
  rearm_if_earlier();
}

bool daemon::store(std::span<const core::run_change> changes) {
  const bool to_outbox = cfg_.wandb.mode != core::config::wandb_mode::disabled;
  std::vector<core::outbox_entry> queued;
  if (auto committed = journal_commit(changes, to_outbox, &queued); !committed) {
    std::size_t held_back = 0;
    if (commit_errors_.allow(clock_.mono(), held_back)) {
      spdlog::error("storing {} transition(s) failed, nothing changed: {}{}", changes.size(),
                    committed.error().message,
                    held_back == 0 ? std::string()
                                   : fmt::format(" ({} more such failures not logged)", held_back));
    }
    journal_->reclaim_space();
    return false;
  }
  if (spdlog::should_log(spdlog::level::info)) {
    for (const core::run_change& c : changes) spdlog::info("{}", describe(c));
  }
  sink_->enqueue(std::move(queued));
  return true;
}

void daemon::rearm_if_earlier() {
  const auto next = runs_.next_deadline();
  if (next && *next < armed_for_) deadline_timer_.cancel();
}

asio::awaitable<void> daemon::deadline_loop() {
  while (!stopping_) {
    const auto next = runs_.next_deadline();
    armed_for_ = next.value_or(core::mono_time::max());
    deadline_timer_.expires_at(clock_.expiry_for(armed_for_));
    co_await deadline_timer_.async_wait(as_tuple(use_awaitable));
    if (stopping_) break;
    if (const auto until = catch_up_until(); until > clock_.mono()) {
      // The whole loop stood still (SIGSTOP, a paused VM, swapping): the heartbeats workers sent
      // meanwhile wait in socket buffers. Read them before judging anyone silent. No request may
      // cut the pause short (every overdue deadline is earlier than anything armed).
      armed_for_ = core::mono_time::min();
      deadline_timer_.expires_at(clock_.expiry_for(until));
      co_await deadline_timer_.async_wait(as_tuple(use_awaitable));
      if (stopping_) break;
    }
    // Woken early (a new, earlier deadline) or on time: either way expire what is due. In
    // batches, each one transaction (group commit): when many runs share a deadline, the next
    // turn of the loop re-arms in the past and requests queued meanwhile are served in between.
    commit_batch();  // requests decoded this turn first: a run's own report wins
    const core::instant marked = now();
    std::vector<core::run_change> due = plan_expiry_batch(marked);
    if (due.empty()) continue;
    const bool stored = store(due);
    size_next_expiry_batch(due.size(), clock_.mono() - marked.mono);
    if (!stored) {
      // Not stored, nothing changed, still due: try again after a pause rather than spinning on
      // a failing disk. The backlog is listed anew then, this batch included.
      expiry_backlog_.runs.clear();
      expiry_next_ = 0;
      deadline_timer_.expires_at(clock_.expiry_for(clock_.mono() + storage_retry_pause));
      co_await deadline_timer_.async_wait(as_tuple(use_awaitable));
      continue;
    }
    note_expired(due, marked.mono);
    for (core::run_change& c : due) runs_.apply(std::move(c));
  }
}

std::vector<core::run_change> daemon::plan_expiry_batch(core::instant marked) {
  std::vector<const core::run_record*>& listed = expiry_backlog_.runs;
  // Listed again when done, or when a run was pruned in between (the listing may point at it).
  if (expiry_next_ == listed.size() || !runs_.is_current(expiry_backlog_)) {
    expiry_backlog_ = runs_.due_runs(marked.mono, expiry_backlog_limit);
    expiry_next_ = 0;
  }
  const std::size_t n = std::min(expiry_batch_size_, listed.size() - expiry_next_);
  const std::span<const core::run_record* const> batch(listed.data() + expiry_next_, n);
  std::vector<core::run_change> due = runs_.plan_expiry_of(batch, marked);
  expiry_next_ += n;
  if (expiry_next_ == listed.size()) {
    listed.clear();
    expiry_next_ = 0;
  }
  return due;
}

void daemon::size_next_expiry_batch(std::size_t runs, core::mono_clock::duration took) {
  if (runs < expire_batch_min / 2) return;  // a small batch says little about a large one
  const double per_run_s =
      std::max(core::seconds_d(took).count(), 1e-9) / static_cast<double>(runs);
  const double fits = core::seconds_d(expire_batch_time).count() / per_run_s;
  expiry_batch_size_ = static_cast<std::size_t>(std::clamp(
      fits, static_cast<double>(expire_batch_min), static_cast<double>(expire_batch_max)));
}

core::mono_time daemon::catch_up_until() {
  // The tick may not have run yet since the loop came back: then the gap shows here.
  const auto now = clock_.mono();
  if (now - last_tick_ > stall_threshold) stalled_until_ = now + stall_catch_up;
  last_tick_ = now;
  return stalled_until_;
}

asio::awaitable<void> daemon::tick_loop() {
  while (!stopping_) {
    tick_timer_.expires_at(clock_.expiry_for(clock_.mono() + tick_interval));
    co_await tick_timer_.async_wait(as_tuple(use_awaitable));
    if (stopping_) break;
    if (catch_up_until() > clock_.mono()) {
      spdlog::warn(
          "the event loop stood still for over {} s (stopped or starved); reading "
          "queued requests before expiring runs",
          std::chrono::duration<double>(stall_threshold).count());
      deadline_timer_.cancel();  // the deadline loop then pauses for what is queued
    }
  }
}

asio::awaitable<void> daemon::retention_loop() {
  while (!stopping_) {
    const double every_s = std::clamp(cfg_.state.retention / 10, 1.0, 3600.0);
    const core::mono_time due = clock_.mono() + core::to_duration(every_s);
    // Woken early only by the clock jumping, which may not have reached `due` yet.
    while (!stopping_ && clock_.mono() < due) {
      retention_timer_.expires_at(clock_.expiry_for(due));
      co_await retention_timer_.async_wait(as_tuple(use_awaitable));
    }
    if (stopping_) break;
    prune_expired_runs();
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
  if (!loaded) {
    for (const auto& e : loaded.error().messages) spdlog::error("reload refused: {}", e);
    spdlog::error("SIGHUP: {} is invalid; keeping the running config", config_path_);
  } else {
    apply_reloadable(*loaded);
    spdlog::info("SIGHUP: reloaded {}", config_path_);
  }
  io::notify_ready();
}

void daemon::apply_reloadable(const core::config& next) {
  const bool needs_restart =
      next.socket.path != cfg_.socket.path || next.socket.mode != cfg_.socket.mode ||
      next.socket.group != cfg_.socket.group || next.state.path != cfg_.state.path;
  if (needs_restart || next.metrics.listen != cfg_.metrics.listen ||
      next.remote.listen != cfg_.remote.listen) {
    spdlog::warn(
        "socket.path/mode/group, state.path, metrics.listen and remote.listen changes take effect "
        "at the next restart");
  }
  core::config applied = next;
  applied.socket.path = cfg_.socket.path;
  applied.socket.mode = cfg_.socket.mode;
  applied.socket.group = cfg_.socket.group;
  applied.state.path = cfg_.state.path;
  applied.metrics.listen = cfg_.metrics.listen;
  applied.remote.listen = cfg_.remote.listen;
  cfg_ = std::move(applied);
  io::setup_logging(cfg_.log);
  runs_.set_limits(limits_from(cfg_));
  if (sink_) sink_->reconfigure(cfg_);
  server_.set_limits(server_limits(cfg_));
  reload_remote();
}

}  // namespace sweepd::app
