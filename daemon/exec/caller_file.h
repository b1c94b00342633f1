// OpenFileAsCaller: opens a file the way the caller could, so the daemon (root)
// never hands a target a file its caller could not have read (library
// injection, docs/security.md "Exec").
//
// The open happens in a short-lived child of the daemon that takes the
// caller's uid, gid and supplementary groups first (losing every capability,
// unless the caller is root), so the kernel's own permission checks, LSMs
// included, decide. The child is made non-dumpable before it drops to the
// caller's uid: it holds a copy of the daemon's memory, which the caller must
// not reach by ptracing it. It sends the fd back over a socketpair and exits.
//
// Every wait is bounded: the open runs O_NONBLOCK (a FIFO does not block it),
// and a child stuck anyway (a caller's FUSE mount that never answers) is
// killed and reaped at the deadline or when the call is cancelled.
#ifndef PROCWARP_DAEMON_EXEC_CALLER_FILE_H_
#define PROCWARP_DAEMON_EXEC_CALLER_FILE_H_

#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::exec {

// Opens the regular file at absolute `path` read-only (close-on-exec) with
// `caller`'s credentials. PERMISSION_DENIED / NOT_FOUND name the path as the
// kernel refused it; INVALID_ARGUMENT for a relative path or something that
// is not a regular file; DEADLINE_EXCEEDED / CANCELLED as the call ends.
absl::StatusOr<UniqueFd> OpenFileAsCaller(const Identity& caller,
                                          const std::string& path,
                                          absl::Time deadline,
                                          absl::FunctionRef<bool()> cancelled);

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_CALLER_FILE_H_
