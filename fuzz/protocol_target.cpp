#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "core/protocol.hpp"
#include "fuzz_targets.hpp"

namespace sweepd::fuzz {

namespace {

using json = nlohmann::json;

/// A reply is one line of JSON: the client splits replies at '\n' and parses each.
void require_one_json_line(const std::string& reply) {
  require(!reply.empty() && reply.back() == '\n', "a reply ends with a newline");
  require(reply.find('\n') == reply.size() - 1, "a reply is one line");
  require(!json::parse(reply, nullptr, false).is_discarded(), "a reply is valid JSON");
}

void require_cursor_round_trip(core::page_order order, const std::optional<core::page_cursor>& c) {
  if (!c) return;
  require(core::decode_cursor(order, core::encode_cursor(order, *c)) == c,
          "a cursor reads back as itself");
}

void require_timeout(const std::optional<double>& s) {
  if (!s) return;
  require(std::isfinite(*s) && *s >= 0 && *s <= core::max_timeout_s, "a timeout is in range");
}

/// What each accepted request promises to the supervisor: the bounds parse_request checks.
void check_accepted(const core::request& req) {
  std::visit(
      [](const auto& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (requires { r.run; }) {
          require(core::is_valid_run_id(r.run), "an accepted run id is valid");
        }
        if constexpr (std::is_same_v<T, core::register_params>) {
          require(r.suggestion.is_null() || r.suggestion.value().is_object(),
                  "a suggestion is an object");
          require(r.suggestion.text().size() <= core::max_suggestion_bytes,
                  "a suggestion is small");
          require_timeout(r.heartbeat_timeout_s);
          require_timeout(r.max_runtime_s);
        } else if constexpr (std::is_same_v<T, core::heartbeat_params>) {
          require(!r.progress || std::isfinite(*r.progress), "progress is finite");
          require_timeout(r.timeout_s);
        } else if constexpr (std::is_same_v<T, core::complete_params>) {
          require(!r.objective || std::isfinite(*r.objective), "an objective is finite");
          require(!r.cost || (std::isfinite(*r.cost) && *r.cost >= 0), "a cost is finite, >= 0");
        } else if constexpr (std::is_same_v<T, core::fail_params>) {
          require(r.error.size() <= core::max_error_bytes, "an error text is bounded");
          // The error goes into replies and W&B summaries: cut on a character boundary, it must
          // still dump as strict UTF-8.
          try {
            (void)json(r.error).dump();
          } catch (const json::exception&) {
            require(false, "an error text is valid UTF-8");
          }
        } else if constexpr (std::is_same_v<T, core::list_request>) {
          require(r.limit >= 1 && r.limit <= core::max_list_limit, "a list limit is in range");
          require_cursor_round_trip(core::page_order::registered, r.after);
        } else if constexpr (std::is_same_v<T, core::observations_request>) {
          require(!r.limit || (*r.limit >= 1 && *r.limit <= core::max_list_limit),
                  "an observations limit is in range");
          require_cursor_round_trip(core::page_order::finished, r.after);
        }
      },
      req);
}

}  // namespace

void protocol_target(input data) {
  const std::string_view line = as_text(data);
  const core::parse_result r = core::parse_request(line);
  require(r.req.has_value() == (r.err.code == core::error_code::ok),
          "a line gives a request or an error, never both or neither");
  if (r.req) {
    const auto names = core::op_names();
    require(std::find(names.begin(), names.end(), r.op) != names.end(), "an accepted op is named");
    check_accepted(*r.req);
    require_one_json_line(core::ok_reply({{"op", r.op}}));
  } else {
    require(!r.err.message.empty(), "an error says why");
    const std::string reply = core::error_reply(r.err);
    require_one_json_line(reply);
    require(core::reply_result(reply) == core::to_string(r.err.code),
            "reply_result reads back the code");
  }
  // The same text as a cursor: either order may decode it, and what decodes must read back.
  require_cursor_round_trip(core::page_order::registered,
                            core::decode_cursor(core::page_order::registered, line));
  require_cursor_round_trip(core::page_order::finished,
                            core::decode_cursor(core::page_order::finished, line));
}

}  // namespace sweepd::fuzz
