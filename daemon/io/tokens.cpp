#include "io/tokens.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <memory>

#include "io/posix.hpp"

namespace sweepd::io {

namespace {

struct md_ctx_free {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

}  // namespace

core::token_digest sha256(std::string_view text) {
  core::token_digest out{};
  const std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx(EVP_MD_CTX_new());
  unsigned int size = 0;
  // Allocation failure in OpenSSL is "cannot happen" territory: a zero digest then matches no
  // entry (the file never holds the digest of nothing being all zeros).
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), text.data(), text.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &size) != 1 || size != out.size()) {
    out.fill(0);
  }
  return out;
}

std::string random_token() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) return {};
  static constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string token;
  // base64url without padding: 6 bits per character, 256 bits in 43 characters.
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    acc = acc << 8 | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      token += alphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) token += alphabet[(acc << (6 - bits)) & 0x3f];
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return token;
}

core::result<token_store> token_store::load(const std::string& path) {
  const auto text = read_file_bounded(path, core::max_tokens_file_bytes);
  if (!text) {
    const auto& e = text.error();
    if (e.what != file_error::kind::too_large) return core::failure{e.message()};
    return core::failure{fmt::format("{} is larger than {} bytes; not a tokens file", path,
                                     core::max_tokens_file_bytes)};
  }
  core::tokens_file parsed = core::parse_tokens_file(*text);
  if (!parsed.errors.empty()) {
    std::string all;
    for (const core::tokens_problem& p : parsed.errors) {
      all += fmt::format("{}{}:{}: {}", all.empty() ? "" : "; ", path, p.line, p.message);
    }
    return core::failure{std::move(all)};
  }
  return token_store(std::move(parsed.entries));
}

std::optional<std::string> token_store::verify(std::string_view token) const {
  const core::token_digest digest = sha256(token);
  const core::token_entry* match = nullptr;
  for (const core::token_entry& e : entries_) {
    if (CRYPTO_memcmp(e.digest.data(), digest.data(), digest.size()) == 0) match = &e;
  }
  if (match == nullptr) return std::nullopt;
  return match->principal;
}

bool token_store::has_principal(std::string_view principal) const {
  return digest_of(principal).has_value();
}

std::optional<core::token_digest> token_store::digest_of(std::string_view principal) const {
  const auto it = std::find_if(entries_.begin(), entries_.end(), [&](const core::token_entry& e) {
    return e.principal == principal;
  });
  if (it == entries_.end()) return std::nullopt;
  return it->digest;
}

}  // namespace sweepd::io
