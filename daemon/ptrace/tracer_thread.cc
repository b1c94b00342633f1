// See tracer_thread.h.
#include "daemon/ptrace/tracer_thread.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "daemon/ptrace/proc_info.h"

namespace procwarp::ptrace {
namespace {

void OnWake(int) {}

void InstallWakeHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa = {};
    sa.sa_handler = OnWake;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: waitpid must return EINTR
    sigaction(TracerWakeSignal(), &sa, nullptr);
  });
}

}  // namespace

int TracerWakeSignal() { return SIGRTMAX - 2; }

TracerThread::TracerThread(UniqueFd pidfd, pid_t pid,
                           const AttachOptions& options)
    : pidfd_(std::move(pidfd)),
      pid_(pid),
      tid_(options.tid > 0 ? options.tid : pid),
      options_(options) {
  InstallWakeHandler();
  thread_ = std::thread([this] { Loop(); });
}

absl::StatusOr<std::unique_ptr<TracerThread>> TracerThread::Attach(
    UniqueFd pidfd, pid_t pid, const AttachOptions& options,
    absl::Time deadline) {
  if (pid <= 0 || !pidfd) {
    return absl::InvalidArgumentError("attach needs a pid and its pidfd");
  }
  std::unique_ptr<TracerThread> tracer(
      new TracerThread(std::move(pidfd), pid, options));
  absl::Status seized;
  auto seize = [&] {
    absl::StatusOr<std::unique_ptr<Tracee>> tracee = Tracee::Seize(
        tracer->pidfd_.get(), tracer->pid_, tracer->tid_, options.seize);
    if (!tracee.ok()) {
      seized = tracee.status();
      return;
    }
    tracer->tracee_ = *std::move(tracee);
    tracer->memory_ = std::make_unique<RemoteMemory>(tracer->pid_, tracer->tid_);
  };
  Job job{seize};
  absl::Status submitted = tracer->Submit(job, deadline);
  if (!submitted.ok()) return submitted;
  if (!seized.ok()) return seized;
  return tracer;
}

TracerThread::~TracerThread() {
  CancelAll();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (;;) {
    Wake();
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&finished_), absl::Milliseconds(10))) {
      break;
    }
  }
  thread_.join();
}

void TracerThread::Wake() {
  pid_t tid = thread_tid_.load(std::memory_order_acquire);
  if (tid > 0) syscall(SYS_tgkill, getpid(), tid, TracerWakeSignal());
}

absl::Status TracerThread::Submit(Job& job, absl::Time deadline,
                                  const std::function<bool()>* cancelled) {
  auto caller_cancelled = [cancelled] {
    return cancelled != nullptr && *cancelled && (*cancelled)();
  };
  if (caller_cancelled()) {
    return absl::CancelledError(absl::StrCat(
        "the call was cancelled before its operation on pid ", pid_, " ran"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || finished_ || cancelled_) {
      return absl::FailedPreconditionError(
          absl::StrCat("the attachment to pid ", pid_, " is closing"));
    }
    queue_.push_back(&job);
  }
  // How long one wait lasts before the clock and the caller are looked at.
  const absl::Duration poll =
      cancelled != nullptr ? kCancelPoll : absl::Milliseconds(100);
  Wake();
  mu_.Lock();
  // Until picked up: re-send the wake in case it landed before waitpid().
  absl::Duration backoff = absl::Microseconds(500);
  while (!job.started) {
    absl::Time now = absl::Now();
    const bool gone = caller_cancelled();
    if (now >= deadline || gone) {
      queue_.erase(std::find(queue_.begin(), queue_.end(), &job));
      mu_.Unlock();
      if (gone) {
        return absl::CancelledError(absl::StrCat(
            "the call was cancelled while the tracer of pid ", pid_,
            " was busy; the operation did not run"));
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "the tracer of pid ", pid_, " was busy until the deadline; "
          "the operation did not run"));
    }
    if (mu_.AwaitWithDeadline(absl::Condition(&job.started),
                              std::min(deadline, now + std::min(backoff, poll)))) {
      break;
    }
    mu_.Unlock();
    Wake();
    mu_.Lock();
    backoff = std::min(backoff * 2, absl::Milliseconds(50));
  }
  // Until done; a cancelled job (deadline, the caller, CancelAll) is woken
  // until it notices.
  while (!job.done && !job.cancel.load(std::memory_order_acquire) &&
         !mu_.AwaitWithDeadline(absl::Condition(&job.done),
                                std::min(deadline, absl::Now() + poll))) {
    if (absl::Now() >= deadline) break;
    if (caller_cancelled()) {
      job.caller_cancelled = true;
      break;
    }
  }
  if (!job.done) {
    // Past the deadline or cancelled: the work's waits check `cancel` when
    // woken.
    job.cancel.store(true, std::memory_order_release);
    backoff = absl::Milliseconds(1);
    while (!job.done) {
      mu_.Unlock();
      Wake();
      mu_.Lock();
      mu_.AwaitWithTimeout(absl::Condition(&job.done), backoff);
      backoff = std::min(backoff * 2, absl::Milliseconds(20));
    }
  }
  bool dropped = job.dropped;
  mu_.Unlock();
  if (dropped) {
    return absl::CancelledError(absl::StrCat(
        "the attachment to pid ", pid_, " was cancelled before the operation ran"));
  }
  return absl::OkStatus();
}

void TracerThread::CancelAll() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  CancelWork();
}

