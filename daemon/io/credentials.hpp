#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "io/http_client.hpp"

namespace sweepd::io {

/// Where the W&B API key was found, or why it could not be read.
struct api_key_result {
  std::optional<std::string> key;
  /// Where the key came from (or the source that failed), e.g. "$WANDB_API_KEY",
  /// "/etc/sweepd/key (wandb.api_key_file)", "systemd credential wandb-api-key",
  /// "/root/.netrc (machine api.wandb.ai)". Never the key.
  std::string source;
  /// Set when a source exists but cannot be used (unreadable, empty, no password); names the
  /// file, never its content. The lookup stops there rather than fall back to a later source.
  std::string error;
};

/// Reads one environment variable; nullopt when unset.
using env_lookup = std::function<std::optional<std::string>(std::string_view name)>;

/// The W&B API key (DESIGN §4), first found of:
///  1. `$WANDB_API_KEY` (non-empty);
///  2. the file `api_key_file` (config `wandb.api_key_file`, when set): trimmed, must be one
///     non-empty word; a missing or unreadable file is an error;
///  3. `$CREDENTIALS_DIRECTORY/wandb-api-key` (systemd `LoadCredential=`), when it exists;
///  4. the .netrc (`$NETRC`, else `$HOME/.netrc`, else `$HOME/_netrc`; the passwd home when HOME
///     is unset): the password of the entry whose `machine` is netloc(base) (host, or host:port
///     for a non-default port; wandb-api.md §2), else of the `default` entry.
/// No source at all: no key and no error.
api_key_result find_api_key(const std::string& api_key_file, const url& base,
                            const env_lookup& env);

/// The W&B base URL: `$WANDB_BASE_URL` when set and non-empty, else `configured`. The environment
/// wins, as in the W&B SDK (its settings files are applied before the environment); this lets a
/// test or a one-off run point at another server without editing the config.
std::string base_url_from(const std::string& configured, const env_lookup& env);

/// The process environment (getenv).
env_lookup process_environment();

}  // namespace sweepd::io
