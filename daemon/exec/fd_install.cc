// See fd_install.h.
#include "daemon/exec/fd_install.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd_passing.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::exec {
namespace {

constexpr uint64_t kPage = 4096;
// Layout of the scratch page in the target.
constexpr uint64_t kPairAt = 0;       // int[2] from socketpair
constexpr uint64_t kMsgAt = 64;       // struct msghdr
constexpr uint64_t kIovAt = 128;      // struct iovec
constexpr uint64_t kByteAt = 160;     // the one data byte
constexpr uint64_t kControlAt = 192;  // cmsg buffer

// One injected syscall whose failure (or seccomp refusal) is an error naming
// `what`.
absl::StatusOr<int64_t> Checked(ptrace::Operation& op, long nr,
                                std::initializer_list<uint64_t> args,
                                absl::string_view what) {
  ASSIGN_OR_RETURN(ptrace::SyscallResult r, op.Syscall(nr, args));
  if (r.seccomp_refused) {
    return absl::FailedPreconditionError(absl::StrCat(
        "seccomp in pid ", op.pid(), " refused the injected ", what,
        " (its filter traps it)"));
  }
  if (r.value < 0) {
    return absl::Status(
        ErrnoToCode(static_cast<int>(-r.value)),
        absl::StrCat("injected ", what, " in pid ", op.pid(), " failed: ",
                     ErrnoName(static_cast<int>(-r.value))));
  }
  return r.value;
}

template <typename T>
absl::Status WriteAt(ptrace::Operation& op, uint64_t address, const T& value) {
  return op.memory().Write(
      address, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&value),
                                   sizeof(value)));
}

template <typename T>
absl::Status ReadAt(ptrace::Operation& op, uint64_t address, T* value) {
  return op.memory().Read(
      address, absl::MakeSpan(reinterpret_cast<uint8_t*>(value), sizeof(*value)));
}

// The socketpair, send and receive, given the scratch page; `pair` gets the
// target's socket fds as soon as they exist so the caller can close them.
absl::StatusOr<int> PassThroughSocket(ptrace::Operation& op, int pidfd, int fd,
                                      uint64_t scratch, int pair[2]) {
  RETURN_IF_ERROR(Checked(op, SYS_socketpair,
                          {AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0,
                           scratch + kPairAt},
                          "socketpair")
                      .status());
  int created[2];
  RETURN_IF_ERROR(ReadAt(op, scratch + kPairAt, &created));
  pair[0] = created[0];
  pair[1] = created[1];
  UniqueFd sender(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, pair[0], 0)));
  if (!sender) {
    return ErrnoStatus(errno, absl::StrCat("pidfd_getfd(pid ", op.pid(),
                                           ", fd ", pair[0], ")"));
  }
  const char byte = 'L';
  if (SendWithFd(sender.get(), &byte, 1, fd) != 1) {
    return ErrnoStatus(errno, "sendmsg of the fd to the target");
  }
  msghdr msg{};
  msg.msg_iov = reinterpret_cast<iovec*>(scratch + kIovAt);
  msg.msg_iovlen = 1;
  msg.msg_control = reinterpret_cast<void*>(scratch + kControlAt);
  msg.msg_controllen = CMSG_SPACE(sizeof(int));
  iovec iov = {reinterpret_cast<void*>(scratch + kByteAt), 1};
  RETURN_IF_ERROR(WriteAt(op, scratch + kMsgAt, msg));
  RETURN_IF_ERROR(WriteAt(op, scratch + kIovAt, iov));
  RETURN_IF_ERROR(Checked(op, SYS_recvmsg,
                          {static_cast<uint64_t>(pair[1]), scratch + kMsgAt,
                           MSG_CMSG_CLOEXEC | MSG_DONTWAIT},
                          "recvmsg")
                      .status());
  // What the kernel wrote: the msghdr's flags and the control message.
  msghdr got{};
  RETURN_IF_ERROR(ReadAt(op, scratch + kMsgAt, &got));
  alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(int))];
  RETURN_IF_ERROR(op.memory().Read(scratch + kControlAt, absl::MakeSpan(control)));
  const cmsghdr* c = reinterpret_cast<const cmsghdr*>(control);
  if ((got.msg_flags & MSG_CTRUNC) || got.msg_controllen < CMSG_LEN(sizeof(int)) ||
      c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", op.pid(), " could not take the fd (its RLIMIT_NOFILE is "
        "reached?)"));
  }
  int installed;
  memcpy(&installed, CMSG_DATA(c), sizeof(installed));
  return installed;
}

}  // namespace

absl::StatusOr<int> InstallFd(ptrace::Operation& op, int pidfd, int fd) {
  ASSIGN_OR_RETURN(int64_t page,
                   Checked(op, SYS_mmap,
                           {0, kPage, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS,
                            static_cast<uint64_t>(-1), 0},
                           "mmap"));
  int pair[2] = {-1, -1};
  absl::StatusOr<int> installed =
      PassThroughSocket(op, pidfd, fd, static_cast<uint64_t>(page), pair);
  // Whatever happened, the target keeps none of our scaffolding.
  for (int end : pair) {
    if (end >= 0) (void)op.Syscall(SYS_close, {static_cast<uint64_t>(end)});
  }
  absl::Status unmapped =
      Checked(op, SYS_munmap, {static_cast<uint64_t>(page), kPage}, "munmap")
          .status();
  if (!installed.ok()) return installed.status();
  if (!unmapped.ok()) {
    (void)CloseTargetFd(op, *installed);
    return unmapped;
  }
  return installed;
}

absl::Status CloseTargetFd(ptrace::Operation& op, int fd) {
  return Checked(op, SYS_close, {static_cast<uint64_t>(fd)},
                 absl::StrCat("close(", fd, ")"))
      .status();
}

}  // namespace procwarp::exec
