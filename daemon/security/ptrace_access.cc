// See ptrace_access.h.
#include "daemon/security/ptrace_access.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// The kernel allows 32 nested user namespaces.
constexpr int kMaxUserNamespaceDepth = 33;

constexpr char kRule[] =
    "procwarp acts on a process for you only where the kernel would let you "
    "ptrace it yourself (the same real, effective and saved uid and gid as "
    "yours, dumpable, and no capabilities outside a user namespace you own)";

absl::Status Exited(absl::string_view what) {
  return absl::NotFoundError(absl::StrCat(what, " has exited"));
}

// An error of a /proc access: the process being gone is NOT_FOUND.
absl::Status ProcError(int error, absl::string_view call,
                       absl::string_view what) {
  if (error == ENOENT || error == ESRCH) return Exited(what);
  return ErrnoStatus(error, call);
}

struct FileText {
  std::string text;
  struct stat st {};
};

// Reads all of /proc/PID/`name` through `dir`, with the file's stat taken
// right after the open (the open revalidates the /proc inode, so its owner is
// computed then).
absl::StatusOr<FileText> ReadProcFile(const ProcDir& dir, const char* name) {
  const std::string what = absl::StrCat("process ", dir.pid());
  UniqueFd fd(openat(dir.fd(), name, O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return ProcError(
        errno, absl::StrCat("open(/proc/", dir.pid(), "/", name, ")"), what);
  }
  FileText out;
  if (fstat(fd.get(), &out.st) != 0) {
    return ErrnoStatus(errno,
                       absl::StrCat("fstat(/proc/", dir.pid(), "/", name, ")"));
  }
  char buffer[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return ProcError(
          errno, absl::StrCat("read(/proc/", dir.pid(), "/", name, ")"), what);
    }
    if (n == 0) break;
    out.text.append(buffer, n);
  }
  return out;
}

// "Uid:\t1\t2\t3\t4": the first three numbers (real, effective, saved).
bool ParseIds(absl::string_view value, uint32_t out[3]) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(value, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() < 3) return false;
  for (int i = 0; i < 3; ++i) {
    if (!absl::SimpleAtoi(fields[i], &out[i])) return false;
  }
  return true;
}

struct NamespaceId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const NamespaceId& other) const {
    return dev == other.dev && ino == other.ino;
  }
};

absl::StatusOr<NamespaceId> DaemonUserNamespace() {
  static const absl::StatusOr<NamespaceId> ns =
      []() -> absl::StatusOr<NamespaceId> {
    struct stat st {};
    if (stat("/proc/self/ns/user", &st) != 0) {
      return ErrnoStatus(errno, "stat(/proc/self/ns/user)");
    }
    return NamespaceId{st.st_dev, st.st_ino};
  }();
  return ns;
}

absl::StatusOr<NamespaceId> IdOf(int ns_fd, absl::string_view what) {
  struct stat st {};
  if (fstat(ns_fd, &st) != 0) {
    return ErrnoStatus(errno,
                       absl::StrCat("fstat(user namespace of ", what, ")"));
  }
  return NamespaceId{st.st_dev, st.st_ino};
}

std::string Ids(const uint32_t ids[3]) {
  return absl::StrCat(ids[0], " (effective ", ids[1], ", saved ", ids[2], ")");
}

// Lazily answers "does the caller own the process's user namespace?" at most
// once per check.
class OwnedNamespace {
 public:
  OwnedNamespace(const ProcDir& dir, uid_t uid) : dir_(dir), uid_(uid) {}
  absl::StatusOr<bool> Get() {
    if (!answer_.has_value()) {
      absl::StatusOr<bool> owned = UserNamespaceOwnedBy(dir_, uid_);
      if (!owned.ok()) return owned.status();
      answer_ = *owned;
    }
    return *answer_;
  }

 private:
  const ProcDir& dir_;
  const uid_t uid_;
  std::optional<bool> answer_;
};

// The status of a process that has not exited; NOT_FOUND naming `what`
// otherwise.
absl::StatusOr<ProcessStatus> ReadLiveStatus(const ProcDir& dir,
                                             absl::string_view what) {
  absl::StatusOr<ProcessStatus> s = ReadProcessStatus(dir);
  if (absl::IsNotFound(s.status()) || (s.ok() && s->exited())) {
    return Exited(what);
  }
  return s;
}

}  // namespace

