// See memory_requests.h.
#include "daemon/memory/memory_requests.h"

#include <sys/mman.h>

#include "absl/strings/str_cat.h"
#include "daemon/util/status_macros.h"

namespace procwarp {

absl::StatusOr<int> CheckAllocateRequest(
    const procwarp::v1::AllocateRequest& request) {
  if (request.size() == 0 || request.size() > kMaxAllocation) {
    return absl::InvalidArgumentError(
        absl::StrCat("Allocate: size ", request.size(),
                     " must be between 1 and ", kMaxAllocation));
  }
  switch (request.protection()) {
    case procwarp::v1::PROTECTION_UNSPECIFIED:
    case procwarp::v1::PROTECTION_READ_WRITE:
      return PROT_READ | PROT_WRITE;
    case procwarp::v1::PROTECTION_READ:
      return PROT_READ;
    case procwarp::v1::PROTECTION_READ_EXEC:
      return PROT_READ | PROT_EXEC;
    case procwarp::v1::PROTECTION_READ_WRITE_EXEC:
      return PROT_READ | PROT_WRITE | PROT_EXEC;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Allocate: unknown protection ", request.protection()));
  }
}

absl::Status CheckPointerRange(const procwarp::v1::Pointer& pointer,
                               uint64_t offset, uint64_t length,
                               absl::string_view call) {
  if (offset > pointer.size() || length > pointer.size() - offset) {
    return absl::OutOfRangeError(absl::StrCat(
        call, ": bytes [", offset, ", ", offset + length, ") are outside pointer ",
        pointer.id(), " of ", pointer.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckReadRequest(const procwarp::v1::Pointer& pointer,
                              const procwarp::v1::ReadMemoryRequest& request) {
  RETURN_IF_ERROR(
      CheckPointerRange(pointer, request.offset(), request.length(), "Read"));
  if (request.length() > kMaxUnaryBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Read: ", request.length(), " bytes is more than one reply carries (",
        kMaxUnaryBytes, "); use ReadStream"));
  }
  return absl::OkStatus();
}

absl::Status CheckDirectMemoryRequest(
    const procwarp::v1::Pointer& pointer,
    const procwarp::v1::DirectMemoryRequest& request, absl::string_view call) {
  RETURN_IF_ERROR(
      CheckPointerRange(pointer, request.offset(), request.length(), call));
  if (request.client_address() == 0 && request.length() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(call, ": client_address must not be 0"));
  }
  return absl::OkStatus();
}

}  // namespace procwarp
