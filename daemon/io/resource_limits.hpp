#pragma once

#include <cstdint>
#include <string>

namespace sweepd::io {

/// The open-files limit (RLIMIT_NOFILE) of this process.
struct open_files_limit {
  std::uint64_t soft = 0;  // in force now
  std::uint64_t hard = 0;
  std::uint64_t before = 0;  // the soft limit before raise_open_files_limit()
  std::string error;         // why it could not be raised; empty when it was (or already was)
};

/// Raises the soft open-files limit to the hard one. systemd starts services with a soft limit of
/// 1024 for the sake of select(); sweepd waits with epoll, so a high limit costs it nothing.
open_files_limit raise_open_files_limit();

}  // namespace sweepd::io
