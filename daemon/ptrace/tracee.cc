// See tracee.h.
#include "daemon/ptrace/tracee.h"

#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/ptrace_call.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp::ptrace {

bool IsStopSignal(int sig) {
  return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

absl::Status WaitControl::Check() const {
  if (cancel != nullptr && cancel->load(std::memory_order_acquire)) {
    return absl::CancelledError("the operation was cancelled (its deadline passed)");
  }
  if (absl::Now() > give_up) {
    return absl::DeadlineExceededError("the target did not stop in time");
  }
  return absl::OkStatus();
}

namespace {

// Explains a refused PTRACE_SEIZE from what /proc says about the thread.
absl::Status ExplainSeizeFailure(const absl::Status& seize, pid_t pid,
                                 pid_t tid) {
  absl::StatusOr<ProcStatus> st = ReadStatus(tid);
  if (!st.ok()) {
    return absl::NotFoundError(
        absl::StrCat("pid ", pid, " (tid ", tid, ") exited before it could be attached"));
  }
  if (st->state == 'Z' || st->state == 'X') {
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", pid, " (tid ", tid, ") is a zombie: it exited and its parent has "
        "not reaped it yet; there is nothing to attach to"));
  }
  if (st->tracer_pid != 0) {
    absl::StatusOr<ProcStatus> tracer = ReadStatus(st->tracer_pid);
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", pid, " (tid ", tid, ") is already traced by pid ", st->tracer_pid,
        " (", tracer.ok() ? tracer->name : "?", "); detach that tracer first"));
  }
  return absl::PermissionDeniedError(absl::StrCat(
      seize.message(), "; the kernel refused to let procwarpd trace pid ", pid,
      " (an LSM policy, Yama ptrace_scope, or a missing CAP_SYS_PTRACE)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tracee>> Tracee::Seize(
    int pidfd, pid_t pid, pid_t tid, const SeizeOptions& options) {
  if (tid <= 0) tid = pid;
  absl::StatusOr<ProcStatus> st = ReadStatus(tid);
  if (!st.ok() || st->tgid != pid) {
    return absl::NotFoundError(
        absl::StrCat("tid ", tid, " is not a thread of a running pid ", pid));
  }
  if (pid == getpid()) {
    return absl::InvalidArgumentError("procwarpd cannot attach to itself");
  }
  if (!options.allow_own_child && st->ppid == getpid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", pid, " is a child of procwarpd itself (spawned by it); "
        "use its procwarp handle instead of attaching"));
  }
  unsigned long opts = PTRACE_O_TRACEEXEC;
  if (options.suspend_seccomp) opts |= PTRACE_O_SUSPEND_SECCOMP;
  absl::Status seized = Ptrace(PTRACE_SEIZE, tid, 0, opts);
  if (!seized.ok()) {
    if (absl::IsNotFound(seized)) {
      return absl::NotFoundError(
          absl::StrCat("pid ", pid, " (tid ", tid, ") no longer exists"));
    }
    return ExplainSeizeFailure(seized, pid, tid);
  }
  std::unique_ptr<Tracee> tracee(new Tracee(pid, tid));
  // The pid named the pidfd's process when the pidfd was opened; as long as
  // that process exists (a zombie included) its pid cannot be reused, so
  // the seized tid belongs to it. If it is gone, the tid may be a stranger's:
  // the destructor detaches from it.
  if (syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0 ||
      (tid != pid && !IsThreadOf(pid, tid))) {
    return absl::NotFoundError(
        absl::StrCat("pid ", pid, " exited before it could be attached"));
  }
  return tracee;
}

Tracee::~Tracee() {
  if (!attached()) return;
  WaitControl control;
  control.give_up = absl::Now() + absl::Seconds(1);
  (void)Detach(control);
  // If the tracee did not stop in time, the kernel detaches it when this
  // thread exits.
}

