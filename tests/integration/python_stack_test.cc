// Snapshots.PythonStack against a real procwarpd and real Python programs
// (tests/testcases/python_stack_target.py), under every CPython 3.8-3.13 the
// machine has (~/.pyenv/versions/3.*, Debian's /usr/bin/python3; a missing
// one is skipped with a message): nested functions with known locals checked
// exactly, several threads and their threading names, a busy target read without stopping it,
// --consistent leaving it running and untraced, a target whose frames change
// all the time (a result or ABORTED, never garbage), a target exiting during
// reads, non-Python and unsupported interpreters (FAILED_PRECONDITION), and
// the attach rule as uid 65534 (snapshots_peer).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cc/client.h"
#include "daemon/ptrace/testing/target_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_harness.h"
#include "tests/testing/pythons.h"

namespace procwarp::testing {
namespace {

namespace pb = snapshots::v1;
using ::testing::HasSubstr;

constexpr int kNobody = 65534;

using Interpreter = PythonPath;

std::string Script() { return RunfilePath("tests/testcases/python_stack_target.py"); }

// "# LINE:<name>" markers of the target script -> line numbers.
std::map<std::string, int> Markers() {
  std::ifstream in(Script());
  std::map<std::string, int> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    size_t at = line.find("# LINE:");
    if (at != std::string::npos) out[line.substr(at + 7)] = n;
  }
  return out;
}

const pb::PythonThread* MainThread(const pb::PythonStackResponse& stack) {
  for (const auto& t : stack.threads()) {
    if (t.is_main()) return &t;
  }
  return nullptr;
}

std::vector<std::string> Functions(const pb::PythonThread& thread) {
  std::vector<std::string> out;
  for (const auto& f : thread.frames()) out.push_back(f.function());
  return out;
}

// The Python frames alone (a native read merges native ones in).
std::vector<std::string> PythonFunctions(const pb::PythonThread& thread) {
  std::vector<std::string> out;
  for (const auto& f : thread.frames()) {
    if (!f.is_native()) out.push_back(f.function());
  }
  return out;
}

// The thread's native frames, outermost first, wherever the daemon put them.
std::vector<pb::PythonFrame> NativeFrames(const pb::PythonThread& thread) {
  std::vector<pb::PythonFrame> out;
  const auto& all = thread.native_stack() == pb::NATIVE_STACK_MERGED ? thread.frames()
                                                                      : thread.native_frames();
  for (const auto& f : all) {
    if (f.is_native()) out.push_back(f);
  }
  return out;
}

std::string ProcField(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, field + ":")) {
      return std::string(absl::StripAsciiWhitespace(line.substr(field.size() + 1)));
    }
  }
  return "";
}

// Waits until every thread of `pid` is blocked (not R in its task stat):
// the state the daemon reports as "idle". A condition, not a timeout: the
// target reaches it right after printing its ready line.
void AwaitAllBlocked(pid_t pid) {
  for (;;) {
    bool running = false;
    for (const auto& task :
         std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"))) {
      std::ifstream in(task.path() / "stat");
      std::string stat((std::istreambuf_iterator<char>(in)), {});
      size_t paren = stat.rfind(')');
      if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'R') {
        running = true;
      }
    }
    if (!running) return;
    usleep(1000);
  }
}

// One local as the test writes it: type, repr (or "" for containers),
// length (-1: none), argument or not.
struct Expected {
  std::string type;
  std::string repr;
  int64_t length;
  bool argument;
};

// A daemon of the test's own and a client of it.
class DaemonFixture {
 protected:
  void StartDaemon() {
    auto daemon = DaemonHarness::Start();
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    auto client = Client::Connect(daemon_->socket_path());
    ASSERT_TRUE(client.ok()) << client.status();
    client_.emplace(*std::move(client));
  }
  absl::StatusOr<pb::PythonStackResponse> Stack(pid_t pid, bool locals,
                                                bool consistent = false) {
    pb::PythonStackRequest request;
    request.set_pid(pid);
    request.set_locals(locals);
    request.set_consistent(consistent);
    return client_->PythonStack(request);
  }
  absl::StatusOr<pb::PythonStackResponse> NativeStack(pid_t pid) {
    pb::PythonStackRequest request;
    request.set_pid(pid);
    request.set_native(true);
    return client_->PythonStack(request);
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::optional<Client> client_;
};

class PythonStackTest : public ::testing::TestWithParam<Interpreter>, public DaemonFixture {
 protected:
  void SetUp() override { StartDaemon(); }

