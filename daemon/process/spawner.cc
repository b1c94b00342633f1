// See spawner.h.
//
// The child half (RunChild) is made the way posix_spawn makes its child:
// clone(CLONE_VM | CLONE_VFORK). It borrows the daemon's memory (on a stack of
// its own) until execve, while the spawning thread waits, instead of copying
// the page tables of a large multi-threaded process and leaving every daemon
// page copy-on-write (each later write to one would fault). So the child uses
// only plain system-call wrappers, writes nothing but its own stack, touches no
// lock and allocates nothing. Credential changes go through syscall()
// directly, because glibc's setuid() family would broadcast the change to the
// daemon's threads.
#include "daemon/process/spawner.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

// What failed in the child, sent over the report pipe.
enum class ChildStage : int32_t {
  kSignals = 1,
  kSession,
  kControllingTerminal,
  kStdio,
  kGroups,
  kGid,
  kUid,
  kRlimit,
  kUnshare,
  kIdMaps,
  kUmask,
  kChdir,
  kOpenStdioFile,
  kExec,
  kInheritFds,
  kParentDeathSignal,
};

struct ChildReport {
  ChildStage stage;
  int32_t error;
  int32_t index;  // which stdio stream / rlimit / executable candidate
};

const char* StageName(ChildStage stage) {
  switch (stage) {
    case ChildStage::kSignals: return "resetting signals";
    case ChildStage::kSession: return "setsid";
    case ChildStage::kControllingTerminal: return "ioctl(TIOCSCTTY)";
    case ChildStage::kStdio: return "setting up stdio";
    case ChildStage::kGroups: return "setgroups";
    case ChildStage::kGid: return "setresgid";
    case ChildStage::kUid: return "setresuid";
    case ChildStage::kRlimit: return "setrlimit";
    case ChildStage::kUnshare: return "unshare (creating namespaces)";
    case ChildStage::kIdMaps: return "writing user namespace id maps";
    case ChildStage::kUmask: return "umask";
    case ChildStage::kChdir: return "chdir";
    case ChildStage::kOpenStdioFile: return "opening stdio file";
    case ChildStage::kExec: return "execve";
    case ChildStage::kInheritFds: return "installing inherited fds";
    case ChildStage::kParentDeathSignal: return "prctl(PR_SET_PDEATHSIG)";
  }
  return "unknown stage";
}

// Everything RunChild reads, as plain pointers into memory owned by the
// parent's stack frame (the child has a copy of it).
struct ChildSetup {
  char* const* argv;
  char* const* envp;
  const char* const* executables;
  int num_executables;
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
  int stdio_fds[3];        // fd to dup2 onto 0/1/2, or -1 to open a file
  const char* stdio_paths[3];
  int stdio_open_flags[3];
  int unshare_flags;
  const char* uid_map;  // "0 <uid> 1\n"
  const char* gid_map;
  int report_fd;
  const SpawnPlan::InheritedFd* inherited_fds;
  size_t num_inherited_fds;
  int parent_death_signal;
  pid_t parent_pid;  // the daemon, to notice it died before the prctl
};

// Code that runs in the child while it borrows the daemon's memory: not
// instrumented by ASan, whose bookkeeping (stack redzones, the current
// thread) belongs to the daemon and would be disturbed.
#define PW_CHILD_CODE __attribute__((no_sanitize_address))

PW_CHILD_CODE [[noreturn]] void Fail(const ChildSetup& s, ChildStage stage, int error,
                       int index = 0) {
  ChildReport report{stage, error, index};
  // Best effort: if the parent is gone there is nobody to tell.
  (void)!write(s.report_fd, &report, sizeof(report));
  _exit(127);
}

PW_CHILD_CODE bool WriteProcFile(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t len = strlen(text);
  bool ok = write(fd, text, len) == static_cast<ssize_t>(len);
  close(fd);
  return ok;
}

