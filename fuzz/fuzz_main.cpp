// libFuzzer's entry point for one target, chosen at compile time (SWEEPD_FUZZ_TARGET) so that each
// fuzzer binary has its own coverage map and corpus.
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sweepd::fuzz::SWEEPD_FUZZ_TARGET(sweepd::fuzz::input(data, size));
  return 0;
}
