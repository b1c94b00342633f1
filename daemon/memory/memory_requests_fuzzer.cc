// Fuzzes the checks of every Memory request (memory_requests.h) against
// pointers of edge-case sizes, and the /proc/PID/maps parser with the
// request's bytes as maps text (a target's file names are the caller's to
// choose): each ends in OK or a client error with a message, and what they
// let through stays inside the pointer. See docs/fuzzing.md.
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <limits>

#include "daemon/memory/memory_requests.h"
#include "daemon/memory/memory_service.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "tools/fuzz/request_fuzz.h"

namespace procwarp {
namespace {

using google::protobuf::Message;
namespace v1 = procwarp::v1;

// Pointer sizes at the edges: empty, one byte, a page, the allocation
// limit, the largest uint64.
const std::vector<v1::Pointer>& Pointers() {
  static const auto* pointers = [] {
    auto* list = new std::vector<v1::Pointer>;
    for (uint64_t size : {uint64_t{0}, uint64_t{1}, uint64_t{4096},
                          kMaxAllocation,
                          std::numeric_limits<uint64_t>::max()}) {
      v1::Pointer p;
      p.set_id("p");
      p.set_address(0x10000);
      p.set_size(size);
      list->push_back(p);
    }
    return list;
  }();
  return *pointers;
}

// OK means [offset, offset+length) is inside the pointer, without overflow.
void AssertInside(const v1::Pointer& pointer, uint64_t offset, uint64_t length) {
  FuzzAssert(offset <= pointer.size() && length <= pointer.size() - offset,
             "a range outside its pointer was let through");
}

void CheckAllocate(const Message& message) {
  const auto& request = static_cast<const v1::AllocateRequest&>(message);
  absl::StatusOr<int> prot = CheckAllocateRequest(request);
  AssertClientStatus(prot.status());
  if (!prot.ok()) return;
  FuzzAssert(request.size() >= 1 && request.size() <= kMaxAllocation,
             "an allocation size out of bounds");
  FuzzAssert((*prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) == 0 &&
                 (*prot & PROT_READ) != 0,
             "protection bits the API does not offer");
}

void CheckRead(const Message& message) {
  const auto& request = static_cast<const v1::ReadMemoryRequest&>(message);
  for (const v1::Pointer& pointer : Pointers()) {
    absl::Status unary = CheckReadRequest(pointer, request);
    AssertClientStatus(unary);
    if (unary.ok()) {
      AssertInside(pointer, request.offset(), request.length());
      FuzzAssert(request.length() <= kMaxUnaryBytes, "a unary read too large");
    }
    // ReadStream checks only the range.
    absl::Status stream = CheckPointerRange(pointer, request.offset(),
                                            request.length(), "ReadStream");
    AssertClientStatus(stream);
    if (stream.ok()) AssertInside(pointer, request.offset(), request.length());
  }
}

void CheckWrite(const Message& message) {
  const auto& request = static_cast<const v1::WriteMemoryRequest&>(message);
  for (const v1::Pointer& pointer : Pointers()) {
    absl::Status status = CheckPointerRange(pointer, request.offset(),
                                            request.data().size(), "Write");
    AssertClientStatus(status);
    if (status.ok()) AssertInside(pointer, request.offset(), request.data().size());
  }
}

void CheckDirect(const Message& message) {
  const auto& request = static_cast<const v1::DirectMemoryRequest&>(message);
  for (const v1::Pointer& pointer : Pointers()) {
    absl::Status status = CheckDirectMemoryRequest(pointer, request, "Direct");
    AssertClientStatus(status);
    if (!status.ok()) continue;
    AssertInside(pointer, request.offset(), request.length());
    FuzzAssert(request.length() == 0 || request.client_address() != 0,
               "a direct copy to address 0");
  }
}

// Maps names a thread only; what it returns is parsed from /proc, whose
// text (file names) the thread's owner shapes: the parser gets the bytes.
void CheckMaps(const Message& message) {
  const auto& request = static_cast<const v1::MapsRequest&>(message);
  absl::StatusOr<std::vector<v1::Mapping>> maps = ParseMaps(request.thread_id());
  // A line the parser cannot read is the kernel's fault, not the caller's:
  // INTERNAL is the right answer here.
  FuzzAssert(maps.ok() || absl::IsInternal(maps.status()),
             maps.status().ToString());
}

}  // namespace
}  // namespace procwarp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace procwarp;
  static const RequestChecks* checks = new RequestChecks{
      {"Allocate", CheckAllocate},
      {"Read", CheckRead},
      {"ReadStream", CheckRead},
      {"Write", CheckWrite},
      {"WriteStream", CheckWrite},
      {"Free", NothingToCheck},
      {"Maps", CheckMaps},
      {"ReadToClient", CheckDirect},
      {"WriteFromClient", CheckDirect},
  };
  FuzzServiceRequest(
      *procwarp::v1::AllocateRequest::descriptor()->file()->FindServiceByName(
          "Memory"),
      *checks, data, size);
  return 0;
}