PW_CHILD_CODE [[noreturn]] void RunChild(const ChildSetup& s) {
  // Nothing of the daemon's may leak into the child: every inherited fd is
  // marked close-on-exec (the report pipe already is).
  syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);

  // The daemon's signal mask and handlers are not the child's business.
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) {
    Fail(s, ChildStage::kSignals, errno);
  }
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    signal(sig, SIG_DFL);  // EINVAL for the few reserved numbers is fine
  }

  if (s.new_session && setsid() < 0) Fail(s, ChildStage::kSession, errno);
  if (s.controlling_tty_fd >= 0 &&
      ioctl(s.controlling_tty_fd, TIOCSCTTY, 0) != 0) {
    Fail(s, ChildStage::kControllingTerminal, errno);
  }
  for (int i = 0; i < 3; ++i) {
    if (s.stdio_fds[i] >= 0 && dup2(s.stdio_fds[i], i) < 0) {
      Fail(s, ChildStage::kStdio, errno, i);
    }
  }

  for (size_t i = 0; i < s.num_inherited_fds; ++i) {
    const SpawnPlan::InheritedFd& fd = s.inherited_fds[i];
    // dup2 onto itself would leave the close-on-exec flag set.
    int r = fd.source == fd.target ? fcntl(fd.target, F_SETFD, 0)
                                   : dup2(fd.source, fd.target);
    if (r < 0) Fail(s, ChildStage::kInheritFds, errno, i);
  }

  // Become the caller. Groups first, uid last: after setresuid the child no
  // longer has the privilege to change the others.
  if (syscall(SYS_setgroups, s.num_groups, s.groups) != 0) {
    Fail(s, ChildStage::kGroups, errno);
  }
  if (syscall(SYS_setresgid, s.gid, s.gid, s.gid) != 0) {
    Fail(s, ChildStage::kGid, errno);
  }
  if (syscall(SYS_setresuid, s.uid, s.uid, s.uid) != 0) {
    Fail(s, ChildStage::kUid, errno);
  }
  // Changing credentials cleared the dumpable flag, which makes /proc/self
  // root-owned and the id maps below unwritable. The child is the caller's
  // own process now (execve would set the flag again anyway).
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  // After the credential change, which clears the parent-death signal.
  if (s.parent_death_signal != 0) {
    if (prctl(PR_SET_PDEATHSIG, s.parent_death_signal, 0, 0, 0) != 0) {
      Fail(s, ChildStage::kParentDeathSignal, errno);
    }
    // The daemon may have died before the prctl: then nobody would send it.
    if (syscall(SYS_getppid) != s.parent_pid) _exit(127);
  }
  // Limits are set as the caller, so the kernel refuses to raise a hard
  // limit the caller could not raise.
  for (size_t i = 0; i < s.num_rlimits; ++i) {
    if (setrlimit(static_cast<__rlimit_resource>(s.rlimits[i].resource),
                  &s.rlimits[i].limit) != 0) {
      Fail(s, ChildStage::kRlimit, errno, i);
    }
  }
  // Namespaces are made as the caller too: an unprivileged caller gets them
  // only inside a user namespace of its own, where it is root.
  if (s.unshare_flags != 0) {
    if (unshare(s.unshare_flags) != 0) Fail(s, ChildStage::kUnshare, errno);
    if (s.unshare_flags & CLONE_NEWUSER) {
      if (!WriteProcFile("/proc/self/setgroups", "deny") ||
          !WriteProcFile("/proc/self/uid_map", s.uid_map) ||
          !WriteProcFile("/proc/self/gid_map", s.gid_map)) {
        Fail(s, ChildStage::kIdMaps, errno);
      }
    }
    if (s.unshare_flags & CLONE_NEWNS) {
      // Keep the child's mounts from propagating back to the host.
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
    }
  }

  umask(s.umask);
  if (chdir(s.cwd) != 0) Fail(s, ChildStage::kChdir, errno);
  for (int i = 0; i < 3; ++i) {
    if (s.stdio_fds[i] >= 0 || s.stdio_paths[i] == nullptr) continue;
    int fd = open(s.stdio_paths[i], s.stdio_open_flags[i] | O_CLOEXEC, 0666);
    if (fd < 0 || dup2(fd, i) < 0) Fail(s, ChildStage::kOpenStdioFile, errno, i);
    if (fd != i) close(fd);
  }

  // Like execvp: ENOENT/ENOTDIR move on to the next PATH entry; EACCES is
  // remembered so "found but not executable" wins over "not found".
  int error = ENOENT;
  int index = 0;
  for (int i = 0; i < s.num_executables; ++i) {
    execve(s.executables[i], s.argv, s.envp);
    if (errno == ENOENT || errno == ENOTDIR) continue;
    error = errno;
    index = i;
    if (errno != EACCES) break;
  }
  Fail(s, ChildStage::kExec, error, index);
}

