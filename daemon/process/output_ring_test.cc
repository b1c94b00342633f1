// Unit tests for OutputRing: ordering, bounds, replay with cursors.
#include "daemon/process/output_ring.h"

#include "gtest/gtest.h"

namespace procwarp {
namespace {

using procwarp::v1::OUTPUT_STREAM_STDERR;
using procwarp::v1::OUTPUT_STREAM_STDOUT;

TEST(OutputRingTest, KeepsOrderAcrossStreams) {
  OutputRing ring(1024);
  ring.Append(OUTPUT_STREAM_STDOUT, "a");
  ring.Append(OUTPUT_STREAM_STDERR, "b");
  ring.Append(OUTPUT_STREAM_STDOUT, "c");
  uint64_t next = 0;
  auto chunks = ring.ReadFrom(0, 1 << 20, &next);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].data(), "a");
  EXPECT_EQ(chunks[1].stream(), OUTPUT_STREAM_STDERR);
  EXPECT_EQ(chunks[2].sequence(), 2u);
  EXPECT_EQ(next, 3u);
  EXPECT_TRUE(ring.ReadFrom(next, 1 << 20, &next).empty());
}

TEST(OutputRingTest, DropsOldestBeyondCapacity) {
  OutputRing ring(10);
  for (int i = 0; i < 10; ++i) ring.Append(OUTPUT_STREAM_STDOUT, "xyz");
  EXPECT_LE(ring.bytes(), 10u);
  EXPECT_EQ(ring.end(), 10u);
  uint64_t next = 0;
  auto chunks = ring.ReadFrom(0, 1 << 20, &next);
  EXPECT_EQ(chunks.front().sequence(), ring.begin());
  EXPECT_EQ(chunks.size(), 3u);
}

TEST(OutputRingTest, HugeChunkKeepsTail) {
  OutputRing ring(4);
  ring.Append(OUTPUT_STREAM_STDOUT, "abcdefgh");
  uint64_t next = 0;
  auto chunks = ring.ReadFrom(0, 1 << 20, &next);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].data(), "efgh");
}

TEST(OutputRingTest, ReadRespectsMaxBytesButReturnsAtLeastOne) {
  OutputRing ring(100);
  ring.Append(OUTPUT_STREAM_STDOUT, "0123456789");
  ring.Append(OUTPUT_STREAM_STDOUT, "0123456789");
  uint64_t next = 0;
  EXPECT_EQ(ring.ReadFrom(0, 5, &next).size(), 1u);
  EXPECT_EQ(next, 1u);
}

}  // namespace
}  // namespace procwarp
