#pragma once
// The fuzz targets: each feeds one input to a parser of untrusted or stored text and aborts when
// an invariant of its result breaks. libFuzzer drives them (fuzz_main.cpp, clang only); the corpus
// replay (replay_main.cpp) runs the committed corpora through the same functions in every build.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace sweepd::fuzz {

using input = std::span<const std::uint8_t>;

/// A request line from a client of the control socket (core::parse_request).
void protocol_target(input data);
/// A YAML config as `sweepd --check-config` and SIGHUP read it (io::parse_config_text).
void config_target(input data);
/// A run's W&B summary as the GraphQL API returns it (core::merge_summary, core::summary_state).
void wandb_summary_target(input data);
/// A run record as the journal stored it in version 2 (core::decode_run).
void run_codec_target(input data);

struct named_target {
  std::string_view name;
  void (*run)(input);
};

/// Every target by the name of its corpus folder (fuzz/corpus/<name>).
inline constexpr named_target all_targets[] = {
    {"protocol", protocol_target},
    {"config", config_target},
    {"wandb_summary", wandb_summary_target},
    {"run_codec", run_codec_target},
};

/// Aborts with `what` when `ok` is false: libFuzzer and the replay both report an abort as a
/// failure with the input that caused it.
void require(bool ok, std::string_view what);

/// The input as text (the parsers take bytes as they come off a socket or a file).
inline std::string_view as_text(input data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

}  // namespace sweepd::fuzz
