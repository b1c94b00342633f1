// Unit tests of ptrace_access against real processes: children of the test
// (which runs as root) put into each state the rule distinguishes, checked for
// an unprivileged caller (uid/gid 65534) and for an admin.
#include "daemon/security/ptrace_access.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace procwarp {
namespace {

using ::testing::HasSubstr;

constexpr uid_t kNobody = 65534;

Identity Caller(uid_t uid) {
  Identity id;
  id.uid = uid;
  id.gid = uid;
  return id;
}

Identity Admin() {
  Identity id;
  id.admin = true;
  return id;
}

// A child that runs `setup` (false: it failed), reports over a pipe and then
// waits for SIGKILL. Killed and reaped by the destructor.
class Child {
 public:
  explicit Child(const std::function<bool()>& setup) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(p[0]);
      char ok = setup() ? 'y' : 'n';
      if (write(p[1], &ok, 1) != 1) _exit(1);
      for (;;) pause();
    }
    close(p[1]);
    char ok = 'n';
    ready_ = read(p[0], &ok, 1) == 1 && ok == 'y';
    close(p[0]);
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (pidfd_ >= 0) close(pidfd_);
  }

  bool ready() const { return ready_ && pidfd_ >= 0; }
  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_; }

  // Kills it and waits until it is a zombie (not reaped).
  void KillToZombie() {
    kill(pid_, SIGKILL);
    pollfd pfd = {pidfd_, POLLIN, 0};
    poll(&pfd, 1, -1);
  }
  void Reap() {
    KillToZombie();
    waitpid(pid_, nullptr, 0);
    reaped_ = true;
  }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool ready_ = false;
  bool reaped_ = false;
};

bool BecomeNobody(bool dumpable) {
  if (setgroups(0, nullptr) != 0) return false;
  if (setresgid(kNobody, kNobody, kNobody) != 0) return false;
  if (setresuid(kNobody, kNobody, kNobody) != 0) return false;
  // Changing uid made it non-dumpable; a caller's own program is dumpable.
  return !dumpable || prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0;
}

bool WriteSelf(const char* name, const char* text) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/%s", name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text, strlen(text)) == static_cast<ssize_t>(strlen(text));
  close(fd);
  return ok;
}

absl::Status Ptrace(const Identity& caller, const Child& child) {
  return CheckCallerMayPtrace(caller, child.pid(), child.pidfd(), "the child");
}

absl::Status Kill(const Identity& caller, const Child& child) {
  absl::StatusOr<ProcDir> dir = ProcDir::Open(child.pid(), child.pidfd());
  if (!dir.ok()) return dir.status();
  return CheckCallerMayKill(caller, *dir, "the child");
}

TEST(PtraceAccessTest, OwnDumpableProcessIsAllowed) {
  Child child([] { return BecomeNobody(/*dumpable=*/true); });
  ASSERT_TRUE(child.ready());
  EXPECT_TRUE(Ptrace(Caller(kNobody), child).ok())
      << Ptrace(Caller(kNobody), child);
  EXPECT_TRUE(Kill(Caller(kNobody), child).ok());
}

TEST(PtraceAccessTest, RootProcessIsDeniedSayingWhy) {
  Child child([] { return true; });
  ASSERT_TRUE(child.ready());
  absl::Status s = Ptrace(Caller(kNobody), child);
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("now runs as uid 0"));
  EXPECT_THAT(s.message(), HasSubstr("could not ptrace it yourself"));
  absl::Status k = Kill(Caller(kNobody), child);
  EXPECT_TRUE(absl::IsPermissionDenied(k)) << k;
  // Another unprivileged uid is no better.
  EXPECT_TRUE(absl::IsPermissionDenied(Ptrace(Caller(1234), child)));
}

