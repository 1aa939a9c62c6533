#pragma once

#include "cli/commands.hpp"

namespace sweepd::cli {

/// The `spool` entry of sweepctl's command table: its options and help.
command spool_command();

/// `sweepctl spool flush|list [--spool-dir DIR]` (docs/spool.md): delivers the spooled reports
/// for this socket's sweepd now, or shows what waits.
int run_spool(const invocation& in);

}  // namespace sweepd::cli
