// See ptrace_call.h.
#include "daemon/ptrace/ptrace_call.h"

#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/util/errno_status.h"

namespace procwarp::ptrace {

std::string RequestName(long request) {
  switch (request) {
    case PTRACE_PEEKDATA: return "PTRACE_PEEKDATA";
    case PTRACE_PEEKUSER: return "PTRACE_PEEKUSER";
    case PTRACE_POKEDATA: return "PTRACE_POKEDATA";
    case PTRACE_CONT: return "PTRACE_CONT";
    case PTRACE_SINGLESTEP: return "PTRACE_SINGLESTEP";
    case PTRACE_GETREGS: return "PTRACE_GETREGS";
    case PTRACE_SETREGS: return "PTRACE_SETREGS";
    case PTRACE_DETACH: return "PTRACE_DETACH";
    case PTRACE_GETREGSET: return "PTRACE_GETREGSET";
    case PTRACE_SETREGSET: return "PTRACE_SETREGSET";
    case PTRACE_GETSIGINFO: return "PTRACE_GETSIGINFO";
    case PTRACE_SETSIGINFO: return "PTRACE_SETSIGINFO";
    case PTRACE_SEIZE: return "PTRACE_SEIZE";
    case PTRACE_INTERRUPT: return "PTRACE_INTERRUPT";
    case PTRACE_LISTEN: return "PTRACE_LISTEN";
    case PTRACE_GETSIGMASK: return "PTRACE_GETSIGMASK";
    case PTRACE_SETSIGMASK: return "PTRACE_SETSIGMASK";
    default: return absl::StrFormat("ptrace request 0x%x", request);
  }
}

absl::Status Ptrace(long request, pid_t tid, unsigned long addr,
                    unsigned long data) {
  if (syscall(SYS_ptrace, request, tid, addr, data) == -1) {
    return ErrnoStatus(errno,
                       absl::StrCat("ptrace(", RequestName(request),
                                    ", tid=", tid, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<unsigned long> PtracePeek(long request, pid_t tid,
                                         unsigned long addr) {
  unsigned long word = 0;
  if (syscall(SYS_ptrace, request, tid, addr, &word) == -1) {
    return ErrnoStatus(errno, absl::StrFormat("ptrace(%s, tid=%d, addr=0x%x)",
                                              RequestName(request), tid, addr));
  }
  return word;
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev != nullptr) return absl::StrCat("SIG", abbrev);
  return absl::StrCat("signal ", sig);
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) {
    return absl::StrCat("exited with status ", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by ", SignalName(WTERMSIG(status)));
  }
  if (WIFSTOPPED(status)) {
    std::string out = absl::StrCat("stopped by ", SignalName(WSTOPSIG(status)));
    switch (status >> 16) {
      case 0: break;
      case PTRACE_EVENT_STOP: absl::StrAppend(&out, " (PTRACE_EVENT_STOP)"); break;
      case PTRACE_EVENT_EXEC: absl::StrAppend(&out, " (PTRACE_EVENT_EXEC)"); break;
      default: absl::StrAppend(&out, " (ptrace event ", status >> 16, ")");
    }
    return out;
  }
  return absl::StrFormat("wait status 0x%x", status);
}

}  // namespace procwarp::ptrace
