// sweepctl spool (docs/spool.md): the reports that clients could not hand to sweepd, shown or
// delivered by hand.

#include "cli/spool_command.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <ostream>

#include "cli/spool.hpp"
#include "cli/table.hpp"

namespace sweepd::cli {

namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int usage_error(const invocation& in, std::string_view problem) {
  in.err << fmt::format("sweepctl: {}\nTry 'sweepctl spool --help'.\n", problem);
  return exit_usage;
}

/// "complete (objective 0.93, cost 12.5)", "fail: exit code 3".
std::string report_summary(const json& report) {
  if (report.value("op", "") == "fail") {
    const auto error = report.find("error");
    return "fail: " + (error != report.end() && error->is_string()
                           ? printable(error->get<std::string>(), 60)
                           : std::string("-"));
  }
  std::string values;
  for (const char* key : {"objective", "cost"}) {
    const auto v = report.find(key);
    if (v == report.end() || !v->is_number()) continue;
    values +=
        fmt::format("{}{} {}", values.empty() ? "" : ", ", key, format_exact(v->get<double>()));
  }
  return values.empty() ? "complete" : fmt::format("complete ({})", values);
}

int run_list(const invocation& in, const std::filesystem::path& dir) {
  bool exists = false;
  std::string problem = check_spool_dir(dir, ::getuid(), exists);
  const auto entries = problem.empty() ? list_spool(dir, problem) : std::vector<spool_entry>{};
  if (!problem.empty()) {
    in.err << fmt::format("sweepctl: {}\n", problem);
    return exit_daemon_error;
  }
  if (in.global.json) {
    json reports = json::array();
    for (const spool_entry& e : entries) {
      json j = {{"run", e.run}, {"path", e.path.string()}};
      if (e.record) {
        j.update(to_json(*e.record));
      } else {
        j["problem"] = e.problem;
      }
      reports.push_back(std::move(j));
    }
    in.out << dump({{"spool_dir", dir.string()}, {"reports", reports}}) << '\n';
    return exit_ok;
  }
  if (entries.empty()) {
    in.out << fmt::format("no spooled reports in {}\n", dir.string());
    return exit_ok;
  }
  table t({{"RUN"}, {"REPORT"}, {"SPOOLED AT"}, {"SOCKET"}});
  for (const spool_entry& e : entries) {
    if (e.record) {
      t.add_row({e.run, report_summary(e.record->report),
                 format_timestamp(e.record->spooled_at.empty() ? "-" : e.record->spooled_at),
                 e.record->socket});
    } else {
      t.add_row({e.run, "malformed: " + printable(e.problem, 60), "-", "-"});
    }
  }
  in.out << t.render();
  return exit_ok;
}

int run_flush(const invocation& in, const std::filesystem::path& dir) {
  daemon_spool_link link(in.global.socket, in.global.address, in.global.tls, in.global.token,
                         in.global.timeout);
  const flush_result result = flush_spool(dir, in.global.socket, ::getuid(), link);
  if (!result.problem.empty()) {
    in.err << fmt::format("sweepctl: {}\n", result.problem);
    return exit_daemon_error;
  }
  std::size_t left = 0;
  bool unanswered = false;
  for (const delivery& d : result.files) {
    if (d.what != delivery::outcome::left) continue;
    ++left;
    unanswered = unanswered || (d.stop && d.code.empty());
  }
  if (in.global.json) {
    json files = json::array();
    for (const delivery& d : result.files) {
      json j = {{"run", d.run}, {"path", d.path.string()}, {"outcome", to_string(d.what)}};
      if (!d.state.empty()) j["state"] = d.state;
      if (!d.code.empty()) j["code"] = d.code;
      if (!d.message.empty()) j["message"] = d.message;
      files.push_back(std::move(j));
    }
    in.out << dump({{"spool_dir", dir.string()},
                    {"socket", in.global.socket},
                    {"files", files},
                    {"left", left}})
           << '\n';
  } else if (result.files.empty()) {
    in.out << fmt::format("nothing spooled in {}\n", dir.string());
  } else {
    for (const delivery& d : result.files) {
      in.out << fmt::format("{}: {}\n", d.run, printable(describe(d), 400));
    }
  }
  if (left == 0) return exit_ok;
  in.err << fmt::format("sweepctl: {} spooled report{} for sweepd at {} left in {}\n", left,
                        left == 1 ? "" : "s", in.global.socket, dir.string());
  if (link.refused()) return exit_refused;
  return unanswered ? exit_unreachable : exit_daemon_error;
}

}  // namespace

int run_spool(const invocation& in) {
  const std::string& action = in.args.operands.front();
  if (action != "flush" && action != "list") {
    return usage_error(
        in, fmt::format("'{}' is not a spool action (flush or list)", printable(action, 40)));
  }
  std::optional<std::string> explicit_dir;
  if (const std::string* v = in.args.value("--spool-dir")) {
    if (v->empty()) return usage_error(in, "option '--spool-dir': the path is empty");
    explicit_dir = *v;
  }
  const auto dir = spool_dir_for(explicit_dir, process_environment(), in.global.socket, ::getuid());
  return action == "list" ? run_list(in, dir) : run_flush(in, dir);
}

command spool_command() {
  return {
      "spool",
      "flush|list",
      "deliver the reports clients could not hand to sweepd (flush), or show them (list)",
      "When sweepd cannot be reached as a run ends, sweepctl exec and the Python client write\n"
      "the run's final report to a spool file, <DIR>/<run>.json, and deliver it at their next\n"
      "start. 'flush' delivers every file for this socket's sweepd now, one line per file:\n"
      "delivered STATE, refused CODE: MESSAGE (sweepd's final word; the file is removed), or\n"
      "left: WHY. Files for another socket are left alone; a file that is not a spool file is\n"
      "renamed to <run>.json.bad. 'list' shows every file: RUN, REPORT, SPOOLED AT, SOCKET.\n"
      "DIR is --spool-dir, else $SWEEPD_SPOOL_DIR, else $XDG_STATE_HOME/sweepd/spool, else\n"
      "$HOME/.local/state/sweepd/spool, else spool-UID beside the socket.\n"
      "\n"
      "Exit status of flush: 0 when nothing for this socket is left, 3 when sweepd could not be\n"
      "reached or did not answer, 4 when its TLS listener refused the token (the files stay),\n"
      "1 when files are left for another reason (sweepd busy, another client delivering them)\n"
      "or the directory cannot be used.",
      {{"--spool-dir", "DIR", "the spool directory (default: see above)"}},
      1,
      1,
      run_spool};
}

}  // namespace sweepd::cli