absl::StatusOr<StopEvent> Tracee::WaitOnce(bool* interrupted) {
  *interrupted = false;
  int status = 0;
  pid_t r = waitpid(tid_, &status, __WALL | __WNOTHREAD);
  if (r == tid_) {
    StopEvent ev;
    ev.status = status;
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      ev.exited = true;
    } else if (WIFSTOPPED(status)) {
      ev.sig = WSTOPSIG(status);
      ev.event = status >> 16;
    }
    return ev;
  }
  if (r < 0 && errno == EINTR) {
    *interrupted = true;
    return StopEvent{};
  }
  int error = r < 0 ? errno : ECHILD;
  end_ = ErrnoStatus(error, absl::StrCat("waitpid(tid=", tid_, ")"));
  stopped_ = false;
  return end_;
}

absl::Status Tracee::Record(const StopEvent& ev) {
  last_stop_ = ev;
  if (ev.exited) {
    stopped_ = false;
    listening_ = false;
    pending_restore_.reset();
    end_ = absl::NotFoundError(absl::StrCat("pid ", pid_, " (tid ", tid_, ") ",
                                            DescribeWaitStatus(ev.status)));
    return end_;
  }
  stopped_ = true;
  listening_ = false;
  if (ev.event == PTRACE_EVENT_EXEC) {
    pending_restore_.reset();
    remembered_.clear();
    std::string exe = ExePath(pid_);
    (void)Ptrace(PTRACE_DETACH, tid_, 0, 0);
    stopped_ = false;
    end_ = absl::FailedPreconditionError(absl::StrCat(
        "pid ", pid_, " executed a new program (", exe,
        "); the attachment ended because its credentials may have changed; "
        "attach again if you may"));
    return end_;
  }
  return absl::OkStatus();
}

absl::StatusOr<StopEvent> Tracee::WaitStop(const WaitControl& control) {
  if (!attached()) return end_;
  for (;;) {
    bool interrupted = false;
    ASSIGN_OR_RETURN(StopEvent ev, WaitOnce(&interrupted));
    if (interrupted) {
      RETURN_IF_ERROR(control.Check());
      continue;
    }
    RETURN_IF_ERROR(Record(ev));
    return ev;
  }
}

absl::Status Tracee::Resume(long request, int sig) {
  if (!attached()) return end_;
  absl::Status st = Ptrace(request, tid_, 0, static_cast<unsigned long>(sig));
  if (!st.ok()) {
    if (absl::IsNotFound(st)) {
      // ESRCH: killed (SIGKILL wakes a stopped tracee) — collect the exit.
      WaitControl bounded;
      bounded.give_up = absl::Now() + absl::Seconds(1);
      absl::StatusOr<StopEvent> ev = WaitStop(bounded);
      if (!ev.ok()) return ev.status();
    }
    return st;
  }
  stopped_ = false;
  return absl::OkStatus();
}

absl::StatusOr<bool> Tracee::IsStrayTrap() {
  if (!stray_trap_possible_ || last_stop_.sig != SIGTRAP ||
      !last_stop_.signal_delivery()) {
    return false;
  }
  stray_trap_possible_ = false;
  siginfo_t info;
  RETURN_IF_ERROR(Ptrace(PTRACE_GETSIGINFO, tid_, 0,
                         reinterpret_cast<unsigned long>(&info)));
  return info.si_code > 0;  // sent by the kernel, not by a process
}

absl::Status Tracee::RememberCurrentSignal() {
  ASSIGN_OR_RETURN(bool stray, IsStrayTrap());
  if (stray) return absl::OkStatus();  // our aborted step's trap: drop it
  siginfo_t info;
  RETURN_IF_ERROR(Ptrace(PTRACE_GETSIGINFO, tid_, 0,
                         reinterpret_cast<unsigned long>(&info)));
  remembered_.push_back(info);
  return absl::OkStatus();
}

void Tracee::SendRemembered(size_t first) {
  for (size_t i = first; i < remembered_.size(); ++i) {
    (void)syscall(SYS_tgkill, pid_, tid_, remembered_[i].si_signo);
  }
  remembered_.clear();
}

