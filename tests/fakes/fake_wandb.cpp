#include "fakes/fake_wandb.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "core/json_limits.hpp"
#include "core/lenient_json.hpp"

namespace sweepd::test {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::as_tuple;
using asio::use_awaitable;
using asio::ip::tcp;
using nlohmann::json;

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

/// Large enough for any summary a test writes; Beast's default (1 MB) is not.
constexpr std::uint64_t max_body_bytes = std::uint64_t{64} * 1024 * 1024;

std::string base64(const std::string& in) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const auto n = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16 |
                   static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8 |
                   static_cast<unsigned>(static_cast<unsigned char>(in[i + 2]));
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  const std::size_t rest = in.size() - i;
  if (rest > 0) {
    unsigned n = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) n |= static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

/// JSON text of a W&B-style error body.
std::string errors_body(const std::string& message) {
  return json{{"errors", json::array({{{"message", message}}})}}.dump();
}

/// A string variable, or nullopt when absent or not a string.
std::optional<std::string> string_variable(const json& variables, const char* key) {
  if (!variables.is_object()) return std::nullopt;
  const auto it = variables.find(key);
  if (it == variables.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

/// Never throws: stored summaries came through a JSON parser (or from the test) so are UTF-8;
/// replacing bad bytes is better than losing the answer if a test stores something odd.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

/// JSON text of a 200 whose GraphQL `errors` say why the request could not be answered.
std::string graphql_error(const std::string& message) {
  return dump(json{{"data", nullptr}, {"errors", json::array({{{"message", message}}})}});
}

/// True when the document selects a `runs(...)` connection: the Runs listing, not the run query.
bool selects_runs(const std::string& query) {
  for (std::size_t at = query.find("runs"); at != std::string::npos;
       at = query.find("runs", at + 1)) {
    std::size_t next = at + 4;
    while (next < query.size() &&
           std::string_view(" \t\r\n").find(query[next]) != std::string_view::npos) {
      ++next;
    }
    if (next < query.size() && query[next] == '(') return true;
  }
  return false;
}

}  // namespace

struct fake_wandb::impl {
  struct run_record {
    std::string entity;
    std::string project;
    std::string name;
    std::string summary;
    std::string state;
    std::string sweep;         // empty: null
    std::string created_at;    // ISO-8601 text as W&B answers it; empty: null
    std::string heartbeat_at;  // likewise
    /// Fields answered as raw JSON text instead of the values above; nullopt = left out.
    std::map<std::string, std::optional<std::string>> raw;
  };

  /// Where a run sits in the listing's order, and what a cursor stands for.
  using list_key = std::pair<std::string, std::string>;  // (createdAt text, name)

  /// A run as a filter sees it; the summary is parsed on first use.
  class filter_view {
   public:
    explicit filter_view(const run_record* run) : run_(run) {}

    /// The field's value; nullopt when the run has none. Sets `error` for a field the fake does
    /// not filter on.
    std::optional<json> field(const std::string& key, std::string& error) {
      static constexpr std::string_view summary_prefix = "summary_metrics.";
      if (key == "sweep") {
        if (!run_ || run_->sweep.empty()) return std::nullopt;
        return json(run_->sweep);
      }
      if (key == "name") return run_ ? std::optional<json>(run_->name) : std::nullopt;
      if (key == "state") return run_ ? std::optional<json>(run_->state) : std::nullopt;
      if (key.starts_with(summary_prefix) && key.size() > summary_prefix.size()) {
        const json& summary = parsed_summary();
        const auto it = summary.find(key.substr(summary_prefix.size()));
        if (it == summary.end()) return std::nullopt;
        return *it;
      }
      if (error.empty()) error = "the fake W&B cannot filter on `" + key + "`";
      return std::nullopt;
    }

   private:
    /// The summary's top-level object; an empty one when it is not a readable JSON object (a
    /// summary holding NaN tokens is readable: they become stand-ins equal to no filter value).
    const json& parsed_summary() {
      if (!summary_) {
        json value =
            run_ ? core::parse_lenient_json(run_->summary, core::max_stored_json_depth).value
                 : json::object();
        summary_ = value.is_object() ? std::move(value) : json::object();
      }
      return *summary_;
    }

    const run_record* run_;  // nullptr: a run with no fields, to check a filter's shape
    std::optional<json> summary_;
  };

  /// A queued fault, or a canned answer.
  struct scripted {
    fault what = fault::slow;
    std::chrono::milliseconds param{};
    std::optional<std::pair<unsigned, std::string>> answer;
  };

  /// A connection's socket and its delay timer, kept here so stop() can close and cancel them.
  struct connection {
    explicit connection(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
    tcp::socket socket;
    asio::steady_timer timer;
  };

  /// What was decided for a request when it arrived.
  struct arrival {
    std::optional<fault> injected;
    std::chrono::milliseconds param{};
    std::chrono::milliseconds delay{};
    std::optional<std::pair<unsigned, std::string>> answer;
  };

  explicit impl(std::string key)
      : api_key(std::move(key)), expected_authorization("Basic " + base64("api:" + api_key)) {
    const tcp::endpoint local(asio::ip::make_address_v4("127.0.0.1"), 0);
    acceptor.open(local.protocol());
    acceptor.bind(local);
    acceptor.listen(asio::socket_base::max_listen_connections);
    port = acceptor.local_endpoint().port();
    asio::co_spawn(io, accept_loop(), rethrow);
    thread = std::thread([this] { io.run(); });
  }

  ~impl() {
    // Nothing may leave a destructor; a fake that cannot stop its thread is a broken test run.
    try {
      asio::post(io, [this] { stop(); });
      if (thread.joinable()) thread.join();
    } catch (const std::exception& e) {
      fail_loudly(e.what());
    }
  }

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  /// A failure in the server coroutines is a bug in the fake: fail loudly rather than hang a test.
  static void rethrow(const std::exception_ptr& e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      fail_loudly(ex.what());
    }
    std::terminate();
  }

  [[noreturn]] static void fail_loudly(const char* why) noexcept {
    // No check: the process ends on the next line whether or not stderr took the message.
    (void)std::fprintf(stderr, "fake_wandb: %s\n", why);
    std::terminate();
  }

  // --- server thread only ---------------------------------------------------------------------

  void stop() {
    stopping = true;
    boost::system::error_code ec;
    acceptor.close(ec);
    for (auto& c : connections) {
      c.timer.cancel();
      c.socket.shutdown(tcp::socket::shutdown_both, ec);
      c.socket.close(ec);
    }
  }

  asio::awaitable<void> accept_loop() {
    while (!stopping) {
      auto [ec, sock] = co_await acceptor.async_accept(as_tuple(use_awaitable));
      if (stopping) break;
      if (ec) continue;  // a transient failure (e.g. EMFILE); the test will notice if it lasts
      connections.emplace_back(std::move(sock));
      asio::co_spawn(io, serve(std::prev(connections.end())), rethrow);
    }
  }

  asio::awaitable<void> serve(std::list<connection>::iterator conn) {
    tcp::socket& sock = conn->socket;
    beast::flat_buffer buffer;
    while (!stopping) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(max_body_bytes);
      auto [rec, read] = co_await http::async_read(sock, buffer, parser, as_tuple(use_awaitable));
      if (rec || stopping) break;
      request req = parser.release();
      const arrival what = arrive();
      const in_flight_guard guard(*this);
      if (what.injected == fault::drop_connection) {
        record(req, 0);
        break;
      }
      if (what.delay.count() > 0) {
        conn->timer.expires_after(what.delay);
        co_await conn->timer.async_wait(as_tuple(use_awaitable));
        if (stopping) break;
      }
      response res = answer(req, what);
      auto [wec, written] = co_await http::async_write(sock, res, as_tuple(use_awaitable));
      if (wec || !res.keep_alive()) break;
    }
    if (!stopping) {
      boost::system::error_code ec;
      sock.shutdown(tcp::socket::shutdown_both, ec);
      sock.close(ec);
    }
    connections.erase(conn);
  }

  /// Counts a request in and takes its fault, if any.
  arrival arrive() {
    arrival what;
    {
      const std::lock_guard lock(mutex);
      ++requests;
      ++in_flight;
      max_concurrent = std::max(max_concurrent, in_flight);
      what.delay = latency;
      if (!faults.empty()) {
        scripted next = std::move(faults.front());
        faults.pop_front();
        if (next.answer) {
          what.answer = std::move(next.answer);
        } else {
          what.injected = next.what;
          what.param = next.param;
          if (what.injected == fault::slow) what.delay += what.param;
        }
      }
      ++generation;
    }
    changed.notify_all();
    return what;
  }

  /// Counts a request out (answered, dropped, or cut by stop()) on every path out of serve().
  struct in_flight_guard {
    explicit in_flight_guard(impl& owner) : self(owner) {}
    in_flight_guard(const in_flight_guard&) = delete;
    in_flight_guard& operator=(const in_flight_guard&) = delete;
    ~in_flight_guard() {
      {
        const std::lock_guard lock(self.mutex);
        --self.in_flight;
        ++self.generation;
      }
      self.changed.notify_all();
    }
    impl& self;
  };

  void record(const request& req, unsigned status) {
    const std::lock_guard lock(mutex);
    record_locked(req, status);
  }

  void record_locked(const request& req, unsigned status) {
    log.push_back({std::string(req[http::field::authorization]), req.body(), status});
  }

  response answer(const request& req, const arrival& what) {
    response res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.set(http::field::server, "fake-wandb");
    res.set(http::field::content_type, "application/json");
    {
      const std::lock_guard lock(mutex);
      const auto [status, body] = handle(req, what, res);
      res.result(status);
      res.body() = body;
      record_locked(req, status);
    }
    res.prepare_payload();
    return res;
  }

  /// The status and body for a request (under the lock); may add headers to `res`.
  std::pair<unsigned, std::string> handle(const request& req, const arrival& what, response& res) {
    if (what.answer) return *what.answer;
    if (what.injected) {
      switch (*what.injected) {
        case fault::unauthorized_401:
          return {401, errors_body("permission denied")};
        case fault::rate_limited_429: {
          const auto ms = what.param.count();
          if (ms > 0) {
            res.set(http::field::retry_after, std::to_string((ms + 999) / 1000));
          } else {
            res.set("RateLimit-Reset", "1");
          }
          res.set("RateLimit-Limit", "1000");
          res.set("RateLimit-Remaining", "0");
          return {429, errors_body("Rate limit exceeded")};
        }
        case fault::server_error_500:
          return {500, errors_body("internal server error")};
        case fault::unavailable_503:
          return {503, errors_body("service unavailable")};
        case fault::not_implemented_501:
          return {501, errors_body("not implemented")};
        case fault::bad_request_400:
          return {400, errors_body("bad request")};
        case fault::graphql_errors_200:
          return {200, dump(json{{"data", nullptr},
                                 {"errors", json::array({{{"message", "injected error"}}})}})};
        case fault::html_200:
          res.set(http::field::content_type, "text/html");
          return {200,
                  "<html><head><title>Error</title></head><body><h1>Something went wrong"
                  "</h1><p>Please try again later.</p></body></html>"};
        case fault::slow:
        case fault::drop_connection:
          break;  // slow: already waited; drop never gets here
      }
    }
    if (req.method() != http::verb::post || req.target() != "/graphql") {
      return {404, errors_body("not found")};
    }
    if (req[http::field::authorization] != expected_authorization) {
      return {401, errors_body("permission denied")};
    }
    const json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("query") ||
        !body["query"].is_string()) {
      return {400, errors_body("the body must be a JSON object with a \"query\" string")};
    }
    const json variables = body.value("variables", json::object());
    const std::string& query = body["query"].get_ref<const std::string&>();
    if (query.find("upsertBucket") != std::string::npos) return {200, upsert_bucket(variables)};
    if (selects_runs(query)) {
      if (listings_fail_after && list_queries >= *listings_fail_after) {
        return {503, errors_body("service unavailable")};
      }
      ++list_queries;
      return {200, runs_query(variables)};
    }
    return {200, run_query(variables)};
  }

