#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/errors.hpp"
#include "core/run.hpp"
#include "core/supervisor.hpp"

namespace sweepd::core {

/// Protocol v1 (DESIGN §3): one JSON object per line in, one per line out.
inline constexpr int protocol_version = 1;
inline constexpr std::size_t max_run_id_chars = 128;
inline constexpr std::size_t max_name_chars = 128;
inline constexpr std::size_t max_suggestion_bytes = std::size_t{64} * 1024;
inline constexpr std::size_t max_error_bytes = std::size_t{4} * 1024;
inline constexpr std::size_t default_list_limit = 1000;
inline constexpr std::size_t max_list_limit = 100000;
/// Largest `list` or `observations` reply: a page stops before it would grow past this (it is
/// only exceeded by a page of one entry larger than that, which a suggestion cannot make).
/// A reply is built whole, so this bounds what one request makes sweepd hold (a client that does
/// not read holds its output budget and one reply, up to max_connections_per_uid times) and how
/// long building it keeps the loop from other clients (~18 ms for a page of `list`).
inline constexpr std::size_t max_reply_bytes = std::size_t{1024} * 1024;
/// Longest per-run timeout accepted from a worker: one year.
inline constexpr double max_timeout_s = 365.0 * 24 * 3600;

/// Longest token accepted in a `hello` (a sweepctl token is 43 characters).
inline constexpr std::size_t max_token_bytes = 1024;

/// `token` authenticates a remote connection (its first line); a local connection may send one,
/// and it is ignored there.
struct hello_request {
  std::optional<std::string> token;

  friend bool operator==(const hello_request&, const hello_request&) = default;
};
struct status_request {
  friend bool operator==(const status_request&, const status_request&) = default;
};
struct start_request {
  std::string run;

  friend bool operator==(const start_request&, const start_request&) = default;
};
struct show_request {
  std::string run;

  friend bool operator==(const show_request&, const show_request&) = default;
};
/// Reconcile a sweep's W&B runs stuck in a live state: dry run unless `apply`.
struct reconcile_request {
  std::string sweep;
  std::optional<std::string> entity;
  std::optional<std::string> project;
  bool apply = false;
  std::optional<double> stale_after_s;

  friend bool operator==(const reconcile_request&, const reconcile_request&) = default;
};
/// Queue the run's current state for its W&B summary again (e.g. after a dead letter).
struct resync_request {
  std::string run;

  friend bool operator==(const resync_request&, const resync_request&) = default;
};
/// Where a page of `list` or `observations` ended: the sort key of its last entry, (time in
/// milliseconds since the epoch, run id). The next page starts strictly after it.
struct page_cursor {
  std::int64_t at_ms = 0;
  std::string run;

  friend bool operator==(const page_cursor&, const page_cursor&) = default;
};
/// The two paged orders; a cursor from one is refused by the other.
enum class page_order { registered, finished };

struct list_request {
  std::optional<std::string> sweep;
  std::optional<run_state> state;
  std::size_t limit = default_list_limit;
  std::optional<page_cursor> after;

  friend bool operator==(const list_request&, const list_request&) = default;
};
struct observations_request {
  std::optional<std::string> sweep;
  std::optional<std::size_t> limit;  // none: as many as fit in one reply
  std::optional<page_cursor> after;

  friend bool operator==(const observations_request&, const observations_request&) = default;
};

using request = std::variant<hello_request, register_params, start_request, heartbeat_params,
                             complete_params, fail_params, status_request, show_request,
                             list_request, observations_request, resync_request, reconcile_request>;

/// A parsed request, or the error to answer with.
struct parse_result {
  std::optional<request> req;
  error err;
  /// The op's name when the line named a known op (also when its fields were refused), else
  /// empty. Points at static storage.
  std::string_view op;
};

/// Parses and validates one request line (without its '\n'). Every field is type-checked and
/// bounded; unknown fields are refused so that a typo never passes silently.
parse_result parse_request(std::string_view line);

/// `r` as its wire object, the inverse of parse_request(): parse_request(encode_request(r)) gives
/// `r` back for every request parse_request() accepts. Absent optional fields, false flags and the
/// default list limit are left out; integral numbers are written as integers.
nlohmann::json request_json(const request& r);
/// `r` as one request line with its '\n' (request_json(), dumped).
std::string encode_request(const request& r);

/// The name of every op, in the order the protocol lists them.
std::vector<std::string_view> op_names();

/// What a reply line made by error_reply() or ok_reply() (or a page) says: "ok", or the error's
/// code ("busy", …). Reads only the start and end of the line.
std::string_view reply_result(std::string_view reply);

/// True for 1–128 characters of [A-Za-z0-9._-], the W&B run id alphabet.
bool is_valid_run_id(std::string_view id);

/// The opaque text of a cursor, as replies give it in "next" and requests take it in "after".
std::string encode_cursor(page_order order, const page_cursor& c);
/// The cursor `text` stands for, or nullopt when it is not one of `order`'s.
std::optional<page_cursor> decode_cursor(page_order order, std::string_view text);

/// Cuts `s` to at most `max_bytes` without splitting a UTF-8 sequence.
std::string truncate_utf8(std::string s, std::size_t max_bytes);

/// What an error reply ({"ok":false,"error":{"code","message"}}) says. A reply is untrusted: a
/// part that is missing or not a string comes back empty, and each is cut to max_error_bytes.
struct reply_error {
  std::string code;
  std::string message;
};
/// The code and message of `reply`'s "error" object; never throws, whatever `reply` is.
reply_error error_of_reply(const nlohmann::json& reply);

/// {"ok":false,"error":{"code","message"}} as one line with its '\n'.
std::string error_reply(const error& e);
/// `body` with "ok":true added, as one line with its '\n'. Never throws on bad UTF-8.
std::string ok_reply(nlohmann::json body);

}  // namespace sweepd::core
