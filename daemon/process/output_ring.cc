// See output_ring.h.
#include "daemon/process/output_ring.h"

#include <algorithm>

namespace procwarp {

void OutputRing::Append(procwarp::v1::OutputStream stream, std::string data) {
  if (data.empty()) return;
  // A single chunk larger than the whole ring keeps only its tail.
  const size_t room =
      capacity_ > kChunkOverhead + 1 ? capacity_ - kChunkOverhead : 1;
  if (data.size() > room) data.erase(0, data.size() - room);
  bytes_ += data.size() + kChunkOverhead;
  procwarp::v1::OutputChunk chunk;
  chunk.set_stream(stream);
  chunk.set_sequence(next_sequence_++);
  *chunk.mutable_data() = std::move(data);
  chunks_.push_back(std::move(chunk));
  // The newest chunk always stays, even in a ring too small for it.
  while (bytes_ > capacity_ && chunks_.size() > 1) {
    bytes_ -= chunks_.front().data().size() + kChunkOverhead;
    chunks_.pop_front();
  }
}

std::vector<procwarp::v1::OutputChunk> OutputRing::ReadFrom(
    uint64_t cursor, size_t max_bytes, uint64_t* next_cursor) const {
  std::vector<procwarp::v1::OutputChunk> out;
  uint64_t first = std::max(cursor, begin());
  size_t taken = 0;
  uint64_t seq = first;
  for (; seq < end(); ++seq) {
    const auto& chunk = chunks_[seq - begin()];
    if (!out.empty() && taken + chunk.data().size() > max_bytes) break;
    taken += chunk.data().size();
    out.push_back(chunk);
  }
  *next_cursor = seq;
  return out;
}

}  // namespace procwarp
