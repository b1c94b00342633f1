// Installing a file descriptor of the daemon's into a stopped tracee, in one
// operation and without the target's cooperation.
//
// The kernel has a way to pull an fd out of another process (pidfd_getfd)
// but none to push one in, so the target receives it itself: the daemon
// injects socketpair() in the target, pulls one end out with pidfd_getfd,
// sends the fd over it (SCM_RIGHTS), injects recvmsg() on the other end
// (MSG_CMSG_CLOEXEC when asked), moves the received fd to the number asked
// for (dup3), and closes the pair and unmaps its scratch page. Everything
// the target ends up with is the fd; the steps are undone on failure.
//
// The target is untrusted: its other threads (still running unless the
// operation stopped them) may rewrite the scratch page or the pair's fd
// numbers. That can only misreport the installed fd's number to the caller
// who controls the target anyway, or make the daemon send the fd over some
// other socket of the target's: the fd is the caller's, so neither gives the
// caller anything.
#ifndef PROCWARP_DAEMON_PTRACE_FD_INSTALL_H_
#define PROCWARP_DAEMON_PTRACE_FD_INSTALL_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "daemon/ptrace/operation.h"

namespace procwarp::ptrace {

// Installs `fd` in the target of `op` (whose pidfd is `pidfd`) at
// `target_fd` (-1: the lowest free number). Returns the raw result: the fd
// number in the target, or -errno of the injected syscall that failed (a
// seccomp refusal is -ENOSYS). Errors mean the operation itself failed.
absl::StatusOr<int64_t> InstallFd(Operation& op, int pidfd, int fd,
                                  int target_fd, bool cloexec);

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_FD_INSTALL_H_