absl::Status Tracee::StopForOperation(const WaitControl& control) {
  if (!attached()) return end_;
  if (!stopped_ || listening_) {
    RETURN_IF_ERROR(Ptrace(PTRACE_INTERRUPT, tid_, 0, 0));
    for (;;) {
      ASSIGN_OR_RETURN(StopEvent ev, WaitStop(control));
      if (ev.event == PTRACE_EVENT_STOP) {
        if (IsStopSignal(ev.sig)) {
          // Job control holds the process: keep it so.
          RETURN_IF_ERROR(Ptrace(PTRACE_LISTEN, tid_, 0, 0));
          stopped_ = false;
          listening_ = true;
          return absl::FailedPreconditionError(absl::StrCat(
              "pid ", pid_, " is stopped by job control (", SignalName(ev.sig),
              "); continue it (SIGCONT) and retry"));
        }
        break;  // the interrupt's stop
      }
      if (ev.signal_delivery()) {
        RETURN_IF_ERROR(RememberCurrentSignal());
        break;
      }
      // Any other event stop: let it go on to our interrupt.
      RETURN_IF_ERROR(Resume(PTRACE_CONT, 0));
    }
  }
  RETURN_IF_ERROR(RestorePendingIfAny());
  return KeepInfiniteWaitGoing();
}

absl::Status Tracee::ResumeAfterOperation() {
  if (!attached() || !stopped_) return absl::OkStatus();
  if (!remembered_.empty() && last_stop_.signal_delivery()) {
    const siginfo_t& first = remembered_.front();
    RETURN_IF_ERROR(Ptrace(PTRACE_SETSIGINFO, tid_, 0,
                           reinterpret_cast<unsigned long>(&first)));
    int sig = first.si_signo;
    RETURN_IF_ERROR(Resume(PTRACE_CONT, sig));
    SendRemembered(1);
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Resume(PTRACE_CONT, 0));
  SendRemembered(0);
  return absl::OkStatus();
}

absl::Status Tracee::ExplainFailure(absl::Status error) {
  if (!attached()) return end_;
  if (!absl::IsNotFound(error)) return error;
  // NOT_FOUND is ambiguous: ESRCH from a request on a tracee that was killed
  // out of its stop, or the work's own answer on a live target (an unknown
  // symbol). The status code cannot tell them apart; the kernel can.
  if (!TraceeIsGone()) return error;
  // SIGKILL took it out of its stop: its exit follows at once; collect it.
  WaitControl bounded;
  bounded.give_up = absl::Now() + absl::Seconds(1);
  (void)WaitStop(bounded);
  if (!attached()) return end_;
  return error;
}

bool Tracee::TraceeIsGone() {
  if (!stopped_) {
    // Running (the work resumed it): no stop to ask about. An exit already
    // reported is collected now; a later one by the idle loop. Never wait
    // here: a live target would hold the caller until its deadline.
    siginfo_t info = {};
    int r = waitid(P_PID, static_cast<id_t>(tid_), &info,
                   WEXITED | WNOHANG | WNOWAIT | __WALL);
    return r == 0 && info.si_pid == tid_;
  }
  // A tracee in a ptrace-stop answers any request; only SIGKILL (or its
  // exit) ends that stop behind the tracer's back.
  absl::StatusOr<unsigned long> probe = PtracePeek(PTRACE_PEEKUSER, tid_, 0);
  return absl::IsNotFound(probe.status());
}

void Tracee::SetPendingRestore(ThreadState state) {
  pending_restore_ = std::move(state);
}

