// Preflight: what Exec (attach, remote calls, library injection) will and
// will not be able to do, and why, without changing anything — nothing is
// attached, stopped or written; only /proc, the target's mapped ELF files and
// one process_vm_readv of a byte are read. It backs `procwarp doctor [PID]`.
//
// The daemon's side: its effective capabilities, Yama's ptrace_scope, the
// LSMs loaded, its own seccomp state and pid namespace. The target's side, in
// the order an attach meets them: procwarpd itself or one of its children,
// the kernel's ptrace rule for the caller (daemon/security/ptrace_access.h),
// dumpable, zombie / job-control stopped / uninterruptible, already traced
// (tracer pid and comm), seccomp mode; and, only for callers that may ptrace
// the target (everything else about it is what /proc/PID/status shows
// anyone): its exe (and whether its root reaches the same file), which memory
// path works, and whether it has glibc with a dlopen for injection.
#ifndef PROCWARP_DAEMON_EXEC_PREFLIGHT_H_
#define PROCWARP_DAEMON_EXEC_PREFLIGHT_H_

#include <sys/types.h>

#include "absl/status/status.h"
#include "daemon/server/identity.h"
#include "proto/procwarp/exec/v1/exec.pb.h"

namespace procwarp::exec {

// The daemon's own checks, into response->daemon.
void DaemonPreflight(const Identity& caller,
                     procwarp::exec::v1::PreflightResponse* response);

// The target's checks and facts for `caller`. NOT_FOUND when `pid` does not
// exist.
absl::Status TargetPreflight(const Identity& caller, pid_t pid,
                             procwarp::exec::v1::PreflightResponse* response);

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_PREFLIGHT_H_
