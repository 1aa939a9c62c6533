#pragma once

#include <cstddef>
#include <deque>

#include "core/run.hpp"

namespace sweepd::core {

/// Transitions waiting to be written to W&B, oldest first. For now nothing delivers them (mode
/// offline): they wait here and show as `wandb.pending` in `status`.
class wandb_outbox {
 public:
  void push(transition t) { pending_.push_back(std::move(t)); }
  std::size_t pending() const { return pending_.size(); }
  const std::deque<transition>& entries() const { return pending_; }

 private:
  std::deque<transition> pending_;
};

}  // namespace sweepd::core
