// InstallFd: puts a copy of one of the daemon's fds into a stopped, attached
// target, so the target can use a file the daemon opened for it (library
// injection opens the library as the caller, then the target's dlopen reads
// it through /proc/self/fd/N).
//
// There is no system call that pushes an fd into another process, so the
// target receives it the way any process does: an injected socketpair in the
// target, a copy of one end fetched into the daemon (pidfd_getfd), the fd
// sent on it with SCM_RIGHTS, and an injected recvmsg on the other end. The
// scratch page for the msghdr is an injected anonymous mapping; both socket
// ends and the page are gone again afterwards, whatever failed, so the
// target is left with the one new fd (close-on-exec).
#ifndef PROCWARP_DAEMON_EXEC_FD_INSTALL_H_
#define PROCWARP_DAEMON_EXEC_FD_INSTALL_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/ptrace/operation.h"

namespace procwarp::exec {

// Installs a copy of `fd` in the target of `op` (whose pidfd is `pidfd`) and
// returns its number there. FAILED_PRECONDITION when the target's seccomp
// filter or fd limit refuses a step (named in the message).
absl::StatusOr<int> InstallFd(ptrace::Operation& op, int pidfd, int fd);

// Closes `fd` in the target of `op`.
absl::Status CloseTargetFd(ptrace::Operation& op, int fd);

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_FD_INSTALL_H_
