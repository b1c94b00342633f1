// Unit tests of the pieces around the Exec service that need no target:
// OpenFileAsCaller (the kernel's permission checks as the caller, regular
// files only, a FIFO does not block it) and LibraryTable (owners, the
// per-identity limit reserved up front, handles of exited targets dropped).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/exec/caller_file.h"
#include "daemon/exec/library_table.h"
#include "gtest/gtest.h"

namespace procwarp::exec {
namespace {

constexpr uid_t kNobody = 65534;

Identity Nobody() {
  Identity id;
  id.uid = kNobody;
  id.gid = kNobody;
  return id;
}

Identity Root() {
  Identity id;
  id.admin = true;
  return id;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(20); }
bool Never() { return false; }

class CallerFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pw-caller-file-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    (void)!system(cmd.c_str());
  }
  std::string File(const std::string& name, mode_t mode) {
    std::string path = absl::StrCat(dir_, "/", name);
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, mode);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, "x", 1), 1);
    close(fd);
    chmod(path.c_str(), mode);
    return path;
  }
  std::string dir_;
};

TEST_F(CallerFileTest, OpensWhatTheCallerMayReadOnly) {
  std::string readable = File("readable", 0644);
  std::string secret = File("secret", 0600);
  auto ok = OpenFileAsCaller(Nobody(), readable, Soon(), Never);
  ASSERT_TRUE(ok.ok()) << ok.status();
  char c;
  EXPECT_EQ(read(ok->get(), &c, 1), 1);
  EXPECT_NE(fcntl(ok->get(), F_GETFD) & FD_CLOEXEC, 0);
  auto denied = OpenFileAsCaller(Nobody(), secret, Soon(), Never);
  EXPECT_TRUE(absl::IsPermissionDenied(denied.status())) << denied.status();
  EXPECT_NE(denied.status().message().find(secret), absl::string_view::npos);
  // Root reads it.
  EXPECT_TRUE(OpenFileAsCaller(Root(), secret, Soon(), Never).ok());
}

TEST_F(CallerFileTest, RefusesWhatIsNotARegularFileWithoutBlocking) {
  std::string fifo = absl::StrCat(dir_, "/fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0666), 0);
  auto r = OpenFileAsCaller(Nobody(), fifo, Soon(), Never);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  auto d = OpenFileAsCaller(Nobody(), dir_, Soon(), Never);
  EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << d.status();
  auto relative = OpenFileAsCaller(Nobody(), "relative/path", Soon(), Never);
  EXPECT_TRUE(absl::IsInvalidArgument(relative.status())) << relative.status();
  auto missing = OpenFileAsCaller(Nobody(), dir_ + "/none", Soon(), Never);
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  // No child is left behind.
  siginfo_t info{};
  EXPECT_EQ(waitid(P_ALL, 0, &info, WEXITED | WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(CallerFileTest, CancelledBeforeTheChildAnswers) {
  std::string readable = File("readable", 0644);
  auto r = OpenFileAsCaller(Nobody(), readable, Soon(), [] { return true; });
  EXPECT_TRUE(absl::IsCancelled(r.status())) << r.status();
  siginfo_t info{};
  EXPECT_EQ(waitid(P_ALL, 0, &info, WEXITED | WNOHANG), -1);
}

// A caller in a chroot names files of its own root: "/lib.so" is the one
// inside it, and neither ".." nor an absolute symlink leaves it.
TEST_F(CallerFileTest, PathsAreResolvedInTheCallersRoot) {
  std::string inside = File("lib.so", 0644);
  ASSERT_EQ(symlink("/../../../etc/passwd", (dir_ + "/escape").c_str()), 0);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t caller_pid = fork();
  if (caller_pid == 0) {
    if (chroot(dir_.c_str()) != 0 || chdir("/") != 0) _exit(1);
    (void)!write(ready[1], "r", 1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  close(ready[1]);
  Identity caller = Nobody();
  caller.pid = caller_pid;
  auto opened = OpenFileAsCaller(caller, "/lib.so", Soon(), Never);
  ASSERT_TRUE(opened.ok()) << opened.status();
  struct stat got {}, want {};
  ASSERT_EQ(fstat(opened->get(), &got), 0);
  ASSERT_EQ(stat(inside.c_str(), &want), 0);
  EXPECT_EQ(got.st_ino, want.st_ino);
  EXPECT_EQ(got.st_dev, want.st_dev);
  auto up = OpenFileAsCaller(caller, "/../../etc/passwd", Soon(), Never);
  EXPECT_TRUE(absl::IsNotFound(up.status())) << up.status();
  auto escape = OpenFileAsCaller(caller, "/escape", Soon(), Never);
  EXPECT_TRUE(absl::IsNotFound(escape.status())) << escape.status();
  // The same path for a caller in the daemon's root is the daemon's file.
  auto outside = OpenFileAsCaller(Nobody(), "/etc/passwd", Soon(), Never);
  EXPECT_TRUE(outside.ok()) << outside.status();
  kill(caller_pid, SIGKILL);
  waitpid(caller_pid, nullptr, 0);
  // A caller whose process is gone: refused, saying so.
  auto gone = OpenFileAsCaller(caller, "/lib.so", Soon(), Never);
  EXPECT_TRUE(absl::IsFailedPrecondition(gone.status())) << gone.status();
}

LoadedLibrary Library(const Identity& owner, int pidfd) {
  LoadedLibrary library;
  library.owner = owner;
  library.pidfd = UniqueFd(pidfd);
  library.dl_handle = 1;
  return library;
}

int SelfPidfd() { return static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)); }

TEST(LibraryTableTest, OwnersLimitsAndExitedTargets) {
  LibraryTable table(2);
  auto a = table.Reserve(Nobody());
  auto b = table.Reserve(Nobody());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(table.Reserve(Nobody()).status()));
  // Another identity has its own share.
  EXPECT_TRUE(table.Reserve(Root()).ok());
  std::string id = table.Insert(*std::move(a), Library(Nobody(), SelfPidfd()));
  { auto dropped = std::move(b); }  // an unused reservation gives its slot back
  EXPECT_EQ(table.CountFor(Nobody()), 1u);
  Identity other = Nobody();
  other.uid = other.gid = 1234;
  EXPECT_TRUE(absl::IsNotFound(table.Take(id, other).status()));
  auto taken = table.Take(id, Root());  // admins see every handle
  ASSERT_TRUE(taken.ok());
  table.Restore(id, *std::move(taken));
  EXPECT_TRUE(table.Take(id, Nobody()).ok());
  EXPECT_EQ(table.CountFor(Nobody()), 0u);

  // A handle whose target exited is dropped.
  pid_t child = fork();
  if (child == 0) _exit(0);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
  ASSERT_GE(pidfd, 0);
  auto slot = table.Reserve(Nobody());
  ASSERT_TRUE(slot.ok());
  std::string gone = table.Insert(*std::move(slot), Library(Nobody(), pidfd));
  siginfo_t info;
  ASSERT_EQ(waitid(P_PID, child, &info, WEXITED), 0);
  EXPECT_TRUE(absl::IsNotFound(table.Take(gone, Nobody()).status()));
  EXPECT_EQ(table.CountFor(Nobody()), 0u);
}

}  // namespace
}  // namespace procwarp::exec
