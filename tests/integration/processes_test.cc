// Integration tests for the Processes service: a real procwarpd on a
// temporary socket, real child processes (tests/testcases/pw_target).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using procwarp::v1::ProcessEvent;
using procwarp::v1::ProcessInfo;
using procwarp::v1::SpawnRequest;
using ::testing::HasSubstr;

std::string Target() { return RunfilePath("tests/testcases/pw_target"); }

// Under ASan freed memory sits in a quarantine, so resident size says nothing
// about leaks there (LeakSanitizer checks the daemon at exit instead).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssIsMeaningful = false;
#else
constexpr bool kRssIsMeaningful = true;
#endif

class ProcessesTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon({}); }

  void StartDaemon(std::vector<std::string> flags) {
    stub_.reset();
    daemon_.reset();
    DaemonHarness::Options options;
    options.flags = std::move(flags);
    auto d = DaemonHarness::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    stub_ = daemon_->Processes();
  }

  ProcessInfo Spawn(const SpawnRequest& request) {
    procwarp::v1::SpawnResponse response;
    grpc::Status s = stub_->Spawn(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.process();
  }

  ProcessInfo Wait(const std::string& id) {
    procwarp::v1::WaitRequest request;
    request.set_id(id);
    procwarp::v1::WaitResponse response;
    grpc::Status s = stub_->Wait(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.process();
  }

  grpc::Status Signal(const std::string& id, int sig) {
    procwarp::v1::SignalRequest request;
    request.set_id(id);
    request.set_signal(sig);
    procwarp::v1::SignalResponse response;
    return stub_->Signal(Ctx().get(), request, &response);
  }

  grpc::Status Remove(const std::string& id, bool force = false) {
    procwarp::v1::RemoveProcessRequest request;
    request.set_id(id);
    request.set_force(force);
    procwarp::v1::RemoveProcessResponse response;
    return stub_->Remove(Ctx().get(), request, &response);
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::unique_ptr<procwarp::v1::Processes::Stub> stub_;
};

TEST_F(ProcessesTest, ExitCodeIsReported) {
  ProcessInfo p = Spawn(PipedSpawn({Target(), "exit", "7"}));
  EXPECT_EQ(p.id().size(), 32u);
  EXPECT_GT(p.pid(), 0);
  ProcessInfo done = Wait(p.id());
  EXPECT_EQ(done.state(), procwarp::v1::PROCESS_STATE_EXITED);
  EXPECT_EQ(done.exit_status().code(), 7);
  EXPECT_TRUE(Remove(p.id()).ok());
}

TEST_F(ProcessesTest, SignalEndsProcessAndIsReported) {
  SpawnRequest request = PipedSpawn({Target(), "pause"});
  ProcessInfo p = Spawn(request);
  ASSERT_TRUE(Signal(p.id(), SIGTERM).ok());
  ProcessInfo done = Wait(p.id());
  EXPECT_EQ(done.exit_status().signal(), SIGTERM);
  // Signalling an exited process is a precondition failure, not a crash.
  EXPECT_EQ(Signal(p.id(), SIGTERM).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Remove(p.id()).ok());
}

TEST_F(ProcessesTest, DeathBySignalOfItsOwn) {
  ProcessInfo p = Spawn(PipedSpawn({Target(), "kill", "9"}));
  EXPECT_EQ(Wait(p.id()).exit_status().signal(), 9);
  EXPECT_TRUE(Remove(p.id()).ok());
}

TEST_F(ProcessesTest, StdinRoundTripsToStdout) {
  SpawnRequest request = PipedSpawn({Target(), "cat"});
  request.mutable_stdin()->set_kind(procwarp::v1::STDIO_KIND_PIPE);
  ProcessInfo p = Spawn(request);
  std::string input;
  for (int i = 0; i < 20000; ++i) absl::StrAppend(&input, "line ", i, "\n");
  AttachOutcome out = AttachAndCollect(stub_.get(), p.id(), input);
  EXPECT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_TRUE(out.exited);
  EXPECT_EQ(out.exit.code(), 0);
  EXPECT_EQ(out.stdout_data, input);
  EXPECT_TRUE(Remove(p.id()).ok());
}

TEST_F(ProcessesTest, EachStreamKeepsItsOrder) {
  ProcessInfo p = Spawn(PipedSpawn({Target(), "interleave", "2000"}));
  AttachOutcome out = AttachAndCollect(stub_.get(), p.id());
  ASSERT_TRUE(out.exited);
  std::string want_out, want_err;
  for (int i = 0; i < 2000; ++i) {
    absl::StrAppend(i % 2 ? &want_err : &want_out, i, "\n");
  }
  EXPECT_EQ(out.stdout_data, want_out);
  EXPECT_EQ(out.stderr_data, want_err);
  EXPECT_TRUE(Remove(p.id()).ok());
}

TEST_F(ProcessesTest, LateAttacherGetsBufferedOutputAndExit) {
  ProcessInfo p = Spawn(PipedSpawn({"/bin/echo", "hello"}));
  Wait(p.id());
  AttachOutcome out = AttachAndCollect(stub_.get(), p.id());
  EXPECT_EQ(out.stdout_data, "hello\n");
  EXPECT_TRUE(out.exited);
  EXPECT_EQ(out.exit.code(), 0);
  // A second attacher sees the same.
  AttachOutcome again = AttachAndCollect(stub_.get(), p.id());
  EXPECT_EQ(again.stdout_data, "hello\n");
  EXPECT_TRUE(Remove(p.id()).ok());
}

TEST_F(ProcessesTest, PtyIsATerminal) {
  SpawnRequest request;
  request.add_argv(Target());
  request.add_argv("isatty");
  for (auto* s : {request.mutable_stdin(), request.mutable_stdout(),
                  request.mutable_stderr()}) {
    s->set_kind(procwarp::v1::STDIO_KIND_PTY);
  }
  ProcessInfo p = Spawn(request);
  EXPECT_TRUE(p.has_pty());
  AttachOutcome out = AttachAndCollect(stub_.get(), p.id(), "", false);
  EXPECT_EQ(out.stdout_data, "1 1 1\r\n");
  EXPECT_TRUE(Remove(p.id()).ok());
}

TEST_F(ProcessesTest, ResizePtyDeliversSigwinch) {
  SpawnRequest request;
  request.add_argv(Target());
  request.add_argv("winch");
  for (auto* s : {request.mutable_stdin(), request.mutable_stdout(),
                  request.mutable_stderr()}) {
    s->set_kind(procwarp::v1::STDIO_KIND_PTY);
  }
  ProcessInfo p = Spawn(request);
  auto ctx = Ctx();
  auto stream = stub_->Attach(ctx.get());
  procwarp::v1::AttachRequest first;
  first.set_id(p.id());
  stream->Write(first);
  std::string seen;
  procwarp::v1::AttachResponse r;
  bool resized = false;
  while (stream->Read(&r)) {
    if (r.has_output()) seen += r.output().data();
    if (!resized && absl::StrContains(seen, "ready")) {
      procwarp::v1::ResizePtyRequest resize;
      resize.set_id(p.id());
      resize.mutable_size()->set_rows(42);
      resize.mutable_size()->set_cols(101);
      procwarp::v1::ResizePtyResponse resized_response;
      ASSERT_TRUE(stub_->ResizePty(Ctx().get(), resize, &resized_response).ok());
      resized = true;
    }
    if (absl::StrContains(seen, "42x101")) break;
  }
  EXPECT_THAT(seen, HasSubstr("42x101"));
  ctx->TryCancel();
  stream->Finish();
  EXPECT_TRUE(Remove(p.id(), /*force=*/true).ok());
}

TEST_F(ProcessesTest, SpawnOptionsApply) {
  std::string dir = MakeTempDir();
  SpawnRequest request = PipedSpawn(
      {"/bin/sh", "-c", "echo \"$FOO|$(pwd)|$(umask)|$(ulimit -n)\"; env | wc -l"});
  request.add_env("FOO=bar");
  request.set_cwd(dir);
  request.set_umask(027);
  auto* rlimit = request.add_rlimits();
  rlimit->set_resource("NOFILE");
  rlimit->set_soft(123);
  rlimit->set_hard(456);
  ProcessInfo p = Spawn(request);
  AttachOutcome out = AttachAndCollect(stub_.get(), p.id());
  // sh adds PWD (and maybe SHLVL/_): the daemon passes FOO alone.
  std::vector<std::string> lines = absl::StrSplit(out.stdout_data, '\n');
  EXPECT_EQ(lines[0], absl::StrCat("bar|", dir, "|0027|123"));
  EXPECT_LE(atoi(lines[1].c_str()), 4);
  EXPECT_TRUE(Remove(p.id()).ok());

  // Stdout to a file.
  SpawnRequest to_file;
  to_file.add_argv("/bin/echo");
  to_file.add_argv("into a file");
  to_file.mutable_stdout()->set_kind(procwarp::v1::STDIO_KIND_FILE);
  to_file.mutable_stdout()->set_path(dir + "/out.txt");
  ProcessInfo f = Spawn(to_file);
  EXPECT_EQ(Wait(f.id()).exit_status().code(), 0);
  std::ifstream in(dir + "/out.txt");
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "into a file\n");
  EXPECT_TRUE(Remove(f.id()).ok());
  std::filesystem::remove_all(dir);
}

TEST_F(ProcessesTest, NewSessionAndUtsNamespace) {
  SpawnRequest request = PipedSpawn(
      {"/bin/sh", "-c",
       "hostname procwarp-ns-test && hostname && "
       "test \"$(cut -d' ' -f6 /proc/self/stat)\" = \"$(cut -d' ' -f5 /proc/$$/stat)\" "
       "&& echo own-session"});
  request.set_new_session(true);
  request.add_env("PATH=/usr/bin:/bin");
  request.mutable_namespaces()->set_uts(true);
  ProcessInfo p = Spawn(request);
  AttachOutcome out = AttachAndCollect(stub_.get(), p.id());
  EXPECT_EQ(out.stdout_data, "procwarp-ns-test\nown-session\n") << out.stderr_data;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  EXPECT_STRNE(host, "procwarp-ns-test");
  EXPECT_TRUE(Remove(p.id()).ok());
}

TEST_F(ProcessesTest, PidNetAndMountNamespaces) {
  SpawnRequest request = PipedSpawn(
      {"/bin/sh", "-c",
       "echo pid=$$; mount -t tmpfs none /mnt && touch /mnt/only-inside && ls /mnt"});
  request.add_env("PATH=/usr/bin:/bin");
  request.mutable_namespaces()->set_pid(true);
  request.mutable_namespaces()->set_net(true);
  request.mutable_namespaces()->set_mount(true);
  ProcessInfo p = Spawn(request);
  AttachOutcome out = AttachAndCollect(stub_.get(), p.id());
  // pid 1 in its own pid namespace.
  EXPECT_THAT(out.stdout_data, ::testing::StartsWith("pid=1\n")) << out.stderr_data;
  EXPECT_THAT(out.stdout_data, HasSubstr("only-inside"));
  EXPECT_EQ(out.exit.code(), 0) << out.stderr_data;
  // The tmpfs stayed inside the child's mount namespace.
  EXPECT_FALSE(std::filesystem::exists("/mnt/only-inside"));
  EXPECT_TRUE(Remove(p.id()).ok());

  // The network namespace: only the loopback device, and it is down.
  SpawnRequest net = PipedSpawn({"/bin/cat", "/proc/net/dev"});
  net.mutable_namespaces()->set_net(true);
  ProcessInfo n = Spawn(net);
  AttachOutcome devices = AttachAndCollect(stub_.get(), n.id());
  std::vector<std::string> lines = absl::StrSplit(devices.stdout_data, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << devices.stdout_data;  // two header lines + lo
  EXPECT_THAT(lines[2], HasSubstr("lo:"));
  EXPECT_TRUE(Remove(n.id()).ok());
}

TEST_F(ProcessesTest, EventsReportLifecycle) {
  auto ctx = Ctx();
  auto events = stub_->Events(ctx.get(), {});
  events->WaitForInitialMetadata();  // subscribed: nothing later is missed
  ProcessInfo p = Spawn(PipedSpawn({Target(), "exit", "3"}));
  Wait(p.id());
  ASSERT_TRUE(Remove(p.id()).ok());
  std::vector<ProcessEvent::Kind> kinds;
  ProcessEvent event;
  while (kinds.size() < 3 && events->Read(&event)) {
    if (event.process().id() != p.id()) continue;
    kinds.push_back(event.kind());
    if (event.kind() == ProcessEvent::KIND_EXITED) {
      EXPECT_EQ(event.process().exit_status().code(), 3);
    }
  }
  EXPECT_EQ(kinds, (std::vector<ProcessEvent::Kind>{ProcessEvent::KIND_STARTED,
                                                    ProcessEvent::KIND_EXITED,
                                                    ProcessEvent::KIND_REMOVED}));
  ctx->TryCancel();
  events->Finish();
}

// One exit, seen alike by everyone: concurrent Waits and an Attach all see
// it (the output before it first), Events reports it once, and a Wait that
// gives up leaves the exit to be noticed with nobody waiting.
TEST_F(ProcessesTest, WaitersLoopAndEventsAgreeOnOneExit) {
  auto ctx = Ctx();
  auto events = stub_->Events(ctx.get(), {});
  events->WaitForInitialMetadata();

  ProcessInfo abandoned = Spawn(PipedSpawn({"/bin/sh", "-c", "sleep 0.5; exit 4"}));
  procwarp::v1::WaitRequest request;
  request.set_id(abandoned.id());
  procwarp::v1::WaitResponse response;
  EXPECT_EQ(stub_->Wait(Ctx(absl::Milliseconds(100)).get(), request, &response)
                .error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);

  ProcessInfo waited =
      Spawn(PipedSpawn({"/bin/sh", "-c", "echo before; sleep 0.3; exit 5"}));
  std::vector<std::thread> waiters;
  std::vector<ProcessInfo> seen(4);
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&, i] { seen[i] = Wait(waited.id()); });
  }
  AttachOutcome attached = AttachAndCollect(stub_.get(), waited.id());
  for (auto& t : waiters) t.join();
  for (const ProcessInfo& info : seen) {
    EXPECT_EQ(info.state(), procwarp::v1::PROCESS_STATE_EXITED);
    EXPECT_EQ(info.exit_status().code(), 5);
  }
  EXPECT_EQ(attached.stdout_data, "before\n");
  EXPECT_TRUE(attached.exited);
  EXPECT_EQ(attached.exit.code(), 5);

  // Nobody waits for `abandoned`: its exit comes from the loop.
  std::map<std::string, int> exits;
  ProcessEvent event;
  while ((exits[abandoned.id()] == 0 || exits[waited.id()] == 0) &&
         events->Read(&event)) {
    if (event.kind() != ProcessEvent::KIND_EXITED) continue;
    ++exits[event.process().id()];
    if (event.process().id() == abandoned.id()) {
      EXPECT_EQ(event.process().exit_status().code(), 4);
    }
  }
  EXPECT_EQ(exits[abandoned.id()], 1);
  EXPECT_EQ(exits[waited.id()], 1);
  EXPECT_EQ(Wait(abandoned.id()).exit_status().code(), 4);
  ASSERT_TRUE(Remove(abandoned.id()).ok());
  ASSERT_TRUE(Remove(waited.id()).ok());
  // Removals come after any second EXITED event would have.
  int removed = 0;
  while (removed < 2 && events->Read(&event)) {
    if (event.kind() == ProcessEvent::KIND_REMOVED) ++removed;
    if (event.kind() == ProcessEvent::KIND_EXITED) ++exits[event.process().id()];
  }
  EXPECT_EQ(exits[abandoned.id()], 1);
  EXPECT_EQ(exits[waited.id()], 1);
  ctx->TryCancel();
  events->Finish();
}

