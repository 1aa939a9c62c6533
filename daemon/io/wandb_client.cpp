#include "io/wandb_client.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "core/json_limits.hpp"
#include "core/protocol.hpp"
#include "core/time.hpp"

namespace sweepd::io {

namespace {

using json = nlohmann::json;

constexpr const char* run_query =
    R"(query Run($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $name) { id name state summaryMetrics } }
})";

// The SDK's Runs query (wandb-api.md §5) cut to what reconcile reads. endCursor is asked for but
// not used: the SDK continues after the last edge's cursor, and so do we.
constexpr const char* runs_query =
    R"(query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50,
           $order: String, $filters: JSONString) {
  project(name: $project, entityName: $entity) {
    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
      edges { node { name state createdAt heartbeatAt summaryMetrics } cursor }
      pageInfo { hasNextPage endCursor }
    }
  }
})";

constexpr const char* upsert_mutation =
    R"(mutation UpsertBucket($id: String, $summaryMetrics: JSONString) {
  upsertBucket(input: { id: $id, summaryMetrics: $summaryMetrics }) { bucket { id } }
})";

/// What a JSON value is, for messages: "a number (42)", "null", "an object".
std::string described(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return fmt::format("a boolean ({})", value.get<bool>());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return fmt::format("a number ({})", value.dump());
    default:
      return "not a JSON value";
  }
}

/// "`data.project.run.id` is a number (42), expected a string"; a null `value` is a field that
/// is missing or null.
std::string wrong_type(std::string_view field, const json* value, std::string_view expected) {
  return fmt::format("`{}` is {}, expected {}", field,
                     value ? described(*value) : "missing or null", expected);
}

/// Member `key` of the object `parent`; nullptr when it is absent or null.
const json* member(const json& parent, const char* key) {
  const auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return nullptr;
  return &*it;
}

/// The messages of a GraphQL `errors` array, joined as the W&B SDK does ("[m1; m2]"); an entry
/// of another shape is named instead of its message. Empty when there are no errors.
std::string joined_errors(const json& body) {
  const json* errors = member(body, "errors");
  if (errors == nullptr) return {};
  if (!errors->is_array()) return "[" + wrong_type("errors", errors, "an array") + "]";
  if (errors->empty()) return {};
  std::string joined;
  for (std::size_t i = 0; i < errors->size(); ++i) {
    const json& e = (*errors)[i];
    if (!joined.empty()) joined += "; ";
    const json* message = e.is_object() ? member(e, "message") : nullptr;
    if (message != nullptr && message->is_string()) {
      joined += message->get_ref<const std::string&>();
    } else if (e.is_string()) {
      joined += e.get_ref<const std::string&>();  // W&B's other shape: {"errors": ["msg"]}
    } else if (e.is_object()) {
      joined += wrong_type(fmt::format("errors[{}].message", i), message, "a string");
    } else {
      joined += wrong_type(fmt::format("errors[{}]", i), &e, "an object");
    }
  }
  return "[" + joined + "]";
}

/// Untrusted text for a message: JSON-quoted (control bytes escaped), cut after 64 bytes.
std::string quoted_excerpt(const std::string& text) {
  constexpr std::size_t max_bytes = 64;
  const std::string quoted =
      json(text.substr(0, max_bytes)).dump(-1, ' ', false, json::error_handler_t::replace);
  return text.size() > max_bytes ? quoted + "..." : quoted;
}

/// A time W&B gave as a string or null; `wrong` is set for any other type. Text that is not
/// ISO-8601 is no time rather than a broken answer: reconcile can do without one.
std::optional<core::wall_time> time_field(const json& node, const char* key,
                                          const std::string& where, std::string& wrong) {
  const json* value = member(node, key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) {
    wrong = wrong_type(where + "." + key, value, "a string or null");
    return std::nullopt;
  }
  return core::parse_iso8601_utc(value->get_ref<const std::string&>());
}

