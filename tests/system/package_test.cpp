// What an operator installs: the systemd units (systemd-analyze verify and security, the sysusers
// file) and the Debian package built by CPack from the binaries already built (lintian, its
// contents, and the unpacked sweepd checking the packaged config).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "support/process_support.hpp"

namespace sweepd {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

void require_tool(const std::string& path, const std::string& package) {
  ASSERT_TRUE(fs::exists(path)) << path << " is missing: install the Debian package " << package
                                << " (third_party/debian-packages.txt lists it)";
}

/// The units as installed, with ExecStart pointing at `sweepd` (verify checks that the binary
/// exists) and the man pages under `man_root` (verify runs man for Documentation=); copied into
/// `dir`. Nothing else is changed.
struct units_for_checks {
  fs::path service;
  fs::path socket;
  std::vector<std::string> env;
};

units_for_checks stage_units(const fs::path& dir, const fs::path& service_in,
                             const fs::path& socket_in, const std::string& sweepd,
                             const fs::path& man_root) {
  units_for_checks u;
  u.service = dir / "sweepd.service";
  u.socket = dir / "sweepd.socket";
  const std::string text = read_file(service_in);
  EXPECT_THAT(text, HasSubstr("ExecStart=/usr/sbin/sweepd "));
  write_file(u.service,
             replace_all(text, "ExecStart=/usr/sbin/sweepd ", "ExecStart=" + sweepd + " "));
  write_file(u.socket, read_file(socket_in));
  u.env = test::environment_with({"MANPATH=" + man_root.string(), "SYSTEMD_LOG_COLOR=0"});
  return u;
}

/// systemd-analyze's overall exposure (0 = locked down, 10 = exposed).
std::optional<double> exposure_of(const std::string& out) {
  std::smatch m;
  static const std::regex level(R"(Overall exposure level for sweepd\.service: ([0-9.]+))");
  if (!std::regex_search(out, m, level)) return std::nullopt;
  return std::stod(m[1]);
}

void check_units(const units_for_checks& u, const std::string& where) {
  SCOPED_TRACE(where);
  const auto verify = test::run_command(
      {"/usr/bin/systemd-analyze", "verify", u.service.string(), u.socket.string()}, u.env,
      seconds(60));
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_EQ(verify.out + verify.err, "") << "systemd-analyze verify is clean";

  // 2.0 on systemd's 0-10 scale; --threshold takes tenths.
  const auto security = test::run_command({"/usr/bin/systemd-analyze", "security", "--offline=yes",
                                           "--threshold=20", "--no-pager", u.service.string()},
                                          u.env, seconds(60));
  EXPECT_EQ(security.exit_code, 0) << security.out << security.err;
  const auto exposure = exposure_of(security.out);
  ASSERT_TRUE(exposure) << security.out << security.err;
  EXPECT_LE(*exposure, 2.0) << security.out;
  std::cout << "systemd-analyze security: exposure " << *exposure << " for " << where << "\n";
  // The process watch must see other users' processes (not ProtectProc=invisible, not
  // ProcSubset=pid) and their real uids (no PrivateUsers=).
  const std::string unit = read_file(u.service);
  EXPECT_THAT(unit, Not(HasSubstr("ProtectProc=invisible")));
  EXPECT_THAT(unit, Not(HasSubstr("ProcSubset=pid")));
  EXPECT_THAT(unit, Not(HasSubstr("PrivateUsers=yes")));
}

TEST(SystemdUnits, VerifyIsCleanAndExposureIsAtMostTwo) {
  ASSERT_NO_FATAL_FAILURE(require_tool("/usr/bin/systemd-analyze", "systemd"));
  test::temp_dir dir;
  // man pages as man(1) finds them under MANPATH.
  for (const auto& [page, section] :
       {std::pair{"sweepd.8.gz", "man8"}, {"sweepctl.1.gz", "man1"}}) {
    fs::create_directories(dir.path() / "man" / section);
    fs::copy_file(fs::path(SWEEPD_BUILD_DIR) / "man" / page, dir.path() / "man" / section / page);
  }
  const auto u = stage_units(
      dir.path() / "units", fs::path(SWEEPD_BUILD_DIR) / "systemd/sweepd.service",
      fs::path(SWEEPD_BUILD_DIR) / "systemd/sweepd.socket", SWEEPD_BINARY, dir.path() / "man");
  check_units(u, "the built units");
}

TEST(SystemdUnits, TheUnitHasTheWatchdogCredentialDirectoriesAndUser) {
  const std::string unit = read_file(fs::path(SWEEPD_BUILD_DIR) / "systemd/sweepd.service");
  for (const char* line :
       {"Type=notify\n", "WatchdogSec=30s\n", "Requires=sweepd.socket\n", "User=sweepd\n",
        "Group=sweepd\n", "RuntimeDirectory=sweepd\n", "StateDirectory=sweepd\n",
        "LoadCredential=wandb-api-key:/etc/sweepd/wandb-api-key\n", "Restart=on-failure\n",
        "ExecStart=/usr/sbin/sweepd --config /etc/sweepd/sweepd.yaml\n"}) {
    EXPECT_THAT(unit, HasSubstr(line));
  }
  const std::string socket = read_file(fs::path(SWEEPD_BUILD_DIR) / "systemd/sweepd.socket");
  EXPECT_THAT(socket, HasSubstr("ListenStream=/run/sweepd/sweepd.sock\n"));
}

TEST(SystemdUnits, SysusersCreatesTheSweepdUserAndGroup) {
  ASSERT_NO_FATAL_FAILURE(require_tool("/usr/bin/systemd-sysusers", "systemd"));
  test::temp_dir root;
  fs::create_directories(root.path() / "etc");
  const auto r = test::run_command({"/usr/bin/systemd-sysusers", "--root=" + root.path().string(),
                                    SWEEPD_SOURCE_DIR "/systemd/sweepd.sysusers"},
                                   test::environment_with({}), seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string passwd = read_file(root.path() / "etc/passwd");
  const std::string group = read_file(root.path() / "etc/group");
  EXPECT_THAT(passwd,
              ::testing::ContainsRegex("^sweepd:x:[0-9]+:[0-9]+:sweepd [^:]*:/var/lib/sweepd:"
                                       "/usr/sbin/nologin"));
  EXPECT_THAT(group, ::testing::ContainsRegex("^sweepd:x:[0-9]+:"));
}

TEST(DebianPackage, BuildsLintsCleanHoldsEverythingAndChecksItsConfig) {
  ASSERT_NO_FATAL_FAILURE(require_tool("/usr/bin/cpack", "cmake"));
  ASSERT_NO_FATAL_FAILURE(require_tool("/usr/bin/lintian", "lintian"));
  ASSERT_NO_FATAL_FAILURE(require_tool("/usr/bin/dpkg-shlibdeps", "dpkg-dev"));
  test::temp_dir out;
  const auto env = test::environment_with({});
  // CPack packages what the build directory already has (the install rules of sweepd's targets).
  const auto packed = test::run_command(
      {"/usr/bin/cpack", "-G", "DEB", "--config",
       std::string(SWEEPD_BUILD_DIR) + "/CPackConfig.cmake", "-B", out.path().string()},
      env, seconds(300));
  ASSERT_EQ(packed.exit_code, 0) << packed.out << packed.err;
  fs::path deb;
  for (const auto& e : fs::directory_iterator(out.path())) {
    if (e.path().extension() == ".deb") deb = e.path();
  }
  ASSERT_FALSE(deb.empty()) << packed.out;
  EXPECT_THAT(deb.filename().string(), ::testing::MatchesRegex("sweepd_[0-9.]+_[a-z0-9]+\\.deb"));

  // Metadata: dependencies computed from the binaries' libraries, the config a conffile.
  const auto depends =
      test::run_command({"/usr/bin/dpkg-deb", "-f", deb.string(), "Depends"}, env, seconds(30));
  for (const char* lib : {"libc6", "libsystemd0", "libsqlite3-0", "libssl3", "libyaml-cpp",
                          "libstdc++6", "systemd"}) {
    EXPECT_THAT(depends.out, HasSubstr(lib));
  }
  const fs::path control = out.path() / "control";
  ASSERT_EQ(test::run_command({"/usr/bin/dpkg-deb", "-e", deb.string(), control.string()}, env,
                              seconds(30))
                .exit_code,
            0);
  EXPECT_EQ(read_file(control / "conffiles"), "/etc/sweepd/sweepd.yaml\n");
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    EXPECT_TRUE((fs::status(control / script).permissions() & fs::perms::owner_exec) !=
                fs::perms::none)
        << script;
  }
  EXPECT_THAT(read_file(control / "postinst"), HasSubstr("systemd-sysusers sweepd.conf"));
  EXPECT_THAT(read_file(control / "postinst"), HasSubstr("daemon-reload"));

  // lintian, Debian's package checker: no errors (warnings and notes are printed for reading).
  const auto lint = test::run_command(
      {"/usr/bin/lintian", "--fail-on", "error", "--tag-display-limit", "0", deb.string()}, env,
      seconds(300));
  std::cout << "lintian:\n" << lint.out << lint.err;
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
  EXPECT_THAT(lint.out, Not(::testing::ContainsRegex("(^|\n)E: ")));

  // Unpacked into a temporary root: every file in its FHS place.
  const fs::path root = out.path() / "root";
  ASSERT_EQ(
      test::run_command({"/usr/bin/dpkg-deb", "-x", deb.string(), root.string()}, env, seconds(60))
          .exit_code,
      0);
  for (const char* file :
       {"usr/sbin/sweepd", "usr/bin/sweepctl", "lib/systemd/system/sweepd.service",
        "lib/systemd/system/sweepd.socket", "usr/lib/sysusers.d/sweepd.conf",
        "etc/sweepd/sweepd.yaml", "usr/share/man/man8/sweepd.8.gz",
        "usr/share/man/man1/sweepctl.1.gz", "usr/share/bash-completion/completions/sweepctl",
        "usr/share/doc/sweepd/README.md", "usr/share/doc/sweepd/protocol.md",
        "usr/share/doc/sweepd/operations.md", "usr/share/doc/sweepd/copyright",
        "usr/share/doc/sweepd/changelog.gz", "usr/share/doc/sweepd/examples/sweepd-rules.yml"}) {
    EXPECT_TRUE(fs::exists(root / file)) << file;
  }

  // The unpacked sweepd accepts the packaged config.
  const auto check = test::run_command({(root / "usr/sbin/sweepd").string(), "--check-config",
                                        (root / "etc/sweepd/sweepd.yaml").string()},
                                       {}, seconds(30));
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out, HasSubstr("/run/sweepd/sweepd.sock"));
  EXPECT_THAT(check.out, HasSubstr("/var/lib/sweepd/state.db"));
  const auto version =
      test::run_command({(root / "usr/bin/sweepctl").string(), "--version"}, {}, seconds(30));
  EXPECT_EQ(version.exit_code, 0) << version.err;

  // The packaged units pass the same checks as the built ones.
  if (fs::exists("/usr/bin/systemd-analyze")) {
    const auto u = stage_units(out.path() / "units", root / "lib/systemd/system/sweepd.service",
                               root / "lib/systemd/system/sweepd.socket",
                               (root / "usr/sbin/sweepd").string(), root / "usr/share/man");
    check_units(u, "the packaged units");
  }
}

}  // namespace
}  // namespace sweepd
