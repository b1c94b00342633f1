// HeapTrimmer trims after a big drop only, once per drop.
#include "daemon/util/heap_trimmer.h"

#include "gtest/gtest.h"

namespace procwarp {
namespace {

TEST(HeapTrimmerTest, TrimsOnceAfterABigDrop) {
  int trims = 0;
  HeapTrimmer trimmer(100, [&] { ++trims; });
  EXPECT_FALSE(trimmer.Note(0));
  EXPECT_FALSE(trimmer.Note(1000));  // the load
  EXPECT_FALSE(trimmer.Note(600));   // not down to half yet
  EXPECT_TRUE(trimmer.Note(20));     // the load is over
  EXPECT_EQ(trims, 1);
  EXPECT_FALSE(trimmer.Note(20));    // once per drop
  EXPECT_FALSE(trimmer.Note(10));
  EXPECT_EQ(trims, 1);
}

TEST(HeapTrimmerTest, SmallSwingsNeverTrim) {
  int trims = 0;
  HeapTrimmer trimmer(100, [&] { ++trims; });
  for (int i = 0; i < 50; ++i) {
    EXPECT_FALSE(trimmer.Note(80));
    EXPECT_FALSE(trimmer.Note(0));  // halved, but by fewer than 100
  }
  EXPECT_EQ(trims, 0);
}

TEST(HeapTrimmerTest, ANewLoadAfterATrimTrimsAgain) {
  int trims = 0;
  HeapTrimmer trimmer(100, [&] { ++trims; });
  trimmer.Note(500);
  EXPECT_TRUE(trimmer.Note(0));
  trimmer.Note(300);
  EXPECT_TRUE(trimmer.Note(100));
  EXPECT_EQ(trims, 2);
}

}  // namespace
}  // namespace procwarp
