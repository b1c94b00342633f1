// See fd_install.h.
#include "daemon/ptrace/fd_install.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/fd_passing.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"
#include "daemon/util/unique_fd.h"

namespace procwarp::ptrace {
namespace {

constexpr uint64_t kPage = 4096;
// Where things go in the scratch page.
constexpr uint64_t kPairAt = 0;       // int[2] from socketpair
constexpr uint64_t kHeaderAt = 64;    // struct msghdr
constexpr uint64_t kIovAt = 192;      // struct iovec
constexpr uint64_t kByteAt = 256;     // the one data byte
constexpr uint64_t kControlAt = 512;  // the control buffer
constexpr size_t kControlSize = CMSG_SPACE(sizeof(int));

// The raw result of one syscall, a seccomp refusal as -ENOSYS.
absl::StatusOr<int64_t> Inject(Operation& op, long nr,
                               std::initializer_list<uint64_t> args) {
  ASSIGN_OR_RETURN(SyscallResult r, op.Syscall(nr, args));
  return r.seccomp_refused ? -ENOSYS : r.value;
}

bool Failed(int64_t raw) { return raw < 0 && raw >= -4095; }

// Undoes what was made in the target so far, whatever happens.
class Undo {
 public:
  explicit Undo(Operation& op) : op_(op) {}
  ~Undo() {
    for (int fd : fds_) (void)op_.Syscall(SYS_close, {static_cast<uint64_t>(fd)});
    if (page_ != 0) (void)op_.Syscall(SYS_munmap, {page_, kPage});
  }
  void Page(uint64_t page) { page_ = page; }
  void Fd(int fd) { fds_.push_back(fd); }

 private:
  Operation& op_;
  uint64_t page_ = 0;
  std::vector<int> fds_;
};

}  // namespace

absl::StatusOr<int64_t> InstallFd(Operation& op, int pidfd, int fd,
                                  int target_fd, bool cloexec) {
  Undo undo(op);
  ASSIGN_OR_RETURN(int64_t page,
                   Inject(op, SYS_mmap,
                          {0, kPage, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS,
                           static_cast<uint64_t>(-1), 0}));
  if (Failed(page)) return page;
  undo.Page(static_cast<uint64_t>(page));
  const uint64_t base = static_cast<uint64_t>(page);

  ASSIGN_OR_RETURN(int64_t paired,
                   Inject(op, SYS_socketpair,
                          {AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, base + kPairAt}));
  if (Failed(paired)) return paired;
  int pair[2];
  RETURN_IF_ERROR(op.memory().Read(
      base + kPairAt, absl::MakeSpan(reinterpret_cast<uint8_t*>(pair), sizeof(pair))));
  undo.Fd(pair[0]);
  undo.Fd(pair[1]);

  // Our end of the pair, pulled out of the target.
  UniqueFd ours(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, pair[0], 0)));
  if (!ours) {
    return ErrnoStatus(errno, absl::StrCat("pidfd_getfd(pid ", op.pid(),
                                           ", fd=", pair[0], ")"));
  }
  const char byte = 0;
  if (SendWithFd(ours.get(), &byte, 1, fd) != 1) {
    return ErrnoStatus(errno, absl::StrCat("sendmsg(SCM_RIGHTS) to pid ",
                                           op.pid(), " fd ", pair[0]));
  }
  ours.Reset();

  // recvmsg's arguments, laid out with the target's addresses.
  std::vector<uint8_t> args(kControlAt - kHeaderAt, 0);
  msghdr header{};
  header.msg_iov = reinterpret_cast<iovec*>(base + kIovAt);
  header.msg_iovlen = 1;
  header.msg_control = reinterpret_cast<void*>(base + kControlAt);
  header.msg_controllen = kControlSize;
  iovec iov{reinterpret_cast<void*>(base + kByteAt), 1};
  memcpy(args.data(), &header, sizeof(header));
  memcpy(args.data() + (kIovAt - kHeaderAt), &iov, sizeof(iov));
  RETURN_IF_ERROR(op.memory().Write(base + kHeaderAt, args));
  ASSIGN_OR_RETURN(
      int64_t received,
      Inject(op, SYS_recvmsg,
             {static_cast<uint64_t>(pair[1]), base + kHeaderAt,
              static_cast<uint64_t>(MSG_DONTWAIT |
                                    (cloexec ? MSG_CMSG_CLOEXEC : 0))}));
  if (Failed(received)) return received;
  uint8_t control[kControlSize];
  RETURN_IF_ERROR(op.memory().Read(base + kControlAt, absl::MakeSpan(control)));
  cmsghdr cmsg;
  memcpy(&cmsg, control, sizeof(cmsg));
  if (cmsg.cmsg_level != SOL_SOCKET || cmsg.cmsg_type != SCM_RIGHTS ||
      cmsg.cmsg_len != CMSG_LEN(sizeof(int))) {
    return absl::InternalError(absl::StrCat(
        "pid ", op.pid(), " received no fd on the daemon's socketpair"));
  }
  int installed;
  memcpy(&installed, control + (CMSG_DATA(reinterpret_cast<cmsghdr*>(control)) -
                                control),
         sizeof(installed));
  if (installed < 0) {
    return absl::InternalError(absl::StrCat("pid ", op.pid(),
                                            " reported fd ", installed));
  }
  if (target_fd >= 0 && installed != target_fd) {
    undo.Fd(installed);  // closed in every case now
    ASSIGN_OR_RETURN(int64_t moved,
                     Inject(op, SYS_dup3,
                            {static_cast<uint64_t>(installed),
                             static_cast<uint64_t>(target_fd),
                             static_cast<uint64_t>(cloexec ? O_CLOEXEC : 0)}));
    if (Failed(moved)) return moved;
    installed = target_fd;
  }
  return installed;
}

}  // namespace procwarp::ptrace
