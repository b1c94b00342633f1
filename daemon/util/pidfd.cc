// See pidfd.h.
#include "daemon/util/pidfd.h"

#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
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

absl::StatusOr<pid_t> PidOfPidfd(int pidfd) {
  // Only a pidfd's fdinfo has a "Pid:" line: -1 once reaped, 0 outside the
  // reader's pid namespace.
  std::ifstream fdinfo(absl::StrCat("/proc/self/fdinfo/", pidfd));
  if (!fdinfo) {
    return ErrnoStatus(errno,
                       absl::StrCat("open(/proc/self/fdinfo/", pidfd, ")"));
  }
  std::string line;
  while (std::getline(fdinfo, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "Pid:")) continue;
    int pid = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &pid)) break;
    if (pid <= 0) {
      return absl::NotFoundError(absl::StrCat(
          "the process behind pidfd ", pidfd,
          pid == 0 ? " is outside the daemon's pid namespace" : " is reaped"));
    }
    return pid;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "fd ", pidfd, " is not a pidfd (its fdinfo has no Pid line)"));
}

absl::StatusOr<uint64_t> ProcessStartTime(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/stat");
  std::ifstream file(path);
  std::string stat;
  if (!file || !std::getline(file, stat)) {
    return ErrnoStatus(errno == 0 ? ENOENT : errno, absl::StrCat("read(", path, ")"));
  }
  // The command name (field 2) may hold spaces and parentheses: count the
  // fields after its closing parenthesis, the last one in the line.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has no command field"));
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(close + 1), ' ',
                     absl::SkipEmpty());
  // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
  uint64_t ticks = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &ticks)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has no start time field"));
  }
  return ticks;
}

absl::StatusOr<Pidfd> Pidfd::Open(pid_t pid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("pidfd_open(", pid, ")"));
  return Pidfd(pid, UniqueFd(fd));
}

}  // namespace procwarp
