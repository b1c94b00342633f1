// The attacks on agent threads from the security issue (points 2, 3 and 4),
// each run by an unprivileged caller (uid 65534, tests/integration/
// attack_client) against a real daemon, with the legitimate counterpart
// beside it:
//  - a forged CLONE reply (the caller answers its own agent's socket) naming
//    a root process, a root child of the daemon, or the caller's own thread
//    or spawned process: refused, the named process untouched, no handle on
//    it, the lying parent thread ended, the daemon still serving;
//  - a raw execve of a setuid-root program in a thread: Maps, ListFds,
//    ExportFd, TransferFd and every memory call refused with a status that
//    says why (a plain program's execve loses them too, as
//    FAILED_PRECONDITION); the caller may still end it while it could kill
//    it itself, and not once it made itself root;
//  - setgroups(0, NULL) in a user-namespaced child thread: EPERM, and a file
//    its group may not read stays unreadable.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int kNobody = 65534;
// A group the attacking caller has besides its own, and that a file denies.
constexpr int kDeniedGroup = 4242;
constexpr char kSecret[] = "root-only secret 7d1f";

// The attack client's "KEY VALUE..." lines by KEY.
using Lines = std::map<std::string, std::string>;

Lines ParseLines(const std::string& out) {
  Lines lines;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    lines[kv.first] = kv.second;
  }
  return lines;
}

