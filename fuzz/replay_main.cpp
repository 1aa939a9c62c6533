// Runs committed inputs through a fuzz target without fuzzing: `sweepd_fuzz_replay TARGET PATH...`
// where each PATH is an input file or a folder of them. CTest runs it on every corpus, so the
// corpora and the regression inputs in them keep passing in every build, GCC's included.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<std::uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The files a path names, a folder's in name order (the same order on every run).
std::vector<fs::path> inputs_of(const fs::path& path) {
  if (!fs::is_directory(path)) return {path};
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(path)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fmt::print(stderr, "usage: {} TARGET PATH...\n", argv[0]);
    return 2;
  }
  const std::string_view name = argv[1];
  const auto* target =
      std::find_if(std::begin(sweepd::fuzz::all_targets), std::end(sweepd::fuzz::all_targets),
                   [&](const auto& t) { return t.name == name; });
  if (target == std::end(sweepd::fuzz::all_targets)) {
    fmt::print(stderr, "unknown target '{}'\n", argv[1]);
    return 2;
  }
  std::size_t count = 0;
  for (int i = 2; i < argc; ++i) {
    for (const auto& file : inputs_of(argv[i])) {
      // Named before it runs: a target that aborts leaves its input as the last line.
      fmt::print(stderr, "{}\n", file.string());
      const auto bytes = read_bytes(file);
      target->run(sweepd::fuzz::input(bytes));
      ++count;
    }
  }
  // An empty or misplaced corpus would otherwise pass without testing anything.
  if (count == 0) {
    fmt::print(stderr, "{}: no inputs found\n", argv[1]);
    return 1;
  }
  std::printf("%s: %zu inputs replayed\n", argv[1], count);
  return 0;
}