  // Reads until the main thread's frames are `functions` (the target printed
  // its ready line from a function it has yet to return from). A condition
  // with a bound on the number of reads, not a timeout.
  void AwaitMainFrames(pid_t pid, const std::vector<std::string>& functions) {
    for (int i = 0; i < 10000; ++i) {
      auto stack = Stack(pid, /*locals=*/false);
      if (stack.ok() && MainThread(*stack) != nullptr &&
          Functions(*MainThread(*stack)) == functions) {
        return;
      }
    }
    ADD_FAILURE() << "the main thread never ran " << absl::StrJoin(functions, " > ");
  }

  ReadyTarget Start(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {GetParam().path, Script()};
    argv.insert(argv.end(), args.begin(), args.end());
    return StartReady(argv);
  }
};

TEST_P(PythonStackTest, NestedFunctionsAndLocalsAreExact) {
  ReadyTarget t = Start({"nested"});
  AwaitAllBlocked(t.process.pid());
  auto stack = Stack(t.process.pid(), /*locals=*/true);
  ASSERT_TRUE(stack.ok()) << stack.status();
  EXPECT_EQ(stack->interpreter().implementation(), "CPython");
  EXPECT_TRUE(absl::StartsWith(stack->interpreter().version(), "3."));
  if (absl::StrContains(GetParam().path, "pyenv")) {  // .../versions/3.N.M/bin/python3.N
    EXPECT_THAT(GetParam().path, HasSubstr(absl::StrCat("/", stack->interpreter().version(),
                                                        stack->interpreter().version().size() > 4 ? "/" : ".")));
  }
  const pb::PythonThread* main = MainThread(*stack);
  ASSERT_NE(main, nullptr);
  EXPECT_EQ(main->tid(), t.process.pid());
  EXPECT_TRUE(main->idle());  // blocked reading stdin
  EXPECT_FALSE(main->holds_gil());
  EXPECT_THAT(Functions(*main),
              ::testing::ElementsAre("<module>", "outer", "middle", "inner"));
  const std::map<std::string, int> lines = Markers();
  std::vector<int> got_lines;
  for (const auto& f : main->frames()) {
    EXPECT_EQ(f.file(), Script());
    got_lines.push_back(f.line());
  }
  EXPECT_THAT(got_lines, ::testing::ElementsAre(lines.at("module"), lines.at("outer"),
                                                lines.at("middle"), lines.at("inner")));
  // middle's locals: its argument and a tuple.
  const auto& middle = main->frames(2);
  ASSERT_EQ(middle.locals_size(), 2);
  EXPECT_EQ(middle.locals(0).name(), "n");
  EXPECT_TRUE(middle.locals(0).is_argument());
  EXPECT_EQ(middle.locals(0).value().repr(), "1");
  EXPECT_EQ(middle.locals(1).name(), "t");
  EXPECT_EQ(middle.locals(1).value().type(), "tuple");
  EXPECT_EQ(middle.locals(1).value().length(), 2);

  const std::map<std::string, Expected> expected = {
      {"a", {"int", "1", -1, true}},
      {"b", {"str", "'two'", 3, true}},
      {"rest", {"tuple", "", 1, true}},
      {"kw", {"dict", "", 1, true}},
      {"x", {"int", "42", -1, false}},
      {"neg", {"int", "-7", -1, false}},
      {"big", {"int", "1267650600228229401496703205376", -1, false}},
      {"y", {"float", "-1.5", -1, false}},
      {"s", {"str", "'h\xc3\xa9llo'", 5, false}},
      {"by", {"bytes", "b'\\x00ab'", 3, false}},
      {"flag", {"bool", "True", -1, false}},
      {"nothing", {"NoneType", "None", -1, false}},
      {"lst", {"list", "", 3, false}},
      {"d", {"dict", "", 1, false}},
      {"st", {"set", "", 2, false}},
  };
  std::map<std::string, Expected> got;
  for (const auto& local : main->frames(3).locals()) {
    const auto& v = local.value();
    got[local.name()] = {v.type(), v.repr(), v.has_length() ? v.length() : -1,
                         local.is_argument()};
    EXPECT_FALSE(v.truncated()) << local.name();
    EXPECT_NE(v.address(), 0u) << local.name();
  }
  EXPECT_EQ(got.count("later"), 0u);  // not bound yet
  for (const auto& [name, want] : expected) {
    ASSERT_EQ(got.count(name), 1u) << name;
    const Expected& have = got[name];
    EXPECT_EQ(have.type, want.type) << name;
    EXPECT_EQ(have.repr, want.repr) << name;
    EXPECT_EQ(have.length, want.length) << name;
    EXPECT_EQ(have.argument, want.argument) << name;
  }
  EXPECT_EQ(got.size(), expected.size());
  // Without locals: the same frames, no locals.
  auto bare = Stack(t.process.pid(), /*locals=*/false);
  ASSERT_TRUE(bare.ok()) << bare.status();
  ASSERT_NE(MainThread(*bare), nullptr);
  EXPECT_EQ(Functions(*MainThread(*bare)), Functions(*main));
  EXPECT_EQ(MainThread(*bare)->frames(3).locals_size(), 0);
}

TEST_P(PythonStackTest, EveryThreadIsFound) {
  ReadyTarget t = Start({"threads"});
  AwaitAllBlocked(t.process.pid());
  auto stack = Stack(t.process.pid(), /*locals=*/false);
  ASSERT_TRUE(stack.ok()) << stack.status();
  ASSERT_EQ(stack->threads_size(), 3);
  const std::map<std::string, int> lines = Markers();
  std::set<pid_t> tids;
  std::map<std::string, int> worker_lines;
  int mains = 0;
  for (const auto& thread : stack->threads()) {
    mains += thread.is_main();
    if (thread.is_main()) {
      EXPECT_EQ(thread.name(), "MainThread");  // threading's default, read
    }
    tids.insert(thread.tid());
    EXPECT_TRUE(std::filesystem::exists(
        absl::StrCat("/proc/", t.process.pid(), "/task/", thread.tid())))
        << thread.tid();
    EXPECT_NE(thread.thread_ident(), 0u);
    EXPECT_TRUE(thread.idle());
    EXPECT_FALSE(thread.holds_gil());
    for (const auto& f : thread.frames()) {
      if (absl::StartsWith(f.function(), "worker_")) worker_lines[f.function()] = f.line();
    }
  }
  EXPECT_EQ(mains, 1);
  EXPECT_EQ(tids.size(), 3u);
  EXPECT_EQ(stack->threads(0).tid(), t.process.pid());  // main first
  EXPECT_EQ(worker_lines, (std::map<std::string, int>{{"worker_a", lines.at("worker_a")},
                                                      {"worker_b", lines.at("worker_b")}}));
}

// The innermost worker_* function of each thread (or "main") -> its name.
std::map<std::string, std::string> NamesByWorker(const pb::PythonStackResponse& stack) {
  std::map<std::string, std::string> out;
  for (const auto& thread : stack.threads()) {
    std::string worker = thread.is_main() ? "main" : "";
    for (const auto& f : thread.frames()) {
      if (absl::StartsWith(f.function(), "worker_")) worker = f.function();
    }
    out[worker] = thread.name();
  }
  return out;
}

TEST_P(PythonStackTest, ThreadNamesAreThreadingsNames) {
  ReadyTarget t = Start({"names"});
  absl::StatusOr<std::string> line = t.process.ReadLine();
  ASSERT_TRUE(line.ok()) << line.status();
  constexpr absl::string_view kPrefix = "default-name=";
  ASSERT_TRUE(absl::StartsWith(*line, kPrefix)) << *line;
  const std::string default_name = line->substr(kPrefix.size());
  const std::map<std::string, std::string> expected = {
      {"main", "main-renamed"},               // threading.main_thread().name = ...
      {"worker_a", "worker-7"},               // given to Thread()
      {"worker_b", default_name},             // threading's "Thread-1 ..."
      {"worker_c", "renamed-\xc3\xa9"},       // changed after start
      {"worker_sub", "worker-sub"},           // a Thread subclass
      {"worker_raw", ""},                     // _thread: threading has no name
  };
  // The threads reach their worker_* right after the ready line: read until
  // they have (a bound on the number of reads, not a timeout).
  std::map<std::string, std::string> got;
  for (int i = 0; i < 10000 && got.size() != expected.size(); ++i) {
    auto stack = Stack(t.process.pid(), /*locals=*/false);
    ASSERT_TRUE(stack.ok()) << stack.status();
    got = NamesByWorker(*stack);
    if (got.count("") != 0) got.clear();  // a thread not in its worker yet
  }
  EXPECT_EQ(got, expected);
}

TEST_P(PythonStackTest, BusyTargetIsReadRunningAndConsistentModeLeavesItRunning) {
  ReadyTarget t = Start({"busy"});
  AwaitMainFrames(t.process.pid(), {"<module>", "busy", "spin"});
  const std::map<std::string, int> lines = Markers();
  auto stack = Stack(t.process.pid(), /*locals=*/true);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const pb::PythonThread* main = MainThread(*stack);
  ASSERT_NE(main, nullptr);
  EXPECT_THAT(Functions(*main), ::testing::ElementsAre("<module>", "busy", "spin"));
  EXPECT_TRUE(main->holds_gil());
  EXPECT_EQ(main->frames(2).locals(0).name(), "i");
  EXPECT_EQ(main->frames(2).locals(0).value().type(), "int");
  // The loop's two lines: the `while` test and the increment.
  EXPECT_THAT(main->frames(2).line(),
              ::testing::AnyOf(lines.at("spin"), lines.at("spin") - 1));

  auto frozen = Stack(t.process.pid(), /*locals=*/true, /*consistent=*/true);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  ASSERT_NE(MainThread(*frozen), nullptr);
  EXPECT_THAT(Functions(*MainThread(*frozen)),
              ::testing::ElementsAre("<module>", "busy", "spin"));
  EXPECT_EQ(frozen->retries(), 0);
  // Detached and running: no tracer, and it still answers.
  EXPECT_EQ(ProcField(t.process.pid(), "TracerPid"), "0");
  ASSERT_TRUE(t.process.Write("ping\n").ok());
  auto pong = t.process.ReadLine();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(*pong, "pong");
  EXPECT_EQ(ProcField(t.process.pid(), "TracerPid"), "0");
}

TEST_P(PythonStackTest, ChangingFramesGiveAResultOrAbortedNeverGarbage) {
  ReadyTarget t = Start({"churn"});
  AwaitMainFrames(t.process.pid(), {"<module>", "churn"});
  int ok = 0;
  for (int i = 0; i < 15; ++i) {
    auto stack = Stack(t.process.pid(), /*locals=*/true);
    if (!stack.ok()) {
      EXPECT_EQ(stack.status().code(), absl::StatusCode::kAborted) << stack.status();
      continue;
    }
    ++ok;  // a complete, verified read
    const pb::PythonThread* main = MainThread(*stack);
    ASSERT_NE(main, nullptr);
    std::vector<std::string> functions = Functions(*main);
    ASSERT_GE(functions.size(), 2u);
    EXPECT_EQ(functions[0], "<module>");
    EXPECT_EQ(functions[1], "churn");
    if (functions.size() == 3) {
      EXPECT_EQ(functions[2], "leaf");
    }
    EXPECT_LE(functions.size(), 3u);
  }
  RecordProperty("complete_reads", ok);
  // Stopped, the frames cannot change.
  auto frozen = Stack(t.process.pid(), /*locals=*/true, /*consistent=*/true);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  ASSERT_TRUE(t.process.Write("ping\n").ok());
  EXPECT_EQ(t.process.ReadLine().value_or(""), "pong");
}

TEST_P(PythonStackTest, TargetExitingDuringReadsIsACleanError) {
  ReadyTarget t = Start({"nested"});
  const int fds = daemon_->CountFds();
  t.process.CloseStdin();  // inner() returns and the program ends
  for (;;) {
    auto stack = Stack(t.process.pid(), /*locals=*/true);
    if (stack.ok()) continue;  // not gone yet
    EXPECT_EQ(stack.status().code(), absl::StatusCode::kNotFound) << stack.status();
    break;
  }
  t.process.WaitExit();
  auto after = Stack(t.process.pid(), /*locals=*/true);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kNotFound) << after.status();
  EXPECT_LE(daemon_->AwaitFdsAtMost(fds, absl::Seconds(10)), fds);
}

