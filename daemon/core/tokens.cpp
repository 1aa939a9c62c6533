#include "core/tokens.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace sweepd::core {

namespace {

std::optional<unsigned char> hex_value(char c) {
  if (c >= '0' && c <= '9') return static_cast<unsigned char>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<unsigned char>(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return static_cast<unsigned char>(c - 'A' + 10);
  return std::nullopt;
}

std::optional<token_digest> parse_digest(std::string_view hex) {
  if (hex.size() != 2 * token_digest_bytes) return std::nullopt;
  token_digest d{};
  for (std::size_t i = 0; i < token_digest_bytes; ++i) {
    const auto hi = hex_value(hex[2 * i]);
    const auto lo = hex_value(hex[2 * i + 1]);
    if (!hi || !lo) return std::nullopt;
    d[i] = static_cast<unsigned char>(*hi << 4 | *lo);
  }
  return d;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/// The whitespace-separated fields of one line.
std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

}  // namespace

bool is_valid_principal(std::string_view name) {
  if (name.empty() || name.size() > max_principal_chars) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '@';
  });
}

std::string to_hex(const token_digest& d) {
  std::string out;
  out.reserve(2 * d.size());
  for (unsigned char b : d) out += fmt::format("{:02x}", b);
  return out;
}

tokens_file parse_tokens_file(std::string_view text) {
  tokens_file out;
  std::set<std::string, std::less<>> principals;
  std::set<token_digest> digests;
  std::size_t number = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++number;
    if (const auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    const auto fields = fields_of(line);
    if (fields.empty()) continue;
    const auto problem = [&](std::string message) {
      out.errors.push_back({number, std::move(message)});
    };
    if (fields.size() != 2) {
      problem(fmt::format("expected 'PRINCIPAL SHA256-HEX', got {} fields", fields.size()));
      continue;
    }
    if (!is_valid_principal(fields[0])) {
      problem(fmt::format("the principal must be 1-{} characters of [A-Za-z0-9._@-]",
                          max_principal_chars));
      continue;
    }
    const auto digest = parse_digest(fields[1]);
    if (!digest) {
      // Never echo the field: someone may have pasted the token itself here.
      problem(
          "the second field must be the SHA-256 of the token as 64 hex digits, never the token "
          "itself ('sweepctl token new NAME' prints the line)");
      continue;
    }
    if (!principals.insert(std::string(fields[0])).second) {
      problem(fmt::format("principal '{}' is listed twice", fields[0]));
      continue;
    }
    if (!digests.insert(*digest).second) {
      problem(fmt::format("principal '{}' has the same token as an earlier line", fields[0]));
      continue;
    }
    out.entries.push_back({std::string(fields[0]), *digest});
  }
  return out;
}

std::optional<mono_clock::duration> failure_limiter::blocked_for(std::string_view address,
                                                                 mono_time now) const {
  const auto it = failures_.find(address);
  if (it == failures_.end() || it->second.count < limits_.max_failures) return std::nullopt;
  const mono_time until = it->second.first + limits_.window;
  if (now >= until) return std::nullopt;
  return until - now;
}

void failure_limiter::failed(std::string_view address, mono_time now) {
  auto it = failures_.find(address);
  if (it == failures_.end()) {
    make_room(now);
    it = failures_.emplace(std::string(address), record{now, 0}).first;
  } else if (now >= it->second.first + limits_.window) {
    it->second = record{now, 0};  // the last window is over: count afresh
  }
  ++it->second.count;
}

void failure_limiter::succeeded(std::string_view address) {
  if (auto it = failures_.find(address); it != failures_.end()) failures_.erase(it);
}

void failure_limiter::make_room(mono_time now) {
  if (failures_.size() < limits_.max_addresses) return;
  std::erase_if(failures_,
                [&](const auto& entry) { return now >= entry.second.first + limits_.window; });
  if (failures_.size() < limits_.max_addresses) return;
  // Still full: forget the address whose window started first (it is the nearest to its end).
  const auto oldest = std::min_element(
      failures_.begin(), failures_.end(),
      [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
  failures_.erase(oldest);
}

}  // namespace sweepd::core