PW_CHILD_CODE int ChildEntry(void* setup) { RunChild(*static_cast<const ChildSetup*>(setup)); }

// The child's stack while it borrows the daemon's memory.
class ChildStack {
 public:
  static absl::StatusOr<ChildStack> Make() {
    void* base = mmap(nullptr, kSize, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) return ErrnoStatus(errno, "mmap(child stack)");
    return ChildStack(base);
  }
  ChildStack(ChildStack&& other) noexcept : base_(std::exchange(other.base_, nullptr)) {}
  ChildStack(const ChildStack&) = delete;
  ~ChildStack() {
    if (base_ != nullptr) munmap(base_, kSize);
  }
  // Stacks grow down on x86-64: the child starts at the top.
  void* top() const { return static_cast<char*>(base_) + kSize; }

 private:
  static constexpr size_t kSize = 256 * 1024;
  explicit ChildStack(void* base) : base_(base) {}
  void* base_;
};

std::vector<char*> CStringArray(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

absl::Status MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  return absl::OkStatus();
}

absl::Status SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", O_NONBLOCK)"));
  }
  return absl::OkStatus();
}

struct Pty {
  UniqueFd master;
  UniqueFd slave;
};

absl::StatusOr<Pty> OpenPty(const SpawnPlan& plan) {
  Pty pty;
  pty.master.Reset(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.master) return ErrnoStatus(errno, "posix_openpt");
  if (grantpt(pty.master.get()) != 0 || unlockpt(pty.master.get()) != 0) {
    return ErrnoStatus(errno, "unlockpt");
  }
  char name[128];
  if (ptsname_r(pty.master.get(), name, sizeof(name)) != 0) {
    return ErrnoStatus(errno, "ptsname_r");
  }
  pty.slave.Reset(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.slave) return ErrnoStatus(errno, absl::StrCat("open(", name, ")"));
  // The child owns its terminal, as a login session would.
  if (fchown(pty.slave.get(), plan.uid, -1) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fchown(", name, ")"));
  }
  struct winsize ws {};
  ws.ws_row = plan.window_size.rows() ? plan.window_size.rows() : 24;
  ws.ws_col = plan.window_size.cols() ? plan.window_size.cols() : 80;
  if (ioctl(pty.master.get(), TIOCSWINSZ, &ws) != 0) {
    return ErrnoStatus(errno, "ioctl(TIOCSWINSZ)");
  }
  return pty;
}

absl::Status ReportToStatus(const ChildReport& report, const SpawnPlan& plan) {
  std::string what = StageName(report.stage);
  switch (report.stage) {
    case ChildStage::kExec:
      if (report.index >= 0 &&
          report.index < static_cast<int>(plan.executables.size())) {
        what = absl::StrCat("execve(", plan.executables[report.index], ")");
      }
      if (report.error == ENOENT && plan.executables.size() > 1) {
        return absl::NotFoundError(absl::StrCat(
            "executable '", plan.argv[0], "' not found in PATH"));
      }
      break;
    case ChildStage::kChdir:
      what = absl::StrCat("chdir(", plan.cwd, ")");
      break;
    case ChildStage::kOpenStdioFile:
      what = absl::StrCat("open(", plan.stdio[report.index].path(), ")");
      break;
    default:
      break;
  }
  return ErrnoStatus(report.error, absl::StrCat("spawn: ", what));
}

}  // namespace

