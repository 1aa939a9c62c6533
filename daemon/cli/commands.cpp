#include "cli/commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>
#include <ostream>
#include <variant>

#include "cli/exec.hpp"
#include "cli/parse.hpp"
#include "cli/render.hpp"
#include "cli/spool_command.hpp"
#include "cli/table.hpp"
#include "core/protocol.hpp"
#include "core/run.hpp"
#include "core/tokens.hpp"
#include "core/version.hpp"
#include "io/client.hpp"
#include "io/tokens.hpp"

namespace sweepd::cli {

namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Talking to sweepd.

int usage_error(const invocation& in, std::string_view problem) {
  in.err << fmt::format("sweepctl: {}\nTry 'sweepctl {} --help'.\n", problem, in.cmd.name);
  return exit_usage;
}

/// sweepd's successful reply, or (after the problem was reported) the exit status to return.
struct daemon_answer {
  std::optional<json> reply;
  int status = exit_ok;
};

/// Connects to sweepd: exit_ok, or (after saying why) exit_unreachable when it cannot be reached
/// and exit_refused when its TLS listener refused the token.
int connect_daemon(const invocation& in, io::client& c) {
  if (c.connect(in.global.address, in.global.tls, in.global.token, in.global.timeout)) {
    return exit_ok;
  }
  if (c.refused()) {
    // sweepd is running and said why: the "is sweepd running?" hint would mislead.
    in.err << fmt::format("sweepctl: {}\n", printable(c.last_error(), 400));
    return exit_refused;
  }
  in.err << fmt::format(
      "sweepctl: {}\n(is sweepd running? choose its socket with --socket PATH or "
      "$SWEEPD_SOCKET, or a remote one with --address tls://HOST:PORT)\n",
      c.last_error());
  return exit_unreachable;
}

/// Sends one request on the connection `c` and reads its reply within the global --timeout.
/// Transport failures exit 3; an error reply, or one that is not a protocol reply, exits 1.
daemon_answer ask_daemon(const invocation& in, io::client& c, const core::request& request) {
  std::optional<std::string> line;
  if (c.send_raw(core::encode_request(request))) line = c.read_line(in.global.timeout);
  if (!line) {
    in.err << "sweepctl: " << c.last_error() << '\n';
    return {std::nullopt, exit_unreachable};
  }
  std::string why;
  std::optional<json> reply = protocol_reply(*line, in.global.socket, why);
  if (!reply) {
    in.err << "sweepctl: " << why << '\n';
    return {std::nullopt, exit_daemon_error};
  }
  if ((*reply)["ok"] != true) {
    const shown_error e = shown_error_of(*reply, 0);
    in.err << fmt::format("sweepctl: {}: {}\n", e.code, e.message);
    return {std::nullopt, exit_daemon_error};
  }
  return {std::move(*reply), exit_ok};
}

/// Sends one request on a fresh connection (see above).
daemon_answer ask_daemon(const invocation& in, const core::request& request) {
  io::client c;
  if (const int status = connect_daemon(in, c); status != exit_ok) return {std::nullopt, status};
  return ask_daemon(in, c, request);
}

/// A reply as text for people (`socket`: where sweepd was reached, for the replies that say so).
using renderer = std::string (*)(const json& reply, std::string_view socket);

/// Shows a reply: rendered for people, or as JSON with --json (indented when `pretty`).
void show(const invocation& in, const json& reply, renderer render, bool pretty) {
  if (in.global.json) {
    in.out << dump_json(reply, pretty ? 2 : -1) << '\n';
  } else {
    in.out << render(reply, in.global.socket);
  }
}

/// Asks sweepd and shows the reply (pretty JSON for the record-like replies of status and show).
int exchange(const invocation& in, const parsed_request& parsed, renderer render,
             bool pretty = false) {
  if (!parsed.req) return usage_error(in, parsed.problem);
  daemon_answer answer = ask_daemon(in, *parsed.req);
  if (!answer.reply) return answer.status;
  show(in, *answer.reply, render, pretty);
  return exit_ok;
}

/// The request of the daemon command being run, from its arguments.
parsed_request request_of(const invocation& in) { return request_from(in.cmd.name, in.args); }

/// The paged request `R` (list or observations) asks for the page after `next` with at most
/// `limit` entries.
template <typename R>
void turn_page(core::request& request, const core::page_cursor& next, std::size_t limit) {
  R& paged = std::get<R>(request);
  paged.after = next;
  paged.limit = limit;
}

/// Where a page ended, to ask for the next: false (after saying so) when sweepd sent a cursor that
/// is not one, or the one the page started from.
bool next_page(const invocation& in, core::request& request, const json& next,
               std::optional<std::size_t> want, std::size_t have) {
  const bool list = std::holds_alternative<core::list_request>(request);
  const auto order = list ? core::page_order::registered : core::page_order::finished;
  const auto cursor = core::decode_cursor(order, next.get<std::string>());
  if (!cursor) {
    in.err << fmt::format("sweepctl: sweepd sent a cursor sweepctl does not understand: {}\n",
                          printable(next.get<std::string>(), 200));
    return false;
  }
  const auto& after = list ? std::get<core::list_request>(request).after
                           : std::get<core::observations_request>(request).after;
  if (after == cursor) {
    in.err << "sweepctl: sweepd sent the same page twice; stopping\n";
    return false;
  }
  if (list) {
    turn_page<core::list_request>(request, *cursor, *want - have);
  } else if (want) {
    turn_page<core::observations_request>(request, *cursor, *want - have);
  } else {
    std::get<core::observations_request>(request).after = *cursor;
  }
  return true;
}

/// Adds a later page's entries (under `key`) to the pages shown so far, with its "truncated" and
/// "next".
void append_page(json& shown, json& page, const char* key) {
  json& entries = shown[key];
  for (json& entry : page[key]) entries.push_back(std::move(entry));
  shown["truncated"] = page.value("truncated", false);
  if (const json* next = reply_field(page, "next")) {
    shown["next"] = *next;
  } else {
    shown.erase("next");
  }
}

/// Asks for the pages of `list` or `observations` (`key` names their entries) on one
/// connection, following "next" until the daemon has no more or `want` entries came (the request
/// asks for no more than that), and shows them as if they were one reply. When more are left, the
/// shown reply keeps "truncated" and the "next" to continue from (a sweepd before pages says
/// truncated without a cursor: then that first page is all there is to show).
int exchange_pages(const invocation& in, const parsed_request& parsed, const char* key,
                   std::optional<std::size_t> want, renderer render) {
  if (!parsed.req) return usage_error(in, parsed.problem);
  io::client c;
  if (const int status = connect_daemon(in, c); status != exit_ok) return status;
  core::request request = *parsed.req;
  std::optional<json> shown;
  for (;;) {
    daemon_answer answer = ask_daemon(in, c, request);
    if (!answer.reply) return answer.status;
    json& page = *answer.reply;
    const json* next = reply_field(page, "next");
    const json* entries = reply_field(page, key);
    const bool more = page.value("truncated", false) == true && next != nullptr &&
                      next->is_string() && entries != nullptr && entries->is_array() &&
                      !entries->empty();
    const json next_text = more ? *next : json();
    if (!shown) {
      shown = std::move(page);
    } else {
      append_page(*shown, page, key);
    }
    const json* all = reply_field(*shown, key);
    const std::size_t have = all != nullptr && all->is_array() ? all->size() : 0;
    if (!more || (want && have >= *want)) break;
    if (!next_page(in, request, next_text, want, have)) return exit_daemon_error;
  }
  show(in, *shown, render, false);
  return exit_ok;
}

/// Renderers that need no more than the reply.
template <std::string (*render)(const json&)>
std::string reply_only(const json& reply, std::string_view) {
  return render(reply);
}

// ---------------------------------------------------------------------------------------------
// The commands: one function each.

/// A command that sends its one request and shows the reply with `render`.
template <renderer render, bool pretty = false>
int run_request(const invocation& in) {
  return exchange(in, request_of(in), render, pretty);
}

int run_list(const invocation& in) {
  const parsed_request parsed = request_of(in);
  // A page may stop before the limit when its replies would pass sweepd's reply size cap.
  const std::size_t want = parsed.req ? std::get<core::list_request>(*parsed.req).limit : 0;
  return exchange_pages(in, parsed, "runs", want, reply_only<render_list>);
}

int run_observations(const invocation& in) {
  const parsed_request parsed = request_of(in);
  std::optional<std::size_t> want;
  if (parsed.req) want = std::get<core::observations_request>(*parsed.req).limit;
  return exchange_pages(in, parsed, "observations", want, reply_only<render_observations>);
}

int run_reconcile(const invocation& in) {
  if (in.global.timeout_given) return run_request<reply_only<render_reconcile>>(in);
  // Reading every page of a large sweep from W&B takes longer than a request usually may.
  global_options patient = in.global;
  patient.timeout = default_reconcile_timeout;
  const invocation longer{in.cmd, patient, in.args, in.out, in.err};
  return run_request<reply_only<render_reconcile>>(longer);
}

int run_token(const invocation& in) {
  const auto& operands = in.args.operands;
  if (operands[0] != "new") {
    return usage_error(
        in, fmt::format("unknown token action '{}' (known: new)", printable(operands[0], 40)));
  }
  const std::string& name = operands[1];
  if (!core::is_valid_principal(name)) {
    return usage_error(in, fmt::format("the name must be 1-{} characters of [A-Za-z0-9._@-]",
                                       core::max_principal_chars));
  }
  const std::string token = io::random_token();
  if (token.empty()) {
    in.err << "sweepctl: the random number generator failed; no token made\n";
    return exit_daemon_error;
  }
  const std::string entry = fmt::format("{} {}", name, core::to_hex(io::sha256(token)));
  if (in.global.json) {
    in.out << dump_json(json{{"principal", name}, {"token", token}, {"tokens_file_line", entry}})
           << '\n';
    return exit_ok;
  }
  in.out << fmt::format(
      "token for {} (shown once; give it to the worker as $SWEEPD_TOKEN or in a --token-file):\n"
      "  {}\n"
      "line for sweepd's remote.tokens_file (then reload sweepd, e.g. systemctl reload "
      "sweepd):\n"
      "  {}\n",
      name, token, entry);
  return exit_ok;
}

int run_ping(const invocation& in) {
  const auto sent = std::chrono::steady_clock::now();
  daemon_answer answer = ask_daemon(in, core::hello_request{});
  if (!answer.reply) return answer.status;
  const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - sent;
  if (in.global.json) {
    in.out << dump_json(*answer.reply) << '\n';
  } else {
    in.out << fmt::format("sweepd at {} answered in {:.1f} ms\n", in.global.socket,
                          elapsed.count());
  }
  return exit_ok;
}

// ---------------------------------------------------------------------------------------------
// The command table and help.

std::vector<command> make_commands() {
  return {
      {"status",
       "",
       "show sweepd's version, uptime, run counts and W&B delivery",
       "",
       {},
       0,
       0,
       run_request<render_status, true>},
      {"list",
       "",
       "list runs, oldest first",
       "Shows at most --limit runs (1000 unless given) and says when more match, with the\n"
       "--after CURSOR that shows the next ones.",
       {{"--sweep", "S", "only runs of sweep S"},
        {"--state", "STATE",
         "only runs in STATE: initializing, running, success, failed, crashed, timeout"},
        {"--limit", "N", "show at most N runs (1-100000)"},
        {"--after", "CURSOR", "only runs after the last one of an earlier list"}},
       0,
       0,
       run_list},
      {"show",
       "RUN",
       "show one run in full, with its state transitions",
       "",
       {},
       1,
       1,
       run_request<reply_only<render_show>, true>},
      {"observations",
       "",
       "list finished runs as optimizer observations (objective, cost, failure)",
       "Every terminal run: success, failed, crashed and timeout, in the order they finished\n"
       "(sweepctl reads every page sweepd sends).",
       {{"--sweep", "S", "only runs of sweep S"},
        {"--limit", "N", "show at most N observations (1-100000)"},
        {"--after", "CURSOR", "only runs that finished after the last one of an earlier list"}},
       0,
       0,
       run_observations},
      {"register",
       "RUN",
       "register a new run; it starts in state initializing",
       "RUN is the W&B run id: 1-128 characters of [A-Za-z0-9._-].\n"
       "Durations are seconds, or a number with a unit: 90s, 15m, 2h, 1d.",
       {{"--sweep", "S", "the sweep the run belongs to"},
        {"--entity", "E", "the W&B entity (default: sweepd's wandb.entity)"},
        {"--project", "P", "the W&B project (default: sweepd's wandb.project)"},
        {"--suggestion", "JSON", "the hyperparameters, as a JSON object such as '{\"lr\":0.01}'"},
        {"--watch-peer", "",
         "mark the run crashed when the registering process exits; that process is this "
         "sweepctl, which exits at once, so this is only useful in tests"},
        {"--heartbeat-timeout", "S", "mark the run timeout after S seconds without a heartbeat"},
        {"--max-runtime", "S", "mark the run timeout S seconds after registration (0: off)"}},
       1,
       1,
       run_request<reply_only<render_run_state>>},
      {"start",
       "RUN",
       "mark RUN as running",
       "",
       {},
       1,
       1,
       run_request<reply_only<render_run_state>>},
      {"heartbeat",
       "RUN",
       "tell sweepd that RUN is alive",
       "Write the global --timeout before the command; after it, --timeout is the run's own.",
       {{"--progress", "X", "how far the run is (e.g. its step), to detect stalls"},
        {"--timeout", "S", "from now on, mark the run timeout after S seconds of silence"}},
       1,
       1,
       run_request<reply_only<render_run_state>>},
      {"complete",
       "RUN",
       "mark RUN as finished successfully",
       "",
       {{"--objective", "X", "the run's objective value (a finite number)"},
        {"--cost", "C", "what the run cost, at least 0 (default: its runtime in seconds)"}},
       1,
       1,
       run_request<reply_only<render_run_state>>},
      {"fail",
       "RUN [MESSAGE]",
       "mark RUN as failed, with an error message",
       "The message is --error TEXT or MESSAGE (one of them); sweepd keeps up to 4 KiB of it.",
       {{"--error", "TEXT", "what went wrong"}},
       1,
       2,
       run_request<reply_only<render_run_state>>},
      exec_command(),
      {"reconcile",
       "--sweep S",
       "give the runs W&B shows stuck in running a true final state",
       "Lists the sweep's W&B runs whose summary state is still initializing or running (every\n"
       "page) and says what each should become: success when the summary has a finite objective;\n"
       "crashed/failed when W&B says crashed, failed or killed, or finished without an objective;\n"
       "timeout when W&B has not heard from it for --stale-after (default: sweepd's\n"
       "reconcile.stale_after); runs sweepd tracks itself are left to it, and runs W&B still "
       "hears\n"
       "from are left alone. A dry run (the default) changes nothing; --apply records each run in\n"
       "sweepd and queues its W&B summary write (root and socket.admin_uids only). Needs W&B "
       "online.\n"
       "Waits up to 10 minutes unless --timeout is given.",
       {{"--sweep", "S", "the sweep id (required)"},
        {"--entity", "E", "the W&B entity (default: sweepd's wandb.entity)"},
        {"--project", "P", "the W&B project (default: sweepd's wandb.project)"},
        {"--stale-after", "DUR", "a run W&B has not heard from for this long is timed out"},
        {"--apply", "", "record the final states and write them to W&B (default: dry run)"}},
       0,
       0,
       run_reconcile},
      {"resync",
       "RUN",
       "queue RUN's current state for its W&B summary again",
       "For a run whose W&B write was dead-lettered (a revoked key, a deleted and re-created\n"
       "run): once the cause is fixed, this writes sweepd's state for the run again. Allowed to\n"
       "the run's owner, root and socket.admin_uids. 'sweepctl show RUN' shows the delivery.",
       {},
       1,
       1,
       run_request<reply_only<render_resync>>},
      spool_command(),
      {"token",
       "new NAME",
       "make a token for a remote worker identity NAME",
       "Prints a fresh random token once, and the line for sweepd's remote.tokens_file: the\n"
       "name and the token's SHA-256 (the file never holds the token). Runs on its own; sweepd\n"
       "learns of the token when its tokens file is reloaded (SIGHUP). Remote callers own\n"
       "their runs as token:NAME.",
       {},
       2,
       2,
       run_token},
      {"hello",
       "",
       "ask sweepd for its version and protocol",
       "",
       {},
       0,
       0,
       run_request<render_hello>},
      {"ping", "", "check that sweepd answers, and how fast", "", {}, 0, 0, run_ping},
  };
}

/// Options as two columns, the help text wrapped to fit the usual 100-column terminal.
std::string options_block(const std::vector<option_spec>& options) {
  constexpr std::size_t line_width = 100;
  auto left = [](const option_spec& o) {
    return o.value_name.empty() ? std::string(o.name) : fmt::format("{} {}", o.name, o.value_name);
  };
  std::size_t width = 0;
  for (const option_spec& o : options) width = std::max(width, left(o).size());
  const std::size_t indent = 2 + width + 2;
  std::string out;
  for (const option_spec& o : options) {
    const auto lines = wrap_words(o.help, line_width - std::min(line_width - 20, indent));
    out += fmt::format("  {:<{}}  {}\n", left(o), width, lines.front());
    for (std::size_t i = 1; i < lines.size(); ++i) {
      out += fmt::format("{:{}}{}\n", "", indent, lines[i]);
    }
  }
  return out;
}

}  // namespace

