#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/enum_print.hpp"
#include "core/errors.hpp"

namespace sweepd::core {

/// The shortest duration accepted anywhere (config and protocol): shorter ones would round to 0,
/// which turns a timeout off instead of making it short.
inline constexpr double min_duration_s = 0.001;
/// The longest duration accepted anywhere (config, journal): durations become int64 nanoseconds
/// added to the monotonic clock, and ~31 years keeps every deadline far from overflow while
/// allowing any timeout a person means.
inline constexpr double max_duration_s = 1e9;

/// Every key of DESIGN §6 with its default. Durations are seconds (fractions allowed); 0 turns a
/// timeout off. Keys whose feature lands in a later issue are validated and kept all the same.
struct config {
  struct socket_section {
    std::string path = "/run/sweepd/sweepd.sock";
    std::uint32_t mode = 0660;  // file mode of the socket, given as an octal string
    std::string group;          // empty: the daemon's group
    std::uint32_t max_connections = 4096;
    std::uint32_t max_connections_per_uid = 1024;  // root and admin_uids are not held to it
    std::uint32_t max_line_bytes = 65536;
    std::vector<std::uint32_t> admin_uids;
  } socket;

  struct timeouts_section {
    double heartbeat = 300;
    double max_runtime = 0;
    double stall = 0;
  } timeouts;

  struct state_section {
    std::string path = "/var/lib/sweepd/state.db";
    double retention = 2592000;  // 30 days
    std::uint64_t max_runs = 1000000;
  } state;

  enum class wandb_mode { auto_, online, offline, disabled };
  struct wandb_section {
    wandb_mode mode = wandb_mode::auto_;
    std::string base_url = "https://api.wandb.ai";
    std::string entity;
    std::string project;
    std::string api_key_file;
    std::string summary_prefix = "protein.";
    std::map<std::string, std::string> state_names;  // our state → the name written to W&B
    std::uint32_t max_in_flight = 4;
    double request_timeout = 30;
    double run_not_found_grace = 600;
  } wandb;

  struct reconcile_entry {
    std::string entity;
    std::string project;
    std::string sweep_id;
  };
  struct reconcile_section {
    std::vector<reconcile_entry> sweeps;
    double interval = 600;
    double stale_after = 300;
  } reconcile;

  struct metrics_section {
    std::string listen;  // host:port, empty = off
  } metrics;

  /// The TLS listener for workers on other hosts (off while `listen` is empty).
  struct remote_section {
    std::string listen;  // host:port
    std::string cert_file;
    std::string key_file;
    std::string tokens_file;  // lines of "PRINCIPAL SHA256-HEX-OF-TOKEN"
    double handshake_timeout = 10;
    std::uint32_t max_connections = 1024;  // of socket.max_connections, the most remote ones
    std::vector<std::string> admin_principals;
  } remote;

  enum class log_format { text, json };
  struct log_section {
    std::string level = "info";
    log_format format = log_format::text;
  } log;
};

std::string_view to_string(config::wandb_mode m);
std::optional<config::wandb_mode> parse_wandb_mode(std::string_view s);
std::string_view to_string(config::log_format f);
std::optional<config::log_format> parse_log_format(std::string_view s);
/// spdlog's level names: trace, debug, info, warn, error, critical, off.
bool is_valid_log_level(std::string_view s);

/// A problem found in a config value: the dotted key and what is wrong with it.
struct config_problem {
  std::string key;
  std::string message;
};

/// Checks relations between keys that a per-key type check cannot see (ranges are checked where
/// each key is read). Empty when the config is usable.
std::vector<config_problem> validate(const config& c);

/// The effective config as YAML-compatible JSON, for --check-config (no secret is in it: the API
/// key is only ever read from a file or the environment, never stored here).
std::string describe(const config& c);

}  // namespace sweepd::core
