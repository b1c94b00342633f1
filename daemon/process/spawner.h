// Spawner: starts a process from a SpawnPlan with clone3(CLONE_PIDFD), so the
// daemon holds a pidfd from the first instant and never names the child by a
// pid that could be recycled.
//
// Exec failures are reported by SpawnChild itself: the child writes the stage
// and errno that failed to a close-on-exec pipe; an empty read means execve
// succeeded.
#ifndef PROCWARP_DAEMON_PROCESS_SPAWNER_H_
#define PROCWARP_DAEMON_PROCESS_SPAWNER_H_

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "daemon/process/spawn_plan.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

struct SpawnedChild {
  pid_t pid = -1;
  UniqueFd pidfd;
  // The daemon's ends; invalid where the stream is not a pipe.
  UniqueFd stdin_pipe;   // write end
  UniqueFd stdout_pipe;  // read end
  UniqueFd stderr_pipe;  // read end
  // The pty master, when any stream is a pty (read for output, write for
  // input, ioctl for window size).
  UniqueFd pty_master;
};

// Starts the child described by `plan`. The returned fds are non-blocking and
// close-on-exec. Errors: NOT_FOUND (no such executable), PERMISSION_DENIED
// (EACCES/EPERM, e.g. a non-executable file or a cwd the caller cannot
// enter), FAILED_PRECONDITION (ENOEXEC: not an executable format),
// INVALID_ARGUMENT (E2BIG, ...), each naming the stage and path that failed.
absl::StatusOr<SpawnedChild> SpawnChild(const SpawnPlan& plan);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_SPAWNER_H_