// True once `pid` is in a job-control stop (State "T"), within 10 s.
bool AwaitStoppedByJobControl(pid_t pid) {
  for (int i = 0; i < 10000; ++i) {
    if (absl::StartsWith(ProcField(pid, "State"), "T")) return true;
    usleep(1000);
  }
  return false;
}

// memray#450: reading a SIGSTOPped target works without resuming it;
// --consistent (which must stop it itself) is refused with a clear error.
TEST_P(PythonStackTest, StoppedTargetIsReadAndStaysStopped) {
  ReadyTarget t = Start({"nested"});
  const pid_t pid = t.process.pid();
  AwaitAllBlocked(pid);
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  ASSERT_TRUE(AwaitStoppedByJobControl(pid));
  auto stack = Stack(pid, /*locals=*/true);
  ASSERT_TRUE(stack.ok()) << stack.status();
  ASSERT_NE(MainThread(*stack), nullptr);
  EXPECT_THAT(Functions(*MainThread(*stack)),
              ::testing::ElementsAre("<module>", "outer", "middle", "inner"));
  auto consistent = Stack(pid, /*locals=*/false, /*consistent=*/true);
  ASSERT_FALSE(consistent.ok());
  EXPECT_EQ(consistent.status().code(), absl::StatusCode::kFailedPrecondition)
      << consistent.status();
  EXPECT_THAT(consistent.status().message(), HasSubstr("stopped by job control"));
  // Detached from its job-control stop, a thread is woken and goes straight
  // back into the stop (the kernel keeps the group stop pending over the
  // detach): under load /proc may show it "R" for that moment, so the check
  // is that it is back in the stop, not that it never left.
  EXPECT_TRUE(AwaitStoppedByJobControl(pid));
  EXPECT_EQ(ProcField(pid, "TracerPid"), "0");
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  ASSERT_TRUE(t.process.Write("go\n").ok());
  t.process.WaitExit();  // it read its line and finished
}