absl::StatusOr<ProcDir> ProcDir::Open(pid_t pid, int pidfd) {
  const std::string what = absl::StrCat("process ", pid);
  if (pid <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("no process has pid ", pid));
  }
  const std::string path = absl::StrCat("/proc/", pid);
  ProcDir dir;
  dir.fd_.Reset(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.fd_) return ProcError(errno, absl::StrCat("open(", path, ")"), what);
  // Not reaped after the open: the pid was still this process's when the
  // directory was opened, and the directory stays bound to it.
  if (syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0) {
    return ProcError(
        errno, absl::StrCat("pidfd_send_signal(pid=", pid, ", sig=0)"), what);
  }
  dir.pid_ = pid;
  return dir;
}

absl::StatusOr<ProcessStatus> ParseProcessStatus(absl::string_view text) {
  ProcessStatus s;
  bool have_uid = false, have_gid = false, have_caps = false;
  bool have_tgid = false, have_pid = false, have_ppid = false;
  bool have_state = false;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    absl::string_view value = absl::StripAsciiWhitespace(kv.second);
    if (kv.first == "Tgid") {
      have_tgid = absl::SimpleAtoi(value, &s.tgid);
    } else if (kv.first == "Pid") {
      have_pid = absl::SimpleAtoi(value, &s.pid);
    } else if (kv.first == "PPid") {
      have_ppid = absl::SimpleAtoi(value, &s.ppid);
    } else if (kv.first == "State") {
      have_state = !value.empty();
      if (have_state) s.state = value[0];
    } else if (kv.first == "Uid") {
      have_uid = ParseIds(value, s.uid);
    } else if (kv.first == "Gid") {
      have_gid = ParseIds(value, s.gid);
    } else if (kv.first == "CapPrm") {
      have_caps = absl::SimpleHexAtoi(value, &s.cap_permitted);
    }
  }
  if (!(have_uid && have_gid && have_caps && have_tgid && have_pid &&
        have_ppid && have_state)) {
    return absl::InternalError(
        "unparsable /proc/PID/status (no State, Tgid, Pid, PPid, Uid, Gid or "
        "CapPrm line)");
  }
  return s;
}

absl::StatusOr<ProcessStatus> ReadProcessStatus(const ProcDir& dir) {
  ASSIGN_OR_RETURN(FileText file, ReadProcFile(dir, "status"));
  ASSIGN_OR_RETURN(ProcessStatus s, ParseProcessStatus(file.text));
  s.dump_uid = file.st.st_uid;
  s.dump_gid = file.st.st_gid;
  return s;
}

absl::StatusOr<uint32_t> ParseStatFlags(absl::string_view stat) {
  // "pid (comm) state ppid pgrp session tty_nr tpgid flags ...": comm may
  // hold anything, spaces and parentheses included, so start after the
  // last ')'.
  size_t close = stat.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InternalError("unparsable /proc/PID/stat (no ')')");
  }
  std::vector<absl::string_view> fields = absl::StrSplit(
      stat.substr(close + 1), absl::ByAnyChar(" \n"), absl::SkipEmpty());
  uint32_t flags = 0;
  if (fields.size() < 7 || !absl::SimpleAtoi(fields[6], &flags)) {
    return absl::InternalError("unparsable /proc/PID/stat (no flags field)");
  }
  return flags;
}

absl::StatusOr<uint32_t> ReadTaskFlags(const ProcDir& dir) {
  ASSIGN_OR_RETURN(FileText file, ReadProcFile(dir, "stat"));
  return ParseStatFlags(file.text);
}

absl::StatusOr<bool> ForkedWithoutExec(const ProcDir& dir) {
  ASSIGN_OR_RETURN(uint32_t flags, ReadTaskFlags(dir));
  return (flags & kTaskForkNoExec) != 0;
}

absl::StatusOr<UniqueFd> OpenProcessMemory(const ProcDir& dir) {
  UniqueFd fd(openat(dir.fd(), "mem", O_RDWR | O_CLOEXEC));
  if (!fd) {
    return ProcError(errno, absl::StrCat("open(/proc/", dir.pid(), "/mem)"),
                     absl::StrCat("process ", dir.pid()));
  }
  return fd;
}

