// See caller_file.h.
#include "daemon/exec/caller_file.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd_passing.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp::exec {
namespace {

// What the child reports besides the fd: 0, an errno, or kNotRegular.
constexpr int kNotRegular = -1;
// How often a waiting handler looks at its call's cancellation.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(20);

// The child: raw system calls only (it is a copy of a multithreaded
// process), then _exit. Never returns.
[[noreturn]] void OpenInChild(int socket, const Identity& caller,
                              const gid_t* groups, size_t group_count,
                              int root, const char* path) {
  int result = 0;
  int fd = -1;
  // Before the uid change: a dumpable child would let the caller read the
  // daemon's memory copy in it.
  if (syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 ||
      (caller.uid != 0 &&
       (syscall(SYS_setgroups, group_count, groups) != 0 ||
        syscall(SYS_setresgid, caller.gid, caller.gid, caller.gid) != 0 ||
        syscall(SYS_setresuid, caller.uid, caller.uid, caller.uid) != 0))) {
    result = errno;
  } else {
    // The caller's view: `path` resolved with `root` as "/" (openat2 with
    // RESOLVE_IN_ROOT treats the absolute path as relative to it).
    struct open_how how = {};
    how.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
    how.resolve = RESOLVE_IN_ROOT;
    fd = static_cast<int>(syscall(SYS_openat2, root, path, &how, sizeof(how)));
    struct stat st;
    if (fd < 0) {
      result = errno;
    } else if (syscall(SYS_fstat, fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      result = kNotRegular;
    }
  }
  SendWithFd(socket, &result, sizeof(result), result == 0 ? fd : -1);
  syscall(SYS_exit_group, 0);
  __builtin_unreachable();
}

// Waits for one message from the child, bounded.
absl::Status AwaitReply(int socket, absl::Time deadline,
                        absl::FunctionRef<bool()> cancelled) {
  for (;;) {
    if (cancelled()) return absl::CancelledError("the call was cancelled");
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          "opening the library as the caller did not finish before the "
          "call's deadline");
    }
    pollfd p = {socket, POLLIN, 0};
    int ms = static_cast<int>(
        absl::ToInt64Milliseconds(std::min(left, kCancelPoll)) + 1);
    int n = poll(&p, 1, ms);
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR) return ErrnoStatus(errno, "poll");
  }
}

}  // namespace

absl::StatusOr<UniqueFd> OpenCallerRoot(const Identity& caller) {
  if (caller.remote() || caller.pid <= 0) {
    UniqueFd root(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) return ErrnoStatus(errno, "open(/)");
    return root;
  }
  auto gone = [&] {
    return absl::FailedPreconditionError(absl::StrCat(
        "the calling process (pid ", caller.pid, ") is gone; paths are "
        "resolved in its root directory"));
  };
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, caller.pid, 0)));
  if (!pidfd) {
    if (errno == ESRCH) return gone();
    return ErrnoStatus(errno, absl::StrCat("pidfd_open(", caller.pid, ")"));
  }
  UniqueFd root(open(absl::StrCat("/proc/", caller.pid, "/root").c_str(),
                     O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    if (errno == ENOENT || errno == ESRCH) return gone();
    return ErrnoStatus(errno, absl::StrCat("open(/proc/", caller.pid, "/root)"));
  }
  // Still alive: the pid was not reused while its root was opened.
  if (syscall(SYS_pidfd_send_signal, pidfd.get(), 0, nullptr, 0) != 0) return gone();
  return root;
}

absl::StatusOr<UniqueFd> OpenFileAsCaller(const Identity& caller,
                                          const std::string& path,
                                          absl::Time deadline,
                                          absl::FunctionRef<bool()> cancelled) {
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("library path must be absolute (got \"", path, "\")"));
  }
  ASSIGN_OR_RETURN(UniqueFd root, OpenCallerRoot(caller));
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return ErrnoStatus(errno, "socketpair");
  }
  UniqueFd ours(pair[0]), theirs(pair[1]);
  // Everything the child reads is prepared before it exists.
  const std::vector<gid_t> groups = caller.groups;
  int pidfd = -1;
  // A plain fork without the atfork handlers of a multithreaded process.
  long child = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pidfd, 0, 0);
  if (child < 0) return ErrnoStatus(errno, "clone (open as caller)");
  if (child == 0) {
    OpenInChild(theirs.get(), caller, groups.data(), groups.size(), root.get(),
                path.c_str());
  }
  UniqueFd child_pidfd(pidfd);
  theirs.Reset();
  absl::Status waited = AwaitReply(ours.get(), deadline, cancelled);
  int result = 0;
  int fd = -1;
  if (waited.ok()) {
    ssize_t n = ReceiveWithFd(ours.get(), &result, sizeof(result), &fd);
    if (n != static_cast<ssize_t>(sizeof(result))) {
      if (fd >= 0) close(fd);
      fd = -1;
      waited = absl::InternalError(
          "the child opening the library as the caller died without an answer");
    }
  }
  UniqueFd opened(fd);
  // Done with it either way; a child still blocked in open() is killed first.
  if (!waited.ok()) syscall(SYS_pidfd_send_signal, child_pidfd.get(), SIGKILL, nullptr, 0);
  siginfo_t info;
  while (waitid(static_cast<idtype_t>(P_PIDFD), child_pidfd.get(), &info,
                WEXITED) != 0 &&
         errno == EINTR) {
  }
  if (!waited.ok()) return waited;
  if (result == kNotRegular) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  }
  if (result != 0) {
    return ErrnoStatus(result,
                       absl::StrCat("open(", path, ") as uid ", caller.uid,
                                    " (the library is opened with your "
                                    "credentials: you must be able to read it)"));
  }
  if (!opened) return absl::InternalError("no fd from the child");
  return opened;
}

}  // namespace procwarp::exec
