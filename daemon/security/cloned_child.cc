// See cloned_child.h.
#include "daemon/security/cloned_child.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

constexpr char kNotAClone[] =
    "; it is not a new child of that thread's agent, so the agent's reply was "
    "forged (its socket taken over?)";

}  // namespace

absl::Status VerifyClonedChild(const ProcDir& child, pid_t expected_parent,
                               const Identity& owner, absl::string_view what) {
  const pid_t pid = child.pid();
  absl::StatusOr<ProcessStatus> status = ReadProcessStatus(child);
  if (absl::IsNotFound(status.status()) || (status.ok() && status->exited())) {
    return absl::NotFoundError(
        absl::StrCat(what, " (pid ", pid, ") has exited"));
  }
  RETURN_IF_ERROR(status.status());
  if (status->tgid != status->pid) {
    return absl::PermissionDeniedError(absl::StrCat(what, " is pid ", pid,
                                                    ", a thread of process ",
                                                    status->tgid, kNotAClone));
  }
  if (status->ppid != expected_parent) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, " is pid ", pid, ", whose parent is pid ", status->ppid,
        " where a clone's would be ", expected_parent, kNotAClone));
  }
  ASSIGN_OR_RETURN(bool forked, ForkedWithoutExec(child));
  if (!forked) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, " is pid ", pid,
                     ", which has exec'd a program since it was "
                     "forked",
                     kNotAClone));
  }
  // A process sharing the daemon's memory (a spawner's CLONE_VM child) would
  // give whoever may ptrace it the daemon's address space.
  long same_vm = syscall(SYS_kcmp, getpid(), pid, KCMP_VM, 0, 0);
  if (same_vm < 0) {
    return ErrnoStatus(
        errno, absl::StrCat("kcmp(", getpid(), ", ", pid, ", KCMP_VM)"));
  }
  if (same_vm == 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, " is pid ", pid,
                     ", which shares the daemon's address space", kNotAClone));
  }
  absl::Status creds = CheckCallerMayPtrace(
      owner, child, absl::StrCat(what, " (pid ", pid, ")"));
  if (absl::IsPermissionDenied(creds)) {
    return absl::PermissionDeniedError(
        absl::StrCat(creds.message(), kNotAClone));
  }
  return creds;
}

}  // namespace procwarp
