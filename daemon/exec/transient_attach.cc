// See transient_attach.h.
#include "daemon/exec/transient_attach.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "daemon/ptrace/tracer_thread.h"
#include "daemon/security/ptrace_access.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp::exec {

absl::StatusOr<UniqueFd> OpenPidfd(pid_t pid) {
  if (pid <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("pid ", pid, " is not a process id"));
  }
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    if (errno == ESRCH) return absl::NotFoundError(absl::StrCat("no process ", pid));
    return ErrnoStatus(errno, absl::StrCat("pidfd_open(", pid, ")"));
  }
  return pidfd;
}

absl::Status RunAttached(const Identity& caller, pid_t pid, UniqueFd pidfd,
                         absl::Time deadline, std::function<bool()> cancelled,
                         absl::FunctionRef<absl::Status(ptrace::Operation&)> work) {
  return RunAttached(caller, pid, std::move(pidfd), ThreadToStop{}, deadline,
                     std::move(cancelled), work);
}

absl::Status RunAttached(const Identity& caller, pid_t pid, UniqueFd pidfd,
                         const ThreadToStop& thread, absl::Time deadline,
                         std::function<bool()> cancelled,
                         absl::FunctionRef<absl::Status(ptrace::Operation&)> work) {
  const std::string what = absl::StrCat("pid ", pid);
  RETURN_IF_ERROR(CheckCallerMayPtrace(caller, pid, pidfd.get(), what));
  if (cancelled()) return absl::CancelledError("the call was cancelled");
  ASSIGN_OR_RETURN(std::unique_ptr<ptrace::TracerThread> tracer,
                   ptrace::TracerThread::Attach(std::move(pidfd), pid, {.tid = thread.tid},
                                                deadline));
  absl::Status result = tracer->Run(
      [&](ptrace::Operation& op) -> absl::Status {
        // Authority at use: the target is stopped, its credentials are
        // those the work will meet.
        RETURN_IF_ERROR(CheckCallerMayPtrace(caller, pid, tracer->pidfd(), what));
        return work(op);
      },
      deadline,
      {.stop_all_threads = thread.stop_all_threads, .cancelled = &cancelled});
  tracer.reset();  // detaches; the target runs on
  return result;
}

}  // namespace procwarp::exec
