#include "cli/spool.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <random>
#include <system_error>

#include "cli/render.hpp"
#include "cli/table.hpp"
#include "core/protocol.hpp"
#include "core/time.hpp"
#include "io/posix.hpp"

namespace sweepd::cli {

namespace {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr std::string_view spool_suffix = ".json";
/// A spool file holds one report and one register (a suggestion is at most 64 KiB); anything much
/// larger is not one.
constexpr std::size_t max_spool_file_bytes = std::size_t{1024} * 1024;
constexpr std::size_t max_reply_bytes = std::size_t{1024} * 1024;

std::string dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

/// The run a spool file's name stands for ("ab12.json" → "ab12"), or nullopt for other files:
/// temporary files, `.bad` files, anything that is not `<run id>.json`.
std::optional<std::string> run_of_file_name(const std::string& name) {
  if (!name.ends_with(spool_suffix)) return std::nullopt;
  std::string run = name.substr(0, name.size() - spool_suffix.size());
  if (!core::is_valid_run_id(run)) return std::nullopt;
  return run;
}

/// The spool files in `dir` (regular files named `<run>.json`), in name order.
std::vector<fs::path> spool_file_paths(const fs::path& dir, std::string& problem) {
  std::vector<fs::path> paths;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec == std::errc::no_such_file_or_directory) return paths;
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (it->symlink_status(type_ec).type() != fs::file_type::regular || type_ec) continue;
    if (run_of_file_name(it->path().filename().string())) paths.push_back(it->path());
  }
  if (ec) {
    problem = fmt::format("cannot read the spool directory {}: {}", dir.string(), ec.message());
    return {};
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

/// Reads all of `fd` from the start, up to max_spool_file_bytes.
std::optional<std::string> read_fd(int fd, std::string& problem) {
  std::string text;
  char chunk[8192];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd, chunk, sizeof(chunk), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      problem = fmt::format("cannot read it: {}", io::errno_text(errno));
      return std::nullopt;
    }
    if (n == 0) return text;
    text.append(chunk, static_cast<std::size_t>(n));
    at += n;
    if (text.size() > max_spool_file_bytes) {
      problem = fmt::format("it is larger than {} bytes", max_spool_file_bytes);
      return std::nullopt;
    }
  }
}

/// A spool record from a file's text, or nullopt with `problem` set; the run must be the one of
/// the file's name.
std::optional<spool_record> record_from_text(const std::string& text, const std::string& run,
                                             std::string& problem) {
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    problem = "not valid JSON";
    return std::nullopt;
  }
  auto record = spool_record_from(j, problem);
  if (record && record->run != run) {
    problem = fmt::format("it holds run '{}', not the run of its name", printable(record->run, 40));
    return std::nullopt;
  }
  return record;
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/// Errors after which sweepd may well take the report later: the file stays.
bool is_transient(std::string_view code) {
  return code == "busy" || code == "internal" || code == "unavailable";
}

}  // namespace

fs::path spool_dir_for(const std::optional<std::string>& explicit_dir, const env_lookup& env,
                       std::string_view socket, uid_t uid) {
  if (explicit_dir) return *explicit_dir;
  auto non_empty = [&](std::string_view name) -> std::optional<std::string> {
    auto v = env(name);
    if (v && v->empty()) return std::nullopt;
    return v;
  };
  if (auto dir = non_empty("SWEEPD_SPOOL_DIR")) return *dir;
  if (auto xdg = non_empty("XDG_STATE_HOME"); xdg && xdg->front() == '/') {
    return fs::path(*xdg) / "sweepd" / "spool";
  }
  if (auto home = non_empty("HOME"))
    return fs::path(*home) / ".local" / "state" / "sweepd" / "spool";
  fs::path socket_dir = fs::path(socket).parent_path();
  if (socket_dir.empty()) socket_dir = ".";
  return socket_dir / fmt::format("spool-{}", uid);
}

std::string check_spool_dir(const fs::path& dir, uid_t uid, bool& exists) {
  struct stat st {};
  exists = false;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return fmt::format("cannot use {}: {}", dir.string(), io::errno_text(errno));
  }
  exists = true;
  if (!S_ISDIR(st.st_mode)) return fmt::format("{} is not a directory", dir.string());
  if (st.st_uid != uid) {
    return fmt::format("{} belongs to uid {}, not to uid {}", dir.string(), st.st_uid, uid);
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return fmt::format("{} may be written by {} (mode {:04o}; make it 0700)", dir.string(),
                       (st.st_mode & S_IWOTH) != 0 ? "others" : "its group", st.st_mode & 07777);
  }
  return {};
}

