// ByteLru (util/byte_lru.h): the byte-bounded LRU under the slot store and the slot-prefix cache.
// Here under the sanitizers too (label text).
#include "icae/util/byte_lru.h"

#include <gtest/gtest.h>

#include <string>

using icae::ByteLru;

TEST(ByteLru, EvictsTheLeastRecentlyUsedUntilTheBytesFit) {
  ByteLru<std::string, int> lru(10);
  EXPECT_EQ(lru.put("a", 1, 4), 0);
  EXPECT_EQ(lru.put("b", 2, 4), 0);
  ASSERT_NE(lru.find("a"), nullptr);  // a is now the most recently used: b goes first
  EXPECT_EQ(lru.put("c", 3, 4), 1);
  EXPECT_EQ(lru.find("b"), nullptr);
  ASSERT_NE(lru.find("a"), nullptr);
  EXPECT_EQ(*lru.find("a"), 1);
  EXPECT_EQ(*lru.find("c"), 3);
  EXPECT_EQ(lru.bytes(), 8);
  EXPECT_EQ(lru.size(), 2);
  EXPECT_EQ(lru.put("d", 4, 10), 2);  // takes the whole bound
  EXPECT_EQ(lru.size(), 1);
  EXPECT_EQ(lru.bytes(), 10);
}

TEST(ByteLru, ReplacingAnEntryCountsItsBytesOnce) {
  ByteLru<std::string, int> lru(10);
  lru.put("a", 1, 6);
  lru.put("a", 2, 3);
  EXPECT_EQ(lru.bytes(), 3);
  EXPECT_EQ(lru.size(), 1);
  EXPECT_EQ(*lru.find("a"), 2);
  lru.erase("a");
  lru.erase("never there");
  EXPECT_EQ(lru.bytes(), 0);
  EXPECT_EQ(lru.size(), 0);
}

TEST(ByteLru, AnEntryBiggerThanTheBoundIsNotKeptAndRemovesTheOldOne) {
  ByteLru<std::string, int> lru(10);
  lru.put("a", 1, 5);
  lru.put("b", 2, 5);
  EXPECT_EQ(lru.put("a", 3, 11), 0);
  EXPECT_EQ(lru.find("a"), nullptr);
  ASSERT_NE(lru.find("b"), nullptr);
  EXPECT_EQ(lru.bytes(), 5);
  ByteLru<std::string, int> none(0);  // a zero bound keeps nothing
  none.put("a", 1, 1);
  EXPECT_EQ(none.size(), 0);
}
