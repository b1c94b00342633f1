// A daemon restart loses nothing (docs/architecture.md, "Restart without
// loss"): real daemons killed with SIGKILL or stopped with SIGTERM and
// started again on the same socket and state directory, with real managed
// processes whose output and exits happen while no daemon runs.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/restart/state_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "daemon/ptrace/proc_info.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using procwarp::v1::ProcessEvent;
using procwarp::v1::ProcessInfo;
using ::testing::HasSubstr;

constexpr int kNobody = 65534;

std::string Target() { return RunfilePath("tests/testcases/restart_target"); }

// A FIFO the test holds open read-write, so neither side's open() blocks
// and the child sees EOF only when the test closes it.
struct Fifo {
  explicit Fifo(const std::string& path) : path(path) {
    mkfifo(path.c_str(), 0600);
    fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  }
  ~Fifo() { Close(); }
  void Write(const std::string& data) const {
    ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }
  void ReadByte() const {
    char byte;
    ASSERT_EQ(read(fd, &byte, 1), 1);
  }
  void Close() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  std::string path;
  int fd = -1;
};

// "seq FROM\n" .. "seq TO-1\n".
std::string Lines(int from, int to) {
  std::string out;
  for (int i = from; i < to; ++i) absl::StrAppend(&out, "seq ", i, "\n");
  return out;
}

bool Exited(int pidfd) {
  pollfd pfd{pidfd, POLLIN, 0};
  return poll(&pfd, 1, 0) == 1;
}

void AwaitExit(int pidfd) {
  pollfd pfd{pidfd, POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 30000), 1);
}

// "T (stopped)" / "t (tracing stop)" and TracerPid, from /proc/PID/status.
std::string StopAndTraceState(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line, out;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "State:") || absl::StartsWith(line, "TracerPid:")) {
      out += line + ";";
    }
  }
  return out;
}

// /proc/PID/`file` of one /proc entry. Through read(2)
// (ptrace::ReadProcFile): a process that ends meanwhile fails the read,
// which an istream would throw for, ending the test half-way.
absl::StatusOr<std::string> ReadProcEntry(const std::filesystem::directory_entry& entry,
                                          const char* file) {
  return ptrace::ReadProcFile((entry.path() / file).string());
}

