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
// The path is resolved as the caller sees it: against the root directory of
// the caller's connecting process (/proc/CALLER_PID/root, its mount namespace
// and chroot included) with openat2(RESOLVE_IN_ROOT), so a caller in a
// container or chroot names its own files and "..", absolute symlinks and
// the like cannot leave that root. Remote callers (mutual TLS) and callers
// without a pid resolve against the daemon's root. The caller's process is
// named by the pid it had when it connected: its pidfd is opened before its
// root and checked alive after, so the root is that process's; should the
// caller have exited before the call ran, the pid might name another
// process — the open is still made with the caller's credentials, so the
// worst case is a failed or different lookup, never a file the caller could
// not read.
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

// The root `caller` resolves absolute paths against (see above): an O_PATH
// directory fd. FAILED_PRECONDITION when the calling process is gone.
absl::StatusOr<UniqueFd> OpenCallerRoot(const Identity& caller);

// Opens the regular file at absolute `path` (under OpenCallerRoot(caller))
// read-only (close-on-exec) with `caller`'s credentials. PERMISSION_DENIED / NOT_FOUND name the path as the
// kernel refused it; INVALID_ARGUMENT for a relative path or something that
// is not a regular file; DEADLINE_EXCEEDED / CANCELLED as the call ends.
absl::StatusOr<UniqueFd> OpenFileAsCaller(const Identity& caller,
                                          const std::string& path,
                                          absl::Time deadline,
                                          absl::FunctionRef<bool()> cancelled);

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_CALLER_FILE_H_
