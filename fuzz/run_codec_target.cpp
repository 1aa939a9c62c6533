#include <chrono>
#include <nlohmann/json.hpp>

#include "core/json_limits.hpp"
#include "core/run_codec.hpp"
#include "fuzz_targets.hpp"

namespace sweepd::fuzz {

void run_codec_target(input data) {
  using namespace std::chrono_literals;
  const std::string_view text = as_text(data);
  // As the journal reads a stored record: bounded in depth before it is parsed, since every later
  // walk of the value (the decoder's copy of the suggestion, its destruction) recurses.
  if (core::json_nests_deeper_than(text, core::max_stored_json_depth)) return;
  const nlohmann::json record = nlohmann::json::parse(text, nullptr, false);
  if (record.is_discarded()) return;
  // A daemon restarted 2026-11-28 whose monotonic clock reads 35 s.
  const core::instant now{core::mono_time{} + 35s, core::wall_time{} + 1795900000s};
  const core::decoded_run decoded = core::decode_run(record, now);
  require(decoded.run.has_value() == decoded.error.empty(), "a run or why not, never both");
  if (!decoded.run) return;
  require(decoded.run->registered_mono <= now.mono, "a restored run was registered by now");
  // What was read is what would be written back: a second round trip changes nothing.
  const nlohmann::json encoded = core::encode_run(*decoded.run);
  const core::decoded_run again = core::decode_run(encoded, now);
  require(again.run.has_value(), "an encoded run decodes");
  require(core::encode_run(*again.run) == encoded, "a run survives the round trip");
}

}  // namespace sweepd::fuzz
