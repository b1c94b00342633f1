// Pidfd: the one owner of a process's pidfd, and the one place that turns a
// waitid() result into an ExitStatus.
//
// Everything the daemon does to a process it holds goes through the pidfd,
// so a recycled pid is never hit (docs/architecture.md, "Handles and
// sessions"). Reaping works only for the daemon's own children; for others
// (processes re-adopted after a restart, whose parent is the keeper) Exited()
// still says when they are gone.
#ifndef PROCWARP_DAEMON_UTIL_PIDFD_H_
#define PROCWARP_DAEMON_UTIL_PIDFD_H_

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/util/unique_fd.h"
#include "proto/procwarp/v1/common.pb.h"

namespace procwarp {

// How a process ended, from the siginfo_t waitid() filled in.
procwarp::v1::ExitStatus ExitStatusFromSiginfo(const siginfo_t& info);

// Reaps the child `pidfd` refers to. Blocking waits (retrying EINTR) until
// it exits; otherwise nullopt while it runs. Errors: ECHILD when it is not
// the caller's child (or was reaped already).
absl::StatusOr<std::optional<procwarp::v1::ExitStatus>> ReapPidfd(int pidfd,
                                                                  bool block);

// pidfd_send_signal(pidfd, signal). A process that is gone (ESRCH) is
// FAILED_PRECONDITION "<what> has already exited".
absl::Status SignalPidfd(int pidfd, int signal, pid_t pid,
                         absl::string_view what);

// True once the process has exited (the pidfd polls readable), whether or
// not it has been reaped, and whoever its parent is.
bool PidfdExited(int pidfd);

// The pid (in the daemon's pid namespace) of the process behind `pidfd`, an
// fd of the daemon's; INVALID_ARGUMENT when it is no pidfd, NOT_FOUND when its
// process has been reaped or lives outside the daemon's pid namespace.
absl::StatusOr<pid_t> PidOfPidfd(int pidfd);

// When process `pid` started (/proc/PID/stat field 22, clock ticks since
// boot). With the pid it names one process for the life of the system: the
// proof of identity for a process the daemon holds no pidfd of.
absl::StatusOr<uint64_t> ProcessStartTime(pid_t pid);

class Pidfd {
 public:
  Pidfd() = default;
  Pidfd(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}
  // pidfd_open(pid): the process that has `pid` now.
  static absl::StatusOr<Pidfd> Open(pid_t pid);

  pid_t pid() const { return pid_; }
  int get() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }
  explicit operator bool() const { return valid(); }

  absl::Status Signal(int signal, absl::string_view what) const {
    return SignalPidfd(fd_.get(), signal, pid_, what);
  }
  absl::StatusOr<std::optional<procwarp::v1::ExitStatus>> Reap(bool block) const {
    return ReapPidfd(fd_.get(), block);
  }
  bool Exited() const { return PidfdExited(fd_.get()); }

 private:
  pid_t pid_ = -1;
  UniqueFd fd_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_UTIL_PIDFD_H_
