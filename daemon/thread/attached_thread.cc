// See attached_thread.h.
#include "daemon/thread/attached_thread.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "daemon/ptrace/fd_install.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/server/log.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// Every operation on an attached thread ends within this (the target is put
// back as it was when it runs out): a caller cannot hold a target stopped,
// nor a daemon thread, for longer.
constexpr absl::Duration kOperationTimeout = absl::Seconds(10);
// Releasing: undoing the daemon's mappings, then detaching.
constexpr absl::Duration kReleaseTimeout = absl::Seconds(2);

const char* ReasonName(ReleaseReason reason) {
  switch (reason) {
    case ReleaseReason::kExitThread:
      return "exit_thread";
    case ReleaseReason::kSessionEnd:
      return "session_end";
    case ReleaseReason::kShutdown:
      return "shutdown";
  }
  return "?";
}

absl::StatusOr<UniqueFd> OpenPidfd(pid_t pid) {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd) return pidfd;
  if (errno == ESRCH) {
    return absl::NotFoundError(absl::StrCat("AttachThread: no process ", pid));
  }
  if (errno == EINVAL) {
    return absl::NotFoundError(absl::StrCat(
        "AttachThread: ", pid,
        " is not a process id (a thread id? pass the process id as pid and "
        "the thread as tid)"));
  }
  return ErrnoStatus(errno, absl::StrCat("AttachThread: pidfd_open(", pid, ")"));
}

// The last number of the "KEY:" line of /proc/PID/task/TID/status: the id
// in the innermost pid namespace. 0 when unknown.
pid_t InnermostId(const std::string& status, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, key)) continue;
    std::vector<absl::string_view> ids =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    int id = 0;
    if (!ids.empty() && absl::SimpleAtoi(ids.back(), &id)) return id;
  }
  return 0;
}

}  // namespace

AttachedThread::AttachedThread(Handle handle, const Target& target,
                               UniqueFd pidfd, ProcDir proc)
    : Thread(std::move(handle)),
      target_(target),
      pidfd_(std::move(pidfd)),
      proc_(std::move(proc)),
      created_unix_ns_(absl::GetCurrentTimeNanos()) {}

AttachedThread::~AttachedThread() {
  // Destroying the tracer detaches (leaving the target running).
  tracer_.reset();
}

absl::StatusOr<std::shared_ptr<AttachedThread>> AttachedThread::Attach(
    Handle handle, const Target& target, absl::Time deadline) {
  if (target.pid <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AttachThread: pid ", target.pid, " is not a process id"));
  }
  if (target.tid < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AttachThread: tid ", target.tid, " is not a thread id"));
  }
  if (target.pid == getpid()) {
    return absl::FailedPreconditionError(
        "AttachThread: that is procwarpd itself");
  }
  const Identity owner = handle.owner;
  ASSIGN_OR_RETURN(UniqueFd pidfd, OpenPidfd(target.pid));
  absl::StatusOr<ProcDir> proc = ProcDir::Open(target.pid, pidfd.get());
  if (!proc.ok()) {
    return absl::Status(proc.status().code(),
                        absl::StrCat("AttachThread: ", proc.status().message()));
  }
  const std::string what = absl::StrCat("pid ", target.pid);
  // The kernel's ptrace rule for the caller's uid (dumpable included), now.
  RETURN_IF_ERROR(CheckCallerMayPtrace(owner, *proc, what));
  if (target.tid != 0 && !ptrace::IsThreadOf(target.pid, target.tid)) {
    return absl::NotFoundError(absl::StrCat("AttachThread: ", target.tid,
                                            " is not a thread of pid ",
                                            target.pid));
  }
  UniqueFd tracer_pidfd(fcntl(pidfd.get(), F_DUPFD_CLOEXEC, 0));
  if (!tracer_pidfd) return ErrnoStatus(errno, "AttachThread: dup(pidfd)");
  std::shared_ptr<AttachedThread> thread(new AttachedThread(
      std::move(handle), target, std::move(pidfd), *std::move(proc)));
  absl::StatusOr<std::unique_ptr<ptrace::TracerThread>> tracer =
      ptrace::TracerThread::Attach(std::move(tracer_pidfd), target.pid,
                                   {.tid = target.tid}, deadline);
  if (!tracer.ok()) {
    return absl::Status(tracer.status().code(),
                        absl::StrCat("AttachThread: ", tracer.status().message()));
  }
  thread->tracer_ = *std::move(tracer);
  // Authority at use: an execve (of a setuid program, say) between the check
  // and the seize shows here; one after it ends the attachment.
  absl::Status again = CheckCallerMayPtrace(owner, thread->proc_, what);
  if (!again.ok()) {
    thread->Release(ReleaseReason::kExitThread);
    return again;
  }
  thread->exe_ = ptrace::ExePath(target.pid);
  absl::StatusOr<std::string> status = ptrace::ReadProcFile(
      absl::StrCat("/proc/", target.pid, "/task/", thread->tracer_->tid(),
                   "/status"));
  if (status.ok()) {
    thread->namespace_pid_ = InnermostId(*status, "NStgid:");
    thread->namespace_tid_ = InnermostId(*status, "NSpid:");
  }
  return thread;
}