void TracerThread::CancelWork() {
  {
    absl::MutexLock lock(&mu_);
    caller_gone_ = true;
    for (Job* job : queue_) {
      job->dropped = true;
      job->started = true;
      job->done = true;
    }
    queue_.clear();
    if (running_ != nullptr) running_->cancel.store(true, std::memory_order_release);
  }
  // The running work's waits check `cancel` when woken; its Run() keeps
  // waking the thread from now on (its deadline handling), but that may be
  // far away: wake it now too.
  Wake();
}

void TracerThread::RunWork(Job& job,
                           absl::FunctionRef<absl::Status(Operation&)> work,
                           const RunOptions& options, absl::Status* result) {
  if (tracee_ == nullptr) {
    *result = absl::FailedPreconditionError("not attached");
    return;
  }
  WaitControl control;
  control.cancel = &job.cancel;
  absl::Status st = tracee_->StopForOperation(control);
  if (absl::IsCancelled(st) && job.cancel.load()) {
    // It never stopped: say what it is doing instead (e.g. 'D', an
    // uninterruptible sleep such as a vfork parent waiting for its child).
    absl::StatusOr<ProcStatus> proc = ReadStatus(tid_);
    st = absl::DeadlineExceededError(absl::StrCat(
        "pid ", pid_, " (tid ", tid_, ") did not stop for the operation before "
        "its deadline; it is in state ", std::string(1, proc.ok() ? proc->state : '?'),
        "; it runs on when it wakes"));
  }
  if (st.ok()) {
    memory_->ForcePath(options.memory_path);
    Operation op(*tracee_, *memory_, pidfd_.get(), options_.seize,
                 &syscall_insn_, control);
    if (options.stop_all_threads) st = op.StopOtherThreads().status();
    if (st.ok()) st = work(op);
    if (!st.ok()) st = tracee_->ExplainFailure(st);
    absl::Status finished = op.Finish(options_.stop_grace);
    absl::Status resumed = tracee_->ResumeAfterOperation();
    memory_->ForcePath(MemoryPath::kAuto);
    if (st.ok()) st = finished;
    if (st.ok()) st = resumed;
  }
  if (absl::IsCancelled(st) && job.cancel.load()) {
    bool cancelled_all;
    {
      absl::MutexLock lock(&mu_);
      cancelled_all = caller_gone_ || job.caller_cancelled;
    }
    st = cancelled_all
             ? absl::CancelledError(absl::StrCat(
                   "the operation on pid ", pid_, " was cancelled (its caller went "
                   "away); the target was put back as it was"))
             : absl::DeadlineExceededError(absl::StrCat(
                   "the operation on pid ", pid_, " did not finish before its deadline; "
                   "it was abandoned and the target put back as it was"));
  }
  *result = st;
}

absl::Status TracerThread::Run(absl::FunctionRef<absl::Status(Operation&)> work,
                               absl::Time deadline, const RunOptions& options) {
  absl::Status result;
  Job* self = nullptr;
  auto body = [&] { RunWork(*self, work, options, &result); };
  Job job{body};
  self = &job;
  absl::Status submitted = Submit(job, deadline, options.cancelled);
  if (!submitted.ok()) return submitted;
  return result;
}

absl::Status TracerThread::Detach(absl::Time deadline) {
  absl::Status result;
  auto body = [&] {
    if (tracee_ == nullptr) return;
    WaitControl control;
    control.give_up = absl::Now() + options_.stop_grace;
    result = tracee_->Detach(control);
  };
  Job job{body};
  absl::Status submitted = Submit(job, deadline);
  if (!submitted.ok()) return submitted;
  return result;
}

absl::Status TracerThread::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

void TracerThread::Loop() {
  sigset_t wake;
  sigemptyset(&wake);
  sigaddset(&wake, TracerWakeSignal());
  pthread_sigmask(SIG_UNBLOCK, &wake, nullptr);
  thread_tid_.store(static_cast<pid_t>(syscall(SYS_gettid)),
                    std::memory_order_release);
  auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  };
  for (;;) {
    Job* job = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (tracee_ == nullptr || !tracee_->attached()) {
        mu_.Await(absl::Condition(&has_work));
      }
      if (!queue_.empty()) {
        job = queue_.front();
        queue_.pop_front();
        job->started = true;
        running_ = job;
      } else if (stopping_) {
        break;
      }
    }
    if (job != nullptr) {
      job->body();
      absl::MutexLock lock(&mu_);
      running_ = nullptr;
      job->done = true;
      if (tracee_ != nullptr) status_ = tracee_->end_status();
      continue;
    }
    // Idle: the target runs; deal with its events until woken.
    absl::Status idle = tracee_->HandleIdleEvent();
    if (!tracee_->attached()) {
      absl::MutexLock lock(&mu_);
      status_ = tracee_->end_status();
    }
    (void)idle;
  }
  if (tracee_ != nullptr && tracee_->attached()) {
    WaitControl control;
    control.give_up = absl::Now() + options_.stop_grace;
    (void)tracee_->Detach(control);
  }
  absl::Status last = tracee_ != nullptr ? tracee_->end_status()
                                         : absl::FailedPreconditionError("not attached");
  tracee_.reset();
  absl::MutexLock lock(&mu_);
  status_ = last.ok() ? absl::FailedPreconditionError(absl::StrCat(
                            "the attachment to pid ", pid_, " was closed"))
                      : last;
  finished_ = true;
}

}  // namespace procwarp::ptrace
