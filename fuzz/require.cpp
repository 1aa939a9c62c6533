#include <cstdio>
#include <cstdlib>

#include "fuzz_targets.hpp"

namespace sweepd::fuzz {

void require(bool ok, std::string_view what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant broken: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

}  // namespace sweepd::fuzz