  std::string upsert_bucket(const json& variables) {
    const auto id = string_variable(variables, "id");
    const auto it = id ? runs.find(*id) : runs.end();
    if (it == runs.end()) {
      return dump(json{{"data", {{"upsertBucket", nullptr}}},
                       {"errors", json::array({{{"message", "run not found"},
                                                {"path", json::array({"upsertBucket"})}}})}});
    }
    if (variables.contains("summaryMetrics") && !variables["summaryMetrics"].is_null()) {
      const json& metrics = variables["summaryMetrics"];
      if (!metrics.is_string()) {
        // JSONString travels as JSON text inside a string; an object here is a client bug.
        return errors_body("summaryMetrics: expected a JSON string, got " +
                           std::string(metrics.type_name()));
      }
      it->second.summary = metrics.get<std::string>();
    }
    ++upserts;
    return dump(json{{"data", {{"upsertBucket", {{"bucket", {{"id", *id}}}}}}}});
  }

  std::string run_query(const json& variables) const {
    const std::string entity = string_variable(variables, "entity").value_or("");
    const std::string project = string_variable(variables, "project").value_or("");
    const std::string name = string_variable(variables, "name").value_or("");
    if (!projects.contains({entity, project})) return dump(json{{"data", {{"project", nullptr}}}});
    const auto it = runs.find(storage_id(entity, project, name));
    if (it == runs.end()) return dump(json{{"data", {{"project", {{"run", nullptr}}}}}});
    const std::pair<const char*, json> fields[] = {{"id", it->first},
                                                   {"name", it->second.name},
                                                   {"state", it->second.state},
                                                   {"summaryMetrics", it->second.summary}};
    return R"({"data":{"project":{"run":)" + object_text(it->second, fields) + "}}}";
  }

