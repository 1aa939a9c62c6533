#include "core/line_buffer.hpp"

#include <algorithm>
#include <cstring>

namespace sweepd::core {

std::span<char> line_buffer::writable(std::size_t wanted) {
  if (capacity_ - end_ < wanted) {
    const std::size_t unconsumed = end_ - begin_;
    if (capacity_ >= unconsumed + wanted) {
      std::memmove(data_.get(), data_.get() + begin_, unconsumed);
    } else {
      const std::size_t grown = std::max(capacity_ * 2, unconsumed + wanted);
      auto bigger = std::make_unique_for_overwrite<char[]>(grown);
      if (unconsumed > 0) std::memcpy(bigger.get(), data_.get() + begin_, unconsumed);
      data_ = std::move(bigger);
      capacity_ = grown;
    }
    begin_ = 0;
    end_ = unconsumed;
  }
  return {data_.get() + end_, capacity_ - end_};
}

void line_buffer::commit(std::size_t n) { end_ += std::min(n, capacity_ - end_); }

std::optional<std::string_view> line_buffer::next_line() {
  const char* from = data_.get() + begin_ + scanned_;
  const std::size_t left = end_ - begin_ - scanned_;
  const void* nl = left == 0 ? nullptr : std::memchr(from, '\n', left);
  if (nl == nullptr) {
    scanned_ = end_ - begin_;
    return std::nullopt;
  }
  const char* line_begin = data_.get() + begin_;
  std::size_t length = static_cast<std::size_t>(static_cast<const char*>(nl) - line_begin);
  begin_ += length + 1;
  scanned_ = 0;
  if (length > 0 && line_begin[length - 1] == '\r') --length;
  return std::string_view(line_begin, length);
}

void line_buffer::shrink(std::size_t keep) {
  const std::size_t unconsumed = end_ - begin_;
  if (capacity_ <= keep || unconsumed > keep) return;
  auto smaller = std::make_unique_for_overwrite<char[]>(keep);
  if (unconsumed > 0) std::memcpy(smaller.get(), data_.get() + begin_, unconsumed);
  data_ = std::move(smaller);
  capacity_ = keep;
  begin_ = 0;
  end_ = unconsumed;
}

}  // namespace sweepd::core