TEST_F(ProcessesTest, ListShowsOwnProcesses) {
  ProcessInfo a = Spawn(PipedSpawn({Target(), "pause"}));
  procwarp::v1::ListProcessesResponse list;
  ASSERT_TRUE(stub_->List(Ctx().get(), {}, &list).ok());
  bool found = false;
  for (const auto& p : list.processes()) found |= p.id() == a.id();
  EXPECT_TRUE(found);
  procwarp::v1::GetProcessRequest get;
  get.set_id(a.id());
  procwarp::v1::GetProcessResponse got;
  ASSERT_TRUE(stub_->Get(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.process().state(), procwarp::v1::PROCESS_STATE_RUNNING);
  // Remove refuses a running process unless forced.
  EXPECT_EQ(Remove(a.id()).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Remove(a.id(), /*force=*/true).ok());
}

TEST_F(ProcessesTest, WaitHonoursDeadline) {
  ProcessInfo p = Spawn(PipedSpawn({Target(), "pause"}));
  procwarp::v1::WaitRequest request;
  request.set_id(p.id());
  procwarp::v1::WaitResponse response;
  grpc::Status s =
      stub_->Wait(Ctx(absl::Milliseconds(300)).get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(Remove(p.id(), true).ok());
}

TEST_F(ProcessesTest, ThousandSpawnsLeakNothing) {
  auto cycle = [&] {
    ProcessInfo p = Spawn(PipedSpawn({"/bin/true"}));
    Wait(p.id());
    ASSERT_TRUE(Remove(p.id()).ok());
  };
  for (int i = 0; i < 50; ++i) cycle();  // warm up thread pools and arenas
  int fds_before = daemon_->CountFds();
  long rss_before = daemon_->RssKb();
  for (int i = 0; i < 1000; ++i) cycle();
  EXPECT_LE(daemon_->CountFds(), fds_before);
  if (kRssIsMeaningful) {
    EXPECT_LT(daemon_->RssKb() - rss_before, 8 * 1024)
        << "daemon RSS grew from " << rss_before << " kB";
  }
}

TEST_F(ProcessesTest, ConcurrentClients) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto stub = daemon_->Processes();
      for (int i = 0; i < 25; ++i) {
        procwarp::v1::SpawnResponse spawned;
        if (!stub->Spawn(Ctx().get(), PipedSpawn({Target(), "exit", absl::StrCat(t)}),
                         &spawned).ok()) {
          continue;
        }
        AttachOutcome out = AttachAndCollect(stub.get(), spawned.process().id());
        procwarp::v1::RemoveProcessRequest remove;
        remove.set_id(spawned.process().id());
        procwarp::v1::RemoveProcessResponse removed;
        if (out.exited && out.exit.code() == t &&
            stub->Remove(Ctx().get(), remove, &removed).ok()) {
          ++ok;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST_F(ProcessesTest, ClientDisconnectDuringAttachLeaksNothing) {
  ProcessInfo p = Spawn(PipedSpawn({Target(), "pause"}));
  {
    // Settle the daemon's own connections before counting.
    procwarp::v1::GetStatusResponse status;
    ASSERT_TRUE(daemon_->Admin()->GetStatus(Ctx().get(), {}, &status).ok());
  }
  int fds_before = daemon_->CountFds();
  for (int i = 0; i < 20; ++i) {
    auto channel = daemon_->NewChannel();
    auto stub = procwarp::v1::Processes::NewStub(channel);
    grpc::ClientContext ctx;
    auto stream = stub->Attach(&ctx);
    procwarp::v1::AttachRequest first;
    first.set_id(p.id());
    stream->Write(first);
    procwarp::v1::AttachResponse r;
    ASSERT_TRUE(stream->Read(&r));  // "ready"
    ctx.TryCancel();
    stream->Finish();
  }
  // The daemon keeps serving and the process is untouched.
  procwarp::v1::GetProcessRequest get;
  get.set_id(p.id());
  procwarp::v1::GetProcessResponse got;
  ASSERT_TRUE(stub_->Get(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.process().state(), procwarp::v1::PROCESS_STATE_RUNNING);
  // Connections close asynchronously; wait for the daemon to see all hang-ups
  // (its client count is driven by them).
  procwarp::v1::GetStatusResponse status;
  for (int i = 0; i < 1000; ++i) {  // up to 10 s on a loaded machine
    ASSERT_TRUE(daemon_->Admin()->GetStatus(Ctx().get(), {}, &status).ok());
    if (daemon_->CountFds() <= fds_before + 2) break;
    usleep(10000);
  }
  EXPECT_LE(daemon_->CountFds(), fds_before + 2);
  EXPECT_TRUE(Remove(p.id(), true).ok());
}

TEST_F(ProcessesTest, ChildKilledDuringAttachEndsStreamWithSignal) {
  auto events_ctx = Ctx();
  auto events = stub_->Events(events_ctx.get(), {});
  events->WaitForInitialMetadata();
  ProcessInfo p = Spawn(PipedSpawn({Target(), "pause"}));
  auto ctx = Ctx();
  auto stream = stub_->Attach(ctx.get());
  procwarp::v1::AttachRequest first;
  first.set_id(p.id());
  stream->Write(first);
  procwarp::v1::AttachResponse r;
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_EQ(r.output().data(), "ready\n");
  ASSERT_TRUE(Signal(p.id(), SIGKILL).ok());
  bool got_exit = false;
  while (stream->Read(&r)) {
    if (r.has_exit()) {
      got_exit = true;
      EXPECT_EQ(r.exit().signal(), SIGKILL);
      stream->WritesDone();
    }
  }
  EXPECT_TRUE(got_exit);
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_TRUE(Remove(p.id()).ok());
  // The events tell the same story: started, exited by SIGKILL, removed.
  std::vector<ProcessEvent::Kind> kinds;
  ProcessEvent event;
  while (kinds.size() < 3 && events->Read(&event)) {
    if (event.process().id() != p.id()) continue;
    kinds.push_back(event.kind());
    if (event.kind() == ProcessEvent::KIND_EXITED) {
      EXPECT_EQ(event.process().exit_status().signal(), SIGKILL);
    }
  }
  EXPECT_EQ(kinds, (std::vector<ProcessEvent::Kind>{ProcessEvent::KIND_STARTED,
                                                    ProcessEvent::KIND_EXITED,
                                                    ProcessEvent::KIND_REMOVED}));
  events_ctx->TryCancel();
  events->Finish();
}

class BoundedOutputTest : public ProcessesTest {
 protected:
  void SetUp() override { StartDaemon({"--output_buffer_bytes", "65536"}); }
};

TEST_F(BoundedOutputTest, ChattyChildCannotExhaustDaemonMemory) {
  long rss_before = daemon_->RssKb();
  ProcessInfo p = Spawn(PipedSpawn({Target(), "flood", "67108864"}));  // 64 MiB
  EXPECT_EQ(Wait(p.id()).exit_status().code(), 0);
  if (kRssIsMeaningful) {
    EXPECT_LT(daemon_->RssKb() - rss_before, 16 * 1024);
  }
  AttachOutcome out = AttachAndCollect(stub_.get(), p.id());
  EXPECT_LE(out.stdout_data.size(), 65536u);
  EXPECT_GT(out.stdout_data.size(), 0u);
  EXPECT_TRUE(out.exited);
  EXPECT_TRUE(Remove(p.id()).ok());
}

class LimitsTest : public ProcessesTest {
 protected:
  void SetUp() override {
    // The test runs as root, who has the admins' stream limit.
    StartDaemon({"--max_processes_per_identity", "2", "--max_streams_per_admin",
                 "1"});
  }
};

TEST_F(LimitsTest, PerIdentityLimitsAreEnforced) {
  ProcessInfo a = Spawn(PipedSpawn({Target(), "pause"}));
  ProcessInfo b = Spawn(PipedSpawn({Target(), "pause"}));
  procwarp::v1::SpawnResponse response;
  grpc::Status s = stub_->Spawn(Ctx().get(), PipedSpawn({Target(), "pause"}), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("limit"));

  auto ctx = Ctx();
  auto events = stub_->Events(ctx.get(), {});
  events->WaitForInitialMetadata();
  procwarp::v1::WaitRequest wait;
  wait.set_id(a.id());
  procwarp::v1::WaitResponse waited;
  EXPECT_EQ(stub_->Wait(Ctx().get(), wait, &waited).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  ctx->TryCancel();
  events->Finish();

  EXPECT_TRUE(Remove(a.id(), true).ok());
  EXPECT_TRUE(Remove(b.id(), true).ok());
  // Slots free again.
  ProcessInfo c = Spawn(PipedSpawn({Target(), "exit", "0"}));
  Wait(c.id());
  EXPECT_TRUE(Remove(c.id()).ok());
}

}  // namespace
}  // namespace procwarp::testing