std::string AttachedThread::Name() const {
  return absl::StrCat("thread ", id(), " (attached to pid ", target_.pid,
                      tracer_ != nullptr && tracer_->tid() != target_.pid
                          ? absl::StrCat(" tid ", tracer_->tid())
                          : "",
                      ")");
}

void AttachedThread::NoteEnded(const absl::Status& why) {
  {
    absl::MutexLock lock(&mu_);
    if (!ended_.ok()) return;
    ended_ = absl::Status(
        absl::IsNotFound(why) ? absl::StatusCode::kNotFound
                              : absl::StatusCode::kFailedPrecondition,
        absl::StrCat(Name(), ": the attachment ended (", why.message(),
                     "); procwarp no longer acts on this process for you; "
                     "release the handle with ExitThread"));
  }
  Audit("thread_attach_ended", owner(),
        {{"THREAD_ID", id()},
         {"TARGET_PID", absl::StrCat(target_.pid)},
         {"REASON", std::string(why.message())}});
}

absl::Status AttachedThread::CheckAttached() {
  {
    absl::MutexLock lock(&mu_);
    if (released_) {
      return absl::FailedPreconditionError(
          absl::StrCat(Name(), " has been released (detached)"));
    }
    if (!ended_.ok()) return ended_;
  }
  absl::Status end = tracer_->status();
  if (end.ok()) return absl::OkStatus();
  NoteEnded(end);
  absl::MutexLock lock(&mu_);
  return ended_;
}

absl::Status AttachedThread::Run(
    const Identity& caller,
    absl::FunctionRef<absl::Status(ptrace::Operation&)> work,
    const OperationOptions& options) {
  return Operate(caller, work, absl::Now() + kOperationTimeout, options);
}

absl::Status AttachedThread::Operate(
    const Identity& caller,
    absl::FunctionRef<absl::Status(ptrace::Operation&)> work,
    absl::Time deadline, const OperationOptions& options) {
  RETURN_IF_ERROR(CheckAttached());
  absl::Status result = tracer_->Run(
      [&](ptrace::Operation& op) -> absl::Status {
        // Authority at use, checked with the target stopped.
        RETURN_IF_ERROR(CheckCallerMayPtrace(caller, proc_, Name()));
        return work(op);
      },
      deadline,
      {.stop_all_threads = options.stop_all_threads || target_.stop_all_threads,
       .cancelled = options.cancelled});
  if (!result.ok() && !tracer_->status().ok()) return CheckAttached();
  return result;
}

absl::Status AttachedThread::Syscalls(const Identity& caller,
                                      absl::Span<const ThreadSyscall> calls,
                                      std::vector<ThreadSyscallResult>* results,
                                      const OperationOptions& options) {
  std::vector<ptrace::SyscallRequest> requests(calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    requests[i].nr = calls[i].nr;
    requests[i].args = calls[i].args;
  }
  std::vector<ptrace::SyscallResult> raw;
  absl::Status run = Run(
      caller,
      [&](ptrace::Operation& op) { return op.Syscalls(requests, &raw); },
      options);
  // The daemon changed a process it did not start: every batch is audited.
  Audit("thread_syscalls", caller,
        {{"THREAD_ID", id()},
         {"TARGET_PID", absl::StrCat(target_.pid)},
         {"COUNT", absl::StrCat(calls.size())},
         {"FIRST_NR", calls.empty() ? "" : absl::StrCat(calls[0].nr)},
         {"RESULT", run.ok() ? "ok" : std::string(run.message())}});
  RETURN_IF_ERROR(run);
  results->resize(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    (*results)[i].seccomp_refused = raw[i].seccomp_refused;
    (*results)[i].value = raw[i].seccomp_refused ? -ENOSYS : raw[i].value;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> AttachedThread::Map(const Identity& caller,
                                             uint64_t size, int prot,
                                             absl::string_view what) {
  ASSIGN_OR_RETURN(uint64_t address, Thread::Map(caller, size, prot, what));
  absl::MutexLock lock(&mu_);
  mappings_[address] = size;
  return address;
}

absl::Status AttachedThread::Unmap(const Identity& caller, uint64_t address,
                                   uint64_t size) {
  RETURN_IF_ERROR(Thread::Unmap(caller, address, size));
  absl::MutexLock lock(&mu_);
  auto it = mappings_.find(address);
  if (it != mappings_.end() && it->second == size) mappings_.erase(it);
  return absl::OkStatus();
}

absl::Status AttachedThread::ReadMemory(const Identity& caller,
                                        uint64_t address, char* out,
                                        size_t length) {
  if (length == 0) return absl::OkStatus();
  absl::Status read = Run(caller, [&](ptrace::Operation& op) {
    return op.memory().Read(
        address, absl::MakeSpan(reinterpret_cast<uint8_t*>(out), length));
  });
  if (absl::IsOutOfRange(read)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read ", length, " bytes at 0x", absl::Hex(address), " of ",
        Name(), ": the range is not (or no longer) mapped readable"));
  }
  return read;
}

