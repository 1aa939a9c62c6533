#pragma once

#include <cstdint>
#include <string>

#include "core/result.hpp"

namespace sweepd::io {

/// The open-files limit (RLIMIT_NOFILE) of this process.
struct open_files_limit {
  std::uint64_t soft = 0;  // in force now
  std::uint64_t hard = 0;
  std::uint64_t before = 0;  // the soft limit before raise_open_files_limit()
};

/// Why raise_open_files_limit() could not raise the limit, and the limit that stays in force.
struct open_files_failure {
  // The reason first: a failure must not be constructible from a bare limit, which result<>
  // takes for its value.
  std::string reason;          // the system's, e.g. "Operation not permitted"
  open_files_limit unchanged;  // all zero when even reading the limit failed
};

/// Raises the soft open-files limit to the hard one. systemd starts services with a soft limit of
/// 1024 for the sake of select(); sweepd waits with epoll, so a high limit costs it nothing.
core::result<open_files_limit, open_files_failure> raise_open_files_limit();

}  // namespace sweepd::io
