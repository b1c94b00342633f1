// ptrace_access: would the kernel let a caller ptrace (or signal) a process
// itself, right now? procwarpd runs as root and acts on callers' processes
// with its own privileges (reading maps and fd tables, fetching fds,
// signalling); it may do so only where the caller could, so every such act is
// checked here at the time of use, never inherited from when a handle was
// made (see the security issue and DESIGN.md, "Trust model").
//
// The rules mirror the kernel's (kernel/ptrace.c __ptrace_may_access with
// PTRACE_MODE_REALCREDS, security/commoncap.c cap_ptrace_access_check, and
// kernel/signal.c kill_ok_by_cred), for a caller in the daemon's user
// namespace that holds no capabilities of its own:
//  - ptrace: the target's real, effective and saved uid all equal the
//    caller's uid and its real, effective and saved gid the caller's gid, or
//    the target's user namespace is one the caller owns; the target is
//    dumpable (or its memory belongs to a user namespace the caller owns);
//    and it holds no permitted capabilities unless it lives in a user
//    namespace the caller owns.
//  - kill: the target's real or saved uid is the caller's, or the target's
//    user namespace is one the caller owns.
// "Owns" is the kernel's cap_capable() walk: the ancestor of the target's
// user namespace just below the daemon's own was created by the caller's uid.
// Admins (root, the admin group) pass: they may act on any process.
//
// Everything is read through a /proc/PID directory fd opened first and then
// confirmed against the target's pidfd, so a recycled pid is never read.
#ifndef PROCWARP_DAEMON_SECURITY_PTRACE_ACCESS_H_
#define PROCWARP_DAEMON_SECURITY_PTRACE_ACCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/server/identity.h"
#include "daemon/util/unique_fd.h"

namespace procwarp {

// /proc/PID of one process, bound to that process: files opened through it
// after the process is reaped fail (ENOENT/ESRCH) instead of naming whatever
// process gets the pid next.
class ProcDir {
 public:
  ProcDir() = default;
  ProcDir(ProcDir&&) = default;
  ProcDir& operator=(ProcDir&&) = default;

  // Opens /proc/`pid` and then confirms that `pidfd` (which must refer to
  // process `pid`) is still not reaped, so the directory is that process's.
  // NOT_FOUND once it has been reaped.
  static absl::StatusOr<ProcDir> Open(pid_t pid, int pidfd);

  int fd() const { return fd_.get(); }
  pid_t pid() const { return pid_; }
  bool valid() const { return fd_.valid(); }

 private:
  UniqueFd fd_;
  pid_t pid_ = -1;
};

// What /proc/PID/status and the ownership of that file say about a process.
struct ProcessStatus {
  pid_t tgid = -1;
  pid_t pid = -1;
  pid_t ppid = -1;
  char state = '?';          // R, S, D, T, t, Z, X, ...
  uid_t uid[3] = {0, 0, 0};  // real, effective, saved
  gid_t gid[3] = {0, 0, 0};
  uint64_t cap_permitted = 0;
  // The owner the kernel gives the process's /proc files (task_dump_owner):
  // its euid/egid while it is dumpable, else root (of the user namespace its
  // memory belongs to).
  uid_t dump_uid = 0;
  gid_t dump_gid = 0;

  bool exited() const { return state == 'Z' || state == 'X'; }
};

// Parses the text of /proc/PID/status (dump_uid/dump_gid are left alone).
absl::StatusOr<ProcessStatus> ParseProcessStatus(absl::string_view text);

// Reads /proc/PID/status through `dir`. NOT_FOUND once the process is reaped.
absl::StatusOr<ProcessStatus> ReadProcessStatus(const ProcDir& dir);

// Task flags of the process (its main thread), field 9 of /proc/PID/stat.
inline constexpr uint32_t kTaskExiting = 0x00000004;     // PF_EXITING
inline constexpr uint32_t kTaskForkNoExec = 0x00000040;  // PF_FORKNOEXEC
absl::StatusOr<uint32_t> ReadTaskFlags(const ProcDir& dir);

// True when the process has not called execve since it was forked
// (PF_FORKNOEXEC).
absl::StatusOr<bool> ForkedWithoutExec(const ProcDir& dir);

// Opens /proc/PID/mem (read-write) through `dir`. The fd keeps the address
// space the process has now: after an execve, reads and writes through it
// reach nothing (they return 0), instead of the new program's memory.
// PERMISSION_DENIED where the kernel refuses the daemon (an LSM, or no
// CAP_SYS_PTRACE in a container).
absl::StatusOr<UniqueFd> OpenProcessMemory(const ProcDir& dir);

// Parses the flags word (field 9) of a /proc/PID/stat line.
absl::StatusOr<uint32_t> ParseStatFlags(absl::string_view stat);

// True when the process's user namespace is not the daemon's and its ancestor
// just below the daemon's namespace was created by `uid` (so `uid` holds
// every capability in it, as the kernel's cap_capable() decides).
absl::StatusOr<bool> UserNamespaceOwnedBy(const ProcDir& dir, uid_t uid);

// OK when `caller` could ptrace the process behind `dir` itself now.
// PERMISSION_DENIED says why and what the kernel's rule is; NOT_FOUND when
// the process has exited. `what` names the process in messages
// ("thread ID (pid N)").
absl::Status CheckCallerMayPtrace(const Identity& caller, const ProcDir& dir,
                                  absl::string_view what);
// The same for process `pid` behind `pidfd` (opens its /proc directory;
// admins return at once).
absl::Status CheckCallerMayPtrace(const Identity& caller, pid_t pid, int pidfd,
                                  absl::string_view what);

// OK when `caller` could send the process behind `dir` a signal (SIGKILL)
// itself now. PERMISSION_DENIED / NOT_FOUND as above.
absl::Status CheckCallerMayKill(const Identity& caller, const ProcDir& dir,
                                absl::string_view what);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SECURITY_PTRACE_ACCESS_H_