/// Reads the page in a Runs answer's `data.project` into `page`; what is wrong with the answer,
/// or empty when it is a usable page. `after` is the cursor the page was asked for.
std::string read_runs_page(const json& project, const std::optional<std::string>& after,
                           wandb_runs_page& page) {
  const json* runs = member(project, "runs");
  if (runs == nullptr || !runs->is_object()) {
    return wrong_type("data.project.runs", runs, "an object");
  }
  const json* edges = member(*runs, "edges");
  if (edges == nullptr || !edges->is_array()) {
    return wrong_type("data.project.runs.edges", edges, "an array");
  }
  const json* page_info = member(*runs, "pageInfo");
  if (page_info == nullptr || !page_info->is_object()) {
    return wrong_type("data.project.runs.pageInfo", page_info, "an object");
  }
  const json* has_next = member(*page_info, "hasNextPage");
  if (has_next == nullptr || !has_next->is_boolean()) {
    return wrong_type("data.project.runs.pageInfo.hasNextPage", has_next, "a boolean");
  }
  page.runs.reserve(edges->size());
  const std::string* last_cursor = nullptr;
  for (std::size_t i = 0; i < edges->size(); ++i) {
    const json& edge = (*edges)[i];
    const std::string where = fmt::format("data.project.runs.edges[{}]", i);
    if (!edge.is_object()) return wrong_type(where, &edge, "an object");
    const json* node = member(edge, "node");
    if (node == nullptr || !node->is_object()) {
      return wrong_type(where + ".node", node, "an object");
    }
    // A bad name is a broken answer, not a run to skip: sweepd could never write to it, and
    // skipping would hide runs the sweep has.
    const json* name = member(*node, "name");
    if (name == nullptr || !name->is_string()) {
      return wrong_type(where + ".node.name", name, "a string");
    }
    const std::string& name_text = name->get_ref<const std::string&>();
    if (!core::is_valid_run_id(name_text)) {
      return fmt::format("`{}.node.name` is {}, not a valid run id", where,
                         quoted_excerpt(name_text));
    }
    const json* state = member(*node, "state");
    if (state == nullptr || !state->is_string()) {
      return wrong_type(where + ".node.state", state, "a string");
    }
    std::string wrong;
    const auto created_at = time_field(*node, "createdAt", where + ".node", wrong);
    if (!wrong.empty()) return wrong;
    const auto heartbeat_at = time_field(*node, "heartbeatAt", where + ".node", wrong);
    if (!wrong.empty()) return wrong;
    // JSONString, as in read_run: text inside a string; null or absent is no summary yet.
    const json* summary = member(*node, "summaryMetrics");
    if (summary != nullptr && !summary->is_string()) {
      return wrong_type(where + ".node.summaryMetrics", summary, "a JSON string");
    }
    const json* cursor = member(edge, "cursor");
    if (cursor == nullptr || !cursor->is_string() ||
        cursor->get_ref<const std::string&>().empty()) {
      return wrong_type(where + ".cursor", cursor, "a non-empty string");
    }
    last_cursor = &cursor->get_ref<const std::string&>();
    core::wandb_listed_run run;
    run.name = name_text;
    run.state = state->get<std::string>();
    run.created_at = created_at;
    run.heartbeat_at = heartbeat_at;
    run.summary_text = summary ? summary->get<std::string>() : "{}";
    page.runs.push_back(std::move(run));
  }
  if (has_next->get<bool>()) {
    // Either would have the caller ask for the same page again and again.
    if (last_cursor == nullptr) {
      return "`data.project.runs.pageInfo.hasNextPage` is true on a page with no runs";
    }
    if (after && *last_cursor == *after) {
      return "`data.project.runs.pageInfo.hasNextPage` is true but the page ends at the cursor "
             "it was asked to continue after";
    }
    page.next_cursor = *last_cursor;
  }
  return {};
}

core::attempt_result dead(std::string error) {
  core::attempt_result r;
  r.what = core::attempt_result::kind::dead;
  r.error = std::move(error);
  return r;
}

core::attempt_result transport_failure(const std::string& error) {
  core::attempt_result r;
  r.what = core::attempt_result::kind::retry;
  r.error = "W&B unreachable: " + error;
  return r;
}

}  // namespace

