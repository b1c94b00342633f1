// See spawn_child.h. Built without sanitizers (see BUILD): their runtime
// state belongs to the daemon's threads, which keep running beside the child.
#include "daemon/process/spawn_child.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <termios.h>

#include <cerrno>

#include "daemon/util/raw_syscall.h"

// Also said per function, in case this file is ever built with sanitizers.
#define PW_CHILD_CODE __attribute__((no_sanitize("address", "undefined")))

namespace procwarp {

const char* ChildStageName(ChildStage stage) {
  switch (stage) {
    case ChildStage::kStarting: return "starting";
    case ChildStage::kSignals: return "resetting signal handlers";
    case ChildStage::kSession: return "setsid";
    case ChildStage::kControllingTerminal: return "ioctl(TIOCSCTTY)";
    case ChildStage::kStdio: return "setting up stdio";
    case ChildStage::kInheritFds: return "installing inherited fds";
    case ChildStage::kCloseFds: return "closing the daemon's fds";
    case ChildStage::kGroups: return "setgroups";
    case ChildStage::kGid: return "setresgid";
    case ChildStage::kUid: return "setresuid";
    case ChildStage::kParentDeathSignal: return "prctl(PR_SET_PDEATHSIG)";
    case ChildStage::kRlimit: return "setrlimit";
    case ChildStage::kUnshare: return "unshare (creating namespaces)";
    case ChildStage::kIdMaps: return "waiting for its user namespace id maps";
    case ChildStage::kMountPropagation: return "making its mounts private";
    case ChildStage::kChdir: return "chdir";
    case ChildStage::kOpenStdioFile: return "opening a stdio file";
    case ChildStage::kSignalMask: return "setting the signal mask";
    case ChildStage::kExec: return "execve";
  }
  return "an unknown stage";
}

namespace {

constexpr long kSigsetBytes = 8;  // the kernel's sigset_t

PW_CHILD_CODE inline void SetProgress(ChildSetup* s, ChildStage stage,
                                      int index = 0) {
  uint64_t progress = (static_cast<uint64_t>(static_cast<uint32_t>(stage)) << 32) |
                      static_cast<uint32_t>(index);
  __atomic_store_n(&s->progress, progress, __ATOMIC_RELEASE);
}

[[noreturn]] PW_CHILD_CODE void ExitChild() {
  for (;;) RawSyscall(SYS_exit_group, 127);
}

// Reports the failure of `stage` (`result` is the raw -errno) and exits.
[[noreturn]] PW_CHILD_CODE void Fail(ChildSetup* s, ChildStage stage,
                                     long result, int index = 0) {
  ChildReport report;
  report.stage = stage;
  report.error = static_cast<int32_t>(-result);
  report.index = index;
  // Best effort: if the parent is gone there is nobody to tell.
  RawSyscall(SYS_write, s->report_fd, reinterpret_cast<long>(&report),
             sizeof(report));
  ExitChild();
}

PW_CHILD_CODE inline void Check(ChildSetup* s, long result, ChildStage stage,
                                int index = 0) {
  if (result < 0) Fail(s, stage, result, index);
}

// Makes `source` the child's fd `target`, inherited across execve.
PW_CHILD_CODE long Install(int source, int target) {
  // dup3 refuses source == target; then only the close-on-exec flag goes.
  if (source == target) return RawSyscall(SYS_fcntl, target, F_SETFD, 0);
  return RawSyscall(SYS_dup3, source, target, 0);
}

// Closes every fd >= 3 not in the sorted `keep` list.
PW_CHILD_CODE long CloseAllBut(const int* keep, size_t n) {
  unsigned int low = 3;
  for (size_t i = 0; i < n; ++i) {
    unsigned int fd = static_cast<unsigned int>(keep[i]);
    if (fd < low) continue;
    if (fd > low) {
      long r = RawSyscall(SYS_close_range, low, fd - 1, 0);
      if (r < 0) return r;
    }
    low = fd + 1;
  }
  return RawSyscall(SYS_close_range, low, ~0U, 0);
}

}  // namespace

PW_CHILD_CODE int ChildMain(void* arg) {
  ChildSetup* s = static_cast<ChildSetup*>(arg);
  // Every signal is blocked (the parent blocked them all around the clone),
  // so no daemon handler can run here. Reset the handlers before anyone but
  // root can signal the child (it becomes the caller's at setresuid), so a
  // signal left pending when the mask opens before execve meets SIG_DFL.
  SetProgress(s, ChildStage::kSignals);
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    Check(s,
          RawSyscall(SYS_rt_sigaction, sig,
                     reinterpret_cast<long>(&s->default_action), 0, kSigsetBytes),
          ChildStage::kSignals, sig);
  }

