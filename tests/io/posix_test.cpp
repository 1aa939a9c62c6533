#include "io/posix.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "support/process_support.hpp"

namespace sweepd::io {
namespace {

using test::temp_dir;
using ::testing::HasSubstr;

std::string write_file(const temp_dir& dir, std::string_view name, const std::string& content) {
  auto path = dir.file(name);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

/// A listening Unix socket at `path`, closed with the object.
class listener {
 public:
  explicit listener(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_STREAM, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    bound_ = ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 &&
             ::listen(fd_, 4) == 0;
  }
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;
  ~listener() { ::close(fd_); }
  bool bound() const { return bound_; }

 private:
  int fd_;
  bool bound_ = false;
};

TEST(ErrnoText, NamesTheSystemError) {
  EXPECT_EQ(errno_text(ENOENT), "No such file or directory");
  EXPECT_EQ(errno_text(EACCES), "Permission denied");
}

TEST(ReadFileBounded, ReadsAWholeFileUpToTheBound) {
  temp_dir dir;
  const std::string content(20000, 'x');  // more than one read's chunk
  const auto path = write_file(dir, "f", content);
  const auto r = read_file_bounded(path, content.size());
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, content);

  const auto empty = read_file_bounded(write_file(dir, "empty", ""), 0);
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_EQ(*empty, "");
}

TEST(ReadFileBounded, RefusesALargerFileNamingPathAndBound) {
  temp_dir dir;
  const auto path = write_file(dir, "big", std::string(101, 'x'));
  const auto r = read_file_bounded(path, 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, file_error::kind::too_large);
  EXPECT_EQ(r.error().path, path);
  EXPECT_EQ(r.error().message(), "cannot read " + path + ": larger than 100 bytes");
}

TEST(ReadFileBounded, BoundsWhatItReadsFromAFileWithNoSize) {
  // /dev/zero has no size to check up front and never ends: only the read loop's bound stops it.
  const auto r = read_file_bounded("/dev/zero", 10000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, file_error::kind::too_large);
}

TEST(ReadFileBounded, TellsAMissingFileFromAnUnreadableOne) {
  temp_dir dir;
  const auto missing = dir.file("missing");
  auto r = read_file_bounded(missing, 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, file_error::kind::missing);
  EXPECT_EQ(r.error().message(), "cannot read " + missing + ": No such file or directory");

  r = read_file_bounded(dir.path().string(), 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, file_error::kind::unreadable);
  EXPECT_EQ(r.error().reason, "Is a directory");
}

TEST(ReadFileBounded, RegularOnlyRefusesOtherFilesBeforeReading) {
  temp_dir dir;
  auto r = read_file_bounded(dir.path().string(), 100, file_type::regular_only);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, file_error::kind::not_regular);
  EXPECT_EQ(r.error().message(), "cannot read " + dir.path().string() + ": not a regular file");

  r = read_file_bounded("/dev/null", 100, file_type::regular_only);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, file_error::kind::not_regular);
  // Without the restriction a device reads like any file.
  r = read_file_bounded("/dev/null", 100);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, "");
}

TEST(ReadFileBounded, PermissionDeniedSaysSo) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  temp_dir dir;
  const auto path = write_file(dir, "locked", "secret");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  const auto r = read_file_bounded(path, 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what, file_error::kind::unreadable);
  EXPECT_EQ(r.error().reason, "Permission denied");
}

TEST(ConnectUnix, ConnectsToAListeningSocket) {
  temp_dir dir;
  const auto path = dir.file("s");
  listener l(path);
  ASSERT_TRUE(l.bound());
  for (const bool non_blocking : {false, true}) {
    auto r = connect_unix(path, {non_blocking, {}});
    ASSERT_TRUE(r) << r.error().message;
    const int flags = ::fcntl(*r, F_GETFL);
    EXPECT_EQ((flags & O_NONBLOCK) != 0, non_blocking);
    EXPECT_NE(::fcntl(*r, F_GETFD) & FD_CLOEXEC, 0);
    ::close(*r);
  }
}

TEST(ConnectUnix, NoListenerNamesTheSocket) {
  temp_dir dir;
  const auto path = dir.file("none");
  auto r = connect_unix(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "cannot connect to sweepd at " + path + ": No such file or directory");

  r = connect_unix(path, {false, "the admin socket"});
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("cannot connect to sweepd at the admin socket: "));
}

TEST(ConnectUnix, RefusesAPathLongerThanSunPath) {
  const std::string path(200, 'a');
  const auto r = connect_unix(path);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("is too long (200 bytes, at most 107)"));
}

}  // namespace
}  // namespace sweepd::io
