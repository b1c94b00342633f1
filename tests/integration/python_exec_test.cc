// Exec.RunPython against a real procwarpd and real interpreters
// (docs/python.md): every CPython 3.8-3.13 found on the machine (pyenv's
// shared builds, Debian's static /usr/bin/python3.11) and Debian's PyPy 3.9
// run
// tests/testcases/python_target.py busy in a loop, sleeping, blocked on a
// pipe read, with several threads, with an audit hook that vetoes, with
// PYTHON_DISABLE_REMOTE_DEBUG set; code that prints, raises, sets a global
// the target then prints, an eval; 100 execs into one busy target; a target
// exiting during the exec; uid 65534 on root's target and on its own. Older
// Pythons and a C program are refused with FAILED_PRECONDITION saying what
// was found. An interpreter that is not installed is skipped with a message.
//
// PyPy runs code on a thread blocked in a system call, else on a new thread
// it starts (daemon/python/pypy.h): its multithreaded case uses a busy main
// thread with sleeping workers (the code runs on a worker), --main-thread is
// refused unless the main thread waits, a timeout while the GIL is held
// leaves it healthy, and `-X disable-remote-debug` is its own opt-out.
//
// The target reports on itself after the execs ("done sum-ok=True
// message=..."), with its own sys.stdout: its computation, globals and
// output survived. Shard-parallel (BUILD: shard_count) to keep wall time low.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cc/client.h"
#include "daemon/ptrace/testing/target_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/exec/v1/exec.grpc.pb.h"
#include "tests/integration/daemon_harness.h"
#include "tests/testing/pythons.h"

namespace procwarp::testing {
namespace {

namespace pb = exec::v1;
using ::testing::HasSubstr;

constexpr int kNobody = 65534;

using Python = PythonPath;

bool Executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

std::string Script() { return RunfilePath("tests/testcases/python_target.py"); }
std::string OldScript() { return RunfilePath("tests/testcases/python_old_target.py"); }

class PythonExecTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto daemon = DaemonHarness::Start();
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = daemon->release();
    chmod(daemon_->dir().c_str(), 0777);
    auto client = Client::Connect(daemon_->socket_path());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = new Client(*std::move(client));
  }
  static void TearDownTestSuite() {
    delete client_;
    delete daemon_;
  }

  static absl::StatusOr<pb::RunPythonResponse> Exec(pid_t pid, const std::string& code,
                                                    bool eval = false,
                                                    bool main_thread = false) {
    pb::RunPythonRequest request;
    request.mutable_target()->set_pid(pid);
    request.set_code(code);
    request.set_mode(eval ? pb::PYTHON_MODE_EVAL : pb::PYTHON_MODE_EXEC);
    request.set_main_thread_only(main_thread);
    request.set_timeout_ms(20000);
    return client_->RunPython(request);
  }

  // A copy of the script uid 65534 can read (runfiles are under /root).
  static std::string ScriptForNobody() {
    const std::string path = absl::StrCat(daemon_->dir(), "/python_target.py");
    std::filesystem::copy_file(Script(), path,
                               std::filesystem::copy_options::overwrite_existing);
    chmod(path.c_str(), 0644);
    return path;
  }

  static std::string AsNobody(std::vector<std::string> args) {
    RunResult r = RunProgram(PeerCommand("exec_peer", daemon_->socket_path(), kNobody, args));
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return r.out;
  }

  static DaemonHarness* daemon_;
  static Client* client_;
};

DaemonHarness* PythonExecTest::daemon_ = nullptr;
Client* PythonExecTest::client_ = nullptr;

