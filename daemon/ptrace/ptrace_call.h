// Checked ptrace(2) and waitpid(2) wrappers for the attach backend: every call
// returns a status that names the request, the tid and the kernel's error, e.g.
// "ptrace(PTRACE_GETREGS, tid=1234): No such process". Raw syscalls, so that
// PTRACE_PEEK* report errors through the return value (the raw ABI stores the
// word through `data`) instead of glibc's errno juggling.
//
// Everything here must run on the thread that seized the tracee (see
// tracer_thread.h): the kernel links a tracee to one tracer *thread*.
#ifndef PROCWARP_DAEMON_PTRACE_PTRACE_CALL_H_
#define PROCWARP_DAEMON_PTRACE_PTRACE_CALL_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace procwarp::ptrace {

// "PTRACE_GETREGS", or "ptrace request 0x4206" when unknown.
std::string RequestName(long request);

// ptrace(request, tid, addr, data); OK or a status naming the call.
absl::Status Ptrace(long request, pid_t tid, unsigned long addr,
                    unsigned long data);

// Reads one word with PTRACE_PEEKDATA / PTRACE_PEEKUSER.
absl::StatusOr<unsigned long> PtracePeek(long request, pid_t tid,
                                         unsigned long addr);

// Describes a waitpid status for messages: "exited with status 3",
// "killed by SIGKILL", "stopped by SIGTRAP (PTRACE_EVENT_STOP)".
std::string DescribeWaitStatus(int status);

// "SIGSEGV", or "signal 40".
std::string SignalName(int sig);

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_PTRACE_CALL_H_
