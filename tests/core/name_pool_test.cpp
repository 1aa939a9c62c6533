#include "core/name_pool.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace sweepd::core {
namespace {

TEST(NamePool, EqualNamesShareOneCopy) {
  name_pool pool;
  const shared_name a = pool.intern("sweep-with-a-long-name-42");
  const shared_name b = pool.intern(std::string("sweep-with-a-long-name-42"));
  EXPECT_EQ(&a.str(), &b.str());
  EXPECT_EQ(a, b);
  EXPECT_EQ(pool.size(), 1u);
  const shared_name c = pool.intern("other");
  EXPECT_NE(&a.str(), &c.str());
  EXPECT_FALSE(a == c);
  EXPECT_EQ(pool.size(), 2u);
}

TEST(NamePool, TheEmptyNameHoldsNothing) {
  name_pool pool;
  EXPECT_TRUE(pool.intern("").empty());
  EXPECT_EQ(pool.intern("").str(), "");
  EXPECT_EQ(pool.size(), 0u);
  EXPECT_TRUE(shared_name().empty());
  EXPECT_EQ(shared_name(), pool.intern(""));
}

TEST(NamePool, NamesOutliveThePool) {
  shared_name kept;
  {
    name_pool pool;
    kept = pool.intern("entity");
    const shared_name copy = kept;
    EXPECT_EQ(copy, "entity");
  }
  EXPECT_EQ(kept.str(), "entity");
  shared_name copy = kept;
  kept = shared_name();
  EXPECT_EQ(copy, "entity");
}

TEST(NamePool, UnusedNamesAreDroppedAsThePoolGrows) {
  name_pool pool;
  const shared_name used = pool.intern("used");
  for (int i = 0; i < 10000; ++i) pool.intern("gone-" + std::to_string(i));
  // Bounded by twice the names in use (at least the first sweep's 64), not by every name seen.
  EXPECT_LE(pool.size(), 64u);
  EXPECT_EQ(&pool.intern("used").str(), &used.str());
}

TEST(NamePool, NamesInUseAreKeptAndStillShared) {
  name_pool pool;
  std::vector<shared_name> held;
  held.reserve(1000);
  for (int i = 0; i < 1000; ++i) held.push_back(pool.intern("s" + std::to_string(i)));
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(&pool.intern("s" + std::to_string(i)).str(),
              &held[static_cast<std::size_t>(i)].str());
  }
  EXPECT_EQ(pool.size(), 1000u);
}

TEST(SharedName, ReadsAndComparesAsItsString) {
  shared_name n("proj");  // a copy of its own
  const std::string& s = n;
  EXPECT_EQ(s, "proj");
  EXPECT_EQ(n, std::string("proj"));
  EXPECT_EQ(n, std::string_view("proj"));
  EXPECT_EQ(n, "proj");
  EXPECT_TRUE(n != "team");
  EXPECT_EQ(n.size(), 4u);
  std::ostringstream out;
  out << n;
  EXPECT_EQ(out.str(), "proj");
  const shared_name moved = std::move(n);
  EXPECT_EQ(moved, "proj");
  EXPECT_TRUE(n.empty());  // NOLINT(bugprone-use-after-move): a moved-from name is empty
}

}  // namespace
}  // namespace sweepd::core
