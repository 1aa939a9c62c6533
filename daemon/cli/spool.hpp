#pragma once

// The report spool (docs/spool.md): a worker's final report that sweepd could not take is written
// to `<dir>/<run>.json` and delivered later, exactly once, by whichever client gets its lock.
// Used by `sweepctl exec` (spool on a failed report, flush at start) and `sweepctl spool`.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/posix.hpp"
#include "io/tls_client.hpp"

namespace sweepd::cli {

using io::env_lookup;
using io::process_environment;

/// The spool directory (docs/spool.md "Where"): the first of `explicit_dir`, $SWEEPD_SPOOL_DIR,
/// $XDG_STATE_HOME/sweepd/spool (when absolute), $HOME/.local/state/sweepd/spool, and
/// `spool-UID` in the directory of `socket`. Empty variables count as unset.
std::filesystem::path spool_dir_for(const std::optional<std::string>& explicit_dir,
                                    const env_lookup& env, std::string_view socket, uid_t uid);

/// Why `dir` must not hold spool files (not a directory, owned by another uid than `uid`, or
/// writable by group or others); empty when it is fine. `exists` says whether it is there.
std::string check_spool_dir(const std::filesystem::path& dir, uid_t uid, bool& exists);

/// Creates `dir` (and its missing parents) with mode 0700 when it is not there, then checks it as
/// check_spool_dir() does; empty when it can take spool files, else why not.
std::string make_spool_dir(const std::filesystem::path& dir, uid_t uid);

/// `socket` as spool files name it and compare it: absolute and lexically normal.
std::string normal_socket_path(std::string_view socket);

/// One spooled report, as its file holds it.
// NOLINTNEXTLINE(bugprone-exception-escape): its moves are nlohmann::json's, which are noexcept
struct spool_record {
  std::string socket;
  std::string run;
  nlohmann::json register_request;  // without watch_peer
  nlohmann::json report;            // the complete or fail request, exactly as it would be sent
  std::string spooled_at;           // "2026-11-30T12:00:00.000Z"
  std::string client;               // "sweepctl exec" or "python"
};

/// The file's JSON object (version 1).
nlohmann::json to_json(const spool_record& r);

/// A version-1 spool object, or nullopt with `problem` saying what is wrong with it.
std::optional<spool_record> spool_record_from(const nlohmann::json& j, std::string& problem);

/// Writes `<dir>/<run>.json`, mode 0600, through a temporary file that is fsynced and renamed into
/// place (replacing an older report for the run). Creates and checks `dir` first. Its path, or
/// nullopt with `problem` set.
std::optional<std::filesystem::path> write_spool_file(const std::filesystem::path& dir,
                                                      const spool_record& r, uid_t uid,
                                                      std::string& problem);

/// A spool file as `sweepctl spool list` shows it.
struct spool_entry {
  std::filesystem::path path;
  std::string run;                     // from the file name
  std::optional<spool_record> record;  // nullopt when the file is not a spool object
  std::string problem;                 // why not
};

/// Every `<run>.json` in `dir`, in name order, read without locking (for display). An absent
/// directory holds nothing; `problem` is set when it cannot be read.
std::vector<spool_entry> list_spool(const std::filesystem::path& dir, std::string& problem);

/// A spool file opened and locked with a non-blocking exclusive flock (docs/spool.md, delivery
/// steps 1-2). It is only removed or set aside under the lock; the lock goes with the object.
class spool_claim {
 public:
  enum class status {
    claimed,  // open and locked by us
    busy,     // another client holds the lock: it is delivering the file
    gone,     // not there, or removed by another client between our open and our lock
    failed,   // cannot be opened or locked (problem() says why)
  };

  explicit spool_claim(const std::filesystem::path& path);
  ~spool_claim();
  spool_claim(const spool_claim&) = delete;
  spool_claim& operator=(const spool_claim&) = delete;

  status state() const { return state_; }
  const std::string& problem() const { return problem_; }

