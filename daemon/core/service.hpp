#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/protocol.hpp"
#include "core/supervisor.hpp"

namespace sweepd::core {

/// What the daemon around the core reports in `status`: figures the core cannot know.
struct daemon_stats {
  std::size_t connections = 0;
  nlohmann::json wandb = nlohmann::json::object();  // {mode, pending, in_flight, dead, last_error}
  nlohmann::json reconcile = nlohmann::json::object();  // {last_pass_at, passes, adopted, errors}
  nlohmann::json remote;  // {listen, connections, principals}; null while the listener is off
};

/// The answer to one request line: the reply to send and, when the request plans a change of a
/// run, the outcome whose change must be stored, then applied, before the reply is sent (the
/// reply already says the state the run will have).
struct handled {
  std::string reply;  // one line, '\n'-terminated
  outcome result;     // result.change is set when a transition is planned
  /// A `resync` the caller may make: the daemon queues the run's W&B write, then replies (`reply`
  /// is the answer when that works).
  const run_record* resync = nullptr;
  /// A `reconcile` the caller may make (an `apply` needs an admin): it reads W&B, so the daemon
  /// answers it later.
  std::optional<reconcile_request> reconcile;
};

/// Protocol v1 on top of the supervisor: parses a line, runs the op, formats the reply. Pure.
class service {
 public:
  using stats_source = std::function<daemon_stats()>;
  /// The run's W&B delivery as the daemon knows it, for `show`.
  using delivery_source = std::function<nlohmann::json(const run_record&)>;

  service(supervisor& runs, std::string version, mono_time started, stats_source stats,
          delivery_source delivery = nullptr);

  handled handle(std::string_view line, const caller& who, instant now);
  /// The op of the line handle() saw last: a known op's name (also when its fields were refused),
  /// or "invalid" (not JSON, no op, an unknown op). For the requests metric: a bounded set.
  std::string_view last_op() const { return last_op_; }

  /// Caps `list` and `observations` replies (core::max_reply_bytes unless a test sets less).
  void set_max_reply_bytes(std::size_t bytes) { max_reply_bytes_ = bytes; }

 private:
  nlohmann::json status_body(instant now) const;
  std::string list_reply(const list_request& r, instant now) const;
  std::string observations_reply(const observations_request& r, const caller& who) const;

  supervisor& runs_;
  std::string version_;
  mono_time started_;
  stats_source stats_;
  delivery_source delivery_;
  std::size_t max_reply_bytes_ = max_reply_bytes;
  std::string_view last_op_ = "invalid";
};

}  // namespace sweepd::core
