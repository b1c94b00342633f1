// Unit tests for OutputRing: ordering, bounds (including each chunk's
// overhead), replay with cursors.
#include "daemon/process/output_ring.h"

#include "gtest/gtest.h"

namespace procwarp {
namespace {

using procwarp::v1::OUTPUT_STREAM_STDERR;
using procwarp::v1::OUTPUT_STREAM_STDOUT;

constexpr size_t kOverhead = OutputRing::kChunkOverhead;

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
  const size_t capacity = 3 * (3 + kOverhead) + 2;
  OutputRing ring(capacity);
  for (int i = 0; i < 10; ++i) ring.Append(OUTPUT_STREAM_STDOUT, "xyz");
  EXPECT_LE(ring.bytes(), capacity);
  EXPECT_EQ(ring.end(), 10u);
  uint64_t next = 0;
  auto chunks = ring.ReadFrom(0, 1 << 20, &next);
  EXPECT_EQ(chunks.front().sequence(), ring.begin());
  EXPECT_EQ(chunks.size(), 3u);
}

TEST(OutputRingTest, HugeChunkKeepsTail) {
  OutputRing ring(4 + kOverhead);
  ring.Append(OUTPUT_STREAM_STDOUT, "abcdefgh");
  uint64_t next = 0;
  auto chunks = ring.ReadFrom(0, 1 << 20, &next);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].data(), "efgh");
}

TEST(OutputRingTest, ReadRespectsMaxBytesButReturnsAtLeastOne) {
  OutputRing ring(100 + 2 * kOverhead);
  ring.Append(OUTPUT_STREAM_STDOUT, "0123456789");
  ring.Append(OUTPUT_STREAM_STDOUT, "0123456789");
  uint64_t next = 0;
  EXPECT_EQ(ring.ReadFrom(0, 5, &next).size(), 1u);
  EXPECT_EQ(next, 1u);
}

// `dd bs=1`: one chunk per byte. The overhead of each chunk counts against
// the capacity, so the ring holds few of them, and what it holds in memory
// (data plus bookkeeping) stays within the capacity.
TEST(OutputRingTest, OneByteChunksCountTheirOverhead) {
  const size_t capacity = 64 << 10;
  OutputRing ring(capacity);
  for (int i = 0; i < 200000; ++i) ring.Append(OUTPUT_STREAM_STDOUT, "x");
  EXPECT_LE(ring.bytes(), capacity);
  EXPECT_LE(ring.chunks(), capacity / (1 + kOverhead));
  EXPECT_GE(ring.chunks(), capacity / (1 + kOverhead) - 1);
  EXPECT_EQ(ring.end(), 200000u);
  uint64_t next = 0;
  auto chunks = ring.ReadFrom(0, 1 << 20, &next);
  EXPECT_EQ(chunks.size(), ring.chunks());
  EXPECT_EQ(chunks.front().sequence(), ring.begin());
}

// A ring smaller than one chunk's overhead still keeps the newest chunk
// (trimmed), rather than nothing.
TEST(OutputRingTest, TinyRingKeepsNewestChunk) {
  OutputRing ring(8);
  ring.Append(OUTPUT_STREAM_STDOUT, "abc");
  ring.Append(OUTPUT_STREAM_STDOUT, "def");
  uint64_t next = 0;
  auto chunks = ring.ReadFrom(0, 1 << 20, &next);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].data(), "f");
  EXPECT_EQ(chunks[0].sequence(), 1u);
}

}  // namespace
}  // namespace procwarp
