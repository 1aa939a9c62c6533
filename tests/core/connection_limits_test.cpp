#include "core/connection_limits.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sweepd::core {
namespace {

using ::testing::HasSubstr;

constexpr std::uint32_t user = 1000;

TEST(ConnectionLimits, AdminsKeepTheLastSlots) {
  EXPECT_EQ(admin_reserved_connections(4096), 8u);
  EXPECT_EQ(admin_reserved_connections(64), 8u);
  EXPECT_EQ(admin_reserved_connections(16), 2u);
  EXPECT_EQ(admin_reserved_connections(7), 0u);  // too few to keep any
  const connection_limits limits{16, 100};
  EXPECT_FALSE(refuse_connection(limits, 13, 0, user, false));
  const auto refused = refuse_connection(limits, 14, 0, user, false);
  ASSERT_TRUE(refused);
  EXPECT_THAT(*refused, HasSubstr("the last 2 of socket.max_connections = 16 are kept for root"));
  EXPECT_FALSE(refuse_connection(limits, 14, 0, 0, true));
  EXPECT_FALSE(refuse_connection(limits, 15, 15, 0, true));
}

TEST(ConnectionLimits, NobodyPassesMaxConnections) {
  const connection_limits limits{16, 100};
  for (const bool admin : {false, true}) {
    const auto refused = refuse_connection(limits, 16, 0, 0, admin);
    ASSERT_TRUE(refused);
    EXPECT_THAT(*refused, HasSubstr("16 open, the limit (socket.max_connections)"));
  }
  EXPECT_TRUE(refuse_connection({1, 100}, 1, 0, 0, true));
  EXPECT_FALSE(refuse_connection({1, 100}, 0, 0, user, false));  // no slot reserved out of one
}

TEST(ConnectionLimits, EachUidHasItsQuotaAdminsExcepted) {
  const connection_limits limits{4096, 3};
  EXPECT_FALSE(refuse_connection(limits, 100, 2, user, false));
  const auto refused = refuse_connection(limits, 100, 3, user, false);
  ASSERT_TRUE(refused);
  EXPECT_EQ(*refused,
            "uid 1000 has 3 connections open, the limit per uid "
            "(socket.max_connections_per_uid = 3)");
  EXPECT_FALSE(refuse_connection(limits, 100, 3, 1001, true));
  EXPECT_FALSE(refuse_connection(limits, 100, 500, 0, true));
}

TEST(ConnectionLimits, ConnectionsFitTheOpenFilesLimit) {
  // Two descriptors a connection, after 64 kept and one per W&B request in flight.
  EXPECT_EQ(connections_within_fd_limit(1024, 4), 478u);
  EXPECT_EQ(connections_within_fd_limit(65536, 4), 32734u);
  EXPECT_EQ(connections_within_fd_limit(256, 64), 64u);
  EXPECT_EQ(connections_within_fd_limit(10, 4), 1u);  // never none
  EXPECT_EQ(connections_within_fd_limit(0, 4), 1u);
  EXPECT_EQ(connections_within_fd_limit(UINT64_MAX, 4), UINT32_MAX);
}

}  // namespace
}  // namespace sweepd::core
