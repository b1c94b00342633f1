// Turns a failed system call into an absl::Status that names the call and its
// arguments, e.g. "pidfd_send_signal(pid=1234, sig=9): No such process".
#ifndef PROCWARP_DAEMON_UTIL_ERRNO_STATUS_H_
#define PROCWARP_DAEMON_UTIL_ERRNO_STATUS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace procwarp {

// The gRPC/absl code that fits a kernel errno (ENOENT → NOT_FOUND, EACCES and
// EPERM → PERMISSION_DENIED, EINVAL → INVALID_ARGUMENT, ...).
absl::StatusCode ErrnoToCode(int error);

// Status for `call` (with its arguments spelled out by the caller) failing
// with `error`.
absl::Status ErrnoStatus(int error, absl::string_view call);

// The symbolic name of an errno ("ENOENT"), or "E<number>" when unknown.
absl::string_view ErrnoName(int error);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_UTIL_ERRNO_STATUS_H_
