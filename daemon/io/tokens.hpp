#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/tokens.hpp"

namespace sweepd::io {

/// SHA-256 of `text` (OpenSSL EVP).
core::token_digest sha256(std::string_view text);
/// A fresh token: 32 random bytes (OpenSSL's CSPRNG) as 43 characters of base64url. Empty if the
/// generator fails.
std::string random_token();

struct token_load_result;

/// The tokens of a tokens file (remote.tokens_file), checked in constant time.
class token_store {
 public:
  /// Reads and parses `path`; an error naming the file (and the line) when it cannot be used.
  static core::result<token_store> load(const std::string& path);
  explicit token_store(std::vector<core::token_entry> entries) : entries_(std::move(entries)) {}

  /// The principal `token` stands for, or nullopt. Compares the token's digest with every entry
  /// (CRYPTO_memcmp, no early exit), so the time taken tells nothing about which bytes matched.
  std::optional<std::string> verify(std::string_view token) const;
  std::size_t size() const { return entries_.size(); }
  /// True when a token of the file stands for `principal`.
  bool has_principal(std::string_view principal) const;
  /// The digest of the token that stands for `principal`; nullopt when none does.
  std::optional<core::token_digest> digest_of(std::string_view principal) const;

 private:
  std::vector<core::token_entry> entries_;
};

}  // namespace sweepd::io