const std::string* arguments::value(std::string_view option) const {
  const auto it = options.find(option);
  return it == options.end() ? nullptr : &it->second;
}

const option_spec* command::find_option(std::string_view option) const {
  const auto it = std::find_if(options.begin(), options.end(),
                               [&](const option_spec& o) { return o.name == option; });
  return it == options.end() ? nullptr : &*it;
}

const std::vector<command>& all_commands() {
  static const std::vector<command> commands = make_commands();
  return commands;
}

const command* find_command(std::string_view name) {
  const auto& commands = all_commands();
  const auto it = std::find_if(commands.begin(), commands.end(),
                               [&](const command& c) { return c.name == name; });
  return it == commands.end() ? nullptr : &*it;
}

const std::vector<option_spec>& global_option_specs() {
  static const std::vector<option_spec> options = {
      {"--socket", "PATH",
       "sweepd's control socket (default: $SWEEPD_ADDRESS, $SWEEPD_SOCKET, else "
       "/run/sweepd/sweepd.sock)"},
      {"--address", "ADDR",
       "a socket path, or tls://HOST:PORT for sweepd's TLS listener (remote workers)"},
      {"--token-file", "FILE", "the token for a tls:// address (default: $SWEEPD_TOKEN)"},
      {"--ca-file", "FILE",
       "the CA that signed sweepd's certificate (default: $SWEEPD_CA_FILE, else the "
       "system's)"},
      {"--json", "", "print sweepd's reply as JSON instead of tables, for scripts"},
      {"--timeout", "SECONDS", "how long to wait for sweepd's reply (default: 10)"},
      {"-h, --help", "", "show this help; 'sweepctl COMMAND --help' shows a command's options"},
      {"--version", "", "print sweepctl's version"},
  };
  return options;
}

