// RunAttached: one piece of work in a process attached just for it, with
// the authorisation the attach backend requires (docs/security.md, "Exec").
//
//  1. The caller must pass the kernel's ptrace rule for the target now
//     (CheckCallerMayPtrace through its pidfd; admins pass), else nothing is
//     touched.
//  2. The target is seized by a ptrace::TracerThread (which refuses
//     procwarpd itself, its children, traced, job-control stopped and zombie
//     targets with a message naming the cause).
//  3. With the target stopped, the rule is checked again (authority at use:
//     its credentials may have changed in between), then `work` runs.
//  4. The target is put back and detached before RunAttached returns, also
//     on failure, on the deadline and when `cancelled()` turns true (the
//     client went away; polled by TracerThread::Run every kCancelPoll,
//     since gRPC's synchronous API has no cancellation callback). An exec
//     in the target ends the attachment (FAILED_PRECONDITION): the work
//     never runs on the new program.
#ifndef PROCWARP_DAEMON_EXEC_TRANSIENT_ATTACH_H_
#define PROCWARP_DAEMON_EXEC_TRANSIENT_ATTACH_H_

#include <sys/types.h>

#include <functional>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/ptrace/operation.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::exec {

// A pidfd for `pid`; NOT_FOUND when there is no such process.
absl::StatusOr<UniqueFd> OpenPidfd(pid_t pid);

// See above. `pidfd` refers to `pid` (OpenPidfd); `cancelled` may be called
// from another thread.
absl::Status RunAttached(const Identity& caller, pid_t pid, UniqueFd pidfd,
                         absl::Time deadline, std::function<bool()> cancelled,
                         absl::FunctionRef<absl::Status(ptrace::Operation&)> work);

// Which thread to stop for the work (0: the main thread) and whether to
// stop the others too.
struct ThreadToStop {
  pid_t tid = 0;
  bool stop_all_threads = false;
};
absl::Status RunAttached(const Identity& caller, pid_t pid, UniqueFd pidfd,
                         const ThreadToStop& thread, absl::Time deadline,
                         std::function<bool()> cancelled,
                         absl::FunctionRef<absl::Status(ptrace::Operation&)> work);

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_TRANSIENT_ATTACH_H_
