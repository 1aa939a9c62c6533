#include "io/client.hpp"

#include <gtest/gtest.h>

namespace sweepd::io {
namespace {

TEST(Client, ConnectToMissingSocketNamesThePath) {
  client c;
  EXPECT_FALSE(c.connect("/nonexistent/sweepd-test.sock"));
  EXPECT_NE(c.last_error().find("/nonexistent/sweepd-test.sock"), std::string::npos);
  EXPECT_FALSE(c.connected());
}

TEST(Client, RefusesOverlongPath) {
  client c;
  EXPECT_FALSE(c.connect(std::string(200, 'x')));
  EXPECT_NE(c.last_error().find("too long"), std::string::npos);
}

TEST(Client, CallWithoutConnectionIsAnError) {
  client c;
  EXPECT_FALSE(c.call({{"op", "hello"}}).has_value());
  EXPECT_EQ(c.last_error(), "not connected to sweepd");
}

}  // namespace
}  // namespace sweepd::io