// py-spy#285: a Python in its own pid and mount namespace, read by its host
// pid; its threads are reported with host tids (not the container's 1).
TEST_P(PythonStackTest, TargetInAContainerIsRead) {
  ReadyTarget t = StartReady(InContainer({GetParam().path, Script(), "nested"}));
  EXPECT_THAT(t.ready, HasSubstr("pid=1"));
  const pid_t python = OnlyChildOf(t.process.pid());
  ASSERT_GT(python, 0);
  AwaitAllBlocked(python);
  auto stack = Stack(python, /*locals=*/true);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const pb::PythonThread* main = MainThread(*stack);
  ASSERT_NE(main, nullptr);
  EXPECT_EQ(main->tid(), python);
  EXPECT_TRUE(main->idle());
  EXPECT_THAT(Functions(*main), ::testing::ElementsAre("<module>", "outer", "middle", "inner"));
}

// --native on a thread blocked in a C call (sys.stdin.readline: read(2) on
// a pipe): libc's read is the innermost frame, under the Python frames,
// merged in place of the evaluation loop's C frames; the target is left
// running and untraced.
TEST_P(PythonStackTest, NativeFramesShowTheCCallUnderThePythonFrames) {
  ReadyTarget t = Start({"nested"});
  const pid_t pid = t.process.pid();
  AwaitAllBlocked(pid);
  const int fds = daemon_->CountFds();
  auto stack = NativeStack(pid);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const pb::PythonThread* main = MainThread(*stack);
  ASSERT_NE(main, nullptr);
  EXPECT_EQ(main->native_stack(), pb::NATIVE_STACK_MERGED) << main->native_note();
  EXPECT_THAT(PythonFunctions(*main),
              ::testing::ElementsAre("<module>", "outer", "middle", "inner"));
  const std::vector<pb::PythonFrame> native = NativeFrames(*main);
  ASSERT_FALSE(native.empty()) << main->native_note();
  const pb::PythonFrame& innermost = native.back();
  EXPECT_TRUE(absl::EndsWith(innermost.function(), "read")) << innermost.DebugString();
  EXPECT_THAT(innermost.file(), HasSubstr("libc"));
  EXPECT_NE(innermost.native_address(), 0u);
  if (main->native_stack() == pb::NATIVE_STACK_MERGED) {
    // read is the last frame; inner (the Python caller) comes before it, and
    // something of the C runtime (main / _start / __libc_start_main) before
    // <module>.
    EXPECT_TRUE(main->frames(main->frames_size() - 1).is_native());
    EXPECT_TRUE(main->frames(0).is_native());
    for (const auto& f : main->frames()) {
      // The evaluation loop's C frames are replaced by the Python ones.
      EXPECT_FALSE(f.is_native() && absl::StartsWith(f.function(), "_PyEval_EvalFrameDefault"))
          << f.function();
    }
  }
  // Detached and running: no tracer, not stopped, and it goes on reading.
  EXPECT_EQ(ProcField(pid, "TracerPid"), "0");
  EXPECT_THAT(ProcField(pid, "State"), ::testing::Not(::testing::StartsWith("T")));
  EXPECT_LE(daemon_->AwaitFdsAtMost(fds, absl::Seconds(10)), fds);
  ASSERT_TRUE(t.process.Write("go\n").ok());
  t.process.WaitExit();  // inner() read its line and the program ended
}