  /// A run's fields as a JSON object's text, each raw field of the test in place of its value.
  /// Built as text so that a raw field goes out exactly as given, even nested too deep for a JSON
  /// value to hold or not JSON at all.
  template <std::size_t n>
  static std::string object_text(const run_record& run,
                                 const std::pair<const char*, json> (&fields)[n]) {
    std::string out;
    for (const auto& [key, value] : fields) {
      const auto raw = run.raw.find(key);
      if (raw != run.raw.end() && !raw->second) continue;
      if (!out.empty()) out += ',';
      out += dump(json(key)) + ':' + (raw != run.raw.end() ? *raw->second : dump(value));
    }
    return '{' + out + '}';
  }

  static json text_or_null(const std::string& text) { return text.empty() ? json() : json(text); }

  /// The Runs listing (wandb-api.md §5): one page of the project's runs that pass the filter.
  std::string runs_query(const json& variables) {
    const std::string entity = string_variable(variables, "entity").value_or("");
    const std::string project = string_variable(variables, "project").value_or("");
    if (!projects.contains({entity, project})) return dump(json{{"data", {{"project", nullptr}}}});

    json filter = json::object();
    if (const auto f = variables.find("filters"); f != variables.end() && !f->is_null()) {
      // JSONString travels as JSON text inside a string; an object here is a client bug.
      if (!f->is_string()) {
        return graphql_error("filters: expected a JSON string, got " + std::string(f->type_name()));
      }
      filter = json::parse(f->get_ref<const std::string&>(), nullptr, false);
      if (filter.is_discarded() || !filter.is_object()) {
        return graphql_error("filters: expected the text of a JSON object");
      }
    }
    // A filter is checked whole before any run is, as a server would, so that a mistake in a
    // branch no run reaches is still an error.
    std::string error;
    filter_view nobody(nullptr);
    passes(filter, nobody, error);
    if (!error.empty()) return graphql_error("filters: " + error);

    if (const auto o = variables.find("order");
        o != variables.end() && !o->is_null() && *o != "+created_at") {
      return graphql_error("the fake W&B orders by \"+created_at\" only, not " + o->dump());
    }

    std::size_t per_page = 50;
    if (const auto p = variables.find("perPage"); p != variables.end() && !p->is_null()) {
      if (!p->is_number_integer()) {
        return graphql_error("perPage: expected an Int, got " + p->dump());
      }
      // Unsigned first: a number above INT64_MAX read as signed would wrap to a negative one.
      per_page =
          p->is_number_unsigned()
              ? static_cast<std::size_t>(std::min<std::uint64_t>(p->get<std::uint64_t>(), 1000))
              : 1;
      per_page = std::max<std::size_t>(per_page, 1);
    }

    std::optional<list_key> after;
    if (const auto c = variables.find("cursor"); c != variables.end() && !c->is_null()) {
      const auto issued = c->is_string() ? cursors.find(c->get<std::string>()) : cursors.end();
      if (issued == cursors.end()) return graphql_error("invalid cursor " + c->dump());
      after = issued->second;
    }

    std::map<list_key, const run_record*> listed;
    for (const auto& [id, run] : runs) {
      if (run.entity != entity || run.project != project) continue;
      const list_key key{run.created_at, run.name};
      if (after && key <= *after) continue;
      filter_view view(&run);
      if (passes(filter, view, error)) listed.emplace(key, &run);
    }

    std::string edges;
    std::string last_cursor;
    std::size_t taken = 0;
    for (auto it = listed.begin(); it != listed.end() && taken < per_page; ++it, ++taken) {
      const run_record& run = *it->second;
      last_cursor = base64("Cursor:v1:" + it->first.first + "\n" + it->first.second);
      cursors.emplace(last_cursor, it->first);
      const std::pair<const char*, json> fields[] = {
          {"id", storage_id(run.entity, run.project, run.name)},
          {"name", run.name},
          {"state", run.state},
          {"sweepName", text_or_null(run.sweep)},
          {"createdAt", text_or_null(run.created_at)},
          {"heartbeatAt", text_or_null(run.heartbeat_at)},
          {"summaryMetrics", run.summary}};
      if (!edges.empty()) edges += ',';
      edges += R"({"node":)" + object_text(run, fields) + R"(,"cursor":)" +
               dump(json(last_cursor)) + '}';
    }
    const bool more = listed.size() > taken;
    const std::string end_cursor = taken > 0 ? dump(json(last_cursor)) : "null";
    return R"({"data":{"project":{"runs":{"edges":[)" + edges + R"(],"pageInfo":{"hasNextPage":)" +
           (more ? "true" : "false") + R"(,"endCursor":)" + end_cursor + "}}}}}";
  }

