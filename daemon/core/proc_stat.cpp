#include "core/proc_stat.hpp"

#include <array>
#include <charconv>

namespace sweepd::core {

std::optional<proc_stat> parse_proc_stat(std::string_view text) {
  const auto close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(close + 1);
  // Fields 3 (the state) to 24, space-separated; field 3 is a letter, the rest numbers here.
  std::array<std::string_view, 22> fields{};
  for (std::string_view& f : fields) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    const auto end = rest.find_first_of(" \n");
    f = rest.substr(0, end);
    if (f.empty()) return std::nullopt;
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  const auto number = [&](int field, std::uint64_t& out) {
    const std::string_view f = fields[static_cast<std::size_t>(field - 3)];
    const auto [ptr, ec] = std::from_chars(f.data(), f.data() + f.size(), out);
    return ec == std::errc() && ptr == f.data() + f.size();
  };
  proc_stat s;
  if (!number(14, s.utime_ticks) || !number(15, s.stime_ticks) || !number(22, s.start_ticks) ||
      !number(23, s.vsize_bytes) || !number(24, s.rss_pages)) {
    return std::nullopt;
  }
  return s;
}

}  // namespace sweepd::core
