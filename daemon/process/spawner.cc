// See spawner.h.
//
// How the child is made, and why that is safe (issue 8; the trust model is
// in docs/security.md):
//
// Speed. The child is cloned with CLONE_VM: it borrows the daemon's memory
// (on a stack of its own) until execve, instead of copying the page tables
// of a large multi-threaded process and leaving every daemon page
// copy-on-write. The child half (spawn_child.cc) therefore makes only raw
// system calls and writes nothing of the daemon's but its progress word.
//
// Nothing of the daemon's is reachable by the caller through the child,
// although from setresuid on the child is the caller's process:
//  - It is never dumpable while it shares the daemon's memory. Changing the
//    uid makes the mm non-dumpable (StartSpawn refuses to spawn as another
//    user when fs.suid_dumpable=1 would make it dumpable instead), and
//    nothing sets it back; execve makes the *new* image dumpable, which no
//    longer shares anything. The mm belongs to the daemon's user namespace,
//    so ptrace, /proc/PID/{mem,maps,environ,fd,...}, pidfd_getfd and
//    process_vm_* all fail for the caller, even when the child made a user
//    namespace of its own (where the caller is otherwise all-powerful).
//    Hence the daemon, not the child, writes a child's user namespace maps
//    (setgroups "deny" first, then "0 <uid> 1" / "0 <gid> 1").
//  - It holds no daemon fd while the caller can stall it: every fd it does
//    not need is closed before the credential change (not just marked
//    close-on-exec).
//  - No daemon signal handler can run in it: every signal is blocked from
//    before the clone, handlers are reset to SIG_DFL before the uid change,
//    and the mask opens only just before execve.
//
// Nothing the caller does to the child can hold the daemon:
//  - No CLONE_VFORK: a caller can SIGSTOP its own process, and a vfork
//    parent would then wait forever. The spawning thread instead waits on
//    the report pipe (close-on-exec, so EOF = exec'd) with a deadline
//    (--spawn_timeout_ms) and the RPC's cancellation, polled.
//  - Everything the caller controls (chdir into a hung filesystem, opening
//    its FIFO as stdin, execve of a slow path, a stopped child) happens
//    after the credential change and is cut short by that deadline: the
//    child is SIGKILLed through its pidfd and reaped *before* its stack and
//    setup are freed (it may be using them until it is dead).
//  - What the caller could do before the credential change is nothing: the
//    child is root's until setresuid, so the caller cannot signal it, and it
//    does not block on anything the caller controls.
//  - A spawn in flight holds a slot of the caller's process limit
//    (ProcessTable), so one caller's stalled spawns pin at most that many
//    daemon threads, each for at most the deadline.
#include "daemon/process/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "daemon/process/spawn_child.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/pidfd.h"
#include "daemon/util/raw_syscall.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

// How often a waiting spawn looks at the RPC's cancellation.
constexpr absl::Duration kCancelPollInterval = absl::Milliseconds(50);
// How long a SIGKILLed child may take to die before the daemon stops
// waiting for it in the RPC (and waits on a thread of its own instead).
constexpr absl::Duration kKillGrace = absl::Seconds(5);

constexpr const char* kStreamNames[3] = {"stdin", "stdout", "stderr"};

// The child's stack while it borrows the daemon's memory.
//
// Stacks are reused: a fresh mapping costs a page fault for each page the
// child touches (11-27 us each on these machines, docs/architecture.md) and
// its munmap a TLB flush on every CPU the daemon's threads ran on, both on
// the path every spawn waits for. A stack goes back to the pool only once
// no child runs on it (it exec'd or was reaped); the pool keeps a few, so
// concurrent spawns still get their own.
class ChildStack {
 public:
  static absl::StatusOr<ChildStack> Make() {
    if (std::optional<ChildStack> kept = Pool().Take()) return *std::move(kept);
    void* base = mmap(nullptr, kSize, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) return ErrnoStatus(errno, "mmap(child stack)");
    return ChildStack(base);
  }
  // Precondition: no child runs on it any more.
  static void Recycle(ChildStack stack) { Pool().Give(std::move(stack)); }

  ChildStack(ChildStack&& other) noexcept : base_(std::exchange(other.base_, nullptr)) {}
  ChildStack(const ChildStack&) = delete;
  ~ChildStack() {
    if (base_ != nullptr) munmap(base_, kSize);
  }
  // Stacks grow down on x86-64 and arm64: the child starts at the top.
  void* top() const { return static_cast<char*>(base_) + kSize; }