TEST(PtraceAccessTest, AdminMayActOnAnyProcess) {
  Child child([] { return true; });
  ASSERT_TRUE(child.ready());
  EXPECT_TRUE(Ptrace(Admin(), child).ok());
  EXPECT_TRUE(Kill(Admin(), child).ok());
}

TEST(PtraceAccessTest, OwnNonDumpableProcessIsDenied) {
  Child child([] {
    return BecomeNobody(/*dumpable=*/true) &&
           prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0;
  });
  ASSERT_TRUE(child.ready());
  absl::Status s = Ptrace(Caller(kNobody), child);
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("not dumpable"));
  // Signals do not care about dumpability.
  EXPECT_TRUE(Kill(Caller(kNobody), child).ok());
}

TEST(PtraceAccessTest, RootThatBecameTheCallerWithoutExecIsDenied) {
  // setresuid from root to the caller leaves it non-dumpable: its memory may
  // still hold what root put there.
  Child child([] { return BecomeNobody(/*dumpable=*/false); });
  ASSERT_TRUE(child.ready());
  absl::Status s = Ptrace(Caller(kNobody), child);
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("not dumpable"));
}

TEST(PtraceAccessTest, SetuidRootCredentialsAreDeniedButMayBeKilled) {
  // What a setuid-root program started by the caller has: real uid the
  // caller's, effective and saved uid root.
  Child child([] {
    return setresgid(kNobody, kNobody, kNobody) == 0 &&
           setresuid(kNobody, 0, 0) == 0 && prctl(PR_SET_DUMPABLE, 1) == 0;
  });
  ASSERT_TRUE(child.ready());
  absl::Status s = Ptrace(Caller(kNobody), child);
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("65534 (effective 0, saved 0)"));
  EXPECT_TRUE(Kill(Caller(kNobody), child).ok());
}

TEST(PtraceAccessTest, CapabilitiesInTheHostNamespaceAreDenied) {
  // Same ids as the caller, dumpable, but holding a capability (as after an
  // execve of a program with file capabilities).
  Child child([] {
    if (prctl(PR_SET_KEEPCAPS, 1) != 0) return false;
    if (setgroups(0, nullptr) != 0) return false;
    if (setresgid(kNobody, kNobody, kNobody) != 0) return false;
    if (setresuid(kNobody, kNobody, kNobody) != 0) return false;
    return prctl(PR_SET_DUMPABLE, 1) == 0;
  });
  ASSERT_TRUE(child.ready());
  absl::Status s = Ptrace(Caller(kNobody), child);
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("holds capabilities"));
}

TEST(PtraceAccessTest, ZombieAndReapedProcessesAreNotFound) {
  Child child([] { return BecomeNobody(/*dumpable=*/true); });
  ASSERT_TRUE(child.ready());
  absl::StatusOr<ProcDir> dir = ProcDir::Open(child.pid(), child.pidfd());
  ASSERT_TRUE(dir.ok()) << dir.status();
  child.KillToZombie();
  absl::Status zombie =
      CheckCallerMayPtrace(Caller(kNobody), *dir, "the child");
  EXPECT_TRUE(absl::IsNotFound(zombie)) << zombie;
  EXPECT_THAT(zombie.message(), HasSubstr("the child has exited"));
  child.Reap();
  // The directory opened before stays bound to the reaped process.
  absl::Status gone = CheckCallerMayPtrace(Caller(kNobody), *dir, "the child");
  EXPECT_TRUE(absl::IsNotFound(gone)) << gone;
  // And a fresh open notices that the pidfd's process is gone.
  EXPECT_TRUE(absl::IsNotFound(Ptrace(Caller(kNobody), child)));
}

