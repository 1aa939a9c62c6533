#pragma once
// Shared by the core tests: the fake clock and the supervisor's invariants.

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <optional>

#include "core/supervisor.hpp"
#include "core/time.hpp"

namespace sweepd::core {

/// The fake clock's origin on the wall clock: 2026-11-28T21:06:40Z.
inline const wall_time wall_origin = wall_time{} + std::chrono::seconds(1795900000);

/// The fake clock: `d` after an arbitrary origin, on both the monotonic and the wall clock.
inline instant at(mono_clock::duration d) {
  return {mono_time{} + d, wall_origin + std::chrono::duration_cast<wall_time::duration>(d)};
}

/// Invariants that every path must keep: per-state counts, the deadline index, the history.
inline void expect_consistent(const supervisor& s) {
  std::array<std::size_t, std::size(all_run_states)> counted{};
  std::optional<mono_time> earliest;
  std::size_t visited = 0;
  s.for_each([&](const run_record& r) {
    ++visited;
    ++counted[static_cast<std::size_t>(r.state)];
    ASSERT_FALSE(r.history.empty()) << r.id;
    EXPECT_EQ(r.history.back().to, r.state) << r.id;
    EXPECT_EQ(r.history.back().reason, r.reason) << r.id;
    EXPECT_FALSE(r.history.front().from.has_value()) << r.id;
    if (is_terminal(r.state)) {
      EXPECT_EQ(r.deadline, mono_time::max()) << r.id;
    }
    if (r.deadline != mono_time::max()) {
      // The run's slot in the index is its own entry.
      EXPECT_EQ(r.deadline_slot->first, r.deadline) << r.id;
      EXPECT_EQ(r.deadline_slot->second, &r) << r.id;
    }
    if (r.deadline != mono_time::max() && (!earliest || r.deadline < *earliest)) {
      earliest = r.deadline;
    }
  });
  EXPECT_EQ(visited, s.size());
  EXPECT_EQ(counted, s.counts());
  EXPECT_EQ(s.next_deadline(), earliest);
}

}  // namespace sweepd::core
