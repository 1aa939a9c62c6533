#pragma once

// An in-process fake of the W&B GraphQL endpoint (shared/wandb-api.md §1-§5, §7) for tests and
// benchmarks: the run query, the Runs listing (filters, pages), the upsertBucket summary
// mutation, Basic auth, and scripted
// faults (401, 429 with Retry-After or RateLimit-Reset, 5xx, slow answers, dropped connections,
// GraphQL errors in a 200, a 200 that is not JSON, any canned answer), and hostile run answers
// (fields of the wrong JSON type, summaries nested deep or very large).
//
//   sweepd::test::fake_wandb wandb;                       // listens on 127.0.0.1:<kernel port>
//   wandb.add_run("ent", "proj", "run1", R"({"loss":NaN})");
//   wandb.push_fault(fake_wandb::fault::rate_limited_429, std::chrono::seconds(2));
//   ... point the daemon at wandb.base_url() with wandb.api_key() ...
//   ASSERT_TRUE(wandb.wait_until([&] { return wandb.upserts() >= 1; }, std::chrono::seconds(10)));
//   EXPECT_EQ(wandb.summary("ent", "proj", "run1"), ...);
//
// Summaries are kept as opaque text, exactly as the client sent them, because real W&B summaries
// hold bare NaN/Infinity/-Infinity tokens that strict JSON parsers refuse.
//
// The Runs listing (a query whose text has `runs(`) reads the variables the W&B SDK sends:
// `filters` (JSONString), `perPage` (default 50, clamped to [1, 1000]), `cursor` and `order`. It
// answers the runs of that entity/project only, ordered by createdAt (as text) then name, after
// `cursor`, an opaque cursor this fake issued. Filters: `$and` (an array of conditions; the keys
// of one object must all hold), fields `sweep`, `name`, `state` and `summary_metrics.<key>`, where
// <key> is the summary's flat top-level key ("summary_metrics.protein.state" reads the key
// "protein.state", as sweepd writes it), each either equal to a value or tested with `$eq`, `$ne`,
// `$in` and `$exists` (a missing field equals null, as in MongoDB). Anything else in a filter, an
// order other than "+created_at" and an unknown cursor are a 200 with GraphQL `errors`.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sweepd::test {

class fake_wandb {
 public:
  /// Starts an HTTP/1.1 server (keep-alive) on 127.0.0.1, port 0, on its own thread and
  /// io_context. Throws std::system_error when it cannot listen.
  explicit fake_wandb(std::string api_key = "fake-key-0123456789012345678901234567890123456789");
  /// Stops the server (open connections are closed, pending answers dropped) and joins it.
  ~fake_wandb();
  fake_wandb(const fake_wandb&) = delete;
  fake_wandb& operator=(const fake_wandb&) = delete;

  /// "http://127.0.0.1:PORT".
  std::string base_url() const;
  /// The key requests must carry as `Authorization: Basic base64("api:" + key)`.
  const std::string& api_key() const;
  /// The storage id W&B gives a run: base64("Run:v1:<name>:<project>:<entity>").
  static std::string storage_id(const std::string& entity, const std::string& project,
                                const std::string& name);

  /// Adds (or resets) a run; its project becomes known too.
  void add_run(const std::string& entity, const std::string& project, const std::string& name,
               const std::string& summary_json_text = "{}", const std::string& state = "running");
  /// The run's summaryMetrics text exactly as last written. Throws std::out_of_range for an
  /// unknown run (as do set_summary, set_state and state).
  std::string summary(const std::string& entity, const std::string& project,
                      const std::string& name) const;
  /// Replaces the summary text, as the live run does when it re-uploads its summary.
  void set_summary(const std::string& entity, const std::string& project, const std::string& name,
                   const std::string& text);
  /// The run's W&B state ("running", "finished", "crashed", ...).
  std::string state(const std::string& entity, const std::string& project,
                    const std::string& name) const;
  void set_state(const std::string& entity, const std::string& project, const std::string& name,
                 const std::string& state);
  /// The run's sweep and its W&B times, as ISO-8601 text the way W&B answers it (e.g.
  /// "2023-11-05T17:46:35"); an empty string is null. A run starts with none of them.
  void set_run_meta(const std::string& entity, const std::string& project, const std::string& name,
                    const std::string& sweep, const std::string& created_at,
                    const std::string& heartbeat_at);
  /// Answers the run query and the run's node in the Runs listing with `raw_json` spliced in as
  /// is for the run's `field` ("id", "name", "state", "sweepName", "createdAt", "heartbeatAt" or
  /// "summaryMetrics"): a number, null, an object, anything. Nullopt leaves the field out of the
  /// answer; reset_raw_fields() goes back to the stored values. Filters see the stored values.
  void set_raw_field(const std::string& entity, const std::string& project, const std::string& name,
                     const std::string& field, std::optional<std::string> raw_json);
  void reset_raw_fields(const std::string& entity, const std::string& project,
                        const std::string& name);

  /// A summary text whose arrays nest exactly `depth` deep (inside its top-level object), e.g.
  /// {"loss":0.5,"deep":[[…]]} — what a user can store with wandb.summary.
  static std::string nested_summary(std::size_t depth);
  /// A summary text of at least `bytes` bytes: many keys with numbers, strings and NaN tokens.
  static std::string large_summary(std::size_t bytes);

  /// A scripted fault. Faults are queued and each incoming request (any method or target) takes
  /// the oldest one before normal handling.
  enum class fault {
    unauthorized_401,     // 401 {"errors":[{"message":"permission denied"}]}
    rate_limited_429,     // 429 with Retry-After: ceil(param in s), or RateLimit-Reset: 1 if zero
    server_error_500,     // 500 with an `errors` body
    unavailable_503,      // 503 with an `errors` body
    not_implemented_501,  // 501 with an `errors` body
    bad_request_400,      // 400 with an `errors` body
    slow,                 // waits param (on a timer: other connections go on), then handles it
    drop_connection,      // closes the connection without answering
    graphql_errors_200,   // 200 {"data":null,"errors":[...]}; the request is not applied
    html_200,             // 200 with an HTML page (a proxy's error page); not applied
  };
  /// Queues a fault; `param` is the 429's Retry-After or the slow fault's delay.
  void push_fault(fault f, std::chrono::milliseconds param = {});
  /// Queues a canned answer, taken like a fault: the next request gets `status` and `body` (as
  /// application/json) and is not applied.
  void push_answer(unsigned status, std::string body);
  /// A delay added before every answer (for benchmarks); zero by default.
  void set_latency(std::chrono::milliseconds latency);

  /// Requests received (fully read), whatever became of them.
  std::size_t requests() const;
  /// upsertBucket mutations that were applied.
  std::size_t upserts() const;
  /// Runs queries (listings) the fake answered itself, filter errors included; a request taken
  /// by a fault or a canned answer is not one.
  std::size_t list_queries() const;
  /// Once `answered` listings have been answered, every further one gets a 503 (W&B failing in
  /// the middle of a listing).
  void fail_listings_after(std::size_t answered);
  /// The most requests that were between being read and being answered (or dropped) at once.
  std::size_t max_concurrent() const;

  /// One handled request: status 0 when its connection was dropped on purpose.
  struct recorded {
    std::string authorization;
    std::string body;
    unsigned status = 0;
  };
  /// Every handled request, oldest first.
  std::vector<recorded> log() const;

  /// Blocks until pred() holds or the timeout passes; returns pred(). pred() is called without
  /// the fake's lock held (it may call the accessors above) and re-checked whenever a request
  /// arrives or is answered.
  bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace sweepd::test