class EveryPython : public PythonExecTest,
                    public ::testing::WithParamInterface<Python> {
 protected:
  void SetUp() override {
    if (GetParam().path.empty()) {
      GTEST_SKIP() << "no CPython 3.8-3.13 found (pyenv under /root or $HOME, "
                      "/usr/bin/python3.11)";
    }
  }
  ReadyTarget Start(const std::string& mode, const TargetProcess::Options& options = {}) {
    return StartReady({GetParam().path, Script(), mode}, options);
  }
  // Sets `message` and stops the target's loop; returns its "done" line.
  std::string Finish(ReadyTarget& t, const std::string& message) {
    auto r = Exec(t.process.pid(), absl::StrCat("message = '", message, "'; stop = True"));
    EXPECT_TRUE(r.ok()) << r.status();
    auto line = t.process.ReadLine();
    EXPECT_TRUE(line.ok()) << line.status();
    return line.ok() ? *line : "";
  }
  // PyPy whose main thread computes: --main-thread cannot be honoured.
  void ExpectMainThreadOnlyRefused(pid_t pid) {
    auto main_only = Exec(pid, "print('never')", false, /*main_thread=*/true);
    ASSERT_FALSE(main_only.ok());
    EXPECT_EQ(main_only.status().code(), absl::StatusCode::kFailedPrecondition)
        << main_only.status();
    EXPECT_THAT(main_only.status().message(), HasSubstr("its main thread (--main-thread)"));
  }
  void ExpectPrintsRaisesEvals(pid_t pid) {
    auto printed = Exec(pid, "import sys\nprint('out', 6 * 7)\nprint('err', file=sys.stderr)");
    ASSERT_TRUE(printed.ok()) << printed.status();
    EXPECT_EQ(printed->stdout(), "out 42\n");
    EXPECT_EQ(printed->stderr(), "err\n");
    EXPECT_EQ(printed->interpreter().implementation(), GetParam().pypy ? "PyPy" : "CPython");
    EXPECT_FALSE(printed->has_exception());

    auto raised = Exec(pid, "print('before')\n{}['missing']");
    ASSERT_TRUE(raised.ok()) << raised.status();
    EXPECT_EQ(raised->stdout(), "before\n");
    EXPECT_EQ(raised->exception().type(), "KeyError");
    EXPECT_EQ(raised->exception().message(), "'missing'");
    EXPECT_THAT(raised->exception().traceback(), HasSubstr("File \"<procwarp>\", line 2"));

    auto value = Exec(pid, "[mode, 2 ** 10]", /*eval=*/true);
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_THAT(value->value_repr(), HasSubstr(", 1024]"));
  }
};

TEST_P(EveryPython, BusyTarget) {
  ReadyTarget t = Start("busy");
  ExpectPrintsRaisesEvals(t.process.pid());
  if (GetParam().pypy) {
    // A new thread ran the code (pypy.h), and the loop goes on meanwhile.
    auto first = Exec(t.process.pid(), "i", /*eval=*/true);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_FALSE(first->ran_on_main_thread());
    auto second = Exec(t.process.pid(), "i", /*eval=*/true);
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_GT(std::stoll(second->value_repr()), std::stoll(first->value_repr()));
    ExpectMainThreadOnlyRefused(t.process.pid());
    EXPECT_EQ(Finish(t, "busy-set"), "done sum-ok=True message=busy-set");
    return;
  }
  auto where = Exec(t.process.pid(), "print(__name__)");
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(where->stdout(), "__main__\n");
  EXPECT_TRUE(where->ran_on_main_thread());
  EXPECT_EQ(Finish(t, "busy-set"), "done sum-ok=True message=busy-set");
}

TEST_P(EveryPython, SleepingTarget) {
  ReadyTarget t = Start("sleep");
  ExpectPrintsRaisesEvals(t.process.pid());
  EXPECT_EQ(Finish(t, "sleep-set"), "done message=sleep-set");
}

// The anonymous mappings of `pid` holding the bootstrap's own source text
// (bootstrap.cc), "start-end" each: procwarp's scratch pages. By content,
// not by size: the kernel merges a scratch mapping with an adjacent
// anonymous one. (Copies the interpreter makes while compiling the source go
// to malloc's [heap], which has a name and is not looked at.)
std::set<std::string> ScratchMappings(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/maps"));
  std::ifstream mem(absl::StrCat("/proc/", pid, "/mem"), std::ios::binary);
  std::set<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() != 5 || fields[1][0] != 'r') continue;  // a file, or unreadable
    std::vector<std::string> range = absl::StrSplit(fields[0], '-');
    uint64_t start = 0, end = 0;
    if (range.size() != 2 || !absl::SimpleHexAtoi(range[0], &start) ||
        !absl::SimpleHexAtoi(range[1], &end) || end - start > (uint64_t{256} << 20)) {
      continue;
    }
    std::string data(end - start, '\0');
    mem.clear();
    mem.seekg(static_cast<std::streamoff>(start));
    mem.read(data.data(), static_cast<std::streamsize>(data.size()));
    if (data.find("def _run(fd, token_fd") != std::string::npos) out.insert(fields[0]);
  }
  return out;
}

