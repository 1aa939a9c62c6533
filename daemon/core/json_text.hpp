#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>

namespace sweepd::core {

/// A JSON value a run keeps but never looks into (its suggestion), held as its compact text
/// (nlohmann's dump) rather than a DOM: a small object as a DOM is a std::map with a node per key,
/// some 500 bytes, against one allocation as long as the text; and a restart reads the text back
/// without parsing it. It is parsed only where a reply shows the value, so what goes on the wire
/// is the same JSON value, dumped the same way.
class json_text {
 public:
  /// null
  json_text() = default;
  /// The compact text of `value`; null stays null (no text).
  explicit json_text(const nlohmann::json& value);
  /// Text a json_text held before (`text()`, as stored), without parsing it again: a caller that
  /// did not write it checks it first (accepts()).
  static json_text from_text(std::string text);
  /// Whether `text` is JSON (for text read back from storage).
  static bool accepts(const std::string& text);

  bool is_null() const { return text_.empty(); }
  /// The compact text; empty for null.
  const std::string& text() const { return text_; }
  /// The value, parsed: null for null (and for text that is not JSON, which from_text's callers
  /// rule out).
  nlohmann::json value() const;

  friend bool operator==(const json_text&, const json_text&) = default;

 private:
  std::string text_;
};

/// The text, "null" for null (test failure messages).
std::ostream& operator<<(std::ostream& out, const json_text& j);

}  // namespace sweepd::core
