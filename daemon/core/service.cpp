#include "core/service.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/run_codec.hpp"

namespace sweepd::core {

namespace {

using json = nlohmann::json;

/// The usual answer to an op on one run: its id and state.
/// The usual answer to an op on one run, {"ok":true,"run":…,"state":…}, as the state will be once
/// a planned change is applied. Written directly, without a JSON value: it is the answer to every
/// heartbeat, and a run id needs no escaping (protocol: [A-Za-z0-9._-]).
std::string run_state_reply(const outcome& o) {
  if (!o.ok()) return error_reply(o.err);
  const std::string_view id = o.change ? std::string_view(o.change->run) : o.run->id;
  const std::string_view state = to_string(o.state());
  std::string reply;
  reply.reserve(32 + id.size() + state.size());
  reply.append(R"({"ok":true,"run":")").append(id).append(R"(","state":")").append(state);
  reply.append("\"}\n");
  return reply;
}

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

/// One candidate of a paged reply with its sort key: (time in ms, run id). Milliseconds are what
/// the reply shows (registered_at, finished_at) and what the journal keeps, so the order and every
/// cursor stay the same across a restart.
struct ranked {
  std::int64_t at_ms;
  const run_record* run;
};

bool ranks_before(const ranked& a, const ranked& b) {
  return a.at_ms != b.at_ms ? a.at_ms < b.at_ms : a.run->id < b.run->id;
}

bool is_after(const ranked& r, const std::optional<page_cursor>& cursor) {
  if (!cursor) return true;
  return r.at_ms != cursor->at_ms ? r.at_ms > cursor->at_ms : r.run->id > cursor->run;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

/// Room kept in a capped reply for everything but its entries: the braces, "ok", "truncated" and
/// a "next" cursor (at most ~150 bytes).
constexpr std::size_t reply_envelope_bytes = 512;

/// The reply line of one page: the first `limit` candidates in order, fewer when the next one
/// would take the reply past `max_bytes` (never none while any is left, so paging always moves
/// on). A heap over the candidates yields them in order for O(n + page · log n), instead of
/// sorting every match for each page.
std::string page_reply(std::string_view key, std::vector<ranked> candidates, std::size_t limit,
                       std::size_t max_bytes, page_order order,
                       const std::function<json(const run_record&)>& entry) {
  const auto later = [](const ranked& a, const ranked& b) { return ranks_before(b, a); };
  std::make_heap(candidates.begin(), candidates.end(), later);
  limit = std::max<std::size_t>(limit, 1);
  const std::size_t budget =
      max_bytes > reply_envelope_bytes ? max_bytes - reply_envelope_bytes : 0;
  std::string reply = fmt::format(R"({{"{}":[)", key);
  const std::size_t header = reply.size();
  std::size_t count = 0;
  std::optional<ranked> last;
  bool truncated = false;
  while (!candidates.empty()) {
    if (count == limit) {
      truncated = true;
      break;
    }
    std::pop_heap(candidates.begin(), candidates.end(), later);
    const ranked next = candidates.back();
    const std::string text = dump(entry(*next.run));
    if (count > 0 && reply.size() - header + 1 + text.size() > budget) {
      truncated = true;
      break;
    }
    candidates.pop_back();
    if (count++ > 0) reply += ',';
    reply += text;
    last = next;
  }
  reply += fmt::format(R"(],"truncated":{})", truncated);
  if (truncated) {
    reply += fmt::format(R"(,"next":{})", dump(encode_cursor(order, {last->at_ms, last->run->id})));
  }
  reply += ",\"ok\":true}\n";
  return reply;
}

}  // namespace

service::service(supervisor& runs, std::string version, mono_time started, stats_source stats,
                 delivery_source delivery)
    : runs_(runs),
      version_(std::move(version)),
      started_(started),
      stats_(std::move(stats)),
      delivery_(std::move(delivery)) {}

handled service::handle(std::string_view line, const caller& who, instant now) {
  handled h;
  parse_result parsed = parse_request(line);
  last_op_ = parsed.op.empty() ? std::string_view("invalid") : parsed.op;
  if (!parsed.req) {
    h.reply = error_reply(parsed.err);
    return h;
  }
  auto mutate = [&](outcome o) {
    h.reply = run_state_reply(o);
    h.result = std::move(o);
  };
  std::visit(
      overloaded{
          [&](const hello_request&) {
            h.reply = ok_reply(
                {{"server", "sweepd"}, {"version", version_}, {"protocol", protocol_version}});
          },
          [&](const register_params& p) {
            if (p.watch_peer && !who.principal.empty()) {
              // A remote peer is a process on another host: nothing here can watch it.
              h.reply = error_reply({error_code::bad_request,
                                     "watch_peer: process watch needs the local socket; remote "
                                     "runs rely on heartbeats"});
              return;
            }
            mutate(runs_.plan_register(p, who, now));
          },
          [&](const start_request& r) { mutate(runs_.plan_start(r.run, who, now)); },
          [&](const heartbeat_params& p) { mutate(runs_.plan_heartbeat(p, who, now)); },
          [&](const complete_params& p) { mutate(runs_.plan_complete(p, who, now)); },
          [&](const fail_params& p) { mutate(runs_.plan_fail(p, who, now)); },
          [&](const status_request&) { h.reply = ok_reply(status_body(now)); },
          [&](const show_request& r) {
            const run_record* run = runs_.find(r.run);
            if (run == nullptr) {
              h.reply = error_reply({error_code::unknown_run, fmt::format("no run '{}'", r.run)});
              return;
            }
            json detail = run_detail_json(*run, now);
            if (!runs_.may_read(*run, who)) withhold_private_fields(detail);
            if (delivery_) detail["wandb"] = delivery_(*run);
            h.reply = ok_reply({{"run", std::move(detail)}});
          },
          [&](const reconcile_request& r) {
            if (r.apply && !who.admin) {
              h.reply = error_reply(
                  {error_code::forbidden,
                   fmt::format("{} may not apply reconcile (root, socket.admin_uids and "
                               "remote.admin_principals may; anyone may do a dry run)",
                               caller_name(who.uid, who.principal))});
              return;
            }
            h.reconcile = r;
          },
          [&](const resync_request& r) {
            const outcome o = runs_.may_change(r.run, who);
            h.reply = run_state_reply(o);
            if (o.ok()) h.resync = o.run;
          },
          [&](const list_request& r) { h.reply = list_reply(r, now); },
          [&](const observations_request& r) { h.reply = observations_reply(r, who); },
      },
      *parsed.req);
  return h;
}

json service::status_body(instant now) const {
  json counts = json::object();
  for (run_state s : all_run_states) {
    counts[std::string(to_string(s))] = runs_.counts()[static_cast<std::size_t>(s)];
  }
  const daemon_stats stats = stats_ ? stats_() : daemon_stats{};
  json body = {{"version", version_},
               {"protocol", protocol_version},
               {"uptime_s", seconds_between(started_, now.mono)},
               {"runs", counts},
               {"runs_total", runs_.size()},
               {"connections", stats.connections},
               {"wandb", stats.wandb},
               {"reconcile", stats.reconcile}};
  if (!stats.remote.is_null()) body["remote"] = stats.remote;
  return body;
}

std::string service::list_reply(const list_request& r, instant now) const {
  // Oldest first, so tables read in the order runs were launched.
  std::vector<ranked> matches;
  runs_.for_each([&](const run_record& run) {
    if (r.sweep && run.sweep != *r.sweep) return;
    if (r.state && run.state != *r.state) return;
    const ranked candidate{to_unix_ms(run.registered_wall), &run};
    if (is_after(candidate, r.after)) matches.push_back(candidate);
  });
  return page_reply("runs", std::move(matches), r.limit, max_reply_bytes_, page_order::registered,
                    [&](const run_record& run) { return run_summary_json(run, now); });
}

std::string service::observations_reply(const observations_request& r, const caller& who) const {
  // In the order runs finished, so an optimizer replays its history as it happened, and one that
  // asks again after its last cursor gets only what finished since (a late report finishes a run
  // again, later).
  std::vector<ranked> terminal;
  runs_.for_each([&](const run_record& run) {
    if (!is_terminal(run.state)) return;
    if (r.sweep && run.sweep != *r.sweep) return;
    const std::int64_t at_ms = run.finished_wall ? to_unix_ms(*run.finished_wall)
                                                 : std::numeric_limits<std::int64_t>::max();
    const ranked candidate{at_ms, &run};
    if (is_after(candidate, r.after)) terminal.push_back(candidate);
  });
  return page_reply("observations", std::move(terminal),
                    r.limit.value_or(std::numeric_limits<std::size_t>::max()), max_reply_bytes_,
                    page_order::finished, [&](const run_record& run) {
                      json entry = observation_json(run);
                      if (!runs_.may_read(run, who)) withhold_private_fields(entry);
                      return entry;
                    });
}

}  // namespace sweepd::core
