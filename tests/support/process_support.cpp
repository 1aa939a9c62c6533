#include "support/process_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <system_error>
#include <utility>

extern char** environ;

namespace sweepd::test {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

[[noreturn]] void throw_errno(int code, const std::string& what) {
  throw std::system_error(code, std::generic_category(), what);
}

int make_output_file(const char* name) {
  const int fd = ::memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) throw_errno(errno, "memfd_create");
  return fd;
}

std::string read_whole(int fd) {
  std::string text;
  if (fd < 0) return text;
  char chunk[65536];
  off_t offset = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, chunk, sizeof(chunk), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    offset += n;
  }
  return text;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

/// argv/envp arrays for posix_spawn, pointing into `strings` (which must outlive them).
std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

/// File actions and attributes that posix_spawn needs, released on every path.
class spawn_setup {
 public:
  spawn_setup(int out_fd, int err_fd) {
    ::posix_spawn_file_actions_init(&actions_);
    ::posix_spawnattr_init(&attr_);
    ::posix_spawn_file_actions_addopen(&actions_, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_adddup2(&actions_, out_fd, STDOUT_FILENO);
    ::posix_spawn_file_actions_adddup2(&actions_, err_fd, STDERR_FILENO);
    // Own process group, so a timeout kills grandchildren too; default signal dispositions and
    // an empty mask, whatever the test runner set for itself (e.g. SIGPIPE ignored).
    sigset_t all;
    sigset_t none;
    sigfillset(&all);
    sigemptyset(&none);
    ::posix_spawnattr_setsigdefault(&attr_, &all);
    ::posix_spawnattr_setsigmask(&attr_, &none);
    ::posix_spawnattr_setpgroup(&attr_, 0);
    ::posix_spawnattr_setflags(
        &attr_,
        static_cast<short>(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK));
  }
  ~spawn_setup() {
    ::posix_spawn_file_actions_destroy(&actions_);
    ::posix_spawnattr_destroy(&attr_);
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;

  const posix_spawn_file_actions_t* actions() const { return &actions_; }
  const posix_spawnattr_t* attr() const { return &attr_; }

 private:
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
};

}  // namespace

process process::start(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  if (argv.empty()) throw std::invalid_argument("process::start: empty argv");
  process p;
  p.out_fd_ = make_output_file("stdout");
  p.err_fd_ = make_output_file("stderr");
  const spawn_setup setup(p.out_fd_, p.err_fd_);
  std::vector<char*> args = c_strings(argv);
  std::vector<char*> envp = c_strings(env);
  pid_t pid = -1;
  const int rc =
      ::posix_spawn(&pid, argv[0].c_str(), setup.actions(), setup.attr(), args.data(), envp.data());
  if (rc != 0) throw_errno(rc, "cannot start " + argv[0]);
  p.pid_ = pid;
  // A pidfd lets wait_for() block in poll() until exit; without one (an old kernel or a sandbox
  // that refuses it) wait_for() falls back to short waitpid polls, still bounded by the timeout.
  // (Through syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C" and does not link from C++.)
  p.pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  return p;
}

process::process(process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      out_fd_(std::exchange(other.out_fd_, -1)),
      err_fd_(std::exchange(other.err_fd_, -1)),
      exit_code_(std::exchange(other.exit_code_, std::nullopt)) {}

process& process::operator=(process&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    out_fd_ = std::exchange(other.out_fd_, -1);
    err_fd_ = std::exchange(other.err_fd_, -1);
    exit_code_ = std::exchange(other.exit_code_, std::nullopt);
  }
  return *this;
}

process::~process() { release(); }

void process::release() {
  if (running()) kill();
  close_fd(pidfd_);
  close_fd(out_fd_);
  close_fd(err_fd_);
  pid_ = -1;
}

bool process::send_signal(int signal) { return running() && ::kill(pid_, signal) == 0; }

std::optional<int> process::wait_for(milliseconds timeout) {
  if (exit_code_ || pid_ <= 0) return exit_code_;
  const auto deadline = steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exit_code_ = decode_wait_status(status);
      return exit_code_;
    }
    if (done < 0 && errno != EINTR) return std::nullopt;  // not our child any more: give up
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (pidfd_ >= 0) {
      pollfd pfd{pidfd_, POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(left.count()));
    } else {
      const timespec pause{0, 5'000'000};
      ::nanosleep(&pause, nullptr);
    }
  }
}

int process::kill() {
  if (!running()) return exit_code_.value_or(-1);
  // The child leads its own group (POSIX_SPAWN_SETPGROUP), and while it is unreaped that group id
  // cannot belong to anyone else.
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  return wait_for(std::chrono::minutes(1)).value_or(-1);
}

std::string process::out() const { return read_whole(out_fd_); }

std::string process::err() const { return read_whole(err_fd_); }

command_result run_command(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env, milliseconds timeout) {
  process p = process::start(argv, env);
  command_result result;
  if (auto code = p.wait_for(timeout)) {
    result.exit_code = *code;
  } else {
    result.timed_out = true;
    result.exit_code = p.kill();
  }
  result.out = p.out();
  result.err = p.err();
  return result;
}

std::vector<std::string> environment_with(const std::vector<std::string>& overrides) {
  auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    bool replaced = false;
    for (const std::string& o : overrides) replaced = replaced || name_of(o) == name_of(entry);
    if (!replaced) env.emplace_back(entry);
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

temp_dir::temp_dir() {
  std::string pattern = "/tmp/swXXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw_errno(errno, "mkdtemp " + pattern);
  path_ = pattern;
}

temp_dir::temp_dir(temp_dir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

temp_dir& temp_dir::operator=(temp_dir&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

temp_dir::~temp_dir() { remove(); }

void temp_dir::remove() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
  path_.clear();
}

std::string temp_dir::file(std::string_view name) const { return (path_ / name).string(); }

}  // namespace sweepd::test
