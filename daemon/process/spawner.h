// Spawner: starts a process from a SpawnPlan with clone(CLONE_PIDFD), so the
// daemon holds a pidfd from the first instant and never names the child by a
// pid that could be recycled.
//
// A spawn has two halves. StartSpawn clones the child; it must run on the
// thread that should be the child's parent (PR_SET_PDEATHSIG follows that
// thread). FinishSpawn waits, bounded by a deadline and a cancellation
// check, until the child has exec'd or failed, and writes its user namespace
// maps when it asks for them; it may run on any thread. Between the two the
// child may still run in (and use) the daemon's memory: a PendingSpawn owns
// that memory and, if dropped before the child has exec'd, kills and reaps
// the child before letting it go.
//
// Exec failures are reported by the child itself: it writes the stage and
// errno that failed to a close-on-exec pipe; EOF means execve succeeded.
#ifndef PROCWARP_DAEMON_PROCESS_SPAWNER_H_
#define PROCWARP_DAEMON_PROCESS_SPAWNER_H_

#include <sys/types.h>

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
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

// How long FinishSpawn lets a child take to reach execve.
inline constexpr absl::Duration kDefaultSpawnTimeout = absl::Seconds(10);

struct SpawnWait {
  // Past it the child is killed: DEADLINE_EXCEEDED.
  absl::Duration timeout = kDefaultSpawnTimeout;
  // Polled a few times a second; true kills the child: CANCELLED. Empty:
  // never cancelled.
  std::function<bool()> cancelled;
};

// A child between clone and execve. Move-only.
class PendingSpawn {
 public:
  struct State;
  explicit PendingSpawn(std::unique_ptr<State> state);
  PendingSpawn(PendingSpawn&&) noexcept;
  PendingSpawn& operator=(PendingSpawn&&) noexcept;
  // Kills and reaps a child that has not exec'd yet, then frees its memory.
  ~PendingSpawn();

  pid_t pid() const;
  int pidfd() const;

 private:
  friend absl::StatusOr<SpawnedChild> FinishSpawn(PendingSpawn pending,
                                                  const SpawnWait& wait);
  std::unique_ptr<State> state_;
};

// Clones the child described by `plan`. Errors: FAILED_PRECONDITION when the
// host would make a child of another uid dumpable (fs.suid_dumpable=1), or
// the system call that failed (pipe2, clone, ...).
absl::StatusOr<PendingSpawn> StartSpawn(SpawnPlan plan);

// Waits for `pending` to exec. The returned fds are non-blocking and
// close-on-exec. Errors: NOT_FOUND (no such executable), PERMISSION_DENIED
// (EACCES/EPERM, e.g. a non-executable file or a cwd the caller cannot
// enter), FAILED_PRECONDITION (ENOEXEC: not an executable format),
// INVALID_ARGUMENT (E2BIG, ...), each naming the stage and path that failed;
// DEADLINE_EXCEEDED / CANCELLED (the child was killed) naming where it was
// stuck.
absl::StatusOr<SpawnedChild> FinishSpawn(PendingSpawn pending,
                                         const SpawnWait& wait);

// StartSpawn and FinishSpawn on the calling thread.
absl::StatusOr<SpawnedChild> SpawnChild(SpawnPlan plan,
                                        const SpawnWait& wait = {});

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_SPAWNER_H_