absl::Status AttachedThread::WriteMemory(const Identity& caller,
                                         uint64_t address,
                                         absl::string_view data) {
  if (data.empty()) return absl::OkStatus();
  absl::Status wrote = Run(caller, [&](ptrace::Operation& op) {
    return op.memory().Write(
        address, absl::MakeConstSpan(
                     reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  });
  if (absl::IsOutOfRange(wrote)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot write ", data.size(), " bytes at 0x", absl::Hex(address),
        " of ", Name(), ": the range is not (or no longer) mapped writable"));
  }
  return wrote;
}

absl::StatusOr<int64_t> AttachedThread::InstallFd(const Identity& caller,
                                                  int fd, int target_fd,
                                                  bool cloexec,
                                                  const CancelCheck& cancelled) {
  int64_t installed = 0;
  absl::Status run = Run(
      caller,
      [&](ptrace::Operation& op) -> absl::Status {
        ASSIGN_OR_RETURN(installed, ptrace::InstallFd(op, pidfd_.get(), fd,
                                                      target_fd, cloexec));
        return absl::OkStatus();
      },
      {.cancelled = cancelled ? &cancelled : nullptr});
  Audit("thread_install_fd", caller,
        {{"THREAD_ID", id()},
         {"TARGET_PID", absl::StrCat(target_.pid)},
         {"FD", absl::StrCat(installed)},
         {"RESULT", run.ok() ? "ok" : std::string(run.message())}});
  RETURN_IF_ERROR(run);
  return installed;
}

absl::Status AttachedThread::ActOnProcess(
    const Identity& caller,
    const std::function<absl::Status(const ProcDir&)>& op) {
  RETURN_IF_ERROR(CheckAttached());
  absl::Status result = op(proc_);
  // Judged after the act (see AgentThread::ActOnProcess): a credential
  // change before it shows here, an exec meanwhile ended the attachment.
  RETURN_IF_ERROR(CheckCallerMayPtrace(caller, proc_, Name()));
  RETURN_IF_ERROR(CheckAttached());
  return result;
}

absl::Status AttachedThread::CheckAlive(absl::Duration) {
  return CheckAttached();
}

procwarp::v1::ThreadInfo AttachedThread::Info() {
  procwarp::v1::ThreadInfo info;
  info.set_id(id());
  info.set_kind(procwarp::v1::THREAD_KIND_ATTACHED);
  info.set_pid(target_.pid);
  info.set_namespace_pid(namespace_pid_);
  info.set_tid(tracer_->tid());
  info.set_namespace_tid(namespace_tid_);
  info.set_exe(exe_);
  info.set_uid(owner().uid);
  info.set_gid(owner().gid);
  *info.mutable_owner() = owner().ToProto();
  info.set_persistent(persistent());
  info.set_created_unix_ns(created_unix_ns_);
  info.mutable_labels()->insert(target_.labels.begin(), target_.labels.end());
  absl::Status attached = CheckAttached();
  if (attached.ok()) {
    info.set_state(procwarp::v1::THREAD_STATE_RUNNING);
  } else {
    info.set_state(procwarp::v1::THREAD_STATE_DETACHED);
    info.set_detach_reason(std::string(attached.message()));
  }
  return info;
}

bool AttachedThread::Release(ReleaseReason reason, int) {
  std::map<uint64_t, uint64_t> mappings;
  {
    absl::MutexLock lock(&mu_);
    if (released_) return true;
    released_ = true;
    mappings.swap(mappings_);
  }
  // The caller went away (or the daemon is stopping): its operations in
  // flight end now, the target put back as it was.
  if (reason != ReleaseReason::kExitThread) tracer_->CancelWork();
  const absl::Time deadline = absl::Now() + kReleaseTimeout;
  absl::Status unmapped;
  if (!mappings.empty() && tracer_->status().ok()) {
    // Owed to the target whoever asks: no authority check.
    unmapped = tracer_->Run(
        [&](ptrace::Operation& op) -> absl::Status {
          for (const auto& [address, size] : mappings) {
            RETURN_IF_ERROR(op.Syscall(SYS_munmap, {address, size}).status());
          }
          return absl::OkStatus();
        },
        deadline);
  }
  absl::Status detached =
      tracer_->status().ok() ? tracer_->Detach(deadline) : absl::OkStatus();
  Audit("thread_detach", owner(),
        {{"THREAD_ID", id()},
         {"TARGET_PID", absl::StrCat(target_.pid)},
         {"REASON", ReasonName(reason)},
         {"MAPPINGS_REMOVED", unmapped.ok() ? absl::StrCat(mappings.size())
                                            : std::string(unmapped.message())},
         {"RESULT", detached.ok() ? "ok" : std::string(detached.message())}});
  // A detach that could not complete (the target did not stop in time) is
  // finished by the tracer thread when the handle is destroyed: nothing is
  // left for the table to keep.
  return true;
}

bool AttachedThread::Gone() {
  absl::MutexLock lock(&mu_);
  return released_;
}

}  // namespace procwarp
