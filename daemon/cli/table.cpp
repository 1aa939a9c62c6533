#include "cli/table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace sweepd::cli {

namespace {

constexpr std::string_view column_gap = "  ";

bool is_continuation_byte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

void pad(std::string& line, std::size_t n) { line.append(n, ' '); }

/// Appends `cell` padded to `width`; the last column of a left-aligned row is not padded so lines
/// carry no trailing blanks.
void append_cell(std::string& line, const std::string& cell, std::size_t width, align a,
                 bool last) {
  const std::size_t fill = width - std::min(width, display_width(cell));
  if (a == align::right) pad(line, fill);
  line += cell;
  if (a == align::left && !last) pad(line, fill);
}

}  // namespace

table::table(std::vector<column> columns) : columns_(std::move(columns)) {}

void table::add_row(std::vector<std::string> cells) {
  cells.resize(columns_.size());
  for (std::string& cell : cells) cell = printable(cell);
  rows_.push_back(std::move(cells));
}

std::string table::render() const {
  std::vector<std::size_t> widths;
  for (const column& c : columns_) widths.push_back(display_width(c.header));
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], display_width(row[i]));
    }
  }
  auto render_line = [&](auto cell_at) {
    std::string line;
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (i > 0) line += column_gap;
      append_cell(line, cell_at(i), widths[i], columns_[i].alignment, i + 1 == columns_.size());
    }
    line.erase(line.find_last_not_of(' ') + 1);
    return line + '\n';
  };
  std::string out =
      render_line([&](std::size_t i) -> const std::string& { return columns_[i].header; });
  for (const auto& row : rows_) {
    out += render_line([&](std::size_t i) -> const std::string& { return row[i]; });
  }
  return out;
}

void key_values::add(std::string key, std::string_view value) {
  items_.emplace_back(std::move(key), printable(value));
}

std::string key_values::render() const {
  std::size_t width = 0;
  for (const auto& [key, value] : items_) width = std::max(width, display_width(key) + 1);
  std::string out;
  for (const auto& [key, value] : items_) {
    std::string line = key + ":";
    pad(line, width + 1 - display_width(line));
    line += value;
    line.erase(line.find_last_not_of(' ') + 1);
    out += line + '\n';
  }
  return out;
}

std::size_t display_width(std::string_view s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return !is_continuation_byte(c); }));
}

std::string printable(std::string_view s, std::size_t max_width) {
  std::string out;
  out.reserve(s.size());
  std::size_t width = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (!is_continuation_byte(c)) {
      if (max_width > 0 && width + 1 == max_width && display_width(s.substr(i)) > 1) {
        return out + "…";
      }
      ++width;
    }
    out += is_control(c) ? ' ' : c;
  }
  return out;
}

std::string format_number(double v) { return fmt::format("{:.6g}", v); }

std::string format_exact(double v) { return fmt::format("{}", v); }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-";
  if (seconds < 10) return fmt::format("{:.1f}s", seconds);
  const auto total = static_cast<long long>(seconds);
  const long long days = total / 86400;
  const long long hours = total % 86400 / 3600;
  const long long minutes = total % 3600 / 60;
  const long long secs = total % 60;
  if (total < 60) return fmt::format("{}s", secs);
  if (total < 3600) return fmt::format("{}m{:02}s", minutes, secs);
  if (total < 86400) return fmt::format("{}h{:02}m", hours, minutes);
  return fmt::format("{}d{:02}h", days, hours);
}

std::string format_timestamp(std::string_view iso) {
  // Expected shape: YYYY-MM-DDTHH:MM:SS[.fff]Z
  if (iso.size() < 20 || iso[10] != 'T' || iso.back() != 'Z') return std::string(iso);
  std::string out(iso.substr(0, 19));
  out[10] = ' ';
  return out + 'Z';
}

std::vector<std::string> wrap_words(std::string_view text, std::size_t width) {
  std::vector<std::string> lines;
  std::string line;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view word = text.substr(start, end - start);
    if (!line.empty() && display_width(line) + 1 + display_width(word) > width) {
      lines.push_back(std::move(line));
      line.clear();
    }
    if (!word.empty()) {
      if (!line.empty()) line += ' ';
      line += word;
    }
    start = end + 1;
  }
  if (!line.empty() || lines.empty()) lines.push_back(std::move(line));
  return lines;
}

}  // namespace sweepd::cli
