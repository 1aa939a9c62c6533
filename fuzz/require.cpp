#include <fmt/format.h>

#include <cstdlib>

#include "fuzz_targets.hpp"

namespace sweepd::fuzz {

void require(bool ok, std::string_view what) {
  if (ok) return;
  fmt::print(stderr, "fuzz invariant broken: {}\n", what);
  std::abort();
}

}  // namespace sweepd::fuzz
