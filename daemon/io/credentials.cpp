#include "io/credentials.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <vector>

#include "io/posix.hpp"

namespace sweepd::io {
namespace {

constexpr std::string_view whitespace = " \t\r\n\v\f";
// Key files hold one key; a .netrc a few entries. Anything bigger is not what we think it is.
constexpr std::size_t max_key_file = std::size_t{64} * 1024;
constexpr std::size_t max_netrc_file = std::size_t{1024} * 1024;

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(whitespace);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(whitespace);
  return s.substr(first, last - first + 1);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

std::optional<std::string> non_empty(const env_lookup& env, std::string_view name) {
  auto value = env(name);
  if (!value || trim(*value).empty()) return std::nullopt;
  return std::string(trim(*value));
}

// A key file (config or systemd credential): one word, surrounding whitespace ignored.
api_key_result key_from_file(const std::string& path, std::string source, std::string_view what) {
  const auto file = read_file_bounded(path, max_key_file, file_type::regular_only);
  if (!file) {
    return core::failure{
        file.error().what == file_error::kind::missing
            ? fmt::format("{} {} does not exist", what, path)
            : fmt::format("cannot read {} {}: {}", what, path, file.error().reason)};
  }
  const auto key = trim(*file);
  if (key.empty()) return core::failure{fmt::format("{} {} is empty", what, path)};
  if (key.find_first_of(whitespace) != std::string_view::npos) {
    return core::failure{
        fmt::format("{} {} holds more than one word; it must hold only the key", what, path)};
  }
  return api_key{std::string(key), std::move(source)};
}

/// Splits a .netrc into tokens: whitespace-separated words or "quoted strings" (with \ escapes);
/// a '#' starting a keyword comments out the rest of the line (a value may start with '#').
class netrc_lexer {
 public:
  explicit netrc_lexer(std::string_view text) : s_(text) {}

  std::optional<std::string> next(bool keyword) {
    for (;;) {
      while (pos_ < s_.size() && whitespace.find(s_[pos_]) != std::string_view::npos) ++pos_;
      if (pos_ >= s_.size()) return std::nullopt;
      if (keyword && s_[pos_] == '#') {
        const auto eol = s_.find('\n', pos_);
        pos_ = eol == std::string_view::npos ? s_.size() : eol + 1;
        continue;
      }
      break;
    }
    std::string token;
    if (s_[pos_] == '"') {
      for (++pos_; pos_ < s_.size() && s_[pos_] != '"'; ++pos_) {
        if (s_[pos_] == '\\' && pos_ + 1 < s_.size()) ++pos_;
        token += s_[pos_];
      }
      if (pos_ < s_.size()) ++pos_;  // the closing quote
      return token;
    }
    while (pos_ < s_.size() && whitespace.find(s_[pos_]) == std::string_view::npos) {
      token += s_[pos_++];
    }
    return token;
  }

  /// Skips a macro body: from the next line up to the first empty line.
  void skip_macro() {
    const auto end = s_.find("\n\n", pos_);
    pos_ = end == std::string_view::npos ? s_.size() : end + 2;
  }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

struct netrc_entry {
  std::string machine;  // empty for `default`
  bool is_default = false;
  std::string password;
};

// Lenient, like ftp(1): unknown words are skipped rather than refused.
std::vector<netrc_entry> parse_netrc(std::string_view text) {
  std::vector<netrc_entry> entries;
  netrc_lexer lexer(text);
  while (auto token = lexer.next(true)) {
    if (*token == "machine") {
      auto name = lexer.next(false);
      if (!name) break;
      entries.push_back({*name, false, {}});
    } else if (*token == "default") {
      entries.push_back({{}, true, {}});
    } else if (*token == "password" || *token == "passwd") {
      auto value = lexer.next(false);
      if (!value) break;
      if (!entries.empty()) entries.back().password = *value;
    } else if (*token == "login" || *token == "account") {
      if (!lexer.next(false)) break;
    } else if (*token == "macdef") {
      if (!lexer.next(false)) break;
      lexer.skip_macro();
    }
  }
  return entries;
}

std::optional<std::string> home_directory(const env_lookup& env) {
  if (auto home = non_empty(env, "HOME")) return home;
  // Like Python's expanduser, which the W&B SDK uses: systemd sets HOME only with User=.
  std::vector<char> buffer(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(::geteuid(), &pw, buffer.data(), buffer.size(), &found) == 0 && found &&
      found->pw_dir && *found->pw_dir) {
    return std::string(found->pw_dir);
  }
  return std::nullopt;
}

api_key_result key_from_netrc(const url& base, const env_lookup& env) {
  std::vector<std::string> candidates;
  if (auto path = non_empty(env, "NETRC")) {
    candidates.push_back(*path);
  } else if (auto home = home_directory(env)) {
    candidates.push_back(*home + "/.netrc");
    candidates.push_back(*home + "/_netrc");
  }
  for (const auto& path : candidates) {
    const auto file = read_file_bounded(path, max_netrc_file, file_type::regular_only);
    if (!file && file.error().what == file_error::kind::missing) continue;
    if (!file) return core::failure{file.error().message()};
    const auto entries = parse_netrc(*file);
    const std::string machine = netloc(base);
    auto match = std::find_if(entries.begin(), entries.end(), [&](const netrc_entry& e) {
      return !e.is_default && iequals(e.machine, machine);
    });
    if (match == entries.end()) {
      match = std::find_if(entries.begin(), entries.end(),
                           [](const netrc_entry& e) { return e.is_default; });
    }
    // The first .netrc that exists is the only one read.
    if (match == entries.end()) return std::nullopt;
    if (match->password.empty()) {
      return core::failure{
          fmt::format("{}: no password in the entry for {}", path,
                      match->is_default ? "default" : "machine " + match->machine)};
    }
    return api_key{match->password, match->is_default
                                        ? fmt::format("{} (default)", path)
                                        : fmt::format("{} (machine {})", path, match->machine)};
  }
  return std::nullopt;
}

}  // namespace

api_key_result find_api_key(const std::string& api_key_file, const url& base,
                            const env_lookup& env) {
  if (auto key = non_empty(env, "WANDB_API_KEY")) {
    return api_key{std::move(*key), "$WANDB_API_KEY"};
  }
  if (!api_key_file.empty()) {
    return key_from_file(api_key_file, fmt::format("{} (wandb.api_key_file)", api_key_file),
                         "the W&B API key file");
  }
  if (auto dir = non_empty(env, "CREDENTIALS_DIRECTORY")) {
    const std::string path = *dir + "/wandb-api-key";
    struct stat st {};
    const bool exists = ::stat(path.c_str(), &st) == 0;
    // An empty credential means "no key": the packaged unit falls back to one
    // (SetCredential=wandb-api-key:) when /etc/sweepd/wandb-api-key does not exist.
    const bool empty = exists && S_ISREG(st.st_mode) && st.st_size == 0;
    if ((exists || errno != ENOENT) && !empty) {
      return key_from_file(path, "systemd credential wandb-api-key", "the systemd credential");
    }
  }
  return key_from_netrc(base, env);
}

std::string base_url_from(const std::string& configured, const env_lookup& env) {
  if (auto from_env = non_empty(env, "WANDB_BASE_URL")) return *from_env;
  const auto value = trim(configured);
  return value.empty() ? std::string("https://api.wandb.ai") : std::string(value);
}

}  // namespace sweepd::io