std::string basic_authorization(const std::string& api_key) {
  const std::string credentials = "api:" + api_key;
  std::string encoded(4 * ((credentials.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                reinterpret_cast<const unsigned char*>(credentials.data()),
                                static_cast<int>(credentials.size()));
  encoded.resize(static_cast<std::size_t>(n));
  return "Basic " + encoded;
}

wandb_client::wandb_client(boost::asio::io_context& io, url base, const std::string& api_key,
                           std::chrono::milliseconds timeout, const clock& time)
    : http_(io, std::move(base), timeout),
      authorization_(basic_authorization(api_key)),
      clock_(time) {}

boost::asio::awaitable<std::pair<core::attempt_result, json>> wandb_client::graphql(
    const char* query, json variables, const std::string& subject) {
  json request = json::object();
  request["query"] = query;
  request["variables"] = std::move(variables);
  // Built before the co_await: GCC 12 mis-compiles braced lists of string literals inside one.
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("Authorization", authorization_);
  std::string body_text = request.dump(-1, ' ', false, json::error_handler_t::replace);
  http_result answer =
      co_await http_.post(std::string("/graphql"), std::move(body_text), std::move(headers));
  if (answer.too_large) {
    // It would be as large next time: a summary does not shrink by itself.
    co_return std::pair{dead(fmt::format("W&B's answer for {} is larger than {} bytes", subject,
                                         http_.max_response_body())),
                        json()};
  }
  if (!answer.response) co_return std::pair{transport_failure(answer.error), json()};
  const http_response& res = *answer.response;
  // The parser is iterative but dump, compare and destroy recurse: bound the depth first.
  json body(json::value_t::discarded);
  if (!core::json_nests_deeper_than(res.body, core::max_stored_json_depth)) {
    body = json::parse(res.body, nullptr, false);
  } else if (res.status == 200 && json::accept(res.body)) {
    co_return std::pair{dead(fmt::format("W&B's answer for {} nests deeper than {} levels", subject,
                                         core::max_stored_json_depth)),
                        json()};
  }
  if (res.status == 200 && !body.is_discarded() && !body.is_object()) {
    co_return std::pair{
        dead(fmt::format("W&B's answer for {} is {}, not a JSON object", subject, described(body))),
        json()};
  }
  // Other statuses are classified by the status alone when the body cannot be read.
  const std::string errors = body.is_object() ? joined_errors(body) : std::string();
  core::attempt_result r =
      core::classify_http(res.status, res.header("retry-after"), res.header("ratelimit-reset"),
                          errors, clock_.wall(), !body.is_discarded());
  if (r.what != core::attempt_result::kind::delivered) co_return std::pair{r, json()};
  const json* data = member(body, "data");
  if (data == nullptr || !data->is_object()) {
    co_return std::pair{dead(fmt::format("W&B's answer for {}: {}", subject,
                                         wrong_type("data", data, "an object"))),
                        json()};
  }
  co_return std::pair{r, *data};
}

boost::asio::awaitable<std::pair<core::attempt_result, std::optional<wandb_run_view>>>
wandb_client::read_run(const std::string& entity, const std::string& project,
                       const std::string& name) {
  json variables = json::object();
  variables["entity"] = entity;
  variables["project"] = project;
  variables["name"] = name;
  const std::string path = entity + "/" + project + "/" + name;
  const std::string subject = "run " + path;
  auto [result, data] = co_await graphql(run_query, std::move(variables), subject);
  using answer = std::pair<core::attempt_result, std::optional<wandb_run_view>>;
  if (result.what != core::attempt_result::kind::delivered) co_return answer{result, {}};
  const auto refused = [&](const std::string& why) {
    return answer{dead(fmt::format("W&B's answer for {}: {}", subject, why)), {}};
  };
  // A null or absent project or run is W&B's way of saying it does not know it.
  const json* project_value = member(data, "project");
  if (project_value != nullptr && !project_value->is_object()) {
    co_return refused(wrong_type("data.project", project_value, "an object"));
  }
  const json* run = project_value ? member(*project_value, "run") : nullptr;
  if (run != nullptr && !run->is_object()) {
    co_return refused(wrong_type("data.project.run", run, "an object"));
  }
  if (run == nullptr) {
    result.what = core::attempt_result::kind::not_found;
    result.error = "W&B does not know run " + path + " (yet)";
    co_return answer{result, {}};
  }
  const json* id = member(*run, "id");
  if (id == nullptr) co_return refused("the run has no `id`");
  if (!id->is_string() || id->get_ref<const std::string&>().empty()) {
    co_return refused(wrong_type("data.project.run.id", id, "a non-empty string"));
  }
  const json* state = member(*run, "state");
  if (state == nullptr || !state->is_string()) {
    co_return refused(wrong_type("data.project.run.state", state, "a string"));
  }
  // JSONString: the summary is JSON text inside a string; null or absent is no summary yet.
  const json* summary = member(*run, "summaryMetrics");
  if (summary != nullptr && !summary->is_string()) {
    co_return refused(wrong_type("data.project.run.summaryMetrics", summary, "a JSON string"));
  }
  wandb_run_view view;
  view.path = path;
  view.storage_id = id->get<std::string>();
  view.state = state->get<std::string>();
  view.summary_text = summary ? summary->get<std::string>() : "{}";
  result.wandb_state = view.state;
  co_return answer{result, std::move(view)};
}

boost::asio::awaitable<std::pair<core::attempt_result, std::optional<wandb_runs_page>>>
wandb_client::list_runs(const std::string& entity, const std::string& project,
                        const std::string& filters_json, const std::optional<std::string>& cursor,
                        int per_page) {
  json variables = json::object();
  variables["entity"] = entity;
  variables["project"] = project;
  variables["filters"] = filters_json;  // JSONString: the text itself, not the object
  variables["order"] = "+created_at";
  variables["perPage"] = per_page;
  variables["cursor"] = cursor ? json(*cursor) : json();
  const std::string path = entity + "/" + project;
  const std::string subject = "the runs of " + path;
  auto [result, data] = co_await graphql(runs_query, std::move(variables), subject);
  using answer = std::pair<core::attempt_result, std::optional<wandb_runs_page>>;
  if (result.what != core::attempt_result::kind::delivered) co_return answer{result, {}};
  const json* project_value = member(data, "project");
  if (project_value == nullptr) {
    result.what = core::attempt_result::kind::not_found;
    result.error = "W&B does not know project " + path;
    co_return answer{result, {}};
  }
  std::string wrong;
  wandb_runs_page page;
  if (!project_value->is_object()) {
    wrong = wrong_type("data.project", project_value, "an object");
  } else {
    wrong = read_runs_page(*project_value, cursor, page);
  }
  if (!wrong.empty()) {
    co_return answer{dead(fmt::format("W&B's answer for {}: {}", subject, wrong)), {}};
  }
  co_return answer{result, std::move(page)};
}

boost::asio::awaitable<core::attempt_result> wandb_client::write_summary(
    const wandb_run_view& run, const std::string& summary_text) {
  json variables = json::object();
  variables["id"] = run.storage_id;
  variables["summaryMetrics"] = summary_text;
  const std::string subject = "the summary write of run " + run.path;
  auto [result, data] = co_await graphql(upsert_mutation, std::move(variables), subject);
  if (result.what != core::attempt_result::kind::delivered) co_return result;
  // The bucket id is W&B's receipt: without it nothing says the summary was stored.
  const json* upsert = member(data, "upsertBucket");
  const json* bucket = upsert && upsert->is_object() ? member(*upsert, "bucket") : nullptr;
  const json* id = bucket && bucket->is_object() ? member(*bucket, "id") : nullptr;
  std::string wrong;
  if (upsert == nullptr) {
    wrong = "it returned no `upsertBucket`";
  } else if (!upsert->is_object()) {
    wrong = wrong_type("data.upsertBucket", upsert, "an object");
  } else if (bucket == nullptr) {
    wrong = "it returned no bucket";
  } else if (!bucket->is_object()) {
    wrong = wrong_type("data.upsertBucket.bucket", bucket, "an object");
  } else if (id == nullptr) {
    wrong = "it returned no bucket id";
  } else if (!id->is_string()) {
    wrong = wrong_type("data.upsertBucket.bucket.id", id, "a string");
  }
  if (!wrong.empty()) {
    co_return dead(fmt::format("W&B accepted {} but {}", subject, wrong));
  }
  co_return result;
}

}  // namespace sweepd::io