absl::Status Tracee::KeepInfiniteWaitGoing() {
  constexpr long kEintr = -EINTR;
  constexpr long kRestartNoHand = -514;  // ERESTARTNOHAND (kernel-internal)
  ASSIGN_OR_RETURN(user_regs_struct regs, GetRegs(tid_));
  if (static_cast<long>(regs.rax) != kEintr) return absl::OkStatus();
  bool infinite = false;
  switch (static_cast<long>(regs.orig_rax)) {
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
      infinite = static_cast<int>(regs.r10) < 0;
      break;
    case SYS_epoll_pwait2:
    case SYS_semtimedop:
      infinite = regs.r10 == 0;
      break;
    case SYS_rt_sigtimedwait:
      infinite = regs.rdx == 0;
      break;
    case SYS_semop:
      infinite = true;
      break;
    default:
      break;
  }
  if (!infinite) return absl::OkStatus();
  regs.rax = static_cast<unsigned long long>(kRestartNoHand);
  return SetRegs(tid_, regs);
}

absl::Status Tracee::RestorePendingIfAny() {
  if (!pending_restore_.has_value() || !stopped_) return absl::OkStatus();
  absl::Status st = RestoreThreadState(tid_, *pending_restore_);
  pending_restore_.reset();
  return st;
}

absl::Status Tracee::HandleIdleEvent() {
  if (!attached()) return end_;
  bool interrupted = false;
  ASSIGN_OR_RETURN(StopEvent ev, WaitOnce(&interrupted));
  if (interrupted) return absl::CancelledError("woken");
  RETURN_IF_ERROR(Record(ev));
  RETURN_IF_ERROR(RestorePendingIfAny());
  if (ev.event == PTRACE_EVENT_STOP) {
    if (IsStopSignal(ev.sig)) {
      // A group-stop: keep the process stopped, but hear about SIGCONT.
      RETURN_IF_ERROR(Ptrace(PTRACE_LISTEN, tid_, 0, 0));
      stopped_ = false;
      listening_ = true;
      return absl::OkStatus();
    }
    // A late PTRACE_INTERRUPT stop, or the end of a group-stop.
    return Resume(PTRACE_CONT, 0);
  }
  if (ev.signal_delivery()) {
    ASSIGN_OR_RETURN(bool stray, IsStrayTrap());
    if (stray) return Resume(PTRACE_CONT, 0);  // our aborted step's trap
    // Pass the signal on untouched (its siginfo is still the kernel's).
    RETURN_IF_ERROR(KeepInfiniteWaitGoing());
    return Resume(PTRACE_CONT, ev.sig);
  }
  return Resume(PTRACE_CONT, 0);
}

absl::Status Tracee::Detach(const WaitControl& control) {
  if (!attached()) return absl::OkStatus();
  if (!stopped_ || listening_) {
    RETURN_IF_ERROR(Ptrace(PTRACE_INTERRUPT, tid_, 0, 0));
    for (;;) {
      absl::StatusOr<StopEvent> ev = WaitStop(control);
      if (!ev.ok()) {
        if (!attached()) return absl::OkStatus();  // exited meanwhile
        return ev.status();
      }
      if (ev->signal_delivery()) {
        RETURN_IF_ERROR(RememberCurrentSignal());
      }
      break;
    }
  }
  RETURN_IF_ERROR(RestorePendingIfAny());
  RETURN_IF_ERROR(KeepInfiniteWaitGoing());
  int sig = 0;
  size_t resend_from = 0;
  if (!remembered_.empty() && last_stop_.signal_delivery()) {
    const siginfo_t& first = remembered_.front();
    RETURN_IF_ERROR(Ptrace(PTRACE_SETSIGINFO, tid_, 0,
                           reinterpret_cast<unsigned long>(&first)));
    sig = first.si_signo;
    resend_from = 1;
  }
  absl::Status st = Ptrace(PTRACE_DETACH, tid_, 0, static_cast<unsigned long>(sig));
  stopped_ = false;
  listening_ = false;
  end_ = absl::FailedPreconditionError(
      absl::StrCat("pid ", pid_, " (tid ", tid_, ") was detached"));
  if (!st.ok() && !absl::IsNotFound(st)) return st;
  SendRemembered(resend_from);
  return absl::OkStatus();
}

}  // namespace procwarp::ptrace