// A --no-wait exec leaves its scratch pages while the queued code may still
// read them; the next exec into the target frees them once the code has run
// (docs/python.md, "Memory left behind"). Busy: the pending-call safe point;
// sleep: the blocked one (trampoline).
TEST_P(EveryPython, NoWaitScratchPagesAreFreedByTheNextExec) {
  if (GetParam().pypy) {
    // Its GC heap (anonymous mappings) keeps copies of every source it ran,
    // so the pages cannot be told apart by content; the code path is the
    // same as CPython's blocked one.
    GTEST_SKIP() << "PyPy: scratch pages not identifiable by content";
  }
  for (const char* mode : {"busy", "sleep"}) {
    ReadyTarget t = Start(mode);
    const pid_t pid = t.process.pid();
    pb::RunPythonRequest queued;
    queued.mutable_target()->set_pid(pid);
    queued.set_code("queued_ran = True");
    queued.set_no_wait(true);
    auto r = client_->RunPython(queued);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(ScratchMappings(pid).empty())
        << mode << ": where the test looks for them (" << r->DebugString() << ")";
    // Until the queued code has run (a bound on the execs, not a timeout);
    // each exec frees what has finished, then one more for the last.
    bool ran = false;
    for (int i = 0; i < 200 && !ran; ++i) {
      auto seen = Exec(pid, "globals().get('queued_ran')", /*eval=*/true);
      ASSERT_TRUE(seen.ok()) << seen.status();
      ran = seen->value_repr() == "True";
    }
    ASSERT_TRUE(ran) << mode;
    // An exec may itself leave its pages to the next one (its trampoline's
    // thread not yet off the code page): a few more, each freeing the last.
    std::set<std::string> left;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(Exec(pid, "pass").ok());
      left = ScratchMappings(pid);
      if (left.empty()) break;
    }
    EXPECT_TRUE(left.empty()) << mode << ": " << absl::StrJoin(left, " ");
    EXPECT_THAT(Finish(t, "freed"), HasSubstr("message=freed"));
  }
}

// Queued calls that never run (the main thread is in an endless C call):
// their pages stay, and after 16 the target is refused further execs with
// RESOURCE_EXHAUSTED — said only to a caller who may ptrace it.
TEST_P(EveryPython, LeftoversPerTargetAreBounded) {
  if (GetParam().pypy) GTEST_SKIP() << "PyPy has no pending calls (pypy.h)";
  ReadyTarget t = Start("stuck");
  const pid_t pid = t.process.pid();
  auto line = t.process.ReadLine();
  ASSERT_TRUE(line.ok()) << line.status();
  ASSERT_EQ(*line, "stuck");
  pb::RunPythonRequest queued;
  queued.mutable_target()->set_pid(pid);
  queued.set_code("pass");
  queued.set_no_wait(true);
  for (int i = 0; i < 16; ++i) {
    auto r = client_->RunPython(queued);
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
  }
  EXPECT_FALSE(ScratchMappings(pid).empty());
  auto refused = client_->RunPython(queued);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("16 earlier execs queued"));
  EXPECT_THAT(AsNobody({"python", absl::StrCat(pid), "print(1)"}),
              ::testing::StartsWith("PERMISSION_DENIED"));
}

TEST_P(EveryPython, TargetBlockedReadingAPipe) {
  ReadyTarget t = Start("pipe");
  ExpectPrintsRaisesEvals(t.process.pid());
  auto set = Exec(t.process.pid(), "message = 'pipe-set'");
  ASSERT_TRUE(set.ok()) << set.status();
  // The read goes on as if nothing happened: no EINTR, the data arrives.
  ASSERT_TRUE(t.process.Write("hello\n").ok());
  auto line = t.process.ReadLine();
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(*line, "done read=hello message=pipe-set");
}

TEST_P(EveryPython, MultithreadedTarget) {
  if (GetParam().pypy) {
    // A busy main thread, three sleeping workers: the code runs on a worker.
    ReadyTarget t = Start("threads-sleep");
    ExpectPrintsRaisesEvals(t.process.pid());
    auto where = Exec(t.process.pid(), "import threading\n"
                      "print(threading.current_thread() is threading.main_thread())");
    ASSERT_TRUE(where.ok()) << where.status();
    EXPECT_EQ(where->stdout(), "False\n");
    EXPECT_FALSE(where->ran_on_main_thread());
    ExpectMainThreadOnlyRefused(t.process.pid());
    EXPECT_EQ(Finish(t, "threads-set"), "done sum-ok=True message=threads-set");
    return;
  }
  ReadyTarget t = Start("threads");
  ExpectPrintsRaisesEvals(t.process.pid());
  auto main_only = Exec(t.process.pid(), "import threading\n"
                        "print(threading.current_thread() is threading.main_thread())",
                        false, /*main_thread=*/true);
  ASSERT_TRUE(main_only.ok()) << main_only.status();
  EXPECT_EQ(main_only->stdout(), "True\n");
  EXPECT_TRUE(main_only->ran_on_main_thread());
  EXPECT_EQ(Finish(t, "threads-set"), "done workers-ran=True message=threads-set");
}