absl::StatusOr<SpawnedChild> SpawnChild(const SpawnPlan& plan) {
  SpawnedChild result;
  UniqueFd child_ends[3];
  std::optional<Pty> pty;
  if (plan.uses_pty()) {
    ASSIGN_OR_RETURN(pty, OpenPty(plan));
  }
  UniqueFd dev_null;
  ChildSetup setup{};
  for (int i = 0; i < 3; ++i) {
    setup.stdio_fds[i] = -1;
    setup.stdio_paths[i] = nullptr;
    const auto& spec = plan.stdio[i];
    switch (spec.kind()) {
      case procwarp::v1::STDIO_KIND_PIPE:
        if (i == 0) {
          RETURN_IF_ERROR(MakePipe(&child_ends[0], &result.stdin_pipe));
        } else {
          RETURN_IF_ERROR(MakePipe(i == 1 ? &result.stdout_pipe : &result.stderr_pipe,
                                   &child_ends[i]));
        }
        setup.stdio_fds[i] = child_ends[i].get();
        break;
      case procwarp::v1::STDIO_KIND_PTY:
        setup.stdio_fds[i] = pty->slave.get();
        break;
      case procwarp::v1::STDIO_KIND_FILE:
        setup.stdio_paths[i] = spec.path().c_str();
        setup.stdio_open_flags[i] =
            i == 0 ? O_RDONLY
                   : O_WRONLY | O_CREAT | (spec.append() ? O_APPEND : O_TRUNC);
        break;
      default:
        if (!dev_null) {
          dev_null.Reset(open("/dev/null", O_RDWR | O_CLOEXEC));
          if (!dev_null) return ErrnoStatus(errno, "open(/dev/null)");
        }
        setup.stdio_fds[i] = dev_null.get();
        break;
    }
  }

  std::vector<char*> argv = CStringArray(plan.argv);
  std::vector<char*> envp = CStringArray(plan.env);
  std::vector<const char*> executables;
  for (const auto& e : plan.executables) executables.push_back(e.c_str());
  std::string uid_map = absl::StrCat("0 ", plan.uid, " 1\n");
  std::string gid_map = absl::StrCat("0 ", plan.gid, " 1\n");
  UniqueFd report_read, report_write;
  RETURN_IF_ERROR(MakePipe(&report_read, &report_write));

  setup.argv = argv.data();
  setup.envp = envp.data();
  setup.executables = executables.data();
  setup.num_executables = executables.size();
  setup.cwd = plan.cwd.c_str();
  setup.umask = plan.umask;
  setup.uid = plan.uid;
  setup.gid = plan.gid;
  setup.groups = plan.groups.data();
  setup.num_groups = plan.groups.size();
  setup.rlimits = plan.rlimits.data();
  setup.num_rlimits = plan.rlimits.size();
  setup.new_session = plan.new_session;
  setup.controlling_tty_fd = pty ? pty->slave.get() : -1;
  setup.unshare_flags = plan.unshare_flags;
  setup.uid_map = uid_map.c_str();
  setup.gid_map = gid_map.c_str();
  setup.report_fd = report_write.get();
  setup.inherited_fds = plan.inherited_fds.data();
  setup.num_inherited_fds = plan.inherited_fds.size();
  setup.parent_death_signal = plan.parent_death_signal;
  // As the child sees it: a parent outside its pid namespace shows as 0
  // (there the check cannot tell a reparenting; the window is tiny).
  setup.parent_pid = plan.new_pid_namespace ? 0 : getpid();

  ASSIGN_OR_RETURN(ChildStack stack, ChildStack::Make());
  int pidfd = -1;
  int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD |
              (plan.new_pid_namespace ? CLONE_NEWPID : 0);
  // With CLONE_PIDFD, clone() stores the pidfd where parent_tid points.
  pid_t pid = clone(ChildEntry, stack.top(), flags, &setup, &pidfd);
  if (pid < 0) return ErrnoStatus(errno, "clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD)");

  result.pid = pid;
  result.pidfd.Reset(pidfd);
  report_write.Reset();
  for (auto& end : child_ends) end.Reset();
  if (pty) pty->slave.Reset();

  ChildReport report{};
  ssize_t n;
  do {
    n = read(report_read.get(), &report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  if (n != 0) {
    // The child failed before execve and is exiting: reap it now so it
    // never shows up as a managed process.
    siginfo_t info{};
    waitid(static_cast<idtype_t>(P_PIDFD), result.pidfd.get(), &info, WEXITED);
    if (n != sizeof(report)) {
      return absl::InternalError("spawn: child died before reporting");
    }
    return ReportToStatus(report, plan);
  }

  if (pty) result.pty_master = std::move(pty->master);
  for (UniqueFd* fd : {&result.stdin_pipe, &result.stdout_pipe,
                       &result.stderr_pipe, &result.pty_master}) {
    if (fd->valid()) RETURN_IF_ERROR(SetNonBlocking(fd->get()));
  }
  return result;
}

}  // namespace procwarp
