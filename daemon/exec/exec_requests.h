// The checks of Exec requests that need no lookup: pure functions the
// handlers (exec_service.cc, exec_target.cc) call before anything else, and
// that //daemon/exec:exec_requests_fuzzer feeds hostile bytes
// (docs/fuzzing.md). Each answers OK or INVALID_ARGUMENT naming the field.
#ifndef PROCWARP_DAEMON_EXEC_EXEC_REQUESTS_H_
#define PROCWARP_DAEMON_EXEC_EXEC_REQUESTS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/server/identity.h"
#include "proto/procwarp/exec/v1/exec.pb.h"

namespace procwarp::exec {

// At most this many integer/pointer arguments to a remote call (the
// registers of the SysV calling convention).
inline constexpr size_t kMaxCallArgs = 6;
// Function names, library paths: 1..kMaxSpec-1 bytes.
inline constexpr size_t kMaxSpec = 4096;
// Thread and library handle ids are 32 hex digits; anything far longer is
// not one.
inline constexpr size_t kMaxHandleId = 128;

// A pid > 0, or a non-empty thread_id of at most kMaxHandleId bytes.
absl::Status CheckTarget(const procwarp::exec::v1::Target& target);

// 1..kMaxSpec-1 bytes without NUL.
absl::Status CheckText(absl::string_view text, absl::string_view field);

// Target, function, at most kMaxCallArgs arguments.
absl::Status CheckCallRequest(const procwarp::exec::v1::CallRequest& request);

// Target, and an absolute path (the daemon resolves it as the caller sees
// it; a relative one would depend on the daemon's working directory).
absl::Status CheckInjectLibraryRequest(
    const procwarp::exec::v1::InjectLibraryRequest& request);

// A non-empty handle of at most kMaxHandleId bytes.
absl::Status CheckUnloadLibraryRequest(
    const procwarp::exec::v1::UnloadLibraryRequest& request);

// Python source may be large; it is limited like other request text, but
// further (the bootstrap carries it, escaped, into the target).
inline constexpr size_t kMaxPythonCode = 1 << 20;

// Target; code of 1..kMaxPythonCode bytes; a known mode; no_wait only in
// exec mode (there is no value to return); override_opt_out only for admins
// (PERMISSION_DENIED otherwise).
absl::Status CheckRunPythonRequest(
    const procwarp::exec::v1::RunPythonRequest& request, const Identity& caller);

// No pid (the daemon's side only) or a pid > 0.
absl::Status CheckPreflightRequest(
    const procwarp::exec::v1::PreflightRequest& request);

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_EXEC_REQUESTS_H_
