#pragma once

// sweepctl exec's connection to sweepd (DESIGN §7): register, start and heartbeats while the
// command runs, and the final report after it, without ever blocking exec's poll loop.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "core/protocol.hpp"
#include "io/tls_client.hpp"

namespace sweepd::cli {

/// Where a report that sweepd cannot take goes.
struct spool_plan {
  std::filesystem::path dir;
  uid_t uid = 0;
};

/// Errors that asking again does not fix: sweepd refuses the request itself.
bool is_refusal(std::string_view code);

/// sweepd as sweepctl exec sees it: one connection with at most one request in flight, driven by
/// the poll loop without ever blocking it. The first connection registers the run (bound to this
/// process by watch_peer) and starts it; then a heartbeat goes out every interval. Any failure
/// closes the connection and schedules connect + register + start again, with jittered exponential
/// backoff; the first failure of each outage is reported on stderr, and so is the recovery.
/// A refusal to register (conflict, bad_request, forbidden) ends all talk with sweepd.
class daemon_link {
 public:
  using steady = std::chrono::steady_clock;
  /// Opens a connection to sweepd: a connected, non-blocking socket, or -1 with `why` set.
  using opener = std::function<int(std::string& why)>;

  /// `warn_on_timeout`: say on stderr that the command keeps running when sweepd reports the run
  /// timeout (with --on-timeout keep; with kill the caller says what it does instead).
  daemon_link(std::string socket, core::register_params register_request, steady::duration interval,
              steady::duration reply_timeout, bool warn_on_timeout, std::ostream& err);
  ~daemon_link() { close(); }
  daemon_link(const daemon_link&) = delete;
  daemon_link& operator=(const daemon_link&) = delete;

  /// The socket to poll for input, or -1.
  int fd() const { return fd_; }

  /// Reaches sweepd's TLS listener instead of its socket: connects, shakes hands and sends the
  /// hello with `token` within remote_connect_budget while the command runs (the poll loop waits
  /// that long at most), within the reply timeout for the final report.
  void use_remote(const io::daemon_address& address, const io::tls_client_options& options,
                  std::string token);

  /// Connects with `open` instead of to the Unix socket at `socket` (a socket made otherwise, such
  /// as one end of a socketpair).
  void use_opener(opener open) { opener_ = std::move(open); }

  /// True once sweepd has acknowledged the register.
  bool registered() const { return registered_; }

  /// True once a heartbeat or start reply said the run is `timeout`. Both revive a run that timed
  /// out for silence, so this one timed out for max_runtime or a stall, for good.
  bool timed_out() const { return timed_out_; }

  /// When step() next has something to do without input.
  steady::time_point wake_at() const;

  /// Does what is due at `now`: reads replies when `readable`, notices a reply that is late,
  /// reconnects, sends the next heartbeat.
  void step(steady::time_point now, bool readable);

  /// Once the command has ended: sends `report` (complete or fail) after the register and start
  /// that sweepd has not acknowledged yet (no start when `started` is false: the command never
  /// ran), on a fresh connection if need be; retries until `deadline`. When the first attempt
  /// fails the report is written to the spool at once (docs/spool.md), and removed again if a
  /// retry gets through; when time runs out, says on stderr that the run's end is not recorded
  /// and where it waits. True when sweepd answered the report (recorded or refused it).
  bool finish(const core::request& report, bool started, steady::time_point deadline,
              const spool_plan& spool);

 private:
  enum class request_kind { none, register_run, start, heartbeat };

  core::request request_for(request_kind what) const;

  bool open_remote(std::string& why, steady::time_point deadline);

  /// Connects (and over TLS shakes hands and says hello) before `deadline`.
  bool open_socket(std::string& why, steady::time_point deadline);

  /// Sends one request line. One request is in flight at a time, so the socket's buffer has room;
  /// a send that would block means sweepd is not reading.
  bool send_line(const core::request& request, std::string& why);

  void connect_and_register(steady::time_point now);

  void send(request_kind what, steady::time_point now);

  /// Reads what has arrived; false (with `why`) when the connection is gone.
  bool read_available(std::string& why);

  /// The next complete line in the buffer, if any.
  std::optional<std::string> take_line();

  void receive(steady::time_point now);

  void handle_reply(const std::string& line, steady::time_point now);

  void up(const nlohmann::json& reply, steady::time_point now);

  /// Says so, once per state, when sweepd no longer counts the run as live: it gave up on it
  /// (timeout) or it ended; the command runs on, and its end is still reported. A timeout is
  /// only noted (not warned about) when the caller is going to stop the command.
  void note_state(const nlohmann::json& reply);

  void lost(steady::time_point now, const std::string& why);

  /// min(interval, 1 s) doubled for each failure in a row, at most 30 s, times a random factor in
  /// [0.5, 1] so that workers cut off together do not come back together.
  steady::duration retry_delay();

  /// Sends `request` on the open connection and waits for its reply until `deadline` (and no
  /// longer than the reply timeout); a protocol reply, or nullopt with `why` set.
  std::optional<nlohmann::json> exchange(const core::request& request, steady::time_point deadline,
                                         std::string& why);

  /// Waits (until `deadline`) for the replies to the requests in flight, and for the ones they
  /// lead to: a command that ends at once still has its run registered, then started.
  void settle(steady::time_point deadline);

  /// One attempt at the final report; true when it is settled (recorded, or refused and said so).
  bool try_report(const core::request& report, bool started, steady::time_point deadline,
                  std::string& why);

  /// Writes `report` to the spool file of the run; its path, or nullopt with `problem` set.
  std::optional<std::filesystem::path> write_spool(const core::request& report,
                                                   const spool_plan& spool,
                                                   std::string& problem) const;

  void close();

  std::string socket_;
  std::string run_;
  core::register_params register_request_;
  steady::duration interval_;
  steady::duration reply_timeout_;
  bool warn_on_timeout_;
  std::ostream& err_;
  std::minstd_rand random_;

  opener opener_;  // none: the Unix socket at socket_
  int fd_ = -1;
  std::optional<io::daemon_address> remote_;  // the TLS listener, when not the Unix socket
  io::tls_client_options tls_options_;
  std::string token_;
  std::unique_ptr<io::tls_connection> tls_;
  std::string buffer_;
  request_kind pending_ = request_kind::none;
  steady::time_point reply_deadline_{};
  steady::time_point retry_at_{};  // the epoch: connect at the first step
  steady::time_point next_heartbeat_{};
  bool up_ = false;          // registered and started on this connection
  bool registered_ = false;  // sweepd acknowledged the register at least once
  bool started_ = false;     // and the start
  bool warned_ = false;      // the current outage has been reported
  bool disabled_ = false;    // sweepd refused the run: stop talking to it
  bool timed_out_ = false;   // sweepd reported the run timeout for good
  int failures_ = 0;         // in a row, for the backoff
  std::string last_state_;
};

}  // namespace sweepd::cli
