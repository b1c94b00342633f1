// TracerThread: one std::thread per attached target that makes every ptrace
// request for it. The kernel links a tracee to the *thread* that seized it,
// so gRPC handlers (which run on whatever thread gRPC picks) never call
// ptrace: they hand work to the target's tracer thread with Run() and wait
// for the result, bounded by a deadline. Work for different targets runs on
// different threads, so a stuck target holds up only its own callers.
//
// Between operations the target runs freely and the tracer thread sits in
// waitpid() for its events (signals are passed on, job-control stops kept,
// exit/exec end the attachment; see tracee.h). To hand it work, or to make
// it notice a deadline, another thread sends it the wake signal
// (TracerWakeSignal(), a real-time signal with an empty handler installed
// without SA_RESTART), which makes waitpid() fail with EINTR. A wake can
// land just before waitpid() is entered, so waiters re-send it with a short
// backoff until the work has been picked up (and, after a deadline, until it
// has finished).
//
// Destroying a TracerThread detaches (the target keeps running) and joins the
// thread. If the daemon dies, the kernel detaches every tracee on its own.
#ifndef PROCWARP_DAEMON_PTRACE_TRACER_THREAD_H_
#define PROCWARP_DAEMON_PTRACE_TRACER_THREAD_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/ptrace/operation.h"
#include "daemon/ptrace/remote_memory.h"
#include "daemon/ptrace/tracee.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::ptrace {

// The signal that wakes tracer threads; procwarpd uses it for nothing else.
int TracerWakeSignal();

struct AttachOptions {
  pid_t tid = 0;  // 0: the main thread (tid == pid)
  SeizeOptions seize;
  // How long cancelled or aborted work, and detaching, wait for the target to
  // stop before giving up (the restore then happens at its next stop, and a
  // detach that cannot complete is left to the kernel when the thread ends).
  absl::Duration stop_grace = absl::Seconds(2);
};

struct RunOptions {
  // Stop every other thread of the process for the duration of the work.
  bool stop_all_threads = false;
  // Force a memory path (tests, or callers that know one is denied).
  MemoryPath memory_path = MemoryPath::kAuto;
  // The caller's own cancellation (a gRPC call's IsCancelled): polled every
  // kCancelPoll while Run() waits; once true the work is abandoned as at a
  // deadline (the target put back) and Run() returns CANCELLED. Called with
  // the tracer's lock held: it must not call into this TracerThread.
  const std::function<bool()>* cancelled = nullptr;
};

// How often Run() looks at RunOptions::cancelled.
inline constexpr absl::Duration kCancelPoll = absl::Milliseconds(20);

class TracerThread {
 public:
  // Starts a tracer thread and seizes `options.tid` of the process behind
  // `pidfd` (pid `pid`) from it. Errors as Tracee::Seize, or
  // DEADLINE_EXCEEDED.
  static absl::StatusOr<std::unique_ptr<TracerThread>> Attach(
      UniqueFd pidfd, pid_t pid, const AttachOptions& options,
      absl::Time deadline);

  // Detaches (leaving the target running) and joins the thread.
  ~TracerThread();
  TracerThread(const TracerThread&) = delete;
  TracerThread& operator=(const TracerThread&) = delete;

  pid_t pid() const { return pid_; }
  pid_t tid() const { return tid_; }
  int pidfd() const { return pidfd_.get(); }

  // Runs `work` on the tracer thread with the target thread stopped, then
  // restores its state (Operation::Finish) and resumes it. Thread-safe; work
  // items run one at a time in submission order. Returns `work`'s status,
  // or: DEADLINE_EXCEEDED when `deadline` passed (before the work started —
  // it then never runs — or while it ran — its waits are cancelled and the
  // target is put back); CANCELLED when options.cancelled turned true (the
  // same, for a caller that went away); FAILED_PRECONDITION when the target is job-control
  // stopped or the attachment ended (exec, detach); NOT_FOUND when the
  // target exited. `work` runs on another thread but Run() does not return
  // before it has finished, so it may capture references to the caller's
  // stack.
  absl::Status Run(absl::FunctionRef<absl::Status(Operation&)> work,
                   absl::Time deadline, const RunOptions& options = {});

  // Detaches now; later Run() calls fail with FAILED_PRECONDITION.
  absl::Status Detach(absl::Time deadline);

  // For a caller that went away: the running work is cancelled (its waits
  // end and the target is put back, as at a deadline), queued work is
  // dropped (its Run() returns CANCELLED) and new work is refused. Returns
  // at once; the Run() calls in flight return shortly after. Destroy the
  // TracerThread only once no Run() is in flight.
  void CancelAll();

  // For a release that still has work of its own to do (undo its mappings,
  // detach): the running work is cancelled and queued work dropped as by
  // CancelAll(), but new work is accepted.
  void CancelWork();

  // OK while attached; otherwise why the attachment ended.
  absl::Status status() const;

 private:
  struct Job {
    absl::FunctionRef<void()> body;
    bool started = false;
    bool done = false;
    bool dropped = false;  // never run: the attachment was cancelled
    // The caller's RunOptions::cancelled turned true (guarded by mu_).
    bool caller_cancelled = false;
    std::atomic<bool> cancel{false};
  };

  TracerThread(UniqueFd pidfd, pid_t pid, const AttachOptions& options);
  absl::Status Submit(Job& job, absl::Time deadline,
                      const std::function<bool()>* cancelled = nullptr);
  void Wake();
  void Loop();
  void RunWork(Job& job, absl::FunctionRef<absl::Status(Operation&)> work,
               const RunOptions& options, absl::Status* result);

  const UniqueFd pidfd_;
  const pid_t pid_;
  const pid_t tid_;
  const AttachOptions options_;
  std::atomic<pid_t> thread_tid_{0};

  mutable absl::Mutex mu_;
  std::deque<Job*> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // CancelAll or CancelWork was called: cancelled work says its caller went.
  bool caller_gone_ ABSL_GUARDED_BY(mu_) = false;
  Job* running_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);

  // Owned and used by the tracer thread only.
  std::unique_ptr<Tracee> tracee_;
  std::unique_ptr<RemoteMemory> memory_;
  uint64_t syscall_insn_ = 0;

  std::thread thread_;
};

}  // namespace procwarp::ptrace

#endif  // PROCWARP_DAEMON_PTRACE_TRACER_THREAD_H_
