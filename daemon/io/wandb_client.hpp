#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/delivery.hpp"
#include "core/reconcile.hpp"
#include "io/clock.hpp"
#include "io/http_client.hpp"

namespace sweepd::io {

/// A W&B run as the summary writer needs it.
struct wandb_run_view {
  std::string path;          // entity/project/name, for messages
  std::string storage_id;    // GraphQL `id`, what upsertBucket takes
  std::string state;         // W&B's own run state: running, finished, crashed, …
  std::string summary_text;  // summaryMetrics as stored: JSON text, maybe with NaN tokens
};

/// One page of a project's runs (wandb-api.md §5).
struct wandb_runs_page {
  std::vector<core::wandb_listed_run> runs;
  std::optional<std::string> next_cursor;  // the last edge's cursor when hasNextPage, else nullopt
};

/// The GraphQL operations sweepd needs (DESIGN §4, wandb-api.md §3–§5), with every HTTP
/// answer classified for the delivery policy. W&B's answers are untrusted: bodies over the HTTP
/// client's cap, JSON nested deeper than core::max_stored_json_depth and fields of the wrong type
/// are classified failures, never exceptions. The API key only ever goes into the Authorization
/// header; no error or log line contains it.
class wandb_client {
 public:
  /// `time` dates W&B's Retry-After answers.
  wandb_client(boost::asio::io_context& io, url base, const std::string& api_key,
               std::chrono::milliseconds timeout, const clock& time = real_clock());

  /// Reads a run by entity/project/name; `not_found` when W&B does not know the project or run,
  /// `dead` when the answer is unusable (a field of the wrong type, too large, too deep).
  boost::asio::awaitable<std::pair<core::attempt_result, std::optional<wandb_run_view>>> read_run(
      const std::string& entity, const std::string& project, const std::string& name);

  /// One page of the runs of entity/project matching `filters_json` (JSON text, sent as the
  /// JSONString variable `filters`), order "+created_at", `per_page` at most, after `cursor`
  /// (nullopt: the first page). A project W&B does not know is `not_found`; an unusable answer
  /// (a field of the wrong type, too large, too deep) is `dead` with a message naming the field.
  /// A createdAt or heartbeatAt that is not ISO-8601 is nullopt, not an error. The answer cap
  /// bounds the whole page: one over it is `dead` however small each run, so a caller that
  /// meets "larger than" can ask again with a smaller `per_page`.
  boost::asio::awaitable<std::pair<core::attempt_result, std::optional<wandb_runs_page>>> list_runs(
      const std::string& entity, const std::string& project, const std::string& filters_json,
      const std::optional<std::string>& cursor, int per_page);

  /// Replaces the run's whole summary with `summary_text` (upsertBucket {id, summaryMetrics}).
  boost::asio::awaitable<core::attempt_result> write_summary(const wandb_run_view& run,
                                                             const std::string& summary_text);

  void set_timeout(std::chrono::milliseconds t) { http_.set_timeout(t); }
  void close() { http_.close(); }

 private:
  /// POSTs a GraphQL document; the parsed `data` object on success, else the classified failure.
  /// `subject` names what the answer is about in messages ("run e/p/n").
  boost::asio::awaitable<std::pair<core::attempt_result, nlohmann::json>> graphql(
      const char* query, nlohmann::json variables, const std::string& subject);

  http_client http_;
  std::string authorization_;
  const clock& clock_;
};

/// "Basic base64(api:KEY)", the header W&B's SDKs send.
std::string basic_authorization(const std::string& api_key);

}  // namespace sweepd::io
