#include "io/resource_limits.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>

#include "io/posix.hpp"

namespace sweepd::io {

namespace {

/// The kernel refuses an unlimited RLIMIT_NOFILE (it is capped by fs.nr_open, 1048576 by default).
constexpr rlim_t unlimited_cap = 1048576;

}  // namespace

core::result<open_files_limit, open_files_failure> raise_open_files_limit() {
  open_files_limit out;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return open_files_failure{errno_text(errno), out};
  out.before = out.soft = lim.rlim_cur;
  out.hard = lim.rlim_max;
  const rlim_t target = lim.rlim_max == RLIM_INFINITY ? unlimited_cap : lim.rlim_max;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < target) {
    rlimit raised = lim;
    raised.rlim_cur = target;
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) return open_files_failure{errno_text(errno), out};
    out.soft = target;
  }
  return out;
}

}  // namespace sweepd::io
