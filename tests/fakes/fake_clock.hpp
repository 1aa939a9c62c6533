#pragma once

// A clock that stands still until the test moves it (io::clock). Its timers never expire by
// themselves: moving it calls the owner's hook, which wakes them (see io/clock.hpp for why).
//
//   test::fake_clock clock;
//   app::daemon d(cfg, "", clock);
//   clock.advance(std::chrono::minutes(5));  // on the daemon's loop thread

#include <chrono>
#include <functional>
#include <utility>

#include "io/clock.hpp"

namespace sweepd::test {

/// A settable, advanceable io::clock. Not thread-safe: read and move it on one thread (the loop's).
class fake_clock final : public io::clock {
 public:
  core::mono_time mono() const override { return mono_; }
  core::wall_time wall() const override { return wall_; }
  /// A wait for a time already reached ends at once; any other only when the clock is moved.
  core::mono_clock::time_point expiry_for(core::mono_time t) const override {
    return t <= mono_ ? core::mono_clock::time_point::min() : core::mono_clock::time_point::max();
  }
  void on_moved(std::function<void()> moved) override { moved_ = std::move(moved); }

  /// Moves both clocks forward by `d` and wakes the owner's timers.
  void advance(std::chrono::nanoseconds d) {
    mono_ += d;
    wall_ += std::chrono::duration_cast<core::wall_time::duration>(d);
    if (moved_) moved_();
  }
  /// Sets the wall clock alone (a clock step); the monotonic clock does not move.
  void set_wall(core::wall_time t) {
    wall_ = t;
    if (moved_) moved_();
  }

 private:
  // Far from zero, so that "earlier than now" never underflows; a fixed date, so that what a test
  // stores does not depend on when it runs.
  core::mono_time mono_ = core::mono_time{} + std::chrono::hours(1000);
  core::wall_time wall_ = core::wall_time{} + std::chrono::seconds(1795000000);
  std::function<void()> moved_;
};

}  // namespace sweepd::test
