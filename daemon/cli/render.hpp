#pragma once

// sweepd's replies as sweepctl shows them to people. A reply is untrusted and may come from an
// older or newer sweepd: every renderer takes any JSON value, shows a missing or odd field as "-",
// makes text printable, and never throws.

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace sweepd::cli {

/// The field `key` of `j`; nullptr when `j` is not an object or the field is absent or null.
const nlohmann::json* reply_field(const nlohmann::json& j, std::string_view key);
/// `j` as JSON text (indented by `indent`, or compact when -1); invalid UTF-8 is replaced.
std::string dump_json(const nlohmann::json& j, int indent = -1);

/// `line` as a protocol reply (an object with a boolean "ok"), or nullopt with `why` saying that
/// the sweepd at `where` sent something else.
std::optional<nlohmann::json> protocol_reply(std::string_view line, std::string_view where,
                                             std::string& why);

/// An error reply's code and message, printable, with stand-ins for the parts it lacks.
struct shown_error {
  std::string code;
  std::string message;
};
/// What the error reply `reply` says; the message cut to `message_width` code points (0: whole).
shown_error shown_error_of(const nlohmann::json& reply, std::size_t message_width);

/// "r1: running", for the replies of register, start, heartbeat, complete and fail.
std::string render_run_state(const nlohmann::json& reply);
/// `hello`: the server, its version and protocol, and where it was reached (`socket`).
std::string render_hello(const nlohmann::json& reply, std::string_view socket);
/// `status`: version, socket, uptime, run counts, W&B delivery and reconcile, as key: value lines.
std::string render_status(const nlohmann::json& reply, std::string_view socket);
/// `reconcile`: a table of the runs looked at, then one line saying what was (or would be) done.
std::string render_reconcile(const nlohmann::json& reply);
/// `list`: a table of runs, and how to see more when the reply was truncated.
std::string render_list(const nlohmann::json& reply);
/// `show`: one run in full, then its transitions as a table.
std::string render_show(const nlohmann::json& reply);
/// `resync`: the run and its state, queued again.
std::string render_resync(const nlohmann::json& reply);
/// `observations`: a table of finished runs, and how to see more when truncated.
std::string render_observations(const nlohmann::json& reply);

}  // namespace sweepd::cli
