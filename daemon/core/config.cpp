#include "core/config.hpp"

#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>

#include "core/run.hpp"
#include "core/tokens.hpp"

namespace sweepd::core {

std::string_view to_string(config::wandb_mode m) {
  switch (m) {
    case config::wandb_mode::auto_:
      return "auto";
    case config::wandb_mode::online:
      return "online";
    case config::wandb_mode::offline:
      return "offline";
    case config::wandb_mode::disabled:
      return "disabled";
  }
  return "auto";
}

std::optional<config::wandb_mode> parse_wandb_mode(std::string_view s) {
  for (auto m : {config::wandb_mode::auto_, config::wandb_mode::online, config::wandb_mode::offline,
                 config::wandb_mode::disabled}) {
    if (to_string(m) == s) return m;
  }
  return std::nullopt;
}

std::string_view to_string(config::log_format f) {
  return f == config::log_format::json ? "json" : "text";
}

std::optional<config::log_format> parse_log_format(std::string_view s) {
  if (s == "text") return config::log_format::text;
  if (s == "json") return config::log_format::json;
  return std::nullopt;
}

bool is_valid_log_level(std::string_view s) {
  static constexpr std::array<std::string_view, 7> levels = {"trace", "debug",    "info", "warn",
                                                             "error", "critical", "off"};
  for (auto l : levels) {
    if (l == s) return true;
  }
  return false;
}

namespace {

void validate_remote(const config::remote_section& r, std::vector<config_problem>& problems) {
  for (std::size_t i = 0; i < r.admin_principals.size(); ++i) {
    if (!is_valid_principal(r.admin_principals[i])) {
      problems.push_back(
          {fmt::format("remote.admin_principals[{}]", i),
           fmt::format("must be 1-{} characters of [A-Za-z0-9._@-]", max_principal_chars)});
    }
  }
  if (r.listen.empty()) return;
  // No plaintext TCP mode: a listener needs its certificate, its key and its tokens.
  for (const auto& [key, value] :
       {std::pair{"remote.cert_file", &r.cert_file}, std::pair{"remote.key_file", &r.key_file},
        std::pair{"remote.tokens_file", &r.tokens_file}}) {
    if (value->empty()) {
      problems.push_back(
          {key, fmt::format("must be set when remote.listen is set ({})", r.listen)});
    }
  }
}

}  // namespace

std::vector<config_problem> validate(const config& c) {
  std::vector<config_problem> problems;
  if (c.socket.path.empty()) problems.push_back({"socket.path", "must not be empty"});
  // sockaddr_un::sun_path holds 108 bytes including the terminating NUL.
  if (c.socket.path.size() > 107) {
    problems.push_back(
        {"socket.path",
         fmt::format("is {} bytes; a Unix socket path holds at most 107", c.socket.path.size())});
  }
  if (c.state.path.empty()) problems.push_back({"state.path", "must not be empty"});
  const auto& base = c.wandb.base_url;
  if (base.rfind("https://", 0) != 0 && base.rfind("http://", 0) != 0) {
    problems.push_back({"wandb.base_url", "must start with https:// or http://"});
  }
  if (c.wandb.summary_prefix.empty()) {
    // Without a prefix sweepd's keys (state, cost, …) would overwrite the run's own summary keys.
    problems.push_back({"wandb.summary_prefix", "must not be empty (the default is \"protein.\")"});
  }
  for (const auto& [state, name] : c.wandb.state_names) {
    if (!parse_run_state(state)) {
      problems.push_back({"wandb.state_names",
                          fmt::format("'{}' is not a run state (initializing, running, success, "
                                      "failed, crashed, timeout)",
                                      state)});
    }
    if (name.empty()) {
      problems.push_back({"wandb.state_names", fmt::format("the name for '{}' is empty", state)});
    }
  }
  validate_remote(c.remote, problems);
  for (std::size_t i = 0; i < c.reconcile.sweeps.size(); ++i) {
    const auto& e = c.reconcile.sweeps[i];
    if (e.sweep_id.empty()) {
      problems.push_back({fmt::format("reconcile.sweeps[{}].sweep_id", i), "must not be empty"});
    }
  }
  return problems;
}

std::string describe(const config& c) {
  nlohmann::ordered_json j;
  j["socket"] = {{"path", c.socket.path},
                 {"mode", fmt::format("{:04o}", c.socket.mode)},
                 {"group", c.socket.group},
                 {"max_connections", c.socket.max_connections},
                 {"max_connections_per_uid", c.socket.max_connections_per_uid},
                 {"max_line_bytes", c.socket.max_line_bytes},
                 {"admin_uids", c.socket.admin_uids}};
  j["timeouts"] = {{"heartbeat", c.timeouts.heartbeat},
                   {"max_runtime", c.timeouts.max_runtime},
                   {"stall", c.timeouts.stall}};
  j["state"] = {
      {"path", c.state.path}, {"retention", c.state.retention}, {"max_runs", c.state.max_runs}};
  nlohmann::ordered_json names = nlohmann::ordered_json::object();
  for (const auto& [k, v] : c.wandb.state_names) names[k] = v;
  j["wandb"] = {{"mode", to_string(c.wandb.mode)},
                {"base_url", c.wandb.base_url},
                {"entity", c.wandb.entity},
                {"project", c.wandb.project},
                {"api_key_file", c.wandb.api_key_file},
                {"summary_prefix", c.wandb.summary_prefix},
                {"state_names", names},
                {"max_in_flight", c.wandb.max_in_flight},
                {"request_timeout", c.wandb.request_timeout},
                {"run_not_found_grace", c.wandb.run_not_found_grace}};
  nlohmann::ordered_json sweeps = nlohmann::ordered_json::array();
  for (const auto& e : c.reconcile.sweeps) {
    sweeps.push_back({{"entity", e.entity}, {"project", e.project}, {"sweep_id", e.sweep_id}});
  }
  j["reconcile"] = {{"sweeps", sweeps},
                    {"interval", c.reconcile.interval},
                    {"stale_after", c.reconcile.stale_after}};
  j["remote"] = {{"listen", c.remote.listen},
                 {"cert_file", c.remote.cert_file},
                 {"key_file", c.remote.key_file},
                 {"tokens_file", c.remote.tokens_file},
                 {"handshake_timeout", c.remote.handshake_timeout},
                 {"max_connections", c.remote.max_connections},
                 {"admin_principals", c.remote.admin_principals}};
  j["metrics"] = {{"listen", c.metrics.listen}};
  j["log"] = {{"level", c.log.level}, {"format", to_string(c.log.format)}};
  return j.dump(2);
}

}  // namespace sweepd::core
