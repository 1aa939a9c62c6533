#pragma once

#include <atomic>
#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sweepd::core {

/// A name that many runs carry and none changes (sweep, entity, project, boot id): one pointer
/// per run to a copy they share (name_pool), where a std::string each is 32 bytes, plus a heap
/// block for a name past 15 characters. Immutable; copies share the text; the empty name holds
/// nothing.
class shared_name {
 public:
  shared_name() = default;
  /// A copy of its own, shared with nobody yet (tests, one-off values); name_pool::intern shares.
  shared_name(std::string_view s);  // NOLINT(google-explicit-constructor): a name is a string
  shared_name(const std::string& s) : shared_name(std::string_view(s)) {}  // NOLINT
  shared_name(const char* s) : shared_name(std::string_view(s)) {}         // NOLINT
  shared_name(const shared_name& other) noexcept;
  shared_name(shared_name&& other) noexcept : node_(other.node_) { other.node_ = nullptr; }
  shared_name& operator=(shared_name other) noexcept {
    std::swap(node_, other.node_);
    return *this;
  }
  ~shared_name();

  const std::string& str() const;
  operator const std::string&() const { return str(); }  // NOLINT: reads as the string it is
  bool empty() const { return node_ == nullptr; }
  std::size_t size() const { return str().size(); }

  friend bool operator==(const shared_name& a, const shared_name& b) {
    return a.node_ == b.node_ || a.str() == b.str();
  }
  friend bool operator==(const shared_name& a, const std::string& b) { return a.str() == b; }
  friend bool operator==(const shared_name& a, std::string_view b) { return a.str() == b; }
  friend bool operator==(const shared_name& a, const char* b) { return a.str() == b; }

 private:
  friend class name_pool;
  struct node {
    explicit node(std::string_view s) : text(s) {}
    // Atomic like shared_ptr's: a run (and its names) may be copied on another thread (tests).
    std::atomic<std::size_t> refs{1};
    const std::string text;
  };
  /// Takes one more reference to `n`.
  explicit shared_name(node* n) noexcept;
  /// Drops one reference to `n`; the last one frees it.
  static void release(node* n) noexcept;

  node* node_ = nullptr;
};

std::ostream& operator<<(std::ostream& out, const shared_name& n);

/// Hands out one shared copy of each name. Names no run uses any more are dropped as the pool
/// grows (when it has doubled since the last sweep), so it stays within twice the names in use.
/// Not thread-safe: one pool per owner (the supervisor, a journal load). A name outlives its pool.
class name_pool {
 public:
  name_pool() = default;
  name_pool(const name_pool&) = delete;
  name_pool& operator=(const name_pool&) = delete;
  ~name_pool();

  /// The shared copy of `s` (the empty name for "").
  shared_name intern(std::string_view s);
  /// Names the pool holds, some perhaps unused until the next sweep.
  std::size_t size() const { return nodes_.size(); }

 private:
  void drop_unused();

  // Keys view the nodes' own text.
  std::unordered_map<std::string_view, shared_name::node*> nodes_;
  std::size_t sweep_at_ = 64;
};

}  // namespace sweepd::core
