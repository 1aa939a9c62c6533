#include <algorithm>

#include "core/config.hpp"
#include "fuzz_targets.hpp"
#include "io/config_loader.hpp"

namespace sweepd::fuzz {

void config_target(input data) {
  constexpr std::string_view file = "fuzz.yaml";
  const io::config_load_result r = io::parse_config_text(as_text(data), file);
  if (r) {
    require(core::validate(*r).empty(), "a loaded config passes validation");
    return;
  }
  require(!r.error().messages.empty(), "a config that is refused says why");
  for (const auto& e : r.error().messages) {
    // --check-config and the SIGHUP log print one problem per line, each naming the file.
    require(e.starts_with(file), "an error names the file");
    require(std::find(e.begin(), e.end(), '\n') == e.end(), "an error is one line");
  }
}

}  // namespace sweepd::fuzz