TEST(PtraceAccessTest, ProcessInAUserNamespaceOfTheCallerIsAllowed) {
  // Full capabilities, but inside a namespace the caller created.
  Child child([] {
    return BecomeNobody(/*dumpable=*/true) && unshare(CLONE_NEWUSER) == 0;
  });
  ASSERT_TRUE(child.ready());
  absl::StatusOr<ProcDir> dir = ProcDir::Open(child.pid(), child.pidfd());
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<ProcessStatus> status = ReadProcessStatus(*dir);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_NE(status->cap_permitted, 0u);
  EXPECT_TRUE(*UserNamespaceOwnedBy(*dir, kNobody));
  EXPECT_FALSE(*UserNamespaceOwnedBy(*dir, 1234));
  EXPECT_TRUE(Ptrace(Caller(kNobody), child).ok())
      << Ptrace(Caller(kNobody), child);
  // Someone else's namespace grants nothing.
  Identity other = Caller(kNobody);
  other.uid = 1234;
  EXPECT_TRUE(absl::IsPermissionDenied(Ptrace(other, child)));
}

TEST(PtraceAccessTest, NestedUserNamespaceIsJudgedByItsTopAncestor) {
  // A namespace below one the caller made (the second unshare needs the
  // caller's ids mapped in the first).
  Child child([] {
    return BecomeNobody(/*dumpable=*/true) && unshare(CLONE_NEWUSER) == 0 &&
           WriteSelf("setgroups", "deny") &&
           WriteSelf("uid_map", "0 65534 1") &&
           WriteSelf("gid_map", "0 65534 1") && unshare(CLONE_NEWUSER) == 0;
  });
  ASSERT_TRUE(child.ready());
  EXPECT_TRUE(Ptrace(Caller(kNobody), child).ok())
      << Ptrace(Caller(kNobody), child);
}

TEST(PtraceAccessTest, DaemonNamespaceIsNotOwnedByAnyone) {
  Child child([] { return true; });
  ASSERT_TRUE(child.ready());
  absl::StatusOr<ProcDir> dir = ProcDir::Open(child.pid(), child.pidfd());
  ASSERT_TRUE(dir.ok());
  EXPECT_FALSE(*UserNamespaceOwnedBy(*dir, 0));
}

TEST(PtraceAccessTest, ForkedWithoutExecTellsAForkFromAProgram) {
  Child child([] { return true; });
  ASSERT_TRUE(child.ready());
  absl::StatusOr<ProcDir> forked = ProcDir::Open(child.pid(), child.pidfd());
  ASSERT_TRUE(forked.ok());
  EXPECT_TRUE(*ForkedWithoutExec(*forked));
  int self_pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  ASSERT_GE(self_pidfd, 0);
  absl::StatusOr<ProcDir> self = ProcDir::Open(getpid(), self_pidfd);
  ASSERT_TRUE(self.ok());
  EXPECT_FALSE(*ForkedWithoutExec(*self));  // the test binary was exec'd
  close(self_pidfd);
}

TEST(PtraceAccessTest, ParsesStatus) {
  absl::StatusOr<ProcessStatus> s = ParseProcessStatus(
      "Name:\tx\nState:\tS (sleeping)\nTgid:\t12\nPid:\t12\nPPid:\t1\n"
      "Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nCapPrm:\t000001ffffffffff\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->tgid, 12);
  EXPECT_EQ(s->ppid, 1);
  EXPECT_EQ(s->uid[0], 1u);
  EXPECT_EQ(s->uid[2], 3u);
  EXPECT_EQ(s->gid[1], 6u);
  EXPECT_EQ(s->cap_permitted, 0x1ffffffffffu);
  EXPECT_FALSE(ParseProcessStatus("Name:\tx\nUid:\t1\t2\t3\t4\n").ok());
}

TEST(PtraceAccessTest, ParsesStatFlagsAfterAnyComm) {
  absl::StatusOr<uint32_t> flags =
      ParseStatFlags("42 (a) b (c) 1 2 3) S 1 42 42 0 -1 4194368 10 0\n");
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(*flags, 4194368u);
  EXPECT_FALSE(ParseStatFlags("42 (x) S 1").ok());
}

}  // namespace
}  // namespace procwarp
