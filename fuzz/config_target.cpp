#include <algorithm>

#include "core/config.hpp"
#include "fuzz_targets.hpp"
#include "io/config_loader.hpp"

namespace sweepd::fuzz {

void config_target(input data) {
  constexpr std::string_view file = "fuzz.yaml";
  const io::config_load_result r = io::parse_config_text(as_text(data), file);
  require(r.cfg.has_value() == r.errors.empty(), "a config or its errors, never both or neither");
  if (r.cfg) {
    require(core::validate(*r.cfg).empty(), "a loaded config passes validation");
    return;
  }
  for (const auto& e : r.errors) {
    // --check-config and the SIGHUP log print one problem per line, each naming the file.
    require(e.starts_with(file), "an error names the file");
    require(std::find(e.begin(), e.end(), '\n') == e.end(), "an error is one line");
  }
}

}  // namespace sweepd::fuzz