TEST_P(EveryPython, AuditHookVetoIsPermissionDenied) {
  ReadyTarget t = Start("veto");
  auto r = Exec(t.process.pid(), "print('never')");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("remote exec is not welcome here"));
  EXPECT_TRUE(t.process.Alive());
}

TEST_P(EveryPython, OptOutIsHonouredAndAdminsMayOverride) {
  ReadyTarget t = Start("sleep", {.env = {"PYTHON_DISABLE_REMOTE_DEBUG=1"}});
  auto refused = Exec(t.process.pid(), "print('never')");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("PYTHON_DISABLE_REMOTE_DEBUG=1"));
  pb::RunPythonRequest request;
  request.mutable_target()->set_pid(t.process.pid());
  request.set_code("print('overridden')");
  request.set_override_opt_out(true);
  auto overridden = client_->RunPython(request);  // the test runs as root: admin
  ASSERT_TRUE(overridden.ok()) << overridden.status();
  EXPECT_EQ(overridden->stdout(), "overridden\n");
}

TEST_P(EveryPython, XOptionOptOutIsHonoured) {
  // CPython 3.14's spelling, and PyPy's.
  const std::string option = GetParam().pypy ? "disable-remote-debug" : "disable_remote_debug";
  ReadyTarget t = StartReady({GetParam().path, "-X", option, Script(), "sleep"});
  auto refused = Exec(t.process.pid(), "print('never')");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr(absl::StrCat("-X ", option)));
  EXPECT_TRUE(t.process.Alive());
}

TEST_P(EveryPython, HundredExecsIntoABusyTarget) {
  // PyPy: each on a new thread while the main thread computes (pypy.h).
  ReadyTarget t = Start("busy");
  for (int i = 0; i < 100; ++i) {
    auto r = Exec(t.process.pid(), absl::StrCat("print(", i, ")"));
    ASSERT_TRUE(r.ok()) << "exec " << i << ": " << r.status();
    ASSERT_EQ(r->stdout(), absl::StrCat(i, "\n"));
  }
  if (GetParam().pypy) {
    // Every thread started for an exec has ended (the daemon waits for it
    // before unmapping its stub).
    const std::filesystem::directory_iterator tasks(
        absl::StrCat("/proc/", t.process.pid(), "/task"));
    EXPECT_EQ(std::distance(begin(tasks), end(tasks)), 1);
  }
  EXPECT_EQ(Finish(t, "after-100"), "done sum-ok=True message=after-100");
}

// PyPy: the new thread waits for the GIL while the main thread is in one
// long runtime call; the deadline withdraws the code, which then never runs
// (the run token, bootstrap.h), and the target carries on unharmed.
TEST_P(EveryPython, PyPyTimeoutWhileTheGilIsHeldLeavesTheTargetHealthy) {
  if (!GetParam().pypy) GTEST_SKIP() << "PyPy's new-thread safe point";
  ReadyTarget t = Start("gil-held");
  pb::RunPythonRequest request;
  request.mutable_target()->set_pid(t.process.pid());
  request.set_code("message = 'withdrawn-ran'");
  request.set_timeout_ms(300);
  auto late = client_->RunPython(request);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  EXPECT_THAT(late.status().message(), HasSubstr("withdrawn and will not run"));
  auto after = Exec(t.process.pid(), "print(message == '')");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->stdout(), "True\n");
  EXPECT_EQ(Finish(t, "gil-set"), "done sum-ok=True message=gil-set");
}

TEST_P(EveryPython, TargetExitingDuringTheExecIsNotFound) {
  ReadyTarget t = Start(GetParam().pypy ? "sleep" : "exit");
  auto r = Exec(t.process.pid(), "import os\nos._exit(3)");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  t.process.WaitExit();
}