  if (s->new_session) {
    SetProgress(s, ChildStage::kSession);
    Check(s, RawSyscall(SYS_setsid), ChildStage::kSession);
  }
  if (s->controlling_tty_fd >= 0) {
    SetProgress(s, ChildStage::kControllingTerminal);
    Check(s, RawSyscall(SYS_ioctl, s->controlling_tty_fd, TIOCSCTTY, 0),
          ChildStage::kControllingTerminal);
  }
  SetProgress(s, ChildStage::kStdio);
  for (int i = 0; i < 3; ++i) {
    if (s->stdio_fds[i] >= 0) {
      Check(s, Install(s->stdio_fds[i], i), ChildStage::kStdio, i);
    }
  }
  SetProgress(s, ChildStage::kInheritFds);
  for (size_t i = 0; i < s->num_inherited_fds; ++i) {
    const SpawnPlan::InheritedFd& fd = s->inherited_fds[i];
    Check(s, Install(fd.source, fd.target), ChildStage::kInheritFds,
          static_cast<int>(i));
  }
  SetProgress(s, ChildStage::kCloseFds);
  Check(s, CloseAllBut(s->keep_fds, s->num_keep_fds), ChildStage::kCloseFds);

  // Become the caller: groups first, uid last (after setresuid the child can
  // change nothing else). Raw calls: glibc's would broadcast the change to
  // every daemon thread. Changing the uid makes the (shared) mm non-dumpable
  // (fs.suid_dumpable is checked to be 0 or 2 before the clone): from here
  // on the child is the caller's process, but the caller cannot ptrace it,
  // open its /proc/PID/{mem,fd,...} or pidfd_getfd from it. Nothing here
  // ever makes it dumpable again; execve does, for the new image only.
  SetProgress(s, ChildStage::kGroups);
  Check(s,
        RawSyscall(SYS_setgroups, static_cast<long>(s->num_groups),
                   reinterpret_cast<long>(s->groups)),
        ChildStage::kGroups);
  SetProgress(s, ChildStage::kGid);
  Check(s, RawSyscall(SYS_setresgid, s->gid, s->gid, s->gid), ChildStage::kGid);
  SetProgress(s, ChildStage::kUid);
  Check(s, RawSyscall(SYS_setresuid, s->uid, s->uid, s->uid), ChildStage::kUid);

