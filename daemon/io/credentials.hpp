#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "io/http_client.hpp"
#include "io/posix.hpp"

namespace sweepd::io {

/// The W&B API key and where it was found.
struct api_key {
  std::string key;  // never logged
  /// e.g. "$WANDB_API_KEY", "/etc/sweepd/key (wandb.api_key_file)", "systemd credential
  /// wandb-api-key", "/root/.netrc (machine api.wandb.ai)". Never the key.
  std::string source;
};

/// A key; no key (nullopt: no source exists, which is not an error: W&B stays offline); or a
/// source that exists but cannot be used (unreadable, empty, no password), a failure naming the
/// file, never its content. Three outcomes, hence the optional inside the result: the lookup stops
/// at a broken source rather than fall back to a later one, so "none" and "broken" must differ.
using api_key_result = core::result<std::optional<api_key>>;

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

}  // namespace sweepd::io