// The pids whose parent is `parent` now, from /proc/PID/stat.
std::set<pid_t> ChildrenOf(pid_t parent) {
  std::set<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    absl::StatusOr<std::string> read = ReadProcEntry(entry, "stat");
    if (!read.ok()) continue;
    const std::string& stat = *read;
    // "PID (COMM) STATE PPID ...": COMM may hold anything but ends at the
    // last ')'.
    size_t end = stat.rfind(')');
    if (end == std::string::npos) continue;
    char state;
    int ppid;
    if (sscanf(stat.c_str() + end + 1, " %c %d", &state, &ppid) == 2 &&
        ppid == parent) {
      children.insert(std::stoi(entry.path().filename().string()));
    }
  }
  return children;
}

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    state_dir_ = dir_ + "/state";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::unique_ptr<DaemonHarness> StartDaemon() {
    DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
    options.dir = dir_;
    options.flags.push_back("--state_dir");
    options.flags.push_back(state_dir_);
    auto d = DaemonHarness::Start(options);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *std::move(d) : nullptr;
  }

  static ProcessInfo Spawn(procwarp::v1::Processes::Stub* stub,
                           const std::vector<std::string>& argv) {
    procwarp::v1::SpawnResponse response;
    grpc::Status s = stub->Spawn(Ctx().get(), PipedSpawn(argv), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.process();
  }

  static std::map<std::string, ProcessInfo> List(procwarp::v1::Processes::Stub* stub) {
    procwarp::v1::ListProcessesResponse response;
    EXPECT_TRUE(stub->List(Ctx().get(), {}, &response).ok());
    std::map<std::string, ProcessInfo> out;
    for (const auto& p : response.processes()) out[p.id()] = p;
    return out;
  }

  static ProcessInfo Wait(procwarp::v1::Processes::Stub* stub, const std::string& id) {
    procwarp::v1::WaitRequest request;
    request.set_id(id);
    procwarp::v1::WaitResponse response;
    grpc::Status s = stub->Wait(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.process();
  }

  static grpc::Status Signal(procwarp::v1::Processes::Stub* stub,
                             const std::string& id, int signal) {
    procwarp::v1::SignalRequest request;
    request.set_id(id);
    request.set_signal(signal);
    procwarp::v1::SignalResponse response;
    return stub->Signal(Ctx().get(), request, &response);
  }

  static grpc::Status Remove(procwarp::v1::Processes::Stub* stub,
                             const std::string& id, bool force = false) {
    procwarp::v1::RemoveProcessRequest request;
    request.set_id(id);
    request.set_force(force);
    procwarp::v1::RemoveProcessResponse response;
    return stub->Remove(Ctx().get(), request, &response);
  }

  // Attaches to `id` and reads its stdout until it holds `expected`; then
  // ends the attach.
  static std::string AttachUntil(procwarp::v1::Processes::Stub* stub,
                                 const std::string& id, const std::string& expected) {
    auto ctx = Ctx();
    auto stream = stub->Attach(ctx.get());
    procwarp::v1::AttachRequest first;
    first.set_id(id);
    stream->Write(first);
    std::string out;
    procwarp::v1::AttachResponse response;
    while (out.size() < expected.size() && stream->Read(&response)) {
      if (response.has_output()) out += response.output().data();
    }
    ctx->TryCancel();
    stream->Finish();
    return out;
  }

  static procwarp::v1::ThreadInfo CreateThread(procwarp::v1::Threads::Stub* stub,
                                               bool persistent) {
    procwarp::v1::CreateThreadRequest request;
    request.set_persistent(persistent);
    procwarp::v1::CreateThreadResponse response;
    grpc::Status s = stub->CreateThread(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.thread();
  }

  // The result of getpid() run by thread `id`, or the call's error.
  static absl::StatusOr<int64_t> Getpid(procwarp::v1::Threads::Stub* stub,
                                        const std::string& id) {
    procwarp::v1::SyscallRequest request;
    request.set_thread_id(id);
    request.mutable_syscall()->set_number(SYS_getpid);
    procwarp::v1::SyscallResponse response;
    grpc::Status s = stub->Syscall(Ctx().get(), request, &response);
    if (!s.ok()) return absl::UnknownError(s.error_message());
    return response.result().value();
  }

  static std::map<std::string, procwarp::v1::ThreadInfo> ListThreads(
      procwarp::v1::Threads::Stub* stub) {
    procwarp::v1::ListThreadsResponse response;
    EXPECT_TRUE(stub->ListThreads(Ctx().get(), {}, &response).ok());
    std::map<std::string, procwarp::v1::ThreadInfo> out;
    for (const auto& t : response.threads()) out[t.id()] = t;
    return out;
  }

  std::string dir_;
  std::string state_dir_;
};

class RestartSignalTest : public RestartTest,
                          public ::testing::WithParamInterface<int> {};

// The test: three managed processes (one chatty, one idle, one that
// exits while the daemon is down) and one persistent thread survive the
// daemon's end, and after the restart are found with the same ids, owners
// and pids, their output continuous, the exit status right, and the thread
// answering syscalls on a new connection. A non-persistent thread and an
// attached thread of the old daemon are gone (killed / detached), and
// nothing is left stopped or traced.
TEST_P(RestartSignalTest, ManagedProcessesSurviveAndAreReadopted) {
  const int stop_signal = GetParam();
  Fifo chatty_control(dir_ + "/chatty.ctl");
  Fifo chatty_ack(dir_ + "/chatty.ack");
  Fifo exiter_control(dir_ + "/exiter.ctl");

  auto first = StartDaemon();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(first->daemon_pid(), first->pid()) << "no keeper process";
  auto stub = first->Processes();
  ProcessInfo chatty =
      Spawn(stub.get(), {Target(), "chatty", chatty_control.path, chatty_ack.path});
  ProcessInfo idle = Spawn(stub.get(), {Target(), "idle"});
  ProcessInfo exiter = Spawn(stub.get(), {Target(), "exit_on", exiter_control.path, "7"});
  int idle_pidfd = syscall(SYS_pidfd_open, idle.pid(), 0);
  int exiter_pidfd = syscall(SYS_pidfd_open, exiter.pid(), 0);
  int chatty_pidfd = syscall(SYS_pidfd_open, chatty.pid(), 0);
  auto threads = procwarp::v1::Threads::NewStub(first->NewChannel());
  const procwarp::v1::ThreadInfo persistent = CreateThread(threads.get(), true);
  const procwarp::v1::ThreadInfo transient = CreateThread(threads.get(), false);
  ASSERT_EQ(Getpid(threads.get(), persistent.id()).value_or(-1),
            persistent.namespace_pid());
  int persistent_pidfd = syscall(SYS_pidfd_open, persistent.pid(), 0);
  int transient_pidfd = syscall(SYS_pidfd_open, transient.pid(), 0);
  // A process of the test's own, which the old daemon attaches to (as a
  // debugger does).
  pid_t debuggee = -1;
  {
    std::string target = Target();
    char idle_arg[] = "idle";
    char* argv[] = {target.data(), idle_arg, nullptr};
    ASSERT_EQ(posix_spawn(&debuggee, target.c_str(), nullptr, nullptr, argv,
                          environ),
              0);
    procwarp::v1::AttachThreadRequest attach;
    attach.set_pid(debuggee);
    attach.set_persistent(true);
    procwarp::v1::AttachThreadResponse attached;
    grpc::Status s = threads->AttachThread(Ctx().get(), attach, &attached);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  // Output while the first daemon runs, seen through it.
  chatty_control.Write("100\n");
  chatty_ack.ReadByte();
  std::string before = AttachUntil(stub.get(), chatty.id(), Lines(0, 100));
  EXPECT_EQ(before, Lines(0, 100));

  stub.reset();
  threads.reset();
  first->SignalDaemonAndWait(stop_signal);

  // While no daemon runs: the children live on, write output (their pipe
  // is held open by the keeper), and one exits. The persistent thread's
  // agent lives on (a keeper holds its socket); the other one has ended.
  AwaitExit(transient_pidfd);
  EXPECT_FALSE(Exited(persistent_pidfd));
  EXPECT_FALSE(Exited(idle_pidfd));
  EXPECT_FALSE(Exited(chatty_pidfd));
  chatty_control.Write("100\n");
  chatty_ack.ReadByte();  // 100 more lines are in the pipe now
  exiter_control.Write("x");
  AwaitExit(exiter_pidfd);

  auto second = StartDaemon();
  ASSERT_NE(second, nullptr);
  stub = second->Processes();
  auto listed = List(stub.get());
  ASSERT_EQ(listed.size(), 3u);
  for (const ProcessInfo& before_restart : {chatty, idle, exiter}) {
    ASSERT_TRUE(listed.count(before_restart.id())) << before_restart.id();
    const ProcessInfo& after = listed[before_restart.id()];
    EXPECT_EQ(after.pid(), before_restart.pid());
    EXPECT_EQ(after.owner().uid(), before_restart.owner().uid());
    EXPECT_EQ(after.argv_size(), before_restart.argv_size());
    EXPECT_EQ(after.started_unix_ns(), before_restart.started_unix_ns());
  }
  // The attachment ended with the old daemon: nothing left stopped or
  // traced.
  EXPECT_THAT(StopAndTraceState(debuggee), HasSubstr("TracerPid:\t0;"));
  EXPECT_THAT(StopAndTraceState(debuggee), ::testing::Not(HasSubstr("stopped")));
  kill(debuggee, SIGKILL);
  waitpid(debuggee, nullptr, 0);

  // The persistent thread, same id, owner and pid, answers on this new
  // connection; the non-persistent one is not listed.
  threads = procwarp::v1::Threads::NewStub(second->NewChannel());
  auto listed_threads = ListThreads(threads.get());
  ASSERT_EQ(listed_threads.size(), 1u);
  ASSERT_TRUE(listed_threads.count(persistent.id()));
  EXPECT_EQ(listed_threads[persistent.id()].pid(), persistent.pid());
  EXPECT_EQ(listed_threads[persistent.id()].owner().uid(),
            persistent.owner().uid());
  EXPECT_TRUE(listed_threads[persistent.id()].persistent());
  EXPECT_EQ(Getpid(threads.get(), persistent.id()).value_or(-1),
            persistent.namespace_pid());
  EXPECT_EQ(Getpid(threads.get(), persistent.id()).value_or(-1),
            persistent.namespace_pid());

  // The exit that happened while no daemon ran, with its status.
  ProcessInfo exited = Wait(stub.get(), exiter.id());
  EXPECT_EQ(exited.state(), procwarp::v1::PROCESS_STATE_EXITED);
  EXPECT_EQ(exited.exit_status().code(), 7);

  // Output continues where the first daemon's attacher left off, with what
  // was written while no daemon ran, then more, then the exit.
  chatty_control.Write("100\n");
  chatty_ack.ReadByte();
  chatty_control.Close();  // EOF: chatty exits 0
  AttachOutcome after = AttachAndCollect(stub.get(), chatty.id());
  EXPECT_TRUE(after.exited);
  EXPECT_EQ(after.exit.code(), 0);
  EXPECT_EQ(before + after.stdout_data, Lines(0, 300));

  // Signal and Events reach the re-adopted idle process, which is neither
  // stopped nor traced.
  EXPECT_THAT(StopAndTraceState(idle.pid()), HasSubstr("TracerPid:\t0;"));
  EXPECT_THAT(StopAndTraceState(idle.pid()), ::testing::Not(HasSubstr("stopped")));
  auto events_ctx = Ctx();
  auto events = stub->Events(events_ctx.get(), {});
  events->WaitForInitialMetadata();
  ASSERT_TRUE(Signal(stub.get(), idle.id(), SIGTERM).ok());
  ProcessEvent event;
  bool saw_exit = false;
  while (!saw_exit && events->Read(&event)) {
    saw_exit = event.kind() == ProcessEvent::KIND_EXITED &&
               event.process().id() == idle.id();
  }
  EXPECT_TRUE(saw_exit);
  EXPECT_EQ(event.process().exit_status().signal(), SIGTERM);
  events_ctx->TryCancel();
  events->Finish();
  EXPECT_EQ(Wait(stub.get(), idle.id()).exit_status().signal(), SIGTERM);

  // A uid that does not own them finds nothing (same NOT_FOUND as before
  // the restart).
  auto as_nobody = [&](const std::string& command) {
    return RunCliAs(kNobody, kNobody, dir_, second->socket_path(), command);
  };
  RunResult kill_as_nobody = as_nobody(absl::StrCat("kill ", idle.id()));
  EXPECT_NE(kill_as_nobody.exit_code, 0);
  EXPECT_THAT(kill_as_nobody.out, HasSubstr("no process"));
  // Nor the reconnected thread.
  RunResult thread_as_nobody =
      as_nobody(absl::StrCat("thread syscall ", persistent.id(), " getpid"));
  EXPECT_NE(thread_as_nobody.exit_code, 0);
  EXPECT_THAT(thread_as_nobody.out, HasSubstr("no thread"));

  for (const ProcessInfo& p : {chatty, idle, exiter}) {
    EXPECT_TRUE(Remove(stub.get(), p.id()).ok()) << p.id();
  }
  EXPECT_TRUE(List(stub.get()).empty());
  {
    procwarp::v1::ExitThreadRequest exit;
    exit.set_id(persistent.id());
    procwarp::v1::ExitThreadResponse response;
    grpc::Status s = threads->ExitThread(Ctx().get(), exit, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  AwaitExit(persistent_pidfd);
  EXPECT_TRUE(ListThreads(threads.get()).empty());
  close(idle_pidfd);
  close(exiter_pidfd);
  close(chatty_pidfd);
  close(persistent_pidfd);
  close(transient_pidfd);
  // The first keeper has nothing left to hold and exits by itself: its
  // harness's Stop() returns.
  EXPECT_EQ(first->Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Signals, RestartSignalTest,
                         ::testing::Values(SIGKILL, SIGTERM),
                         [](const auto& info) {
                           return info.param == SIGKILL ? "SIGKILL" : "SIGTERM";
                         });

TEST_F(RestartTest, StateFileAndKeeperSocketAreRootOnly) {
  auto daemon = StartDaemon();
  ASSERT_NE(daemon, nullptr);
  struct stat st {};
  ASSERT_EQ(stat(state_dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto stub = daemon->Processes();
  ProcessInfo idle = Spawn(stub.get(), {Target(), "idle"});
  ASSERT_EQ(stat((state_dir_ + "/" + kStateFileName).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // uid 65534 can neither read the state nor reach the keeper.
  RunResult read_state =
      RunProgram({"/bin/cat", state_dir_ + "/" + kStateFileName}, kNobody, kNobody);
  EXPECT_NE(read_state.exit_code, 0);
  RunResult list_dir = RunProgram({"/bin/ls", state_dir_}, kNobody, kNobody);
  EXPECT_NE(list_dir.exit_code, 0);
  EXPECT_TRUE(Remove(stub.get(), idle.id(), /*force=*/true).ok());
}

// What the state file says is only believed where it can be proved.
class CorruptStateTest : public RestartTest,
                         public ::testing::WithParamInterface<std::string> {};

TEST_P(CorruptStateTest, DaemonStartsAndSignalsNothing) {
  auto first = StartDaemon();
  ASSERT_NE(first, nullptr);
  auto stub = first->Processes();
  ProcessInfo idle = Spawn(stub.get(), {Target(), "idle"});
  int idle_pidfd = syscall(SYS_pidfd_open, idle.pid(), 0);
  stub.reset();
  first->SignalDaemonAndWait(SIGKILL);

  const std::string path = state_dir_ + "/" + kStateFileName;
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 40u);
  if (GetParam() == "truncated") bytes.resize(bytes.size() / 2);
  if (GetParam() == "garbage") bytes = std::string(bytes.size(), '\x5a');
  if (GetParam() == "foreign_version") bytes[8] = 99;
  if (GetParam() == "flipped_byte") bytes[bytes.size() - 3] ^= 1;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }

  auto second = StartDaemon();
  ASSERT_NE(second, nullptr);
  stub = second->Processes();
  // Nothing re-adopted, nothing signalled: the process runs on.
  EXPECT_TRUE(List(stub.get()).empty());
  EXPECT_FALSE(Exited(idle_pidfd));
  EXPECT_THAT(StopAndTraceState(idle.pid()), ::testing::Not(HasSubstr("stopped")));
  // The daemon serves as usual.
  ProcessInfo fresh = Spawn(stub.get(), {Target(), "exit_on", "/dev/null", "3"});
  EXPECT_EQ(Wait(stub.get(), fresh.id()).exit_status().code(), 3);
  EXPECT_TRUE(Remove(stub.get(), fresh.id()).ok());

  // Ended by the test: the first keeper reports it to the second daemon,
  // which does not know it, and then has nothing left and exits.
  syscall(SYS_pidfd_send_signal, idle_pidfd, SIGKILL, nullptr, 0);
  close(idle_pidfd);
  EXPECT_EQ(first->Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Corruptions, CorruptStateTest,
                         ::testing::Values("truncated", "garbage", "foreign_version",
                                           "flipped_byte"));

// A record whose pid now belongs to another process (pid reuse), with no
// keeper to vouch for it: listed as exited with an unknown status, and
// neither Signal nor Remove(force) reaches the other process.
TEST_F(RestartTest, ReusedPidIsNeverSignalled) {
  std::string target = Target();
  char* argv[] = {target.data(), const_cast<char*>("idle"), nullptr};
  pid_t stranger = -1;
  ASSERT_EQ(posix_spawn(&stranger, argv[0], nullptr, nullptr, argv, environ), 0);
  int stranger_pidfd = syscall(SYS_pidfd_open, stranger, 0);

  ASSERT_EQ(mkdir(state_dir_.c_str(), 0700), 0);
  procwarp::state::v1::DaemonState state;
  auto* record = state.add_processes();
  record->mutable_info()->set_id("0123456789abcdef0123456789abcdef");
  record->mutable_info()->set_pid(stranger);
  record->mutable_info()->add_argv("/bin/recorded");
  record->mutable_info()->set_state(procwarp::v1::PROCESS_STATE_RUNNING);
  record->mutable_info()->mutable_owner()->set_uid(0);
  record->set_start_time_ticks(1);  // not the stranger's
  record->set_stdout_pipe(true);
  {
    std::ofstream out(state_dir_ + "/" + kStateFileName, std::ios::binary);
    out << EncodeStateFile(state);
  }
  auto daemon = StartDaemon();
  ASSERT_NE(daemon, nullptr);
  auto stub = daemon->Processes();
  auto listed = List(stub.get());
  ASSERT_EQ(listed.size(), 1u);
  const ProcessInfo& info = listed.begin()->second;
  EXPECT_EQ(info.state(), procwarp::v1::PROCESS_STATE_EXITED);
  EXPECT_EQ(info.exit_status().how_case(), procwarp::v1::ExitStatus::HOW_NOT_SET);
  grpc::Status signalled = Signal(stub.get(), info.id(), SIGKILL);
  EXPECT_EQ(signalled.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Remove(stub.get(), info.id(), /*force=*/true).ok());
  EXPECT_FALSE(Exited(stranger_pidfd));

  syscall(SYS_pidfd_send_signal, stranger_pidfd, SIGKILL, nullptr, 0);
  waitpid(stranger, nullptr, 0);
  close(stranger_pidfd);
}

// Without restart state nothing can reconnect to an agent, so every agent
// thread ends with the daemon that made them (PR_SET_PDEATHSIG), persistent
// or not: no agent of a dead daemon lingers unowned.
TEST_F(RestartTest, ThreadsEndWithTheDaemonWithoutRestartState) {
  DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
  options.dir = dir_;
  auto daemon = DaemonHarness::Start(options);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto threads = procwarp::v1::Threads::NewStub((*daemon)->NewChannel());
  std::vector<int> pidfds;
  for (bool persistent : {false, true}) {
    procwarp::v1::CreateThreadRequest request;
    request.set_persistent(persistent);
    procwarp::v1::CreateThreadResponse response;
    grpc::Status s = threads->CreateThread(Ctx().get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    pidfds.push_back(syscall(SYS_pidfd_open, response.thread().pid(), 0));
  }
  (*daemon)->SignalDaemonAndWait(SIGKILL);
  for (int pidfd : pidfds) {
    AwaitExit(pidfd);
    close(pidfd);
  }
  (*daemon)->Stop();
}

// A thread that exec'd a program (Threads.Exec) made a managed process: it
// must not die with the daemon as its agent would (PR_SET_PDEATHSIG), and
// is re-adopted like a spawned one.
TEST_F(RestartTest, ExecdThreadSurvivesAsAManagedProcess) {
  DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
  options.dir = dir_;
  options.flags.push_back("--state_dir");
  options.flags.push_back(state_dir_);
  auto first = DaemonHarness::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  auto threads = procwarp::v1::Threads::NewStub((*first)->NewChannel());
  procwarp::v1::CreateThreadResponse created;
  ASSERT_TRUE(threads->CreateThread(Ctx().get(), {}, &created).ok());
  procwarp::v1::ExecRequest exec;
  exec.set_thread_id(created.thread().id());
  exec.add_argv(Target());
  exec.add_argv("idle");
  procwarp::v1::ExecResponse execd;
  grpc::Status s = threads->Exec(Ctx().get(), exec, &execd);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const ProcessInfo process = execd.process();
  int pidfd = syscall(SYS_pidfd_open, process.pid(), 0);
  threads.reset();
  (*first)->SignalDaemonAndWait(SIGKILL);
  EXPECT_FALSE(Exited(pidfd));

  auto second = StartDaemon();
  ASSERT_NE(second, nullptr);
  auto stub = second->Processes();
  auto listed = List(stub.get());
  ASSERT_TRUE(listed.count(process.id()));
  EXPECT_EQ(listed[process.id()].pid(), process.pid());
  ASSERT_TRUE(Signal(stub.get(), process.id(), SIGTERM).ok());
  EXPECT_EQ(Wait(stub.get(), process.id()).exit_status().signal(), SIGTERM);
  EXPECT_TRUE(Remove(stub.get(), process.id()).ok());
  close(pidfd);
  EXPECT_EQ((*first)->Stop(), 0);
}

// A full disk under the state file (a 64 KiB tmpfs mounted in the daemon's
// own mount namespace, then filled): a spawn whose record cannot be made
// durable fails with RESOURCE_EXHAUSTED naming the state file and ENOSPC,
// and its child is not left running (a restart would have lost it); the
// failure is logged once, the state file on disk stays the last good one
// (temporary file + rename: never half-written), and once there is room
// again the next write records everything, so a restart loses nothing.
TEST_F(RestartTest, FullDiskUnderTheStateFile) {
  const std::string log = dir_ + "/daemon.log";
  DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
  options.dir = dir_;
  options.flags.push_back("--state_dir");
  options.flags.push_back(state_dir_);
  std::filesystem::create_directories(state_dir_);
  // The keeper (the started process) and its daemon live in a mount
  // namespace of their own, where the state directory is a small tmpfs;
  // the test reaches it through /proc/KEEPER/root.
  options.wrapper = {
      "/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
      absl::StrCat("mount -t tmpfs -o size=64k,mode=0700 procwarp-test ", state_dir_,
                   " && exec \"$@\" 2>>", log),
      "sh"};
  auto first = DaemonHarness::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string state_dir_seen =
      absl::StrCat("/proc/", (*first)->pid(), "/root", state_dir_);
  auto stub = (*first)->Processes();
  ProcessInfo before_full = Spawn(stub.get(), {Target(), "idle"});

  // Fill it.
  const std::string filler = state_dir_seen + "/filler";
  {
    int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << filler;
    std::string block(4096, 'x');
    while (write(fd, block.data(), block.size()) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC);
    close(fd);
  }
  auto read_state = [&]() -> procwarp::state::v1::DaemonState {
    std::ifstream in(state_dir_seen + "/" + kStateFileName);
    std::string bytes((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
    auto parsed = ParseStateFile(bytes);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return parsed.ok() ? *parsed : procwarp::state::v1::DaemonState();
  };
  auto recorded = [&](const procwarp::state::v1::DaemonState& state,
                      const std::string& id) {
    for (const auto& record : state.processes()) {
      if (record.info().id() == id) return true;
    }
    return false;
  };

  // A spawn while it is full fails clearly and leaves nothing running; the
  // file on disk is still the last good one, whole.
  const std::string unrecordable_arg = absl::StrCat("31337", getpid());
  procwarp::v1::SpawnResponse refused;
  grpc::Status s = stub->Spawn(
      Ctx().get(), PipedSpawn({"/bin/sleep", unrecordable_arg}), &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr(kStateFileName));
  EXPECT_THAT(s.error_message(), HasSubstr("No space left on device"));
  EXPECT_THAT(s.error_message(), HasSubstr("killed"));
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    absl::StatusOr<std::string> args = ReadProcEntry(entry, "cmdline");
    if (!args.ok()) continue;  // it ended meanwhile
    EXPECT_EQ(args->find(unrecordable_arg), std::string::npos)
        << "the unrecorded child runs on as " << entry.path();
  }
  EXPECT_EQ(List(stub.get()).size(), 1u) << "the refused spawn is listed";
  {
    procwarp::state::v1::DaemonState state = read_state();
    EXPECT_TRUE(recorded(state, before_full.id()));
    EXPECT_EQ(state.processes_size(), 1);
  }
  EXPECT_FALSE(std::filesystem::exists(state_dir_seen + "/." +
                                       kStateFileName + ".tmp"))
      << "a failed write left its temporary file, holding space";

  // A persistent thread is refused the same way: its agent is killed and
  // reaped before the answer, and nothing lists or records it. A thread that
  // ends with its connection needs no record and is still made.
  auto threads = procwarp::v1::Threads::NewStub((*first)->NewChannel());
  const std::set<pid_t> children_before = ChildrenOf((*first)->daemon_pid());
  {
    procwarp::v1::CreateThreadRequest request;
    request.set_persistent(true);
    procwarp::v1::CreateThreadResponse response;
    grpc::Status t = threads->CreateThread(Ctx().get(), request, &response);
    EXPECT_EQ(t.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << t.error_message();
    EXPECT_THAT(t.error_message(), HasSubstr(kStateFileName));
    EXPECT_THAT(t.error_message(), HasSubstr("No space left on device"));
    EXPECT_THAT(t.error_message(), HasSubstr("killed"));
  }
  EXPECT_EQ(ChildrenOf((*first)->daemon_pid()), children_before)
      << "the unrecorded agent still runs, or was not reaped";
  EXPECT_TRUE(ListThreads(threads.get()).empty()) << "the refused thread is listed";
  EXPECT_EQ(read_state().threads_size(), 0);
  EXPECT_FALSE(CreateThread(threads.get(), /*persistent=*/false).id().empty());

  // Room again: the next change writes everything.
  ASSERT_EQ(unlink(filler.c_str()), 0);
  ProcessInfo after = Spawn(stub.get(), {Target(), "idle"});
  const procwarp::v1::ThreadInfo kept = CreateThread(threads.get(), true);
  {
    procwarp::state::v1::DaemonState state = read_state();
    for (const ProcessInfo& p : {before_full, after}) {
      EXPECT_TRUE(recorded(state, p.id())) << p.id();
    }
    ASSERT_EQ(state.threads_size(), 1);
    EXPECT_EQ(state.threads(0).info().id(), kept.id());
  }
  std::ifstream log_in(log);
  std::string logged((std::istreambuf_iterator<char>(log_in)),
                     std::istreambuf_iterator<char>());
  EXPECT_THAT(logged, HasSubstr("cannot write the state file"));
  EXPECT_THAT(logged, HasSubstr("No space left on device"));
  EXPECT_THAT(logged, HasSubstr("the state file is written again"));

  // And a restart (in the same mount namespace) loses none of them.
  stub.reset();
  threads.reset();
  (*first)->SignalDaemonAndWait(SIGKILL);
  DaemonHarness::Options again = options;
  again.wrapper = {"/usr/bin/nsenter", "-t", absl::StrCat((*first)->pid()), "-m",
                   "--"};
  auto second = DaemonHarness::Start(again);
  ASSERT_TRUE(second.ok()) << second.status();
  stub = (*second)->Processes();
  auto listed = List(stub.get());
  for (const ProcessInfo& p : {before_full, after}) {
    ASSERT_TRUE(listed.count(p.id())) << p.id();
    EXPECT_EQ(listed[p.id()].state(), procwarp::v1::PROCESS_STATE_RUNNING);
    EXPECT_TRUE(Remove(stub.get(), p.id(), /*force=*/true).ok()) << p.id();
  }
  threads = procwarp::v1::Threads::NewStub((*second)->NewChannel());
  ASSERT_TRUE(ListThreads(threads.get()).count(kept.id()));
  procwarp::v1::ExitThreadRequest exit;
  exit.set_id(kept.id());
  procwarp::v1::ExitThreadResponse exited;
  EXPECT_TRUE(threads->ExitThread(Ctx().get(), exit, &exited).ok());
  EXPECT_EQ((*first)->Stop(), 0);
}

// The CLI, started with its stdout on a pipe we read.
struct Cli {
  explicit Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {RunfilePath("client/cli/procwarp")};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    int out[2];
    pipe2(out, O_CLOEXEC);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    stdout_fd = out[0];
  }
  ~Cli() {
    if (pid > 0) Finish();
    close(stdout_fd);
  }
  // Reads stdout until it holds `expected` (or EOF).
  std::string ReadUntil(const std::string& expected) {
    while (output.find(expected) == std::string::npos) {
      char buffer[4096];
      ssize_t n = read(stdout_fd, buffer, sizeof(buffer));
      if (n <= 0) break;
      output.append(buffer, n);
    }
    return output;
  }
  int Finish() {
    ReadUntil(std::string(1, '\0'));  // to EOF
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_t pid = -1;
  int stdout_fd = -1;
  std::string output;
};

// `procwarp run` in the foreground follows its process across a daemon
// restart: the output goes on, written-while-down part included, and the
// CLI ends with the process's exit code.
TEST_F(RestartTest, CliRunFollowsItsProcessAcrossARestart) {
  Fifo control(dir_ + "/chatty.ctl");
  Fifo ack(dir_ + "/chatty.ack");
  auto first = StartDaemon();
  ASSERT_NE(first, nullptr);
  Cli run({"--socket", first->socket_path(), "run", "--", Target(), "chatty",
           control.path, ack.path});
  control.Write("10\n");
  ack.ReadByte();
  EXPECT_EQ(run.ReadUntil(Lines(0, 10)), Lines(0, 10));
  first->SignalDaemonAndWait(SIGKILL);
  control.Write("10\n");
  ack.ReadByte();
  auto second = StartDaemon();
  ASSERT_NE(second, nullptr);
  control.Write("10\n");
  ack.ReadByte();
  control.Close();
  EXPECT_EQ(run.Finish(), 0);
  EXPECT_EQ(run.output, Lines(0, 30));
  // The CLI owned it: the daemon forgot it once it ended.
  EXPECT_TRUE(List(second->Processes().get()).empty());
  EXPECT_EQ(first->Stop(), 0);
}

// `procwarp attach` stands for nobody: SIGTERM ends the CLI, not the
// process.
TEST_F(RestartTest, CliAttachDoesNotForwardSigterm) {
  Fifo control(dir_ + "/chatty.ctl");
  Fifo ack(dir_ + "/chatty.ack");
  auto daemon = StartDaemon();
  ASSERT_NE(daemon, nullptr);
  auto stub = daemon->Processes();
  ProcessInfo chatty =
      Spawn(stub.get(), {Target(), "chatty", control.path, ack.path});
  int chatty_pidfd = syscall(SYS_pidfd_open, chatty.pid(), 0);
  Cli attach({"--socket", daemon->socket_path(), "attach", "--no-stdin", chatty.id()});
  // Output through the CLI: it is attached (and has its signals blocked).
  control.Write("1\n");
  ack.ReadByte();
  EXPECT_EQ(attach.ReadUntil(Lines(0, 1)), Lines(0, 1));
  kill(attach.pid, SIGTERM);
  EXPECT_EQ(attach.Finish(), 128 + SIGTERM);
  EXPECT_FALSE(Exited(chatty_pidfd));
  control.Close();
  EXPECT_EQ(Wait(stub.get(), chatty.id()).exit_status().code(), 0);
  EXPECT_TRUE(Remove(stub.get(), chatty.id()).ok());
  close(chatty_pidfd);
}

}  // namespace
}  // namespace procwarp::testing