  /// Whether the run passes every condition of the object `conditions`. Every condition is
  /// looked at, none skipped, so that `error` names the first the fake cannot evaluate.
  static bool passes(const json& conditions, filter_view& run, std::string& error) {
    bool all = true;
    for (const auto& [key, value] : conditions.items()) {
      bool ok = false;
      if (key == "$and") {
        if (!value.is_array()) {
          if (error.empty()) error = "$and expects an array, got " + value.dump();
          return false;
        }
        ok = true;
        for (const json& each : value) {
          if (!each.is_object()) {
            if (error.empty()) error = "$and expects objects, got " + each.dump();
            return false;
          }
          ok = passes(each, run, error) && ok;
        }
      } else if (key.starts_with('$')) {
        if (error.empty()) error = "the fake W&B does not support the operator " + key;
        return false;
      } else {
        ok = holds(run.field(key, error), value, error);
      }
      all = ok && all;
    }
    return all;
  }

  /// Whether a field's value (nullopt: the run has none) meets `condition`: equal to a value, or
  /// each of the operators in an object.
  static bool holds(const std::optional<json>& field, const json& condition, std::string& error) {
    // MongoDB's rule: a missing field equals null.
    const auto equal = [&](const json& v) { return field ? *field == v : v.is_null(); };
    if (!condition.is_object()) return equal(condition);
    if (condition.empty()) {
      if (error.empty()) error = "a condition needs a value or an operator";
      return false;
    }
    bool all = true;
    for (const auto& [op, arg] : condition.items()) {
      bool ok = false;
      if (op == "$eq") {
        ok = equal(arg);
      } else if (op == "$ne") {
        ok = !equal(arg);
      } else if (op == "$in") {
        if (!arg.is_array()) {
          if (error.empty()) error = "$in expects an array, got " + arg.dump();
          return false;
        }
        ok = std::any_of(arg.begin(), arg.end(), equal);
      } else if (op == "$exists") {
        if (!arg.is_boolean()) {
          if (error.empty()) error = "$exists expects a boolean, got " + arg.dump();
          return false;
        }
        ok = field.has_value() == arg.get<bool>();
      } else {
        if (error.empty()) error = "the fake W&B does not support the operator " + op;
        return false;
      }
      all = ok && all;
    }
    return all;
  }

