#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

namespace sweepd::core {

/// The bytes read from a stream and not yet consumed, split into lines. Reads go straight into
/// spare room at the end (never zero-filled first), lines are views into the buffer, and what a
/// consumed line occupied is reused by moving the unconsumed tail to the front only when room is
/// needed. Pure: the caller does the reading.
class line_buffer {
 public:
  /// Room for at least `wanted` more bytes at the end, growing (doubling) only when the
  /// unconsumed bytes and `wanted` do not fit after compaction.
  std::span<char> writable(std::size_t wanted);
  /// `n` bytes were written into the front of writable().
  void commit(std::size_t n);

  /// The next complete line without its '\n' (nor a '\r' before it), consumed; nullopt when no
  /// complete line is buffered. The view is valid until the next writable() or shrink().
  std::optional<std::string_view> next_line();
  /// Unconsumed bytes (a partial line).
  std::size_t pending() const { return end_ - begin_; }
  std::size_t capacity() const { return capacity_; }
  /// Gives back a buffer grown past `keep` bytes once what is unconsumed fits in `keep` (one
  /// long line must not stay allocated for the life of an idle connection).
  void shrink(std::size_t keep);

 private:
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;    // first unconsumed byte
  std::size_t end_ = 0;      // one past the last byte read
  std::size_t scanned_ = 0;  // bytes from begin_ known to hold no '\n'
};

}  // namespace sweepd::core