TEST_P(EveryPython, NobodyOnRootsTargetIsDeniedAndOnItsOwnWorks) {
  ReadyTarget root_target = Start("sleep");
  EXPECT_THAT(AsNobody({"python", absl::StrCat(root_target.process.pid()), "print(1)"}),
              ::testing::StartsWith("PERMISSION_DENIED"));
  if (GetParam().pypy) {
    // A busy one too: no thread is started for a caller that may not attach.
    ReadyTarget busy = Start("busy");
    EXPECT_THAT(AsNobody({"python", absl::StrCat(busy.process.pid()), "print(1)"}),
                ::testing::StartsWith("PERMISSION_DENIED"));
    const std::filesystem::directory_iterator tasks(
        absl::StrCat("/proc/", busy.process.pid(), "/task"));
    EXPECT_EQ(std::distance(begin(tasks), end(tasks)), 1);  // still one thread
    EXPECT_EQ(Finish(busy, "nobody-denied"), "done sum-ok=True message=nobody-denied");
  }
  // pyenv's interpreters live under /root, which uid 65534 cannot enter:
  // its own target runs Debian's python3.11 then.
  const std::string own_python =
      absl::StartsWith(GetParam().path, "/root/") ? "/usr/bin/python3.11" : GetParam().path;
  if (!Executable(own_python)) GTEST_SKIP() << "no Python uid 65534 can run";
  ReadyTarget own = StartReady({own_python, ScriptForNobody(), "sleep"}, {.uid = kNobody});
  EXPECT_EQ(AsNobody({"python", absl::StrCat(own.process.pid()), "print('mine')"}),
            "OK mine|\n");
}

// The scheduler state letter of `pid` (/proc/PID/stat; the comm may hold
// anything, the state follows the last ')').
char StateOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
}

// Waits until `pid` is in a job-control stop (T): a condition.
void AwaitStopped(pid_t pid) {
  while (StateOf(pid) != 'T') usleep(1000);
}

// memray#450: a SIGSTOPped target is refused, never resumed or crashed.
TEST_P(EveryPython, StoppedTargetIsRefusedAndStaysStopped) {
  ReadyTarget t = Start("sleep");
  const pid_t pid = t.process.pid();
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  AwaitStopped(pid);
  auto r = Exec(pid, "print('never')");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("stopped by job control"));
  // Still stopped: procwarp did not resume it. A task detached in group stop
  // is woken and re-enters the stop, so /proc may say 'R' for a moment;
  // resumed for real it would sit in its sleep ('S'). A bound on the looks.
  for (int i = 0; i < 1000 && StateOf(pid) == 'R'; ++i) usleep(1000);
  EXPECT_EQ(StateOf(pid), 'T');
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  EXPECT_EQ(Finish(t, "after-stop"), "done message=after-stop");
}

// py-spy#285, memray#745: a Python in its own pid and mount namespace, run
// on from the host daemon by its host pid.
TEST_P(EveryPython, TargetInAContainer) {
  ReadyTarget t = StartReady(InContainer({GetParam().path, Script(), "sleep"}));
  EXPECT_THAT(t.ready, HasSubstr("pid=1 "));
  const pid_t python = OnlyChildOf(t.process.pid());
  ASSERT_GT(python, 0);
  auto r = Exec(python, "import os\nprint(os.getpid())");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout(), "1\n");
  auto stop = Exec(python, "message = 'contained'; stop = True");
  ASSERT_TRUE(stop.ok()) << stop.status();
  auto line = t.process.ReadLine();
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(*line, "done message=contained");
}

std::vector<Python> ParamsOrPlaceholder() {
  std::vector<Python> found = ExecPythons();
  if (found.empty()) found.push_back({"none_found", "", ""});
  return found;
}

INSTANTIATE_TEST_SUITE_P(Interpreters, EveryPython,
                         ::testing::ValuesIn(ParamsOrPlaceholder()),
                         [](const auto& info) { return info.param.id; });

TEST_F(PythonExecTest, NonPythonTargetIsFailedPrecondition) {
  ReadyTarget t = StartReady({RunfilePath("tests/testcases/attach_target"), "checksum"});
  auto r = Exec(t.process.pid(), "print(1)");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("not running a Python interpreter"));
}

TEST_F(PythonExecTest, OlderPythonsAreRefusedByVersion) {
  int tried = 0;
  for (const std::string minor : {"2.7", "3.6", "3.7"}) {
    const std::string path = PyenvPython(minor);
    if (path.empty()) {
      std::cout << "python" << minor << " is not installed: skipped\n";
      continue;
    }
    ++tried;
    ReadyTarget t = StartReady({path, OldScript()});
    auto r = Exec(t.process.pid(), "print(1)");
    ASSERT_FALSE(r.ok()) << minor;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("CPython ", minor, ".")));
  }
  if (tried == 0) GTEST_SKIP() << "no Python 2.7, 3.6 or 3.7 on this machine";
}

}  // namespace
}  // namespace procwarp::testing