std::string make_spool_dir(const fs::path& dir, uid_t uid) {
  bool exists = false;
  if (std::string problem = check_spool_dir(dir, uid, exists); exists || !problem.empty()) {
    return problem;
  }
  fs::path partial;
  for (const fs::path& part : dir) {
    partial /= part;
    if (part.empty() || part == "/" || part == "." || part == "..") continue;
    if (::mkdir(partial.c_str(), 0700) == 0) {
      ::chmod(partial.c_str(), 0700);  // the umask may have taken the owner's own bits
    } else if (errno != EEXIST) {
      return fmt::format("cannot create {}: {}", partial.string(), io::errno_text(errno));
    }
  }
  return check_spool_dir(dir, uid, exists);
}

std::string normal_socket_path(std::string_view socket) {
  if (socket.starts_with("tls://")) return std::string(socket);  // an address, not a file
  std::error_code ec;
  fs::path absolute = fs::absolute(fs::path(socket), ec);
  if (ec) return fs::path(socket).lexically_normal().string();
  return absolute.lexically_normal().string();
}

json to_json(const spool_record& r) {
  return {{"version", 1},       {"socket", r.socket},
          {"run", r.run},       {"register", r.register_request},
          {"report", r.report}, {"spooled_at", r.spooled_at},
          {"client", r.client}};
}

std::optional<spool_record> spool_record_from(const json& j, std::string& problem) {
  if (!j.is_object()) {
    problem = "not a JSON object";
    return std::nullopt;
  }
  auto text = [&](const char* key, bool required) -> std::optional<std::string> {
    const auto it = j.find(key);
    if (it == j.end() && !required) return std::string();
    if (it == j.end() || !it->is_string() ||
        (required && it->get_ref<const std::string&>().empty())) {
      problem = fmt::format("no \"{}\" string", key);
      return std::nullopt;
    }
    return it->get<std::string>();
  };
  const auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer() || *version != 1) {
    problem = version == j.end() ? "no \"version\""
                                 : fmt::format("version {}, not 1", printable(dump(*version), 20));
    return std::nullopt;
  }
  spool_record r;
  auto socket = text("socket", true);
  auto run = socket ? text("run", true) : std::nullopt;
  if (!run) return std::nullopt;
  if (!core::is_valid_run_id(*run)) {
    problem = fmt::format("'{}' is not a run id", printable(*run, 40));
    return std::nullopt;
  }
  auto request = [&](const char* key,
                     std::initializer_list<std::string_view> ops) -> std::optional<json> {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_object()) {
      problem = fmt::format("no \"{}\" object", key);
      return std::nullopt;
    }
    const auto op = it->find("op");
    const bool op_ok =
        op != it->end() && op->is_string() &&
        std::find(ops.begin(), ops.end(), op->get_ref<const std::string&>()) != ops.end();
    const auto its_run = it->find("run");
    if (!op_ok || its_run == it->end() || *its_run != *run) {
      problem = fmt::format("\"{}\" is not a {} request for run '{}'", key, *ops.begin(), *run);
      return std::nullopt;
    }
    return *it;
  };
  auto register_request = request("register", {"register"});
  if (!register_request) return std::nullopt;
  auto report = request("report", {"complete", "fail"});
  if (!report) return std::nullopt;
  auto spooled_at = text("spooled_at", false);
  auto client = spooled_at ? text("client", false) : std::nullopt;
  if (!client) return std::nullopt;
  return spool_record{std::move(*socket), std::move(*run),        std::move(*register_request),
                      std::move(*report), std::move(*spooled_at), std::move(*client)};
}

std::optional<fs::path> write_spool_file(const fs::path& dir, const spool_record& r, uid_t uid,
                                         std::string& problem) {
  if (std::string why = make_spool_dir(dir, uid); !why.empty()) {
    problem = "spool directory refused: " + why;
    return std::nullopt;
  }
  const fs::path target = dir / (r.run + std::string(spool_suffix));
  // Not ending in .json, so no reader takes it for a spool file while it is being written.
  std::random_device random;
  const fs::path temporary =
      dir / fmt::format(".{}.json.{}-{:08x}.tmp", r.run, ::getpid(),
                        std::uniform_int_distribution<std::uint32_t>()(random));
  const int fd =
      ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    problem = fmt::format("cannot create {}: {}", temporary.string(), io::errno_text(errno));
    return std::nullopt;
  }
  const std::string text = dump(to_json(r), 2) + "\n";
  std::string_view rest = text;
  int error = ::fchmod(fd, 0600) == 0 ? 0 : errno;
  while (error == 0 && !rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = errno;
    if (n > 0) rest.remove_prefix(static_cast<std::size_t>(n));
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && ::rename(temporary.c_str(), target.c_str()) != 0) error = errno;
  if (error != 0) {
    ::unlink(temporary.c_str());
    problem = fmt::format("cannot write {}: {}", target.string(), io::errno_text(error));
    return std::nullopt;
  }
  // The rename is only durable once the directory is; a failure here leaves a file that is
  // complete but may not survive a power cut, which is still worth having.
  if (const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return target;
}