 private:
  // The child code uses raw system calls and small frames only.
  static constexpr size_t kSize = 64 * 1024;
  explicit ChildStack(void* base) : base_(base) {}

  class KeptStacks {
   public:
    std::optional<ChildStack> Take() {
      absl::MutexLock lock(&mu_);
      if (stacks_.empty()) return std::nullopt;
      ChildStack stack = std::move(stacks_.back());
      stacks_.pop_back();
      return stack;
    }
    void Give(ChildStack stack) {
      absl::MutexLock lock(&mu_);
      // Past the limit `stack` is unmapped on return.
      if (stacks_.size() < kKept) stacks_.push_back(std::move(stack));
    }

   private:
    static constexpr size_t kKept = 8;
    absl::Mutex mu_;
    std::vector<ChildStack> stacks_ ABSL_GUARDED_BY(mu_);
  };
  static KeptStacks& Pool() {
    static KeptStacks* pool = new KeptStacks;  // never destroyed
    return *pool;
  }

  void* base_;
};

struct Pty {
  UniqueFd master;
  UniqueFd slave;
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

// A child that changes credentials gets the dumpable mode fs.suid_dumpable
// says; only 1 ("debug": dumpable by its new owner) would hand the caller a
// process sharing the daemon's memory. Read per spawn (root may change it),
// through an fd opened once: one pread instead of a /proc path walk.
absl::Status CheckChildStaysUndumpable(const SpawnPlan& plan) {
  if (plan.uid == geteuid() && plan.gid == getegid()) {
    return absl::OkStatus();  // no change: the child is the daemon's user's
  }
  constexpr char kPath[] = "/proc/sys/fs/suid_dumpable";
  static const int fd = open(kPath, O_RDONLY | O_CLOEXEC);  // kept for good
  char value = 0;
  if (fd < 0 || pread(fd, &value, 1, 0) != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spawn: cannot read ", kPath, " (", ErrnoName(errno),
        ") to check that a child of another user stays undumpable"));
  }
  if (value == '1') {
    return absl::FailedPreconditionError(
        "spawn: fs.suid_dumpable is 1, which would let a caller read and "
        "write the daemon's memory through its spawn child before execve; "
        "set it to 0 or 2 (sysctl fs.suid_dumpable=0)");
  }
  return absl::OkStatus();
}

// Gives `fd` a number above every inherited target, so installing those in
// the child cannot overwrite it.
absl::Status MoveAboveTargets(UniqueFd* fd,
                              const std::vector<SpawnPlan::InheritedFd>& targets) {
  int highest = -1;
  bool clashes = false;
  for (const auto& t : targets) {
    highest = std::max(highest, t.target);
    clashes |= t.target == fd->get();
  }
  if (!clashes) return absl::OkStatus();
  int moved = fcntl(fd->get(), F_DUPFD_CLOEXEC, highest + 1);
  if (moved < 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd->get(),
                                           ", F_DUPFD_CLOEXEC, ", highest + 1, ")"));
  }
  fd->Reset(moved);
  return absl::OkStatus();
}

absl::Status WriteProcFile(const std::string& path, const std::string& text) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open(", path, ")"));
  if (write(fd.get(), text.data(), text.size()) !=
      static_cast<ssize_t>(text.size())) {
    return ErrnoStatus(errno, absl::StrCat("write(", path, ", \"", text, "\")"));
  }
  return absl::OkStatus();
}

// The maps of the child's new user namespace: the caller's own uid and gid
// as 0 inside, nothing more. setgroups is denied first (it cannot be denied
// once gid_map is written): otherwise a caller root inside could drop
// supplementary groups that deny it access to files (issue 8, point 4).
absl::Status WriteIdMaps(pid_t pid, uid_t uid, gid_t gid) {
  // The pid is the daemon's unreaped child: it cannot be recycled.
  const std::string dir = absl::StrCat("/proc/", pid);
  RETURN_IF_ERROR(WriteProcFile(dir + "/setgroups", "deny"));
  RETURN_IF_ERROR(WriteProcFile(dir + "/uid_map", absl::StrCat("0 ", uid, " 1\n")));
  return WriteProcFile(dir + "/gid_map", absl::StrCat("0 ", gid, " 1\n"));
}

