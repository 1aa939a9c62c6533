#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sweepd::cli {

/// How a column's cells line up: text to the left, numbers to the right.
enum class align { left, right };

struct column {
  std::string header;
  align alignment = align::left;
};

/// An aligned text table for people: a header row, then one row per add_row(), columns two spaces
/// apart, each as wide as its widest cell. Cells are made printable (see printable()).
class table {
 public:
  explicit table(std::vector<column> columns);

  /// Adds a row; missing cells are blank, extra cells are dropped.
  void add_row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  /// The table as lines ending in '\n', without trailing blanks.
  std::string render() const;

 private:
  std::vector<column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

/// "key: value" lines with the values lined up, for one record (status, show).
class key_values {
 public:
  void add(std::string key, std::string_view value);
  std::string render() const;

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

/// Width of `s` on a terminal, counted in code points (UTF-8 continuation bytes do not count).
std::size_t display_width(std::string_view s);

/// `s` with control characters (newlines, tabs, escapes) replaced by spaces, so text from the
/// daemon can neither break a table's layout nor drive the terminal; cut to `max_width` code
/// points with a trailing "…" when longer (0: no limit).
std::string printable(std::string_view s, std::size_t max_width = 0);

/// A number for a table: up to 6 significant digits ("0.93", "3600.5", "1.23457e+06").
std::string format_number(double v);
/// A number in full, as it round-trips ("0.934512345").
std::string format_exact(double v);
/// A duration for people: "0.4s", "42s", "12m03s", "3h04m", "2d03h"; "-" for negative values.
std::string format_duration(double seconds);
/// "2026-11-28T21:05:53.120Z" → "2026-11-28 21:05:53Z"; anything else comes back unchanged.
std::string format_timestamp(std::string_view iso);
/// `text` broken into lines of at most `width` code points at spaces (a longer word gets a line
/// of its own).
std::vector<std::string> wrap_words(std::string_view text, std::size_t width);

}  // namespace sweepd::cli
