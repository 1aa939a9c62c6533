#include "core/service.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sweepd::core {

namespace {

using json = nlohmann::json;

/// The usual answer to an op on one run: its id and state.
std::string run_state_reply(const outcome& o) {
  if (!o.ok()) return error_reply(o.err);
  return ok_reply({{"run", o.run->id}, {"state", to_string(o.run->state)}});
}

/// Oldest first, so tables read in the order runs were launched.
bool registered_earlier(const run_record* a, const run_record* b) {
  return a->registered_wall != b->registered_wall ? a->registered_wall < b->registered_wall
                                                  : a->id < b->id;
}

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

/// In the order runs finished, so an optimizer replays its history as it happened (and one that
/// reads observations again can tell what is new).
bool finished_earlier(const run_record* a, const run_record* b) {
  const wall_time fa = a->finished_wall.value_or(wall_time::max());
  const wall_time fb = b->finished_wall.value_or(wall_time::max());
  return fa != fb ? fa < fb : a->id < b->id;
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
          [&](const register_params& p) { mutate(runs_.register_run(p, who, now)); },
          [&](const start_request& r) { mutate(runs_.start(r.run, who, now)); },
          [&](const heartbeat_params& p) { mutate(runs_.heartbeat(p, who, now)); },
          [&](const complete_params& p) { mutate(runs_.complete(p, who, now)); },
          [&](const fail_params& p) { mutate(runs_.fail(p, who, now)); },
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
          [&](const resync_request& r) {
            const outcome o = runs_.may_change(r.run, who);
            h.reply = run_state_reply(o);
            if (o.ok()) h.resync = o.run;
          },
          [&](const list_request& r) { h.reply = ok_reply(list_body(r, now)); },
          [&](const observations_request& r) { h.reply = ok_reply(observations_body(r, who)); },
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
  return {{"version", version_},
          {"protocol", protocol_version},
          {"uptime_s", seconds_between(started_, now.mono)},
          {"runs", counts},
          {"runs_total", runs_.size()},
          {"connections", stats.connections},
          {"wandb", stats.wandb}};
}

json service::list_body(const list_request& r, instant now) const {
  std::vector<const run_record*> matches;
  runs_.for_each([&](const run_record& run) {
    if (r.sweep && run.sweep != *r.sweep) return;
    if (r.state && run.state != *r.state) return;
    matches.push_back(&run);
  });
  std::sort(matches.begin(), matches.end(), registered_earlier);
  const bool truncated = matches.size() > r.limit;
  if (truncated) matches.resize(r.limit);
  json list = json::array();
  for (const run_record* run : matches) list.push_back(run_summary_json(*run, now));
  return {{"runs", std::move(list)}, {"truncated", truncated}};
}

json service::observations_body(const observations_request& r, const caller& who) const {
  std::vector<const run_record*> terminal;
  runs_.for_each([&](const run_record& run) {
    if (!is_terminal(run.state)) return;
    if (r.sweep && run.sweep != *r.sweep) return;
    terminal.push_back(&run);
  });
  std::sort(terminal.begin(), terminal.end(), finished_earlier);
  json list = json::array();
  for (const run_record* run : terminal) {
    json entry = observation_json(*run);
    if (!runs_.may_read(*run, who)) withhold_private_fields(entry);
    list.push_back(std::move(entry));
  }
  return {{"observations", std::move(list)}};
}

}  // namespace sweepd::core