absl::StatusOr<bool> UserNamespaceOwnedBy(const ProcDir& dir, uid_t uid) {
  const std::string what = absl::StrCat("process ", dir.pid());
  ASSIGN_OR_RETURN(NamespaceId daemon_ns, DaemonUserNamespace());
  UniqueFd ns(openat(dir.fd(), "ns/user", O_RDONLY | O_CLOEXEC));
  if (!ns) {
    return ProcError(errno, absl::StrCat("open(/proc/", dir.pid(), "/ns/user)"),
                     what);
  }
  ASSIGN_OR_RETURN(NamespaceId id, IdOf(ns.get(), what));
  if (id == daemon_ns) return false;
  // Up to the namespace whose parent is the daemon's: its creator (owner)
  // holds every capability in it and in all below it.
  for (int depth = 0; depth < kMaxUserNamespaceDepth; ++depth) {
    UniqueFd parent(ioctl(ns.get(), NS_GET_PARENT));
    if (!parent) {
      // EPERM: the parent is outside the daemon's namespace, so this one is
      // not below it at all.
      if (errno == EPERM) return false;
      return ErrnoStatus(errno, absl::StrCat("ioctl(user namespace of ", what,
                                             ", NS_GET_PARENT)"));
    }
    ASSIGN_OR_RETURN(NamespaceId parent_id, IdOf(parent.get(), what));
    if (parent_id == daemon_ns) {
      uid_t owner = 0;
      if (ioctl(ns.get(), NS_GET_OWNER_UID, &owner) != 0) {
        return ErrnoStatus(errno, absl::StrCat("ioctl(user namespace of ", what,
                                               ", NS_GET_OWNER_UID)"));
      }
      return owner == uid;
    }
    ns = std::move(parent);
  }
  return false;
}

absl::Status CheckCallerMayPtrace(const Identity& caller, const ProcDir& dir,
                                  absl::string_view what) {
  if (caller.admin) return absl::OkStatus();
  ASSIGN_OR_RETURN(ProcessStatus s, ReadLiveStatus(dir, what));
  OwnedNamespace owned(dir, caller.uid);
  bool same_ids = true;
  for (int i = 0; i < 3; ++i) {
    same_ids = same_ids && s.uid[i] == caller.uid && s.gid[i] == caller.gid;
  }
  if (!same_ids) {
    ASSIGN_OR_RETURN(bool mine, owned.Get());
    if (!mine) {
      return absl::PermissionDeniedError(absl::StrCat(
          what, " now runs as uid ", Ids(s.uid), " and gid ", Ids(s.gid),
          ", not as your uid ", caller.uid, " and gid ", caller.gid,
          ": its credentials changed (a setuid or setgid execve?), so you "
          "could not ptrace it yourself; ",
          kRule));
    }
  }
  // The kernel gives a process's /proc files to its euid/egid only while it
  // is dumpable; otherwise to root of the user namespace its memory belongs
  // to, which is the caller only where the caller owns that namespace (and
  // there the kernel lets the caller ptrace it anyway).
  if (s.dump_uid != caller.uid || s.dump_gid != caller.gid) {
    return absl::PermissionDeniedError(absl::StrCat(
        what,
        " is not dumpable (it called prctl(PR_SET_DUMPABLE, 0) or changed "
        "credentials; its /proc files belong to uid ",
        s.dump_uid, "), so you could not ptrace it yourself; ", kRule));
  }
  if (s.cap_permitted != 0) {
    ASSIGN_OR_RETURN(bool mine, owned.Get());
    if (!mine) {
      return absl::PermissionDeniedError(absl::StrCat(
          what, " holds capabilities (CapPrm 0x", absl::Hex(s.cap_permitted),
          ") in the host's user namespace (an execve of a program with file "
          "capabilities?), so you could not ptrace it yourself; ",
          kRule));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckCallerMayPtrace(const Identity& caller, pid_t pid, int pidfd,
                                  absl::string_view what) {
  if (caller.admin) return absl::OkStatus();
  absl::StatusOr<ProcDir> dir = ProcDir::Open(pid, pidfd);
  if (absl::IsNotFound(dir.status())) return Exited(what);
  if (!dir.ok()) return dir.status();
  return CheckCallerMayPtrace(caller, *dir, what);
}

absl::Status CheckCallerMayKill(const Identity& caller, const ProcDir& dir,
                                absl::string_view what) {
  if (caller.admin) return absl::OkStatus();
  ASSIGN_OR_RETURN(ProcessStatus s, ReadLiveStatus(dir, what));
  if (s.uid[0] == caller.uid || s.uid[2] == caller.uid) return absl::OkStatus();
  ASSIGN_OR_RETURN(bool mine, UserNamespaceOwnedBy(dir, caller.uid));
  if (mine) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      what, " now runs as uid ", Ids(s.uid),
      ": neither its real nor its saved uid is yours (", caller.uid,
      "), so you could not signal it yourself, and procwarp does not either "
      "(the kernel's rule for kill)"));
}

}  // namespace procwarp
