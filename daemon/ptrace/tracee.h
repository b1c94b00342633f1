// Tracee: the one owner of a PTRACE_SEIZE attachment of one thread (tid) of a
// process procwarp did not spawn. Move-free and not thread-safe: every method
// must be called on the thread that seized it (the kernel links a tracee to
// one tracer *thread*); TracerThread (tracer_thread.h) is that thread.
//
// Lifetime of the attachment:
//  - Seize() takes a pidfd first, seizes the tid, then checks through the
//    pidfd that the process still exists: a pid cannot be reused while its
//    process (even a zombie) exists, so a recycled pid is never hit.
//  - Options: PTRACE_O_TRACEEXEC only. An exec ends the attachment: a root
//    tracer (CAP_SYS_PTRACE) lets a setuid exec through *with* the new
//    credentials, so whatever authority the caller had over the old program
//    says nothing about the new one (docs/security.md). No PTRACE_O_EXITKILL:
//    the target must outlive the daemon (the kernel detaches when the tracer
//    thread or the daemon dies). No PTRACE_O_TRACECLONE: attaching to one
//    thread leaves the others alone; StopOtherThreads (operation.h) seizes
//    them only for one operation.
//  - Between operations the target runs; the tracer thread keeps waiting for
//    its events (HandleIdleEvent): signals are passed on at once, a job
//    control stop is kept (PTRACE_LISTEN) as it would be without us.
//  - The destructor detaches (interrupting a running tracee first), leaving
//    it running (or job-control stopped, as it was).
//
// Waits the kernel ends with EINTR on any stop: epoll_wait/epoll_pwait/
// epoll_pwait2, semop/semtimedop and rt_sigtimedwait return -EINTR (not
// -ERESTART*) when their thread is stopped — by PTRACE_INTERRUPT, or by a
// signal that is ignored but still reported because the thread is traced.
// The target would not have seen that EINTR without us, so for such a wait
// without a timeout the stop turns -EINTR into -ERESTARTNOHAND: the kernel
// then restarts the wait when no handler runs, and still returns EINTR when
// a real signal's handler does. Waits with a finite timeout keep the EINTR
// (restarting would stretch the timeout), as after a SIGSTOP/SIGCONT.
//
// Signals are never swallowed: a signal that arrives while the tracee is
// stopped for an operation shows up as a signal-delivery-stop; its siginfo is
// remembered and it is delivered again (same siginfo) when the operation
// resumes the tracee. If several arrive in one operation, the first keeps its
// exact siginfo and the others are re-sent with tgkill (their sender then
// reads as the daemon).
#ifndef PROCWARP_DAEMON_PTRACE_TRACEE_H_
#define PROCWARP_DAEMON_PTRACE_TRACEE_H_

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/ptrace/thread_state.h"

namespace procwarp::ptrace {

// Bounds one blocking wait of the tracer thread. The waits block in
// waitpid(); another thread that wants the tracer to look at `cancel` or the
// clock sets the flag and wakes it with the tracer wake signal
// (tracer_thread.h), which makes waitpid fail with EINTR.
struct WaitControl {
  const std::atomic<bool>* cancel = nullptr;
  absl::Time give_up = absl::InfiniteFuture();

  // CANCELLED when `cancel` is set, DEADLINE_EXCEEDED past `give_up`.
  absl::Status Check() const;
};

struct SeizeOptions {
  // A process whose parent is this process (the daemon's own children) is
  // refused: the kernel would report its exit and stops to the tracer as to
  // its parent, racing the daemon's own waitid() for it.
  bool allow_own_child = false;
  // PTRACE_O_SUSPEND_SECCOMP: injected syscalls bypass the target's seccomp
  // filter. Needs CAP_SYS_ADMIN; admins only (the caller decides).
  bool suspend_seccomp = false;
};

// One ptrace-stop (or exit) as waitpid reported it.
struct StopEvent {
  int status = 0;
  bool exited = false;  // the tid is gone; the attachment ended
  int sig = 0;          // WSTOPSIG
  int event = 0;        // status >> 16 (PTRACE_EVENT_*), 0 for a signal stop
  bool signal_delivery() const { return !exited && event == 0; }
};

class Tracee {
 public:
  // Seizes thread `tid` (0: the main thread) of the process behind `pidfd`
  // (whose pid is `pid`). Errors: NOT_FOUND (no such process/thread, or it
  // exited meanwhile), FAILED_PRECONDITION (a zombie, already traced — naming
  // the tracer —, a child of this process), PERMISSION_DENIED (the kernel
  // refused the seize).
  static absl::StatusOr<std::unique_ptr<Tracee>> Seize(
      int pidfd, pid_t pid, pid_t tid, const SeizeOptions& options);

