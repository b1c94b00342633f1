// See pidfd.h.
#include "daemon/util/pidfd.h"

#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"

namespace procwarp {

procwarp::v1::ExitStatus ExitStatusFromSiginfo(const siginfo_t& info) {
  procwarp::v1::ExitStatus status;
  switch (info.si_code) {
    case CLD_EXITED:
      status.set_code(info.si_status);
      break;
    case CLD_DUMPED:
      status.set_core_dumped(true);
      [[fallthrough]];
    default:  // CLD_KILLED
      status.set_signal(info.si_status);
      break;
  }
  return status;
}

absl::StatusOr<std::optional<procwarp::v1::ExitStatus>> ReapPidfd(int pidfd,
                                                                  bool block) {
  siginfo_t info{};
  int r;
  do {
    r = waitid(static_cast<idtype_t>(P_PIDFD), pidfd, &info,
               WEXITED | (block ? 0 : WNOHANG));
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    return ErrnoStatus(errno, absl::StrCat("waitid(P_PIDFD, ", pidfd, ")"));
  }
  if (info.si_pid == 0) return std::nullopt;  // WNOHANG: still running
  return ExitStatusFromSiginfo(info);
}

absl::Status SignalPidfd(int pidfd, int signal, pid_t pid,
                         absl::string_view what) {
  if (syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0) == 0) {
    return absl::OkStatus();
  }
  if (errno == ESRCH) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " has already exited"));
  }
  return ErrnoStatus(errno, absl::StrCat("pidfd_send_signal(pid=", pid,
                                         ", sig=", signal, ")"));
}

bool PidfdExited(int pidfd) {
  pollfd pfd{pidfd, POLLIN, 0};
  int r;
  do {
    r = poll(&pfd, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r == 1;
}

absl::StatusOr<Pidfd> Pidfd::Open(pid_t pid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("pidfd_open(", pid, ")"));
  return Pidfd(pid, UniqueFd(fd));
}

}  // namespace procwarp