std::string ProcStatus(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The "Field:" line of /proc/PID/status, without the name.
std::string StatusField(pid_t pid, const std::string& field) {
  for (absl::string_view line : absl::StrSplit(ProcStatus(pid), '\n')) {
    if (absl::ConsumePrefix(&line, field + ":")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

void WriteFile(const std::string& path, const std::string& text, mode_t mode,
               gid_t group = 0) {
  std::ofstream(path) << text;
  ASSERT_EQ(chown(path.c_str(), 0, group), 0);
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
}

// Why a spawned process is no clone: it exec'd its program (and, should
// spawning ever move to a helper process, its parent is not the agent's).
::testing::Matcher<const std::string&> SpawnedProcessRefusal() {
  return ::testing::AnyOf(HasSubstr("exec'd a program since it was forked"),
                          HasSubstr("whose parent is pid"));
}

class ThreadSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonHarness::Start(DaemonHarness::Options::WithAgent());
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    dir_ = MakeTempDir();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs the attack client as uid/gid 65534 (with kDeniedGroup besides).
  Lines Attack(const std::vector<std::string>& op) {
    std::vector<std::string> argv = {
        RunfilePath("tests/integration/attack_client"),
        "--socket",
        daemon_->socket_path(),
        "--uid",
        absl::StrCat(kNobody),
        "--gid",
        absl::StrCat(kNobody),
        "--groups",
        absl::StrCat(kDeniedGroup)};
    argv.insert(argv.end(), op.begin(), op.end());
    RunResult r = RunProgram(argv);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    last_output_ = r.out;
    return ParseLines(r.out);
  }

  // A copy of the probe program in the test's directory, owned by root, with
  // the setuid bit when `setuid`.
  std::string InstallProbe(bool setuid) {
    std::string path = dir_ + (setuid ? "/setuid-probe" : "/plain-probe");
    std::filesystem::copy_file(RunfilePath("tests/testcases/pw_setuid_probe"),
                               path);
    EXPECT_EQ(chown(path.c_str(), 0, 0), 0);
    EXPECT_EQ(chmod(path.c_str(), setuid ? 04755 : 0755), 0);
    return path;
  }

  // Root can still use the daemon: status and a thread of its own.
  void ExpectDaemonServesRoot() {
    v1::GetStatusResponse status;
    grpc::Status s = daemon_->Admin()->GetStatus(Ctx().get(), {}, &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    auto threads = v1::Threads::NewStub(daemon_->NewChannel());
    v1::CreateThreadResponse created;
    s = threads->CreateThread(Ctx().get(), {}, &created);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::ExitThreadRequest exit;
    exit.set_id(created.thread().id());
    v1::ExitThreadResponse exited;
    EXPECT_TRUE(threads->ExitThread(Ctx().get(), exit, &exited).ok());
  }

  // The outcome every forged reply must have.
  template <typename WhyMatcher>
  void ExpectForgeryRefused(const Lines& lines, WhyMatcher why) {
    SCOPED_TRACE(last_output_);
    EXPECT_EQ(lines.at("forged_protocol"), "spoken");
    EXPECT_THAT(lines.at("forged_create"), StartsWith("PERMISSION_DENIED"));
    EXPECT_THAT(lines.at("forged_create"), HasSubstr("forged"));
    EXPECT_THAT(lines.at("forged_create"), why);
    EXPECT_THAT(lines.at("forged_create"),
                HasSubstr("the parent thread has been ended"));
    EXPECT_EQ(lines.at("forged_handle_on_target"), "no");
    // The lying agent's thread is dead and says why.
    EXPECT_EQ(lines.at("forged_parent_state"), "THREAD_STATE_EXITED");
    EXPECT_THAT(lines.at("forged_parent_syscall"), StartsWith("UNAVAILABLE"));
    EXPECT_THAT(lines.at("forged_parent_syscall"), HasSubstr("forged a reply"));
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::string dir_;
  std::string last_output_;
};

TEST_F(ThreadSecurityTest, ForgedCloneReplyNamingARootProcessIsRefused) {
  // A root process that is nobody's business of the caller.
  pid_t root_pid = fork();
  if (root_pid == 0) {
    for (;;) pause();
  }
  ASSERT_GT(root_pid, 0);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, root_pid, 0));
  ASSERT_GE(pidfd, 0);

  Lines lines = Attack({"forged_clone", absl::StrCat(root_pid)});
  ExpectForgeryRefused(
      lines, HasSubstr(absl::StrCat("whose parent is pid ", getpid())));

  // Untouched: alive, not stopped, still root.
  pollfd pfd = {pidfd, POLLIN, 0};
  EXPECT_EQ(poll(&pfd, 1, 0), 0) << "the root process died";
  EXPECT_THAT(StatusField(root_pid, "State"), StartsWith("S"));
  EXPECT_THAT(StatusField(root_pid, "Uid"), StartsWith("0"));
  ExpectDaemonServesRoot();
  kill(root_pid, SIGKILL);
  waitpid(root_pid, nullptr, 0);
  close(pidfd);
}

TEST_F(ThreadSecurityTest,
       ForgedCloneReplyNamingARootChildOfTheDaemonIsRefused) {
  // A child of the daemon, as a real clone is: only its credentials and its
  // having exec'd a program tell it apart.
  auto processes = daemon_->Processes();
  v1::SpawnResponse spawned;
  grpc::Status s = processes->Spawn(
      Ctx().get(), PipedSpawn({"/bin/sleep", "1000"}), &spawned);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const pid_t pid = spawned.process().pid();

  Lines lines = Attack({"forged_clone", absl::StrCat(pid)});
  ExpectForgeryRefused(lines, SpawnedProcessRefusal());

  v1::GetProcessRequest get;
  get.set_id(spawned.process().id());
  v1::GetProcessResponse got;
  ASSERT_TRUE(processes->Get(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.process().state(), v1::PROCESS_STATE_RUNNING);
  EXPECT_THAT(StatusField(pid, "State"), StartsWith("S"));
  ExpectDaemonServesRoot();
  v1::SignalRequest kill_it;
  kill_it.set_id(spawned.process().id());
  kill_it.set_signal(SIGKILL);
  v1::SignalResponse killed;
  EXPECT_TRUE(processes->Signal(Ctx().get(), kill_it, &killed).ok());
}

TEST_F(ThreadSecurityTest, ForgedCloneReplyNamingTheCallersOwnThreadIsRefused) {
  // The caller's own child thread passes every test of a fresh clone but
  // one: it is already a thread. A second handle on it is refused, and the
  // real one (the positive control) keeps working.
  Lines lines = Attack({"forged_clone_own_thread"});
  EXPECT_EQ(lines.at("legit_child"), "OK");
  ExpectForgeryRefused(lines, HasSubstr("already another thread's process"));
  EXPECT_EQ(lines.at("legit_child_after"), "OK");
  EXPECT_EQ(lines.at("legit_child_pid_matches"), "yes");
}

TEST_F(ThreadSecurityTest,
       ForgedCloneReplyNamingTheCallersOwnProcessIsRefused) {
  // A managed process would end up with two owners reaping it.
  Lines lines = Attack({"forged_clone_own_process"});
  EXPECT_EQ(lines.at("spawn"), "OK");
  ExpectForgeryRefused(lines, SpawnedProcessRefusal());
  ExpectDaemonServesRoot();
}

TEST_F(ThreadSecurityTest, NormalThreadKeepsEveryOperation) {
  // The positive control for the operations refused below.
  const std::string file = dir_ + "/public";
  WriteFile(file, "public content", 0644);
  Lines lines = Attack({"normal_thread", file});
  SCOPED_TRACE(last_output_);
  for (const char* op :
       {"maps", "listfds", "transfer", "write", "writestream", "exit"}) {
    EXPECT_THAT(lines.at(op), StartsWith("OK")) << op;
  }
  EXPECT_EQ(lines.at("export"), "OK content=[public content]");
  EXPECT_EQ(lines.at("read"), "OK data=[agent data]");
  EXPECT_EQ(lines.at("readstream"), "OK data=[agent data]");
  EXPECT_EQ(lines.at("read_after_write"), "overwritten");
}

TEST_F(ThreadSecurityTest,
       RawExecveOfASetuidRootProgramLosesEveryPrivilegedOperation) {
  const std::string secret = dir_ + "/secret";
  WriteFile(secret, kSecret, 0600);
  const std::string probe = InstallProbe(/*setuid=*/true);
  Lines lines = Attack({"raw_exec", probe, secret});
  SCOPED_TRACE(last_output_);
  // The program did run setuid root, got the secret into its fd and into
  // the page where the caller's pointer was.
  ASSERT_THAT(lines.at("probe"), StartsWith("fd="));
  ASSERT_NE(lines.at("probe"), "fd=-1");
  // The failed syscall itself already says what happened (PERMISSION_DENIED,
  // or FAILED_PRECONDITION if asked before the kernel committed the new
  // credentials: it closes the close-on-exec socket first).
  EXPECT_THAT(lines.at("execve"), HasSubstr("exec'd a new program"));
  for (const char* op : {"maps", "listfds", "export", "transfer", "read",
                         "readstream", "write", "writestream"}) {
    EXPECT_THAT(lines.at(op), StartsWith("PERMISSION_DENIED")) << op;
    EXPECT_THAT(lines.at(op), HasSubstr("exec'd a new program")) << op;
    EXPECT_THAT(lines.at(op),
                HasSubstr("now runs as uid 65534 (effective 0, saved 0)"))
        << op;
    EXPECT_THAT(lines.at(op), HasSubstr("could not ptrace it yourself")) << op;
    EXPECT_THAT(lines.at(op), Not(HasSubstr(kSecret))) << op;
  }
  EXPECT_THAT(last_output_, Not(HasSubstr(kSecret)));
  // Its real uid is still the caller's, so the caller could kill it itself:
  // ExitThread may.
  EXPECT_EQ(lines.at("exit"), "OK");
  ExpectDaemonServesRoot();
}

TEST_F(ThreadSecurityTest,
       SetuidProgramThatMadeItselfRootIsNotKilledForTheCaller) {
  const std::string secret = dir_ + "/secret";
  WriteFile(secret, kSecret, 0600);
  const std::string probe = InstallProbe(/*setuid=*/true);
  Lines lines = Attack({"raw_exec", probe, secret, "become-root"});
  SCOPED_TRACE(last_output_);
  ASSERT_THAT(lines.at("probe"), StartsWith("fd="));
  pid_t pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(lines.at("pid"), &pid));
  EXPECT_THAT(lines.at("maps"), StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(lines.at("exit"), StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(lines.at("exit"), HasSubstr("could not signal it yourself"));
  // Still running, as root, unharmed.
  EXPECT_THAT(StatusField(pid, "Uid"), StartsWith("0\t0\t0"));
  EXPECT_THAT(StatusField(pid, "State"), StartsWith("S"));
  // Once it exits the daemon reaps it (on the owner's next thread creation,
  // where the lingering handle is counted): no zombie is left behind.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  ASSERT_GE(pidfd, 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  pollfd pfd = {pidfd, POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 30000), 1);
  Lines again = Attack({"create_thread"});
  EXPECT_EQ(again.at("create"), "OK");
  EXPECT_EQ(syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0), -1);
  EXPECT_EQ(errno, ESRCH) << "not reaped";
  close(pidfd);
}

// Processes.Signal and Remove(force) follow the kernel's kill rule for the
// caller at the time of use: a managed process its owner (uid 65534)
// spawned, which exec'd a setuid-root program that set all its uids to 0 (as
// su does), can no longer be signalled by that owner through the daemon, as
// it could not be with kill(2). The control: the owner's plain process is.
TEST_F(ThreadSecurityTest, ManagedProcessThatMadeItselfRootIsNotSignalledForItsOwner) {
  const std::string probe = InstallProbe(/*setuid=*/true);
  auto as_nobody = [&](const std::string& command) {
    return RunCliAs(kNobody, kNobody, dir_, daemon_->socket_path(), command);
  };
  RunResult spawned = as_nobody(absl::StrCat("run -d -- ", probe,
                                             " /dev/null 1 0 become-root"));
  ASSERT_EQ(spawned.exit_code, 0) << spawned.out;
  const std::string id(absl::StripAsciiWhitespace(spawned.out));
  RunResult plain = as_nobody("run -d -- /bin/sleep 1000");
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  const std::string plain_id(absl::StripAsciiWhitespace(plain.out));

  auto processes = daemon_->Processes();
  v1::GetProcessRequest get;
  get.set_id(id);
  v1::GetProcessResponse got;
  ASSERT_TRUE(processes->Get(Ctx().get(), get, &got).ok());
  const pid_t pid = got.process().pid();
  // Wait until the setuid program has made itself root.
  for (int i = 0; i < 3000 && !absl::StartsWith(StatusField(pid, "Uid"), "0\t0\t0");
       ++i) {
    usleep(10000);
  }
  ASSERT_THAT(StatusField(pid, "Uid"), StartsWith("0\t0\t0"));

  RunResult killed = as_nobody(absl::StrCat("kill ", id));
  EXPECT_NE(killed.exit_code, 0);
  EXPECT_THAT(killed.out, HasSubstr("could not signal it yourself"));
  RunResult removed = as_nobody(absl::StrCat("rm -f ", id));
  EXPECT_NE(removed.exit_code, 0);
  EXPECT_THAT(removed.out, HasSubstr("could not signal it yourself"));
  // Still running, unharmed, still listed.
  EXPECT_THAT(StatusField(pid, "State"), StartsWith("S"));
  EXPECT_TRUE(processes->Get(Ctx().get(), get, &got).ok());

  // The control: the owner's own plain process is signalled.
  RunResult plain_killed = as_nobody(absl::StrCat("kill ", plain_id));
  EXPECT_EQ(plain_killed.exit_code, 0) << plain_killed.out;
  RunResult plain_removed = as_nobody(absl::StrCat("rm -f ", plain_id));
  EXPECT_EQ(plain_removed.exit_code, 0) << plain_removed.out;

  // Root (an admin) may: it could kill(2) it too.
  v1::RemoveProcessRequest remove;
  remove.set_id(id);
  remove.set_force(true);
  v1::RemoveProcessResponse removed_by_root;
  grpc::Status s = processes->Remove(Ctx().get(), remove, &removed_by_root);
  EXPECT_TRUE(s.ok()) << s.error_message();
  ExpectDaemonServesRoot();
}

TEST_F(ThreadSecurityTest, ExitThreadOfATracedAgentDoesNotWaitForTheTracer) {
  // The owner may ptrace its own agent; a dead tracee is not its parent's to
  // reap until the tracer has waited for it. ExitThread must answer anyway
  // (not hold a daemon thread for as long as the tracer likes), and the
  // daemon must reap the agent once the tracer lets go.
  Lines lines = Attack({"traced_exit"});
  SCOPED_TRACE(last_output_);
  EXPECT_EQ(lines.at("traced"), "yes");
  EXPECT_THAT(lines.at("exit"), StartsWith("UNAVAILABLE"));
  EXPECT_THAT(lines.at("exit"), HasSubstr("could not be reaped"));
  EXPECT_EQ(lines.at("tracer_wait"), "yes");
  EXPECT_EQ(lines.at("create"), "OK");
  EXPECT_EQ(lines.at("reaped"), "yes");
  ExpectDaemonServesRoot();
}

TEST_F(ThreadSecurityTest, RawExecveOfAPlainProgramLosesThemTooButSaysSo) {
  // The control: the same execve without the setuid bit keeps the caller's
  // credentials, so nothing is denied for them, but the thread is no agent
  // any more: FAILED_PRECONDITION, pointing at Threads.Exec.
  const std::string file = dir_ + "/public";
  WriteFile(file, "public content", 0644);
  const std::string probe = InstallProbe(/*setuid=*/false);
  Lines lines = Attack({"raw_exec", probe, file});
  SCOPED_TRACE(last_output_);
  ASSERT_THAT(lines.at("probe"), StartsWith("fd="));
  for (const char* op : {"maps", "listfds", "export", "transfer", "read",
                         "readstream", "write", "writestream"}) {
    EXPECT_THAT(lines.at(op), StartsWith("FAILED_PRECONDITION")) << op;
    EXPECT_THAT(lines.at(op), HasSubstr("exec'd a new program")) << op;
    EXPECT_THAT(lines.at(op), HasSubstr("Threads.Exec")) << op;
  }
  EXPECT_EQ(lines.at("exit"), "OK");
}

TEST_F(ThreadSecurityTest, SetgroupsIsDeniedInAUserNamespacedChildThread) {
  // Readable by everyone but the group kDeniedGroup, which the caller has.
  const std::string file = dir_ + "/not-for-the-group";
  WriteFile(file, "negative group", 0604, kDeniedGroup);
  Lines lines = Attack({"userns_setgroups", file});
  SCOPED_TRACE(last_output_);
  EXPECT_EQ(lines.at("child"), "OK");
  EXPECT_EQ(lines.at("parent_open"), "EACCES");
  EXPECT_EQ(lines.at("setgroups"), "EPERM");
  EXPECT_EQ(lines.at("child_open"), "EACCES");
  // The positive control: root inside its namespace, it may still change its
  // ids there.
  EXPECT_EQ(lines.at("child_uid"), "0");
  EXPECT_EQ(lines.at("child_setresgid"), "0");
  EXPECT_EQ(lines.at("child_setresuid"), "0");
}

}  // namespace
}  // namespace procwarp::testing