  // --- test thread (under the lock) -----------------------------------------------------------

  run_record& find_locked(const std::string& entity, const std::string& project,
                          const std::string& name) {
    const auto it = runs.find(storage_id(entity, project, name));
    if (it == runs.end()) {
      throw std::out_of_range("fake_wandb: no run " + entity + "/" + project + "/" + name);
    }
    return it->second;
  }

  const std::string api_key;
  const std::string expected_authorization;

  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  unsigned short port = 0;
  std::list<connection> connections;  // server thread only
  bool stopping = false;              // server thread only
  std::thread thread;

  mutable std::mutex mutex;
  std::condition_variable changed;
  std::uint64_t generation = 0;            // bumped on every arrival and answer, for wait_until
  std::map<std::string, run_record> runs;  // by storage id
  std::set<std::pair<std::string, std::string>> projects;  // (entity, project)
  std::deque<scripted> faults;
  std::chrono::milliseconds latency{0};
  std::size_t requests = 0;
  std::size_t upserts = 0;
  std::size_t list_queries = 0;
  std::optional<std::size_t> listings_fail_after;
  /// Every cursor the listing has handed out, and the run it points after.
  std::map<std::string, list_key> cursors;
  std::size_t in_flight = 0;
  std::size_t max_concurrent = 0;
  std::vector<recorded> log;
};

