// See thread.h. The operations every backend shares, built on its own.
#include "daemon/thread/thread.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {

ThreadSyscall ThreadSyscall::Of(int64_t nr,
                                std::initializer_list<uint64_t> args) {
  ThreadSyscall call;
  call.nr = nr;
  size_t i = 0;
  for (uint64_t arg : args) {
    if (i < call.args.size()) call.args[i++] = arg;
  }
  return call;
}

procwarp::v1::SyscallResult ToSyscallResult(const ThreadSyscallResult& raw) {
  procwarp::v1::SyscallResult result;
  if (IsSyscallError(raw.value)) {
    result.set_value(-1);
    result.set_error(static_cast<int32_t>(-raw.value));
    result.set_error_name(std::string(ErrnoName(static_cast<int>(-raw.value))));
  } else {
    result.set_value(raw.value);
  }
  result.set_seccomp_refused(raw.seccomp_refused);
  return result;
}

absl::StatusOr<int64_t> Thread::CheckedSyscall(const Identity& caller,
                                               const ThreadSyscall& call,
                                               absl::string_view what,
                                               const OperationOptions& options) {
  std::vector<ThreadSyscallResult> results;
  RETURN_IF_ERROR(ExplainError(
      Syscalls(caller, absl::MakeConstSpan(&call, 1), &results, options)));
  const ThreadSyscallResult& r = results[0];
  if (r.seccomp_refused) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, " in ", Name(), ": the process's seccomp filter refused syscall ",
        call.nr, " (SIGSYS; the process did not see it)"));
  }
  if (IsSyscallError(r.value)) {
    return ErrnoStatus(static_cast<int>(-r.value),
                       absl::StrCat(what, " in ", Name()));
  }
  return r.value;
}

absl::StatusOr<uint64_t> Thread::Map(const Identity& caller, uint64_t size,
                                     int prot, absl::string_view what) {
  ASSIGN_OR_RETURN(
      int64_t address,
      CheckedSyscall(caller,
                     ThreadSyscall::Of(SYS_mmap,
                                       {0, size, static_cast<uint64_t>(prot),
                                        MAP_PRIVATE | MAP_ANONYMOUS,
                                        static_cast<uint64_t>(-1), 0}),
                     absl::StrCat(what, ": mmap(", size, " bytes)")));
  return static_cast<uint64_t>(address);
}

absl::Status Thread::Unmap(const Identity& caller, uint64_t address,
                           uint64_t size) {
  std::vector<ThreadSyscallResult> results;
  const ThreadSyscall call = ThreadSyscall::Of(SYS_munmap, {address, size});
  absl::Status run = Syscalls(caller, absl::MakeConstSpan(&call, 1), &results);
  if (!run.ok()) {
    // A dead thread's memory is gone with it: unmapping it is done.
    if (!CheckAlive().ok()) return absl::OkStatus();
    return run;
  }
  if (IsSyscallError(results[0].value)) {
    return ErrnoStatus(static_cast<int>(-results[0].value),
                       absl::StrCat("munmap(0x", absl::Hex(address), ", ", size,
                                    ") in ", Name()));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Thread::ScratchPage(const Identity& caller) {
  {
    absl::MutexLock lock(&scratch_mu_);
    if (scratch_ != 0) return scratch_;
  }
  ASSIGN_OR_RETURN(uint64_t page, Map(caller, 4096, PROT_READ | PROT_WRITE,
                                      "scratch page"));
  absl::MutexLock lock(&scratch_mu_);
  // Two first uses may race: keep one page; the other stays mapped unused
  // (a page, for the thread's lifetime; an attached thread unmaps both).
  if (scratch_ == 0) scratch_ = page;
  return scratch_;
}

absl::StatusOr<UniqueFd> Thread::FetchFd(const Identity& caller, int fd,
                                         absl::string_view call) {
  UniqueFd copy;
  RETURN_IF_ERROR(ActOnProcess(caller, [&](const ProcDir&) {
    copy.Reset(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd(), fd, 0)));
    if (!copy) {
      return ErrnoStatus(errno, absl::StrCat(call, ": pidfd_getfd(", Name(),
                                             ", fd=", fd, ")"));
    }
    return absl::OkStatus();
  }));
  return copy;
}

absl::Status Thread::ExplainError(absl::Status status) {
  if (absl::IsUnavailable(status)) {
    absl::Status alive = CheckAlive(absl::Seconds(1));
    if (!alive.ok()) return alive;
  }
  return status;
}

}  // namespace procwarp
