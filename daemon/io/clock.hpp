#pragma once

// Where the daemon reads the time. Production uses the system's clocks; the app tier's tests use
// a fake one they move by hand, so that "five minutes later" needs no five minutes.
//
// Why timers go through expiry_for() and a "moved" hook rather than a fake Asio clock: an Asio
// timer's clock is a type with a static now(), so a fake one would be process-wide state shared by
// every daemon and test in the binary. Instead every policy timer is armed on the real
// steady_timer at expiry_for(t): the moment t itself on the system clock; on a fake clock, at once
// when t is reached and otherwise never, so its waits end only when the test moves it. Moving it
// calls the hook, in which the daemon cancels its timers; each loop then reads now() again and
// runs what is due at once, on the loop's thread, with no real waiting.

#include <chrono>
#include <functional>

#include "core/time.hpp"

namespace sweepd::io {

/// The daemon's source of monotonic and wall time (core::instant).
class clock {
 public:
  virtual ~clock() = default;

  /// Monotonic time, the clock of every deadline.
  virtual core::mono_time mono() const = 0;
  /// Wall-clock time, for timestamps people and W&B read and for retention.
  virtual core::wall_time wall() const = 0;
  /// Both, read together.
  core::instant now() const { return {mono(), wall()}; }
  /// When a steady_timer waiting for `t` (on mono()) should expire.
  virtual core::mono_clock::time_point expiry_for(core::mono_time t) const = 0;
  /// Calls `moved` whenever the clock jumps rather than flows (a test moved it), on the thread
  /// that moved it; replaces the earlier hook, nullptr removes it. The system clock never calls it.
  virtual void on_moved(std::function<void()> moved) = 0;
};

/// The system's clocks (steady_clock and system_clock).
class system_clock final : public clock {
 public:
  core::mono_time mono() const override { return core::mono_clock::now(); }
  core::wall_time wall() const override { return std::chrono::system_clock::now(); }
  core::mono_clock::time_point expiry_for(core::mono_time t) const override { return t; }
  void on_moved(std::function<void()> /*moved*/) override {}
};

/// The one system clock, for production and for tests that do not move time.
clock& real_clock();

}  // namespace sweepd::io