// A running thread: its innermost C frame is the evaluation loop itself,
// replaced by the Python frames it runs.
TEST_P(PythonStackTest, NativeFramesOfABusyThread) {
  ReadyTarget t = Start({"busy"});
  AwaitMainFrames(t.process.pid(), {"<module>", "busy", "spin"});
  auto stack = NativeStack(t.process.pid());
  ASSERT_TRUE(stack.ok()) << stack.status();
  const pb::PythonThread* main = MainThread(*stack);
  ASSERT_NE(main, nullptr);
  EXPECT_THAT(PythonFunctions(*main), ::testing::ElementsAre("<module>", "busy", "spin"));
  EXPECT_EQ(main->native_stack(), pb::NATIVE_STACK_MERGED) << main->native_note();
  EXPECT_FALSE(NativeFrames(*main).empty());
  EXPECT_EQ(ProcField(t.process.pid(), "TracerPid"), "0");
  ASSERT_TRUE(t.process.Write("ping\n").ok());
  auto pong = t.process.ReadLine();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(*pong, "pong");
}

TEST_P(PythonStackTest, TargetExitingDuringNativeReadsIsACleanError) {
  ReadyTarget t = Start({"nested"});
  const int fds = daemon_->CountFds();
  t.process.CloseStdin();  // inner() returns and the program ends
  for (;;) {
    auto stack = NativeStack(t.process.pid());
    if (stack.ok()) continue;  // not gone yet
    // "exited during the read", "has exited", or "no process" once reaped.
    EXPECT_EQ(stack.status().code(), absl::StatusCode::kNotFound) << stack.status();
    break;
  }
  t.process.WaitExit();
  EXPECT_LE(daemon_->AwaitFdsAtMost(fds, absl::Seconds(10)), fds);
}

