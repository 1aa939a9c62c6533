#include "io/clock.hpp"

namespace sweepd::io {

clock& real_clock() {
  static system_clock instance;
  return instance;
}

}  // namespace sweepd::io
