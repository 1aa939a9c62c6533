#include "io/wandb_client.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "core/json_limits.hpp"

namespace sweepd::io {

namespace {

using json = nlohmann::json;

constexpr const char* run_query =
    R"(query Run($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $name) { id name state summaryMetrics } }
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
                           std::chrono::milliseconds timeout)
    : http_(io, std::move(base), timeout), authorization_(basic_authorization(api_key)) {}

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
                          errors, std::chrono::system_clock::now(), !body.is_discarded());
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