INSTANTIATE_TEST_SUITE_P(Interpreters, PythonStackTest, ::testing::ValuesIn(SupportedPythons()),
                         [](const ::testing::TestParamInfo<Interpreter>& info) {
                           return info.param.id;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PythonStackTest);

class PythonStackRulesTest : public ::testing::Test, public DaemonFixture {
 protected:
  void SetUp() override { StartDaemon(); }
  absl::Status StackStatus(pid_t pid) { return Stack(pid, /*locals=*/false).status(); }
  // snapshots_peer's line, as uid/gid 65534; `op` "stack" or "native-stack".
  std::string AsNobody(pid_t pid, const std::string& op = "stack") {
    RunResult r = RunProgram(PeerCommand("snapshots_peer", daemon_->socket_path(), kNobody,
                                         {op, absl::StrCat(pid)}));
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return r.out;
  }
};

TEST_F(PythonStackRulesTest, NonPythonTargetIsFailedPrecondition) {
  ReadyTarget t = StartReady({RunfilePath("tests/testcases/attach_target"), "read"});
  absl::Status status = StackStatus(t.process.pid());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("not a CPython"));
}

TEST_F(PythonStackRulesTest, UnsupportedPythonsAreNamed) {
  struct Old {
    std::string path;
    std::string says;
  };
  int checked = 0;
  for (const Old& old : {Old{PyenvPython("3.7"), "Python 3.7"}, Old{PyenvPython("3.6"), "Python 3.6"},
                         Old{PyenvPython("2.7"), "Python 2.7"}, Old{"/usr/bin/pypy3", "PyPy"}}) {
    if (old.path.empty() || access(old.path.c_str(), X_OK) != 0) {
      fprintf(stderr, "SKIP: no %s\n", old.says.c_str());
      continue;
    }
    // Any program that blocks on stdin after saying it is ready.
    ReadyTarget t = StartReady(
        {old.path, "-c",
         "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline()"});
    absl::Status status = StackStatus(t.process.pid());
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << old.says << status;
    EXPECT_THAT(status.message(), HasSubstr(old.says));
    if (old.says == "PyPy") {  // what to do instead
      EXPECT_THAT(status.message(), HasSubstr("no stable layout to read from outside"));
      EXPECT_THAT(status.message(), HasSubstr("procwarp py exec PID"));
    }
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no unsupported Python on this machine";
}

TEST_F(PythonStackRulesTest, BadRequests) {
  EXPECT_EQ(StackStatus(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StackStatus(-5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StackStatus(daemon_->daemon_pid()).code(),
            absl::StatusCode::kFailedPrecondition);
  // A pid no process has (pid_max is at most 2^22).
  EXPECT_EQ(StackStatus(1 << 23).code(), absl::StatusCode::kNotFound);
}

TEST_F(PythonStackRulesTest, NobodyIsDeniedRootsTargetAndReadsItsOwn) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  // A copy uid 65534 can read (the runfiles are under root's home).
  const std::string dir = MakeTempDir();
  const std::string script = dir + "/python_stack_target.py";
  std::filesystem::copy_file(Script(), script);
  chmod(script.c_str(), 0644);
  {
    ReadyTarget root = StartReady({"/usr/bin/python3", script, "nested"});
    EXPECT_THAT(AsNobody(root.process.pid()), ::testing::StartsWith("PERMISSION_DENIED"));
    // --native stops the target: the same rule, and root's target is left
    // as it was.
    EXPECT_THAT(AsNobody(root.process.pid(), "native-stack"),
                ::testing::StartsWith("PERMISSION_DENIED"));
    EXPECT_EQ(ProcField(root.process.pid(), "TracerPid"), "0");
  }
  {
    TargetProcess::Options as_nobody;
    as_nobody.uid = kNobody;
    ReadyTarget own = StartReady({"/usr/bin/python3", script, "nested"}, as_nobody);
    EXPECT_EQ(AsNobody(own.process.pid()), "OK <module>,outer,middle,inner\n");
    EXPECT_EQ(AsNobody(own.process.pid(), "native-stack"),
              "OK <module>,outer,middle,inner\n");
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace procwarp::testing
