#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.hpp"

namespace sweepd::core {

/// A principal is the name a remote worker's token stands for ("token:NAME" as an owner).
inline constexpr std::size_t max_principal_chars = 64;
/// SHA-256 digests are what the tokens file holds: never the tokens themselves.
inline constexpr std::size_t token_digest_bytes = 32;
/// A tokens file larger than this is refused (it holds one short line per worker identity).
inline constexpr std::size_t max_tokens_file_bytes = std::size_t{1024} * 1024;

using token_digest = std::array<unsigned char, token_digest_bytes>;

/// 1-64 characters of [A-Za-z0-9._@-]: printable in logs, records and `token:NAME`.
bool is_valid_principal(std::string_view name);

struct token_entry {
  std::string principal;
  token_digest digest{};
};

struct tokens_problem {
  std::size_t line = 0;  // 1-based
  std::string message;
};

/// The entries of a tokens file, or every problem in it (a file with any problem is refused
/// whole, so a typo never silently locks a worker out or lets one in).
struct tokens_file {
  std::vector<token_entry> entries;
  std::vector<tokens_problem> errors;
};

/// Reads the text of a tokens file: one `PRINCIPAL SHA256-HEX` per line (64 hex digits, either
/// case), blank lines and `#` comments ignored. A principal or a digest listed twice is an error.
tokens_file parse_tokens_file(std::string_view text);

/// Lower-case hex of a digest: the second field of a tokens file line.
std::string to_hex(const token_digest& d);

/// Failed authentications per source address, so that a token cannot be guessed at the speed of
/// the network: past `max_failures` within `window` of an address's first failure, the address is
/// refused without its token being looked at until that window ends. Memory is bounded: at most
/// `max_addresses` are tracked (expired ones first, then the oldest, are forgotten). Pure: time
/// comes in as a value.
class failure_limiter {
 public:
  struct limits {
    std::size_t max_failures = 10;
    mono_clock::duration window = std::chrono::seconds(60);
    std::size_t max_addresses = 10000;
  };
  failure_limiter() = default;
  explicit failure_limiter(limits l) : limits_(l) {}

  /// Nullopt when `address` may try now; else how long until it may.
  std::optional<mono_clock::duration> blocked_for(std::string_view address, mono_time now) const;
  /// Counts a failed attempt from `address`.
  void failed(std::string_view address, mono_time now);
  /// A successful attempt forgets the address's failures.
  void succeeded(std::string_view address);
  std::size_t tracked() const { return failures_.size(); }

 private:
  struct record {
    mono_time first{};
    std::size_t count = 0;
  };
  void make_room(mono_time now);

  limits limits_;
  std::map<std::string, record, std::less<>> failures_;
};

}  // namespace sweepd::core