std::vector<spool_entry> list_spool(const fs::path& dir, std::string& problem) {
  std::vector<spool_entry> entries;
  for (const fs::path& path : spool_file_paths(dir, problem)) {
    spool_entry e{path, *run_of_file_name(path.filename().string()), std::nullopt, {}};
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // delivered while we looked
      e.problem = fmt::format("cannot open it: {}", io::errno_text(errno));
    } else {
      if (const auto text = read_fd(fd, e.problem)) {
        e.record = record_from_text(*text, e.run, e.problem);
      }
      ::close(fd);
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------
// spool_claim

spool_claim::spool_claim(const fs::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd_ < 0) {
    state_ = errno == ENOENT ? status::gone : status::failed;
    problem_ = fmt::format("cannot open {}: {}", path.string(), io::errno_text(errno));
    return;
  }
  int r = 0;
  do {
    r = ::flock(fd_, LOCK_EX | LOCK_NB);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    state_ = errno == EWOULDBLOCK ? status::busy : status::failed;
    problem_ = fmt::format("cannot lock {}: {}", path.string(), io::errno_text(errno));
  } else if (struct stat st{}; ::fstat(fd_, &st) != 0) {
    state_ = status::failed;
    problem_ = fmt::format("cannot stat {}: {}", path.string(), io::errno_text(errno));
  } else {
    // Removed by the client that held the lock between our open and our lock.
    state_ = st.st_nlink == 0 ? status::gone : status::claimed;
  }
  if (state_ != status::claimed) {
    ::close(fd_);
    fd_ = -1;
  }
}

spool_claim::~spool_claim() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string> spool_claim::read(std::string& problem) const {
  if (fd_ < 0) {
    problem = problem_;
    return std::nullopt;
  }
  return read_fd(fd_, problem);
}

bool spool_claim::remove(std::string& problem) {
  struct stat ours {};
  struct stat named {};
  if (fd_ < 0 || ::fstat(fd_, &ours) != 0) {
    problem = fd_ < 0 ? problem_ : fmt::format("cannot stat it: {}", io::errno_text(errno));
    return false;
  }
  if (::lstat(path_.c_str(), &named) != 0) {
    if (errno == ENOENT) return true;
    problem = fmt::format("cannot stat {}: {}", path_.string(), io::errno_text(errno));
    return false;
  }
  // A newer report for the run was renamed over ours meanwhile: it is not ours to remove.
  if (!same_file(ours, named)) return true;
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
    problem = fmt::format("cannot remove {}: {}", path_.string(), io::errno_text(errno));
    return false;
  }
  return true;
}

