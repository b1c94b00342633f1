// See errno_status.h.
#include "daemon/util/errno_status.h"

#include <string.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace procwarp {

absl::StatusCode ErrnoToCode(int error) {
  switch (error) {
    case ENOENT:
    case ESRCH:
    case ENXIO:
      return absl::StatusCode::kNotFound;
    case EPERM:
    case EACCES:
      return absl::StatusCode::kPermissionDenied;
    case EINVAL:
    case E2BIG:
    case ENAMETOOLONG:
    case EBADF:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
      return absl::StatusCode::kInvalidArgument;
    case EEXIST:
      return absl::StatusCode::kAlreadyExists;
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ENOSPC:
    case EAGAIN:
    case EUSERS:
      return absl::StatusCode::kResourceExhausted;
    case ENOEXEC:
    case ETXTBSY:
    case EBUSY:
      return absl::StatusCode::kFailedPrecondition;
    case EINTR:
    case ECANCELED:
      return absl::StatusCode::kCancelled;
    case ETIMEDOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case ENOSYS:
    case EOPNOTSUPP:
      return absl::StatusCode::kUnimplemented;
    case EPIPE:
    case ECONNRESET:
    case ECONNREFUSED:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status ErrnoStatus(int error, absl::string_view call) {
  return absl::Status(ErrnoToCode(error),
                      absl::StrCat(call, ": ", strerrordesc_np(error)));
}

absl::string_view ErrnoName(int error) {
  const char* name = strerrorname_np(error);
  if (name != nullptr) return name;
  static thread_local std::string unknown;
  unknown = absl::StrCat("E", error);
  return unknown;
}

}  // namespace procwarp