absl::Status ReportToStatus(const ChildReport& report, const SpawnPlan& plan) {
  std::string what = ChildStageName(report.stage);
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
      if (report.index >= 0 && report.index < 3) {
        what = absl::StrCat("open(", plan.stdio[report.index].path(), ")");
      }
      break;
    default:
      break;
  }
  return ErrnoStatus(report.error, absl::StrCat("spawn: ", what));
}

}  // namespace

struct PendingSpawn::State {
  SpawnPlan plan;
  // What `setup` points into.
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<const char*> executables;
  std::vector<int> keep_fds;
  ChildSetup setup{};
  std::optional<ChildStack> stack;

  UniqueFd exec_fd;  // our copy of plan.exec_fd, if any
  UniqueFd report_read;
  UniqueFd release_write;  // only for a new user namespace
  SpawnedChild child;      // pid, pidfd and the daemon's stdio ends
  // Until true, the child may still run in the daemon's memory (`setup`,
  // `stack`): they must outlive it.
  bool memory_released = false;

  ~State() {
    if (memory_released && stack.has_value()) ChildStack::Recycle(*std::move(stack));
  }

  // Where the child is, for a person: "opening stdin path /x (...)".
  std::string WhereIsTheChild() const {
    ChildStage stage;
    int index;
    ReadChildProgress(setup, &stage, &index);
    switch (stage) {
      case ChildStage::kOpenStdioFile:
        if (index >= 0 && index < 3) {
          return absl::StrCat("opening ", kStreamNames[index], " path ",
                              plan.stdio[index].path(),
                              " (a FIFO without a writer, or a slow filesystem?)");
        }
        break;
      case ChildStage::kChdir:
        return absl::StrCat("at chdir(", plan.cwd, ") (a slow filesystem?)");
      case ChildStage::kExec:
        if (index >= 0 && index < static_cast<int>(plan.executables.size())) {
          return absl::StrCat("at execve(", plan.executables[index], ")");
        }
        break;
      default:
        break;
    }
    return absl::StrCat("at ", ChildStageName(stage));
  }

  // SIGKILLs the child and reaps it. False if it did not die within
  // kKillGrace: then it may still use `setup` and `stack`.
  bool KillAndReap() {
    if (memory_released || !child.pidfd) return true;
    absl::Status killed =
        SignalPidfd(child.pidfd.get(), SIGKILL, child.pid, "the spawn child");
    if (!killed.ok() && !absl::IsFailedPrecondition(killed)) {
      LogError(killed.ToString());
    }
    pollfd pfd = {child.pidfd.get(), POLLIN, 0};
    int ready;
    do {
      ready = poll(&pfd, 1, absl::ToInt64Milliseconds(kKillGrace));
    } while (ready < 0 && errno == EINTR);
    if (ready != 1) return false;
    Reap();
    return true;
  }

  // Waits for the (dead or dying) child and forgets it.
  void Reap() {
    (void)ReapPidfd(child.pidfd.get(), /*block=*/true);
    memory_released = true;
  }
};

PendingSpawn::PendingSpawn(std::unique_ptr<State> state) : state_(std::move(state)) {}
PendingSpawn::PendingSpawn(PendingSpawn&&) noexcept = default;
PendingSpawn& PendingSpawn::operator=(PendingSpawn&&) noexcept = default;

PendingSpawn::~PendingSpawn() {
  if (state_ == nullptr || state_->KillAndReap()) return;
  // The child does not die (frozen, or in an uninterruptible sleep) and may
  // still run in the memory `state_` owns: free nothing until it is dead,
  // but do not hold the caller's call for it.
  LogError(absl::StrCat("spawn: child ", state_->child.pid,
                        " did not die within ", absl::FormatDuration(kKillGrace),
                        " of SIGKILL; reaping it in the background"));
  std::thread([state = std::move(state_)] { state->Reap(); }).detach();
}

pid_t PendingSpawn::pid() const { return state_->child.pid; }
int PendingSpawn::pidfd() const { return state_->child.pidfd.get(); }

