// cloned_child: whether a pidfd an agent's CLONE reply carried may be taken as
// the new child thread.
//
// The agent runs as the caller, so the caller can take over its socket
// (pidfd_getfd on its own agent) and answer a CLONE request itself, with a
// pidfd of any process (pidfd_open needs no permission). Nothing in the reply
// is evidence; the daemon accepts the process only if it can show
// independently that it is what a real clone makes:
//  - a whole process (not a thread), not yet exited;
//  - a child of the parent agent's parent (CLONE_PARENT makes it one);
//  - forked and not exec'd since (PF_FORKNOEXEC): no spawned program, no
//    launched agent, no thread turned into a process by Exec;
//  - not sharing the daemon's address space (a CLONE_VM spawn child would);
//  - one its owner could ptrace itself (CheckCallerMayPtrace), so at worst it
//    is a process the owner controls anyway.
// Whether it is already another thread's process is the thread table's to
// say (ThreadTable claims the pid).
#ifndef PROCWARP_DAEMON_SECURITY_CLONED_CHILD_H_
#define PROCWARP_DAEMON_SECURITY_CLONED_CHILD_H_

#include <sys/types.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/server/identity.h"
#include "daemon/util/pidfd.h"  // PidOfPidfd

namespace procwarp {

// OK when the process behind `child` passes every check above for a child
// that should have `expected_parent` as its parent and belong to `owner`.
// PERMISSION_DENIED names the check that failed; NOT_FOUND when it exited.
// `what` names the claim in messages ("the process named in the CLONE reply
// of thread ID (pid N)").
absl::Status VerifyClonedChild(const ProcDir& child, pid_t expected_parent,
                               const Identity& owner, absl::string_view what);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SECURITY_CLONED_CHILD_H_
