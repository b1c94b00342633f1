// See exec_target.h.
#include "daemon/exec/exec_target.h"

#include <fcntl.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "daemon/exec/exec_requests.h"
#include "daemon/exec/transient_attach.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp::exec {
namespace {

namespace pb = procwarp::exec::v1;

// The attached thread `id` of `caller`; NOT_FOUND as ThreadTable::Find.
absl::StatusOr<std::shared_ptr<AttachedThread>> FindAttached(
    absl::string_view id, const Identity& caller, const ThreadTable* threads) {
  if (threads == nullptr) {
    return absl::NotFoundError(absl::StrCat("no thread ", id));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Thread> thread, threads->Find(id, caller));
  if (thread->kind() != Thread::Kind::kAttached) {
    return absl::FailedPreconditionError(absl::StrCat(
        thread->Name(), " is an agent thread (procwarpd's own child running "
        "procwarp-agent): Exec acts on attached threads "
        "(Threads.AttachThread) or on a pid"));
  }
  return std::static_pointer_cast<AttachedThread>(std::move(thread));
}

}  // namespace

ExecTarget::ExecTarget(std::shared_ptr<AttachedThread> thread)
    : pid_(thread->pid()), thread_(std::move(thread)), thread_id_(thread_->id()) {}

absl::StatusOr<ExecTarget> ExecTarget::Resolve(const pb::Target& target,
                                               const Identity& caller,
                                               const ThreadTable* threads) {
  RETURN_IF_ERROR(CheckTarget(target));
  switch (target.target_case()) {
    case pb::Target::kPid: {
      const pid_t pid = static_cast<pid_t>(target.pid());
      ASSIGN_OR_RETURN(UniqueFd pidfd, OpenPidfd(pid));
      return ExecTarget(pid, std::move(pidfd));
    }
    case pb::Target::kThreadId: {
      ASSIGN_OR_RETURN(std::shared_ptr<AttachedThread> thread,
                       FindAttached(target.thread_id(), caller, threads));
      return ExecTarget(std::move(thread));
    }
    default:
      return absl::InvalidArgumentError("target: set pid or thread_id");
  }
}

absl::StatusOr<ExecTarget> ExecTarget::ForProcess(pid_t pid, int pidfd,
                                                  absl::string_view thread_id,
                                                  const Identity& caller,
                                                  const ThreadTable* threads) {
  if (!thread_id.empty()) {
    absl::StatusOr<std::shared_ptr<AttachedThread>> thread =
        FindAttached(thread_id, caller, threads);
    if (thread.ok() && (*thread)->pid() == pid && (*thread)->CheckAlive().ok()) {
      return ExecTarget(*std::move(thread));
    }
  }
  UniqueFd copy(fcntl(pidfd, F_DUPFD_CLOEXEC, 0));
  if (!copy) return ErrnoStatus(errno, "dup(pidfd)");
  return ExecTarget(pid, std::move(copy));
}

absl::StatusOr<UniqueFd> ExecTarget::DupPidfd() const {
  const int fd = thread_ != nullptr ? thread_->pidfd() : pidfd_.get();
  UniqueFd copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) return ErrnoStatus(errno, "dup(pidfd)");
  return copy;
}

absl::Status ExecTarget::Run(
    const Identity& caller, absl::Time deadline,
    const std::function<bool()>& cancelled,
    absl::FunctionRef<absl::Status(ptrace::Operation&)> work) const {
  if (thread_ != nullptr) {
    // The handle's own tracer thread; Operate checks the rule, stopped.
    return thread_->ExplainError(
        thread_->Operate(caller, work, deadline, {.cancelled = &cancelled}));
  }
  ASSIGN_OR_RETURN(UniqueFd pidfd, DupPidfd());
  return RunAttached(caller, pid_, std::move(pidfd), deadline, cancelled, work);
}

}  // namespace procwarp::exec