absl::StatusOr<PendingSpawn> StartSpawn(SpawnPlan plan) {
  RETURN_IF_ERROR(CheckChildStaysUndumpable(plan));
  auto st = std::make_unique<PendingSpawn::State>();
  st->plan = std::move(plan);
  const SpawnPlan& p = st->plan;
  ChildSetup& setup = st->setup;

  // The child's ends: closed here once the child has its copies.
  UniqueFd child_ends[3];
  UniqueFd pty_slave;
  UniqueFd dev_null;
  if (p.uses_pty()) {
    ASSIGN_OR_RETURN(Pty pty, OpenPty(p));
    st->child.pty_master = std::move(pty.master);
    pty_slave = std::move(pty.slave);
  }
  for (int i = 0; i < 3; ++i) {
    setup.stdio_fds[i] = -1;
    setup.stdio_paths[i] = nullptr;
    const auto& spec = p.stdio[i];
    switch (spec.kind()) {
      case procwarp::v1::STDIO_KIND_PIPE:
        if (i == 0) {
          RETURN_IF_ERROR(MakePipe(&child_ends[0], &st->child.stdin_pipe));
        } else {
          RETURN_IF_ERROR(MakePipe(
              i == 1 ? &st->child.stdout_pipe : &st->child.stderr_pipe,
              &child_ends[i]));
        }
        setup.stdio_fds[i] = child_ends[i].get();
        break;
      case procwarp::v1::STDIO_KIND_PTY:
        setup.stdio_fds[i] = pty_slave.get();
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
  // Non-blocking before the clone, so nothing can fail once the child runs
  // its program.
  for (UniqueFd* fd : {&st->child.stdin_pipe, &st->child.stdout_pipe,
                       &st->child.stderr_pipe, &st->child.pty_master}) {
    if (fd->valid()) RETURN_IF_ERROR(SetNonBlocking(fd->get()));
  }

  UniqueFd report_write;
  UniqueFd release_read;
  RETURN_IF_ERROR(MakePipe(&st->report_read, &report_write));
  RETURN_IF_ERROR(MoveAboveTargets(&report_write, p.inherited_fds));
  st->keep_fds.push_back(report_write.get());
  if (p.unshare_flags & CLONE_NEWUSER) {
    RETURN_IF_ERROR(MakePipe(&release_read, &st->release_write));
    RETURN_IF_ERROR(MoveAboveTargets(&release_read, p.inherited_fds));
    st->keep_fds.push_back(release_read.get());
  }
  if (p.exec_fd >= 0) {
    // A copy of our own, so that it can be moved clear of the targets.
    st->exec_fd.Reset(fcntl(p.exec_fd, F_DUPFD_CLOEXEC, 3));
    if (!st->exec_fd) {
      return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", p.exec_fd, ", F_DUPFD_CLOEXEC)"));
    }
    RETURN_IF_ERROR(MoveAboveTargets(&st->exec_fd, p.inherited_fds));
    st->keep_fds.push_back(st->exec_fd.get());
  }
  for (const auto& fd : p.inherited_fds) st->keep_fds.push_back(fd.target);
  std::sort(st->keep_fds.begin(), st->keep_fds.end());
  st->keep_fds.erase(std::unique(st->keep_fds.begin(), st->keep_fds.end()),
                     st->keep_fds.end());

  st->argv = CStringArray(p.argv);
  st->envp = CStringArray(p.env);
  for (const auto& e : p.executables) st->executables.push_back(e.c_str());
  setup.argv = st->argv.data();
  setup.envp = st->envp.data();
  setup.executables = st->executables.data();
  setup.num_executables = st->executables.size();
  setup.exec_fd = st->exec_fd ? st->exec_fd.get() : -1;
  setup.cwd = p.cwd.c_str();
  setup.umask = p.umask;
  setup.uid = p.uid;
  setup.gid = p.gid;
  setup.groups = p.groups.data();
  setup.num_groups = p.groups.size();
  setup.rlimits = p.rlimits.data();
  setup.num_rlimits = p.rlimits.size();
  setup.new_session = p.new_session;
  setup.controlling_tty_fd = pty_slave ? pty_slave.get() : -1;
  setup.unshare_flags = p.unshare_flags;
  setup.inherited_fds = p.inherited_fds.data();
  setup.num_inherited_fds = p.inherited_fds.size();
  setup.keep_fds = st->keep_fds.data();
  setup.num_keep_fds = st->keep_fds.size();
  setup.report_fd = report_write.get();
  setup.release_fd = release_read ? release_read.get() : -1;
  setup.parent_death_signal = p.parent_death_signal;
  // As the child sees it: a parent outside its pid namespace shows as 0
  // (there the check cannot tell a reparenting; the window is tiny).
  setup.parent_pid = p.new_pid_namespace ? 0 : getpid();
  setup.default_action = KernelSigaction{};  // SIG_DFL, no flags, no mask
  setup.exec_signal_mask = 0;
  setup.progress = 0;

  ASSIGN_OR_RETURN(ChildStack stack, ChildStack::Make());
  st->stack.emplace(std::move(stack));
  // Every signal blocked from before the clone until the child has reset its
  // handlers (the raw call: glibc's would keep its own two unblocked).
  const uint64_t all_signals = ~uint64_t{0};
  uint64_t old_mask = 0;
  long masked = RawSyscall(SYS_rt_sigprocmask, SIG_SETMASK,
                           reinterpret_cast<long>(&all_signals),
                           reinterpret_cast<long>(&old_mask), sizeof(uint64_t));
  if (masked < 0) return ErrnoStatus(static_cast<int>(-masked), "rt_sigprocmask(SIG_SETMASK, all)");
  int pidfd = -1;
  const int flags = CLONE_VM | CLONE_PIDFD | SIGCHLD |
                    (p.new_pid_namespace ? CLONE_NEWPID : 0);
  // With CLONE_PIDFD, clone() stores the pidfd where parent_tid points.
  pid_t pid = clone(ChildMain, st->stack->top(), flags, &setup, &pidfd);
  int clone_errno = errno;
  RawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&old_mask),
             0, sizeof(uint64_t));
  if (pid < 0) {
    return ErrnoStatus(clone_errno, absl::StrCat("clone(CLONE_VM|CLONE_PIDFD",
                                                 p.new_pid_namespace ? "|CLONE_NEWPID" : "",
                                                 ")"));
  }
  st->child.pid = pid;
  st->child.pidfd.Reset(pidfd);
  return PendingSpawn(std::move(st));
}

