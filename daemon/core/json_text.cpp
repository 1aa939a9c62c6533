#include "core/json_text.hpp"

#include <ostream>

namespace sweepd::core {

json_text::json_text(const nlohmann::json& value) {
  // The replace handler cannot change anything a parser accepted (it checks UTF-8); it keeps a
  // value built otherwise from throwing here.
  if (!value.is_null())
    text_ = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

json_text json_text::from_text(std::string text) {
  json_text j;
  j.text_ = std::move(text);
  // "null" and "" are both null: one form, so that == compares values.
  if (j.text_ == "null") j.text_.clear();
  return j;
}

bool json_text::accepts(const std::string& text) { return nlohmann::json::accept(text); }

nlohmann::json json_text::value() const {
  if (text_.empty()) return nullptr;
  nlohmann::json v = nlohmann::json::parse(text_, nullptr, false);
  return v.is_discarded() ? nlohmann::json() : v;
}

std::ostream& operator<<(std::ostream& out, const json_text& j) {
  return out << (j.is_null() ? std::string("null") : j.text());
}

}  // namespace sweepd::core
