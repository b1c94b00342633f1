// The child half of a spawn: what runs between clone and execve in a child
// that shares the daemon's memory (see spawner.cc for why, and for the
// security argument; docs/security.md for the trust model).
//
// Everything here runs while the daemon's threads keep running in the same
// address space, so the child code touches nothing but its own stack and the
// ChildSetup it is given: no libc (not even errno, which is the spawning
// thread's), no allocation, no locks, no sanitizer runtime. It makes only
// raw system calls (RawSyscall), and writes to the daemon's memory only the
// progress word of its own ChildSetup.
#ifndef PROCWARP_DAEMON_PROCESS_SPAWN_CHILD_H_
#define PROCWARP_DAEMON_PROCESS_SPAWN_CHILD_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "daemon/process/spawn_plan.h"

namespace procwarp {

// Where the child is, and what failed there.
enum class ChildStage : int32_t {
  kStarting = 0,
  kSignals,
  kSession,
  kControllingTerminal,
  kStdio,
  kInheritFds,
  kCloseFds,
  kGroups,
  kGid,
  kUid,
  kParentDeathSignal,
  kRlimit,
  kUnshare,
  // Waiting for the daemon to write the new user namespace's maps. As a
  // report with error 0 this is not a failure but the request to do so.
  kIdMaps,
  kMountPropagation,
  kChdir,
  kOpenStdioFile,
  kSignalMask,
  kExec,
};

// A human name for `stage` ("setresuid", "chdir", ...).
const char* ChildStageName(ChildStage stage);

// What the child sends on the report pipe: a failure (the child exits right
// after), or {kIdMaps, 0} when it waits for its maps.
struct ChildReport {
  ChildStage stage;
  int32_t error;  // errno
  int32_t index;  // which stdio stream / rlimit / executable candidate
};

// The kernel's struct sigaction for rt_sigaction (not libc's).
struct KernelSigaction {
  unsigned long handler;
  unsigned long flags;
  unsigned long restorer;
  uint64_t mask;
};

// Everything the child reads, prepared by the parent before the clone and
// left untouched until the child has exec'd or died. Pointers point into
// memory the parent keeps alive as long.
struct ChildSetup {
  char* const* argv;
  char* const* envp;
  const char* const* executables;
  int num_executables;
  int exec_fd;  // >= 0: execveat(exec_fd, "", AT_EMPTY_PATH) instead
  const char* cwd;
  mode_t umask;
  uid_t uid;
  gid_t gid;
  const gid_t* groups;
  size_t num_groups;
  const SpawnPlan::Rlimit* rlimits;
  size_t num_rlimits;
  bool new_session;
  int controlling_tty_fd;  // -1 when no pty
  int stdio_fds[3];        // fd to install as 0/1/2, or -1 to open a path
  const char* stdio_paths[3];
  int stdio_open_flags[3];
  int unshare_flags;
  const SpawnPlan::InheritedFd* inherited_fds;
  size_t num_inherited_fds;
  // The fds >= 3 the child keeps (sorted, ascending): its report and release
  // pipe ends, the exec fd and the inherited targets. Every other fd is closed before the
  // child changes credentials, so a child stalled by its caller holds no
  // daemon fd (another spawn's pipes, a client's socket).
  const int* keep_fds;
  size_t num_keep_fds;
  int report_fd;   // write end, close-on-exec: EOF = exec'd (or died)
  int release_fd;  // read end: one byte once the id maps are written
  int parent_death_signal;
  pid_t parent_pid;  // the daemon, to notice it died before the prctl
  KernelSigaction default_action;  // SIG_DFL
  uint64_t exec_signal_mask;       // the mask the program starts with

  // Written by the child, read by the parent (atomically): the stage in the
  // high 32 bits, its index in the low 32. Says where a stalled child is.
  uint64_t progress;
};

// The clone entry point; `setup` is a ChildSetup. Never returns: it execs or
// exits with 127 after writing a ChildReport.
int ChildMain(void* setup);

// Reads `setup`'s progress word (from the parent).
inline void ReadChildProgress(const ChildSetup& setup, ChildStage* stage,
                              int* index) {
  uint64_t progress = __atomic_load_n(&setup.progress, __ATOMIC_ACQUIRE);
  *stage = static_cast<ChildStage>(static_cast<int32_t>(progress >> 32));
  *index = static_cast<int32_t>(progress & 0xffffffff);
}

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_SPAWN_CHILD_H_
