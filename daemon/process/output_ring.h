// OutputRing: a process's recent output, bounded in bytes.
//
// Chunks keep the order the daemon read them in across stdout and stderr and
// carry a sequence number, so each attacher follows the ring with its own
// cursor, a late attacher replays what is still held, and a chatty child
// cannot grow the daemon's memory past the bound (the oldest chunks go).
//
// The bound is on memory, not just output bytes: each chunk also costs its
// bookkeeping (kChunkOverhead), so a child writing one byte at a time (`dd
// bs=1`, one chunk per read) holds fewer, not more, bytes in memory than the
// capacity says. (Merging small chunks instead would move data under
// attachers' cursors.)
// Not thread-safe: ManagedProcess guards it with its mutex.
#ifndef PROCWARP_DAEMON_PROCESS_OUTPUT_RING_H_
#define PROCWARP_DAEMON_PROCESS_OUTPUT_RING_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp {

class OutputRing {
 public:
  // What a held chunk costs beyond its data: the OutputChunk in the deque,
  // the heap std::string behind its data field, and allocator headers for
  // both allocations.
  static constexpr size_t kChunkOverhead =
      sizeof(procwarp::v1::OutputChunk) + sizeof(std::string) + 2 * 16;

  explicit OutputRing(size_t capacity_bytes) : capacity_(capacity_bytes) {}

  void Append(procwarp::v1::OutputStream stream, std::string data);

  // Chunks with sequence >= `cursor` (at most `max_bytes` worth, but always at
  // least one if any), and the cursor to continue from.
  std::vector<procwarp::v1::OutputChunk> ReadFrom(uint64_t cursor,
                                                  size_t max_bytes,
                                                  uint64_t* next_cursor) const;

  // Sequence number the next appended chunk will get.
  uint64_t end() const { return next_sequence_; }
  // Oldest sequence number still held.
  uint64_t begin() const { return next_sequence_ - chunks_.size(); }
  // Memory the held chunks count as: their data plus kChunkOverhead each.
  size_t bytes() const { return bytes_; }
  size_t chunks() const { return chunks_.size(); }

 private:
  size_t capacity_;
  std::deque<procwarp::v1::OutputChunk> chunks_;
  size_t bytes_ = 0;
  uint64_t next_sequence_ = 0;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_OUTPUT_RING_H_