std::string program_usage() {
  std::string out =
      "Usage: sweepctl [--socket PATH | --address tls://HOST:PORT] [--json] [--timeout SECONDS] "
      "COMMAND [ARGS]\n\n"
      "Inspects and drives sweepd, the supervisor of hyperparameter-sweep runs.\n\nCommands:\n";
  std::size_t width = 0;
  for (const command& c : all_commands()) width = std::max(width, c.name.size());
  for (const command& c : all_commands()) {
    out += fmt::format("  {:<{}}  {}\n", c.name, width, c.summary);
  }
  out += "\nGlobal options (before or after the command):\n" + options_block(global_option_specs());
  out +=
      "\nExit status: 0 done; 1 sweepd answered with an error; 2 usage error (nothing was sent);\n"
      "3 sweepd could not be reached or did not answer in time; 4 sweepd's TLS listener refused "
      "the\n"
      "token (not accepted, or too many failed attempts). exec exits with its command's status.\n";
  return out;
}

std::string command_usage(const command& cmd) {
  std::string out = fmt::format("Usage: sweepctl [GLOBAL OPTIONS] {}", cmd.name);
  if (!cmd.operands.empty()) out += fmt::format(" {}", cmd.operands);
  if (!cmd.options.empty() && cmd.operands.find("[OPTIONS]") == std::string_view::npos) {
    out += " [OPTIONS]";
  }
  std::string summary(cmd.summary);
  if (!summary.empty()) summary[0] = static_cast<char>(std::toupper(summary[0]));
  out += fmt::format("\n\n{}.\n", summary);
  if (!cmd.details.empty()) out += fmt::format("\n{}\n", cmd.details);
  if (!cmd.options.empty()) out += "\nOptions:\n" + options_block(cmd.options);
  out += "\nGlobal options:\n" + options_block(global_option_specs());
  return out;
}

}  // namespace sweepd::cli