  ~Tracee();
  Tracee(const Tracee&) = delete;
  Tracee& operator=(const Tracee&) = delete;

  pid_t pid() const { return pid_; }
  pid_t tid() const { return tid_; }

  // OK while attached; otherwise why the attachment ended (the tracee exited,
  // executed a new program, was detached).
  const absl::Status& end_status() const { return end_; }
  bool attached() const { return end_.ok(); }

  // True while the tracee sits in a ptrace-stop (registers accessible).
  bool stopped() const { return stopped_; }
  // The last stop seen (valid while stopped()).
  const StopEvent& last_stop() const { return last_stop_; }
  // True while the process is stopped by job control (SIGSTOP and friends)
  // and kept so with PTRACE_LISTEN.
  bool job_control_stopped() const { return listening_; }

  // Brings the running tracee into a ptrace-stop inside the kernel's signal
  // path (PTRACE_INTERRUPT), where registers may be changed and syscalls
  // injected and where the kernel's own syscall-restart logic still runs on
  // resume. A signal-delivery-stop met on the way counts (its signal is
  // remembered). FAILED_PRECONDITION when the process is stopped by job
  // control (it stays stopped); the end status when it exited or exec'd.
  absl::Status StopForOperation(const WaitControl& control);

  // Resumes a stopped tracee with `request` (PTRACE_CONT, PTRACE_SINGLESTEP)
  // delivering `sig` (0: none).
  absl::Status Resume(long request, int sig);

  // Waits for the next stop or exit of the tracee. Exit and exec end the
  // attachment and are returned as the end status (an error).
  absl::StatusOr<StopEvent> WaitStop(const WaitControl& control);

  // At a signal-delivery-stop: keeps the signal (and its siginfo) to deliver
  // when the operation ends, so that stepping on does not swallow it.
  absl::Status RememberCurrentSignal();
  bool has_remembered_signals() const { return !remembered_.empty(); }

  // Ends an operation: resumes the stopped tracee, delivering the remembered
  // signals (see the file comment).
  absl::Status ResumeAfterOperation();

  // Turns a failed operation's NOT_FOUND into the reason when the tracee is
  // gone: ESRCH from a request on a tracee we believed stopped means it was
  // killed (a SIGKILL ends any ptrace-stop); its exit is collected and
  // returned. Whether it is gone is asked of the kernel, not read from the
  // status: a NOT_FOUND that the work itself returned on a live tracee (an
  // unknown symbol) comes back unchanged and at once.
  absl::Status ExplainFailure(absl::Status error);

  // Registers that an aborted operation could not restore `state` because
  // the tracee did not stop in time: it is restored at the next stop.
  void SetPendingRestore(ThreadState state);

  // An aborted single-step may have left its SIGTRAP queued: the next
  // kernel-generated SIGTRAP seen between operations is ours and is dropped
  // instead of being delivered (which would kill the target).
  void ExpectStrayTrap() { stray_trap_possible_ = true; }

  // Between operations: waits for one event of the running tracee and deals
  // with it (passes signals on, keeps job-control stops, ends the attachment
  // on exit/exec). Returns CANCELLED when woken (EINTR) without an event.
  absl::Status HandleIdleEvent();

  // Detaches, leaving the tracee running (or job-control stopped). A running
  // tracee is interrupted first; DEADLINE_EXCEEDED when it does not stop
  // before control.give_up (then only the tracer thread's exit detaches it).
  absl::Status Detach(const WaitControl& control);

 private:
  Tracee(pid_t pid, pid_t tid) : pid_(pid), tid_(tid) {}

  // Records `ev`: exit and exec end the attachment (an exec'd tracee is
  // detached at once).
  absl::Status Record(const StopEvent& ev);
  absl::StatusOr<StopEvent> WaitOnce(bool* interrupted);
  absl::Status RestorePendingIfAny();
  absl::Status KeepInfiniteWaitGoing();
  // True at the SIGTRAP signal-delivery-stop of an aborted single-step.
  absl::StatusOr<bool> IsStrayTrap();
  void SendRemembered(size_t first);
  // True when the kernel says the tracee left its ptrace-stop (killed) or
  // has an exit pending; never blocks.
  bool TraceeIsGone();

  pid_t pid_;
  pid_t tid_;
  absl::Status end_;
  bool stopped_ = false;
  bool listening_ = false;
  StopEvent last_stop_;
  std::vector<siginfo_t> remembered_;
  std::optional<ThreadState> pending_restore_;
  bool stray_trap_possible_ = false;
};

// True for SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU.
bool IsStopSignal(int sig);

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_TRACEE_H_