  // After the credential change, which clears the parent-death signal.
  if (s->parent_death_signal != 0) {
    SetProgress(s, ChildStage::kParentDeathSignal);
    Check(s, RawSyscall(SYS_prctl, PR_SET_PDEATHSIG, s->parent_death_signal),
          ChildStage::kParentDeathSignal);
    // The daemon may have died before the prctl: then nobody would send it.
    if (RawSyscall(SYS_getppid) != s->parent_pid) ExitChild();
  }
  // Limits are set as the caller, so the kernel refuses to raise a hard
  // limit the caller could not raise.
  for (size_t i = 0; i < s->num_rlimits; ++i) {
    SetProgress(s, ChildStage::kRlimit, static_cast<int>(i));
    Check(s,
          RawSyscall(SYS_prlimit64, 0, s->rlimits[i].resource,
                     reinterpret_cast<long>(&s->rlimits[i].limit), 0),
          ChildStage::kRlimit, static_cast<int>(i));
  }
  // Namespaces are made as the caller too: an unprivileged caller gets them
  // only inside a user namespace of its own, where it is root.
  if (s->unshare_flags != 0) {
    SetProgress(s, ChildStage::kUnshare);
    Check(s, RawSyscall(SYS_unshare, s->unshare_flags), ChildStage::kUnshare);
    if (s->unshare_flags & CLONE_NEWUSER) {
      // A non-dumpable process cannot write its own maps (and must not be
      // made dumpable): the daemon writes them, setgroups "deny" first.
      SetProgress(s, ChildStage::kIdMaps);
      ChildReport ask;
      ask.stage = ChildStage::kIdMaps;
      ask.error = 0;
      ask.index = 0;
      if (RawSyscall(SYS_write, s->report_fd, reinterpret_cast<long>(&ask),
                     sizeof(ask)) != sizeof(ask)) {
        ExitChild();
      }
      char go = 0;
      // EOF: the daemon gave up on this spawn.
      if (RawSyscall(SYS_read, s->release_fd, reinterpret_cast<long>(&go), 1) != 1) {
        ExitChild();
      }
    }
    if (s->unshare_flags & CLONE_NEWNS) {
      // Keep the child's mounts from propagating back to the host.
      SetProgress(s, ChildStage::kMountPropagation);
      Check(s,
            RawSyscall(SYS_mount, 0, reinterpret_cast<long>("/"), 0,
                       MS_REC | MS_PRIVATE, 0),
            ChildStage::kMountPropagation);
    }
  }

  // From here on the caller controls what the calls wait for (a FIFO, a
  // slow or hung filesystem, a path it keeps changing); the parent's
  // deadline and SIGKILL bound them all.
  RawSyscall(SYS_umask, s->umask);
  SetProgress(s, ChildStage::kChdir);
  Check(s, RawSyscall(SYS_chdir, reinterpret_cast<long>(s->cwd)),
        ChildStage::kChdir);
  for (int i = 0; i < 3; ++i) {
    if (s->stdio_fds[i] >= 0 || s->stdio_paths[i] == nullptr) continue;
    SetProgress(s, ChildStage::kOpenStdioFile, i);
    long fd = RawSyscall(SYS_openat, AT_FDCWD,
                         reinterpret_cast<long>(s->stdio_paths[i]),
                         s->stdio_open_flags[i] | O_CLOEXEC, 0666);
    Check(s, fd, ChildStage::kOpenStdioFile, i);
    // Fds 0-2 are open (the daemon's until replaced), so fd is not i.
    Check(s, RawSyscall(SYS_dup3, fd, i, 0), ChildStage::kOpenStdioFile, i);
    RawSyscall(SYS_close, fd);
  }

  // The program starts with the mask it should have; anything the caller
  // sent meanwhile is delivered now, to SIG_DFL.
  SetProgress(s, ChildStage::kSignalMask);
  Check(s,
        RawSyscall(SYS_rt_sigprocmask, SIG_SETMASK,
                   reinterpret_cast<long>(&s->exec_signal_mask), 0, kSigsetBytes),
        ChildStage::kSignalMask);

  // Like execvp: ENOENT/ENOTDIR move on to the next PATH entry; EACCES is
  // remembered so "found but not executable" wins over "not found".
  long error = -ENOENT;
  int index = 0;
  if (s->exec_fd >= 0) {
    SetProgress(s, ChildStage::kExec);
    Fail(s, ChildStage::kExec,
         RawSyscall(SYS_execveat, s->exec_fd, reinterpret_cast<long>(""),
                    reinterpret_cast<long>(s->argv),
                    reinterpret_cast<long>(s->envp), AT_EMPTY_PATH));
  }
  for (int i = 0; i < s->num_executables; ++i) {
    SetProgress(s, ChildStage::kExec, i);
    long r = RawSyscall(SYS_execve, reinterpret_cast<long>(s->executables[i]),
                        reinterpret_cast<long>(s->argv),
                        reinterpret_cast<long>(s->envp));
    if (r == -ENOENT || r == -ENOTDIR) continue;
    error = r;
    index = i;
    if (r != -EACCES) break;
  }
  Fail(s, ChildStage::kExec, error, index);
}

}  // namespace procwarp