fake_wandb::fake_wandb(std::string api_key) : impl_(std::make_unique<impl>(std::move(api_key))) {}

fake_wandb::~fake_wandb() = default;

std::string fake_wandb::base_url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port);
}

const std::string& fake_wandb::api_key() const { return impl_->api_key; }

std::string fake_wandb::storage_id(const std::string& entity, const std::string& project,
                                   const std::string& name) {
  return base64("Run:v1:" + name + ":" + project + ":" + entity);
}

void fake_wandb::add_run(const std::string& entity, const std::string& project,
                         const std::string& name, const std::string& summary_json_text,
                         const std::string& state) {
  const std::lock_guard lock(impl_->mutex);
  impl_->projects.insert({entity, project});
  impl::run_record run;
  run.entity = entity;
  run.project = project;
  run.name = name;
  run.summary = summary_json_text;
  run.state = state;
  impl_->runs[storage_id(entity, project, name)] = std::move(run);
}

void fake_wandb::set_run_meta(const std::string& entity, const std::string& project,
                              const std::string& name, const std::string& sweep,
                              const std::string& created_at, const std::string& heartbeat_at) {
  const std::lock_guard lock(impl_->mutex);
  impl::run_record& run = impl_->find_locked(entity, project, name);
  run.sweep = sweep;
  run.created_at = created_at;
  run.heartbeat_at = heartbeat_at;
}