  /// The locked file's content (at most 1 MiB), or nullopt with `problem` set.
  std::optional<std::string> read(std::string& problem) const;
  /// Removes the file, unless its name now stands for a newer file (a newer report replaced it).
  bool remove(std::string& problem);
  /// Renames the file to `<path>.bad`; the new path, or nullopt with `problem` set.
  std::optional<std::filesystem::path> set_aside(std::string& problem);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  status state_ = status::failed;
  std::string problem_;
};

/// sweepd as delivery needs it: one request at a time on one connection.
class spool_link {
 public:
  virtual ~spool_link() = default;
  /// sweepd's reply to `request` (an object with a boolean "ok"), or nullopt with `why` set when
  /// none came (sweepd down, hung, or talking nonsense).
  virtual std::optional<nlohmann::json> call(const nlohmann::json& request, std::string& why) = 0;
};

/// A spool_link to sweepd as sweepctl reaches it: its Unix socket, or its TLS listener (where
/// each connection starts with the hello that carries the token). It connects at the first call;
/// a call (the TLS handshake and hello included) waits at most `reply_timeout` and never past
/// `deadline`. After one failure every call fails at once with the same reason: delivery stops
/// until the next attempt.
class daemon_spool_link final : public spool_link {
 public:
  /// `name` is sweepd's address as people read it (the socket path or "tls://HOST:PORT");
  /// `token` is used only for a remote `address`.
  daemon_spool_link(std::string name, io::daemon_address address, io::tls_client_options tls,
                    std::string token, std::chrono::milliseconds reply_timeout,
                    std::chrono::steady_clock::time_point deadline =
                        std::chrono::steady_clock::time_point::max());
  ~daemon_spool_link() override;
  daemon_spool_link(const daemon_spool_link&) = delete;
  daemon_spool_link& operator=(const daemon_spool_link&) = delete;

  std::optional<nlohmann::json> call(const nlohmann::json& request, std::string& why) override;
  /// True when sweepd's TLS listener refused the hello (the token): the link is down for that.
  bool refused() const { return refused_; }

 private:
  bool connect(std::string& why);
  bool connect_remote(std::string& why);
  std::optional<nlohmann::json> exchange(const nlohmann::json& request,
                                         std::chrono::steady_clock::time_point until,
                                         std::string& why);
  void close();

  std::string name_;
  io::daemon_address address_;
  io::tls_client_options tls_options_;
  std::string token_;
  std::chrono::milliseconds reply_timeout_;
  std::chrono::steady_clock::time_point deadline_;
  int fd_ = -1;                              // the Unix socket
  std::unique_ptr<io::tls_connection> tls_;  // the TLS listener, instead of fd_
  std::string buffer_;
  std::string failed_;  // why the link is down for good
  bool refused_ = false;
};

/// What became of one spool file.
struct delivery {
  enum class outcome {
    delivered,  // sweepd recorded the report; the file is removed
    refused,    // sweepd's final word was an error; the file is removed
    left,       // the file stays: sweepd did not answer, or another client is delivering it
    foreign,    // for another socket's sweepd: left alone
    malformed,  // not a version-1 spool object: renamed to .bad
    gone,       // another client delivered it first
  };
  outcome what = outcome::left;
  std::filesystem::path path;
  std::string run;
  std::string state;    // delivered: the run's state in sweepd
  std::string code;     // refused: the error code
  std::string message;  // refused: sweepd's message; left, foreign, malformed: why
  bool stop = false;    // left because sweepd cannot take reports now: stop flushing
};

/// "delivered success", "refused conflict: …", "left: …": one line for people.
std::string describe(const delivery& d);
/// "delivered", "refused", … as --json names them.
std::string_view to_string(delivery::outcome what);

/// Delivers one spool file to the sweepd at `socket` (docs/spool.md, "Delivering one file").
/// With a null `link` nothing is sent: a file for this socket is left untried (flushing stopped).
delivery deliver_spool_file(const std::filesystem::path& path, std::string_view socket,
                            spool_link* link);

/// Every spool file in `dir` for `socket`, in name order; files for other sockets are left alone.
/// After a file that sweepd did not take for want of an answer, nothing more is sent.
struct flush_result {
  std::vector<delivery> files;
  std::string problem;   // the directory cannot be used; nothing was done
  bool stopped = false;  // sweepd stopped answering (or could not take reports) partway
};
flush_result flush_spool(const std::filesystem::path& dir, std::string_view socket, uid_t uid,
                         spool_link& link);

}  // namespace sweepd::cli
