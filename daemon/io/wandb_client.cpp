#include "io/wandb_client.hpp"

#include <openssl/evp.h>

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

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

/// The messages of a GraphQL `errors` array, joined as the W&B SDK does ("[m1; m2]").
std::string joined_errors(const json& body) {
  auto it = body.find("errors");
  if (it == body.end() || !it->is_array() || it->empty()) return {};
  std::string joined;
  for (const json& e : *it) {
    if (!joined.empty()) joined += "; ";
    if (e.is_object() && e.contains("message") && e["message"].is_string()) {
      joined += e["message"].get<std::string>();
    } else {
      joined += e.dump();
    }
  }
  return "[" + joined + "]";
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
    const char* query, json variables) {
  json request = json::object();
  request["query"] = query;
  request["variables"] = std::move(variables);
  // Built before the co_await: GCC 12 mis-compiles braced lists of string literals inside one.
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("Authorization", authorization_);
  std::string body_text = request.dump(-1, ' ', false, json::error_handler_t::replace);
  http_result answer =
      co_await http_.post(std::string("/graphql"), std::move(body_text), std::move(headers));
  if (!answer.response) co_return std::pair{transport_failure(answer.error), json()};
  const http_response& res = *answer.response;
  const json body = json::parse(res.body, nullptr, false);
  std::string errors = body.is_object() ? joined_errors(body) : std::string();
  if (res.status == 200 && !body.is_object()) errors = "the answer is not a JSON object";
  core::attempt_result r =
      core::classify_http(res.status, res.header("retry-after"), res.header("ratelimit-reset"),
                          errors, std::chrono::system_clock::now());
  if (r.what != core::attempt_result::kind::delivered) co_return std::pair{r, json()};
  co_return std::pair{r, body.value("data", json())};
}

boost::asio::awaitable<std::pair<core::attempt_result, std::optional<wandb_run_view>>>
wandb_client::read_run(const std::string& entity, const std::string& project,
                       const std::string& name) {
  json variables = json::object();
  variables["entity"] = entity;
  variables["project"] = project;
  variables["name"] = name;
  auto [result, data] = co_await graphql(run_query, std::move(variables));
  if (result.what != core::attempt_result::kind::delivered) {
    co_return std::pair{result, std::optional<wandb_run_view>()};
  }
  const json* run = nullptr;
  if (data.is_object() && data["project"].is_object() && data["project"]["run"].is_object()) {
    run = &data["project"]["run"];
  }
  if (run == nullptr) {
    result.what = core::attempt_result::kind::not_found;
    result.error = "W&B does not know run " + entity + "/" + project + "/" + name + " (yet)";
    co_return std::pair{result, std::optional<wandb_run_view>()};
  }
  wandb_run_view view;
  view.storage_id = run->value("id", "");
  view.state = run->value("state", "");
  const json& summary = (*run)["summaryMetrics"];
  view.summary_text = summary.is_string() ? summary.get<std::string>() : "{}";
  if (view.storage_id.empty()) {
    result.what = core::attempt_result::kind::dead;
    result.error = "W&B returned run " + name + " without an id";
    co_return std::pair{result, std::optional<wandb_run_view>()};
  }
  result.wandb_state = view.state;
  co_return std::pair{result, std::optional<wandb_run_view>(std::move(view))};
}

boost::asio::awaitable<core::attempt_result> wandb_client::write_summary(
    const std::string& storage_id, const std::string& summary_text) {
  json variables = json::object();
  variables["id"] = storage_id;
  variables["summaryMetrics"] = summary_text;
  auto [result, data] = co_await graphql(upsert_mutation, std::move(variables));
  if (result.what == core::attempt_result::kind::delivered) {
    const bool has_id = data.is_object() && data["upsertBucket"].is_object() &&
                        data["upsertBucket"]["bucket"].is_object() &&
                        data["upsertBucket"]["bucket"].contains("id");
    if (!has_id) {
      result.what = core::attempt_result::kind::dead;
      result.error = "W&B accepted upsertBucket but returned no bucket id";
    }
  }
  co_return result;
}

}  // namespace sweepd::io