absl::StatusOr<SpawnedChild> FinishSpawn(PendingSpawn pending,
                                         const SpawnWait& wait) {
  // Every return but the last drops `pending` with the child not yet past
  // execve: its destructor kills and reaps the child before the memory the
  // child uses is freed, and before the caller hears of the failure.
  PendingSpawn::State& st = *pending.state_;
  const absl::Time deadline = absl::Now() + wait.timeout;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat(
          "spawn: the child did not reach execve within ",
          absl::FormatDuration(wait.timeout), "; it was stuck ",
          st.WhereIsTheChild(),
          ", so it was killed (the limit is --spawn_timeout_ms)"));
    }
    if (wait.cancelled && wait.cancelled()) {
      return absl::CancelledError(absl::StrCat(
          "spawn: cancelled by the client while the child was ",
          st.WhereIsTheChild(),
          "; it was killed"));
    }
    pollfd pfd = {st.report_read.get(), POLLIN, 0};
    const absl::Duration slice = std::min(left, kCancelPollInterval);
    int ready = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(
                                  slice + absl::Milliseconds(1))));
    if (ready < 0 && errno != EINTR) {
      return ErrnoStatus(errno, "poll(spawn report pipe)");
    }
    if (ready <= 0) continue;

    ChildReport report{};
    ssize_t n = read(st.report_read.get(), &report, sizeof(report));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      // Every write end is closed: the child exec'd (or died), and no longer
      // uses the daemon's memory.
      st.memory_released = true;
      break;
    }
    if (n < 0) return ErrnoStatus(errno, "read(spawn report pipe)");
    if (n != sizeof(report)) {
      return absl::InternalError(
          absl::StrCat("spawn: the child sent a report of ", n, " bytes"));
    }
    if (report.stage == ChildStage::kIdMaps && report.error == 0) {
      absl::Status mapped = WriteIdMaps(st.child.pid, st.plan.uid, st.plan.gid);
      if (mapped.ok() && write(st.release_write.get(), "+", 1) != 1) {
        mapped = ErrnoStatus(errno, "write(spawn release pipe)");
      }
      if (!mapped.ok()) return mapped;
      continue;
    }
    // The child failed and is exiting. It is killed all the same (by
    // `pending`), which bounds the reap: a caller could stop it between its
    // report and its exit.
    return ReportToStatus(report, st.plan);
  }
  return std::move(st.child);
}

absl::StatusOr<SpawnedChild> SpawnChild(SpawnPlan plan, const SpawnWait& wait) {
  ASSIGN_OR_RETURN(PendingSpawn pending, StartSpawn(std::move(plan)));
  return FinishSpawn(std::move(pending), wait);
}

}  // namespace procwarp
