// The checks of Memory requests that need no thread: pure functions of the
// request (and, once the pointer is looked up, of the pointer), run by each
// handler before it touches any memory, and fuzzed as they are
// (memory_requests_fuzzer.cc).
#ifndef PROCWARP_DAEMON_MEMORY_MEMORY_REQUESTS_H_
#define PROCWARP_DAEMON_MEMORY_MEMORY_REQUESTS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/procwarp/v1/memory.pb.h"

namespace procwarp {

// Unary replies stay under gRPC's default 4 MiB receive limit of clients.
inline constexpr uint64_t kMaxUnaryBytes = (4 << 20) - (64 << 10);
// An allocation larger than this is more likely a mistake than a plan.
inline constexpr uint64_t kMaxAllocation = uint64_t{1} << 40;

// The size is 1..kMaxAllocation and the protection one the API knows;
// returns the mmap protection bits.
absl::StatusOr<int> CheckAllocateRequest(
    const procwarp::v1::AllocateRequest& request);

// OUT_OF_RANGE unless [offset, offset+length) lies inside `pointer`.
absl::Status CheckPointerRange(const procwarp::v1::Pointer& pointer,
                               uint64_t offset, uint64_t length,
                               absl::string_view call);

// A unary Read: inside `pointer` and small enough for one reply.
absl::Status CheckReadRequest(const procwarp::v1::Pointer& pointer,
                              const procwarp::v1::ReadMemoryRequest& request);

// A direct copy (ReadToClient/WriteFromClient, named by `call`): inside
// `pointer`, and a client address when there is something to copy.
absl::Status CheckDirectMemoryRequest(
    const procwarp::v1::Pointer& pointer,
    const procwarp::v1::DirectMemoryRequest& request, absl::string_view call);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_MEMORY_MEMORY_REQUESTS_H_
