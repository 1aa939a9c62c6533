#include "core/name_pool.hpp"

#include <algorithm>
#include <ostream>

namespace sweepd::core {

namespace {
const std::string empty_name;

constexpr std::size_t min_sweep_at = 64;
}  // namespace

shared_name::shared_name(std::string_view s) : node_(s.empty() ? nullptr : new node(s)) {}

shared_name::shared_name(node* n) noexcept : node_(n) {
  if (node_ != nullptr) node_->refs.fetch_add(1, std::memory_order_relaxed);
}

shared_name::shared_name(const shared_name& other) noexcept : shared_name(other.node_) {}

shared_name::~shared_name() { release(node_); }

void shared_name::release(node* n) noexcept {
  if (n != nullptr && n->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete n;
}

const std::string& shared_name::str() const { return node_ ? node_->text : empty_name; }

std::ostream& operator<<(std::ostream& out, const shared_name& n) { return out << n.str(); }

name_pool::~name_pool() {
  // Names still in use live on with their runs.
  for (auto& [text, n] : nodes_) shared_name::release(n);
}

shared_name name_pool::intern(std::string_view s) {
  if (s.empty()) return {};
  if (auto it = nodes_.find(s); it != nodes_.end()) return shared_name(it->second);
  if (nodes_.size() >= sweep_at_) drop_unused();
  auto* n = new shared_name::node(s);  // the pool's reference
  nodes_.emplace(n->text, n);
  return shared_name(n);
}

void name_pool::drop_unused() {
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    // Only the pool holds it: no other thread can take a reference now.
    if (it->second->refs.load(std::memory_order_acquire) == 1) {
      shared_name::node* n = it->second;
      it = nodes_.erase(it);  // before the text its key views goes
      shared_name::release(n);
    } else {
      ++it;
    }
  }
  sweep_at_ = std::max(min_sweep_at, 2 * nodes_.size());
}

}  // namespace sweepd::core