std::optional<fs::path> spool_claim::set_aside(std::string& problem) {
  fs::path bad = path_;
  bad += ".bad";
  if (fd_ < 0) {
    problem = problem_;
    return std::nullopt;
  }
  if (::rename(path_.c_str(), bad.c_str()) != 0) {
    problem = fmt::format("cannot rename it to {}: {}", bad.string(), io::errno_text(errno));
    return std::nullopt;
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------
// daemon_spool_link

daemon_spool_link::daemon_spool_link(std::string name, io::daemon_address address,
                                     io::tls_client_options tls, std::string token,
                                     std::chrono::milliseconds reply_timeout,
                                     steady::time_point deadline)
    : name_(std::move(name)),
      address_(std::move(address)),
      tls_options_(std::move(tls)),
      token_(std::move(token)),
      reply_timeout_(reply_timeout),
      deadline_(deadline) {}

daemon_spool_link::~daemon_spool_link() { close(); }

void daemon_spool_link::close() {
  if (fd_ >= 0 && !tls_) ::close(fd_);
  fd_ = -1;
  tls_.reset();
  buffer_.clear();
}

bool daemon_spool_link::connect(std::string& why) {
  if (address_.remote) return connect_remote(why);
  // Non-blocking: a Unix socket connects at once or not at all (EAGAIN: sweepd's backlog is full).
  const auto fd = io::connect_unix(address_.path, {true, name_});
  if (!fd) {
    why = fd.error().message;
    return false;
  }
  fd_ = *fd;
  return true;
}

bool daemon_spool_link::connect_remote(std::string& why) {
  const steady::time_point until = std::min(deadline_, steady::now() + reply_timeout_);
  auto connection = std::make_unique<io::tls_connection>();
  if (!connection->connect(address_.host, address_.port, tls_options_, until)) {
    why = connection->error();
    return false;
  }
  tls_ = std::move(connection);
  fd_ = tls_->fd();
  // The first line authenticates the connection; the token goes nowhere else (not in the spool
  // file, not in a message).
  const auto hello = exchange(core::request_json(core::hello_request{token_}), until, why);
  if (!hello) return false;
  if ((*hello)["ok"] != true) {
    const shown_error e = shown_error_of(*hello, 200);
    // A refused hello is not sweepd's word on any report: the files stay for a right token.
    why = fmt::format("sweepd at {} refused the connection: {}: {}", name_, e.code, e.message);
    refused_ = true;
    return false;
  }
  return true;
}

std::optional<json> daemon_spool_link::exchange(const json& request, steady::time_point until,
                                                std::string& why) {
  const auto timed_out = [&] { why = fmt::format("no reply from sweepd at {} in time", name_); };
  auto wait = [&](short events) {
    for (;;) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - steady::now());
      if (left.count() <= 0) {
        timed_out();
        return false;
      }
      pollfd pfd{fd_, events, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready > 0) return true;
      if (ready < 0 && errno != EINTR) {
        why = fmt::format("cannot wait for sweepd: {}", io::errno_text(errno));
        return false;
      }
    }
  };
  const std::string line = dump(request) + "\n";
  if (tls_) {
    if (!tls_->send(line, until)) {
      why = tls_->error();
      return std::nullopt;
    }
  } else {
    for (std::string_view rest = line; !rest.empty();) {
      const ssize_t n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        rest.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait(POLLOUT)) return std::nullopt;
      } else if (n < 0 && errno != EINTR) {
        why = fmt::format("cannot send to sweepd at {}: {}", name_, io::errno_text(errno));
        return std::nullopt;
      }
    }
  }
  for (;;) {
    if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
      const std::string reply_line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return protocol_reply(reply_line, name_, why);
    }
    char chunk[4096];
    ssize_t n = 0;
    if (tls_) {
      n = tls_->receive(chunk, sizeof(chunk), until);
      if (n < 0) {
        why = tls_->error();
        return std::nullopt;
      }
    } else {
      if (!wait(POLLIN)) return std::nullopt;
      n = ::recv(fd_, chunk, sizeof(chunk), MSG_DONTWAIT);
    }
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      if (buffer_.size() > max_reply_bytes) {
        why = fmt::format("sweepd at {} sent a reply longer than {} bytes", name_, max_reply_bytes);
        return std::nullopt;
      }
    } else if (n == 0) {
      why = fmt::format("sweepd at {} closed the connection", name_);
      return std::nullopt;
    } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
      why = fmt::format("cannot read from sweepd at {}: {}", name_, io::errno_text(errno));
      return std::nullopt;
    }
  }
}

std::optional<json> daemon_spool_link::call(const json& request, std::string& why) {
  if (!failed_.empty()) {
    why = failed_;
    return std::nullopt;
  }
  std::optional<json> reply;
  if (fd_ >= 0 || connect(why)) {
    reply = exchange(request, std::min(deadline_, steady::now() + reply_timeout_), why);
  }
  if (!reply) {
    failed_ = why;
    close();
  }
  return reply;
}

// ---------------------------------------------------------------------------------------------
// Delivery

std::string_view to_string(delivery::outcome what) {
  switch (what) {
    case delivery::outcome::delivered:
      return "delivered";
    case delivery::outcome::refused:
      return "refused";
    case delivery::outcome::left:
      return "left";
    case delivery::outcome::foreign:
      return "foreign";
    case delivery::outcome::malformed:
      return "malformed";
    case delivery::outcome::gone:
      return "gone";
  }
  return "left";
}

