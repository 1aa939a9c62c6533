#pragma once

#include "cli/commands.hpp"

namespace sweepd::cli {

/// The `exec` entry of sweepctl's command table: its options and help.
command exec_command();

/// `sweepctl exec --run ID [OPTIONS] -- CMD [ARGS...]` (DESIGN §7): runs CMD as a supervised run
/// and returns CMD's exit status (128 + N when signal N killed it; 127 or 126 when it cannot be
/// started; 2 on a usage error, with nothing started).
int run_exec(const invocation& in);

}  // namespace sweepd::cli