std::string fake_wandb::summary(const std::string& entity, const std::string& project,
                                const std::string& name) const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->find_locked(entity, project, name).summary;
}

void fake_wandb::set_summary(const std::string& entity, const std::string& project,
                             const std::string& name, const std::string& text) {
  const std::lock_guard lock(impl_->mutex);
  impl_->find_locked(entity, project, name).summary = text;
}

std::string fake_wandb::state(const std::string& entity, const std::string& project,
                              const std::string& name) const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->find_locked(entity, project, name).state;
}

void fake_wandb::set_state(const std::string& entity, const std::string& project,
                           const std::string& name, const std::string& state) {
  const std::lock_guard lock(impl_->mutex);
  impl_->find_locked(entity, project, name).state = state;
}

void fake_wandb::set_raw_field(const std::string& entity, const std::string& project,
                               const std::string& name, const std::string& field,
                               std::optional<std::string> raw_json) {
  const std::lock_guard lock(impl_->mutex);
  impl_->find_locked(entity, project, name).raw[field] = std::move(raw_json);
}

void fake_wandb::reset_raw_fields(const std::string& entity, const std::string& project,
                                  const std::string& name) {
  const std::lock_guard lock(impl_->mutex);
  impl_->find_locked(entity, project, name).raw.clear();
}

std::string fake_wandb::nested_summary(std::size_t depth) {
  // The top-level object is one level; the arrays make up the rest.
  const std::size_t arrays = depth > 0 ? depth - 1 : 0;
  return R"({"loss":0.5,"deep":)" + std::string(arrays, '[') + std::string(arrays, ']') + "}";
}

std::string fake_wandb::large_summary(std::size_t bytes) {
  std::string out = R"({"loss":NaN,"best":-Infinity)";
  for (std::size_t i = 0; out.size() < bytes; ++i) {
    out += ",\"k" + std::to_string(i) + "\":";
    switch (i % 4) {
      case 0:
        out += std::to_string(i) + ".25";
        break;
      case 1:
        out += R"("a string value with \"quotes\" in it")";
        break;
      case 2:
        out += "NaN";
        break;
      default:
        out += R"({"step":)" + std::to_string(i) + R"(,"values":[1,2,3,Infinity]})";
        break;
    }
  }
  return out + "}";
}

void fake_wandb::push_fault(fault f, std::chrono::milliseconds param) {
  const std::lock_guard lock(impl_->mutex);
  impl_->faults.push_back({f, param, std::nullopt});
}

void fake_wandb::push_answer(unsigned status, std::string body) {
  const std::lock_guard lock(impl_->mutex);
  impl_->faults.push_back({fault::slow, {}, std::pair{status, std::move(body)}});
}

void fake_wandb::set_latency(std::chrono::milliseconds latency) {
  const std::lock_guard lock(impl_->mutex);
  impl_->latency = latency;
}

std::size_t fake_wandb::requests() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->requests;
}

std::size_t fake_wandb::upserts() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->upserts;
}

void fake_wandb::fail_listings_after(std::size_t answered) {
  const std::lock_guard lock(impl_->mutex);
  impl_->listings_fail_after = answered;
}

std::size_t fake_wandb::list_queries() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->list_queries;
}

std::size_t fake_wandb::max_concurrent() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->max_concurrent;
}

std::vector<fake_wandb::recorded> fake_wandb::log() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->log;
}

bool fake_wandb::wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(impl_->mutex);
  for (;;) {
    // Note the generation before asking pred(), so a change made while it runs is not missed.
    const std::uint64_t seen = impl_->generation;
    lock.unlock();
    if (pred()) return true;
    lock.lock();
    if (!impl_->changed.wait_until(lock, deadline, [&] { return impl_->generation != seen; })) {
      lock.unlock();
      return pred();
    }
  }
}

}  // namespace sweepd::test