std::string describe(const delivery& d) {
  switch (d.what) {
    case delivery::outcome::delivered:
      return d.message.empty() ? fmt::format("delivered {}", d.state)
                               : fmt::format("delivered {}; {}", d.state, d.message);
    case delivery::outcome::refused:
      return fmt::format("refused {}: {}", d.code, d.message);
    case delivery::outcome::left:
    case delivery::outcome::foreign:
      return fmt::format("left: {}", d.message);
    case delivery::outcome::malformed:
      return fmt::format("malformed: {}", d.message);
    case delivery::outcome::gone:
      return "gone: another client delivered it";
  }
  return {};
}

delivery deliver_spool_file(const fs::path& path, std::string_view socket, spool_link* link) {
  delivery d;
  d.path = path;
  d.run = run_of_file_name(path.filename().string()).value_or(path.filename().string());
  spool_claim claim(path);
  switch (claim.state()) {
    case spool_claim::status::claimed:
      break;
    case spool_claim::status::gone:
      d.what = delivery::outcome::gone;
      return d;
    case spool_claim::status::busy:
      d.message = "another client holds its lock (it is delivering it)";
      return d;
    case spool_claim::status::failed:
      d.message = claim.problem();
      return d;
  }
  std::string problem;
  const auto text = claim.read(problem);
  if (!text) {
    d.message = problem;
    return d;
  }
  const auto record = record_from_text(*text, d.run, problem);
  if (!record) {
    d.what = delivery::outcome::malformed;
    std::string rename_problem;
    const auto bad = claim.set_aside(rename_problem);
    d.message = bad ? fmt::format("{}; renamed to {}", problem, bad->string())
                    : fmt::format("{}; and {}", problem, rename_problem);
    return d;
  }
  if (normal_socket_path(record->socket) != normal_socket_path(socket)) {
    d.what = delivery::outcome::foreign;
    d.message = fmt::format("spooled for the sweepd at {}", printable(record->socket, 200));
    return d;
  }
  if (link == nullptr) {
    d.message = "not sent: sweepd did not take an earlier file";
    return d;
  }

  auto no_reply = [&](std::string why) {
    d.message = std::move(why);
    d.stop = true;
    return d;
  };
  std::string why;
  auto reply = link->call(record->report, why);
  if (!reply) return no_reply(why);
  std::optional<json> register_reply;
  if ((*reply)["ok"] != true && core::error_of_reply(*reply).code == "unknown_run") {
    // sweepd no longer knows the run (a fresh state file, or it never got the register).
    register_reply = link->call(record->register_request, why);
    if (!register_reply) return no_reply(why);
    if (!link->call(core::request_json(core::start_request{record->run}), why)) {
      return no_reply(why);
    }
    reply = link->call(record->report, why);
    if (!reply) return no_reply(why);
  }
  if ((*reply)["ok"] == true) {
    d.what = delivery::outcome::delivered;
    const auto state = reply->find("state");
    d.state = state != reply->end() && state->is_string() ? printable(state->get<std::string>(), 40)
                                                          : "recorded";
    if (!claim.remove(problem)) d.message = "but " + problem;
    return d;
  }
  shown_error refusal = shown_error_of(*reply, 300);
  // Still unknown after a register: the register's refusal is sweepd's word on the report.
  if (refusal.code == "unknown_run" && register_reply && (*register_reply)["ok"] != true) {
    refusal = shown_error_of(*register_reply, 300);
  }
  if (is_transient(refusal.code)) {
    d.code = refusal.code;
    return no_reply(fmt::format("sweepd answered {}: {}", refusal.code, refusal.message));
  }
  d.what = delivery::outcome::refused;
  d.code = std::move(refusal.code);
  d.message = std::move(refusal.message);
  if (!claim.remove(problem)) d.message += fmt::format(" (and {})", problem);
  return d;
}

flush_result flush_spool(const fs::path& dir, std::string_view socket, uid_t uid,
                         spool_link& link) {
  flush_result result;
  bool exists = false;
  if (std::string problem = check_spool_dir(dir, uid, exists); !problem.empty()) {
    result.problem = "spool directory refused: " + problem;
    return result;
  }
  if (!exists) return result;
  std::string problem;
  const auto paths = spool_file_paths(dir, problem);
  if (!problem.empty()) {
    result.problem = problem;
    return result;
  }
  spool_link* active = &link;
  for (const fs::path& path : paths) {
    delivery d = deliver_spool_file(path, socket, active);
    if (d.stop) {
      result.stopped = true;
      active = nullptr;
    }
    result.files.push_back(std::move(d));
  }
  return result;
}

}  // namespace sweepd::cli
