// Tests for the procwarp C++ client that need no real daemon: default socket
// path resolution, the gRPC -> absl status conversion, the "daemon not
// running" error, and the client's side of each call against a small fake
// procwarpd served in-process on a temporary unix socket.
#include "client/cc/client.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/cc/grpc_status.h"
#include "client/cc/socket_path.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"

namespace procwarp {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Removes every directory MakeTempDir() made once all tests have run.
class TempDirCleaner : public ::testing::Environment {
 public:
  static std::vector<std::string>& Dirs() {
    static auto* dirs = new std::vector<std::string>;
    return *dirs;
  }
  void TearDown() override {
    for (const std::string& dir : Dirs()) std::filesystem::remove_all(dir);
  }
};
[[maybe_unused]] ::testing::Environment* const kCleaner =
    ::testing::AddGlobalTestEnvironment(new TempDirCleaner);

// A fresh directory under /tmp: unix socket paths must stay shorter than 108
// bytes, which Bazel's TEST_TMPDIR does not guarantee.
std::string MakeTempDir() {
  std::string pattern = "/tmp/procwarp_client_test.XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  TempDirCleaner::Dirs().push_back(pattern);
  return pattern;
}

// ---------------------------------------------------------------------------
// Default socket path

TEST(DefaultSocketPathTest, RootUsesSystemSocket) {
  EXPECT_EQ(DefaultSocketPathFor({.euid = 0, .xdg_runtime_dir = "/run/user/0"}),
            "/run/procwarp/procwarpd.sock");
}

TEST(DefaultSocketPathTest, UserUsesXdgRuntimeDir) {
  EXPECT_EQ(
      DefaultSocketPathFor({.euid = 1000, .xdg_runtime_dir = "/run/user/1000"}),
      "/run/user/1000/procwarp/procwarpd.sock");
}

TEST(DefaultSocketPathTest, UserWithoutXdgRuntimeDirFallsBackToRunUser) {
  EXPECT_EQ(DefaultSocketPathFor({.euid = 1000}),
            "/run/user/1000/procwarp/procwarpd.sock");
  EXPECT_EQ(DefaultSocketPathFor({.euid = 1000, .xdg_runtime_dir = ""}),
            "/run/user/1000/procwarp/procwarpd.sock");
}

TEST(DefaultSocketPathTest, EnvironmentVariableOverridesForEveryone) {
  EXPECT_EQ(DefaultSocketPathFor({.euid = 0, .procwarp_socket = "/tmp/a.sock"}),
            "/tmp/a.sock");
  EXPECT_EQ(DefaultSocketPathFor({.euid = 1000,
                                  .procwarp_socket = "/tmp/b.sock",
                                  .xdg_runtime_dir = "/run/user/1000"}),
            "/tmp/b.sock");
  // An empty override is ignored, as if unset.
  EXPECT_EQ(DefaultSocketPathFor({.euid = 0, .procwarp_socket = ""}),
            "/run/procwarp/procwarpd.sock");
}

TEST(DefaultSocketPathTest, ReadsTheProcessEnvironment) {
  ASSERT_EQ(setenv("PROCWARP_SOCKET", "/tmp/from-env.sock", 1), 0);
  EXPECT_EQ(DefaultSocketPath(), "/tmp/from-env.sock");
  ASSERT_EQ(unsetenv("PROCWARP_SOCKET"), 0);
  if (geteuid() == 0) {
    EXPECT_EQ(DefaultSocketPath(), kSystemSocketPath);
  }
}

// ---------------------------------------------------------------------------
// Status conversion

TEST(FromGrpcStatusTest, OkIsOk) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(FromGrpcStatusTest, KeepsEveryCodeAndTheMessage) {
  for (int code = 1; code <= 16; ++code) {
    const grpc::Status in(static_cast<grpc::StatusCode>(code), "why");
    const absl::Status out = FromGrpcStatus(in);
    EXPECT_EQ(static_cast<int>(out.code()), code);
    EXPECT_EQ(out.message(), "why");
  }
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "x"))
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      FromGrpcStatus(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "x"))
          .code(),
      absl::StatusCode::kPermissionDenied);
}

// ---------------------------------------------------------------------------
// Exit status helpers

TEST(ExitStatusTest, ShellExitCode) {
  v1::ExitStatus status;
  EXPECT_EQ(ShellExitCode(status), 255);
  status.set_code(3);
  EXPECT_EQ(ShellExitCode(status), 3);
  status.set_signal(SIGKILL);
  EXPECT_EQ(ShellExitCode(status), 137);
}

TEST(ExitStatusTest, Describe) {
  v1::ExitStatus status;
  status.set_code(0);
  EXPECT_EQ(DescribeExitStatus(status), "exit code 0");
  status.set_signal(SIGSEGV);
  status.set_core_dumped(true);
  EXPECT_EQ(DescribeExitStatus(status),
            "killed by signal 11 (SEGV) (core dumped)");
}

TEST(SpawnOptionsTest, ToRequest) {
  const SpawnOptions options = {
      .argv = {"/bin/echo", "hi"},
      .env = {"A=1"},
      .cwd = "/tmp",
      .stdin_mode = Stdio::kPty,
      .stdout_mode = Stdio::kPipe,
      .pty_rows = 24,
      .pty_cols = 80,
      .labels = {{"name", "x"}},
  };
  const v1::SpawnRequest request = options.ToRequest();
  EXPECT_THAT(request.argv(), ElementsAre("/bin/echo", "hi"));
  EXPECT_THAT(request.env(), ElementsAre("A=1"));
  EXPECT_EQ(request.cwd(), "/tmp");
  EXPECT_EQ(request.stdin().kind(), v1::STDIO_KIND_PTY);
  EXPECT_EQ(request.stdout().kind(), v1::STDIO_KIND_PIPE);
  EXPECT_EQ(request.stderr().kind(), v1::STDIO_KIND_NULL);
  EXPECT_EQ(request.window_size().rows(), 24);
  EXPECT_EQ(request.window_size().cols(), 80);
  EXPECT_THAT(request.labels(), UnorderedElementsAre(Pair("name", "x")));
  EXPECT_FALSE(SpawnOptions{}.ToRequest().has_window_size());
}

// ---------------------------------------------------------------------------
// Connecting when no daemon is there

TEST(ConnectTest, MissingSocketSaysDaemonIsNotRunning) {
  const std::string path = MakeTempDir() + "/procwarpd.sock";
  absl::StatusOr<Client> client = Client::Connect(path);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client.status().message(),
            absl::StrCat("procwarpd is not running at ", path,
                         " (start it with: sudo procwarpd, or systemctl start "
                         "procwarpd.socket)"));
}

TEST(ConnectTest, StaleSocketSaysDaemonIsNotRunning) {
  // A socket file left behind by a daemon that died: bound, nobody listens.
  const std::string path = MakeTempDir() + "/procwarpd.sock";
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof(address.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  close(fd);

  absl::StatusOr<Client> client = Client::Connect(path);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(client.status().message(),
              HasSubstr("procwarpd is not running at " + path));
}

TEST(ConnectTest, RegularFileSaysDaemonIsNotRunning) {
  const std::string path = MakeTempDir() + "/not-a-socket";
  std::ofstream(path) << "x";
  absl::StatusOr<Client> client = Client::Connect(path);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ConnectTest, EmptyPathUsesEnvironmentOverride) {
  const std::string path = MakeTempDir() + "/from-env.sock";
  ASSERT_EQ(setenv("PROCWARP_SOCKET", path.c_str(), 1), 0);
  absl::StatusOr<Client> client = Client::Connect();
  unsetenv("PROCWARP_SOCKET");
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(client.status().message(), HasSubstr(path));
}

TEST(ConnectTest, OverlongPathIsInvalidArgument) {
  EXPECT_EQ(ProbeSocket("/tmp/" + std::string(200, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// A fake procwarpd: enough of Admin and Processes to check what the client
// sends and how it reads the answers.

class FakeAdmin final : public v1::Admin::Service {
 public:
  grpc::Status GetVersion(grpc::ServerContext*, const v1::GetVersionRequest*,
                          v1::GetVersionResponse* response) override {
    response->set_version("fake");
    response->add_api_versions("procwarp.v1");
    return grpc::Status::OK;
  }
  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                         v1::GetStatusResponse* response) override {
    response->set_clients(1);
    response->mutable_caller()->set_uid(geteuid());
    return grpc::Status::OK;
  }
};

class FakeProcesses final : public v1::Processes::Service {
 public:
  grpc::Status Spawn(grpc::ServerContext*, const v1::SpawnRequest* request,
                     v1::SpawnResponse* response) override {
    absl::MutexLock lock(&mutex_);
    spawned_.push_back(*request);
    v1::ProcessInfo* info = response->mutable_process();
    info->set_id(absl::StrCat("proc-", spawned_.size()));
    info->set_pid(1000 + spawned_.size());
    *info->mutable_argv() = request->argv();
    info->set_state(v1::PROCESS_STATE_RUNNING);
    return grpc::Status::OK;
  }

  // "slow" never exits (the call waits for its deadline); others exit 3.
  grpc::Status Wait(grpc::ServerContext* context,
                    const v1::WaitRequest* request,
                    v1::WaitResponse* response) override {
    if (request->id() == "slow") {
      while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
      return grpc::Status(grpc::StatusCode::CANCELLED, "gone");
    }
    response->mutable_process()->set_id(request->id());
    response->mutable_process()->set_state(v1::PROCESS_STATE_EXITED);
    response->mutable_process()->mutable_exit_status()->set_code(3);
    return grpc::Status::OK;
  }

  grpc::Status Signal(grpc::ServerContext*, const v1::SignalRequest* request,
                      v1::SignalResponse*) override {
    absl::MutexLock lock(&mutex_);
    signals_.push_back(request->signal());
    return grpc::Status::OK;
  }

  // Knows every id except "missing".
  grpc::Status Get(grpc::ServerContext*, const v1::GetProcessRequest* request,
                   v1::GetProcessResponse* response) override {
    if (request->id() == "missing") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no process missing");
    }
    response->mutable_process()->set_id(request->id());
    response->mutable_process()->set_pid(7);
    return grpc::Status::OK;
  }

  grpc::Status List(grpc::ServerContext*,
                    const v1::ListProcessesRequest* request,
                    v1::ListProcessesResponse* response) override {
    response->add_processes()->set_id("a");
    if (request->all()) response->add_processes()->set_id("b");
    return grpc::Status::OK;
  }

  grpc::Status Remove(grpc::ServerContext*,
                      const v1::RemoveProcessRequest* request,
                      v1::RemoveProcessResponse*) override {
    absl::MutexLock lock(&mutex_);
    removed_.push_back(absl::StrCat(request->id(), request->force() ? "!" : ""));
    return grpc::Status::OK;
  }

  // Says "hello", echoes stdin back on stdout until stdin is closed, then
  // reports exit code 0. Process "hang" never says anything.
  grpc::Status Attach(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::AttachResponse, v1::AttachRequest>* stream)
      override {
    v1::AttachRequest request;
    if (!stream->Read(&request)) return grpc::Status::OK;
    if (request.id() == "hang") {
      while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    Send(stream, v1::OUTPUT_STREAM_STDOUT, "hello\n");
    while (stream->Read(&request)) {
      if (!request.stdin().empty()) {
        Send(stream, v1::OUTPUT_STREAM_STDERR, request.stdin());
      }
      if (request.close_stdin()) break;
    }
    v1::AttachResponse exit;
    exit.mutable_exit()->set_code(0);
    stream->Write(exit);
    return grpc::Status::OK;
  }

  grpc::Status ResizePty(grpc::ServerContext*,
                         const v1::ResizePtyRequest* request,
                         v1::ResizePtyResponse*) override {
    if (request->size().rows() == 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rows is 0");
    }
    return grpc::Status::OK;
  }

  grpc::Status Events(grpc::ServerContext*, const v1::EventsRequest*,
                      grpc::ServerWriter<v1::ProcessEvent>* writer) override {
    for (auto kind : {v1::ProcessEvent::KIND_STARTED,
                      v1::ProcessEvent::KIND_EXITED,
                      v1::ProcessEvent::KIND_REMOVED}) {
      v1::ProcessEvent event;
      event.set_kind(kind);
      event.mutable_process()->set_id("e");
      writer->Write(event);
    }
    return grpc::Status::OK;
  }

  std::vector<v1::SpawnRequest> spawned() {
    absl::MutexLock lock(&mutex_);
    return spawned_;
  }
  std::vector<std::string> removed() {
    absl::MutexLock lock(&mutex_);
    return removed_;
  }
  std::vector<int> signals() {
    absl::MutexLock lock(&mutex_);
    return signals_;
  }

 private:
  static void Send(
      grpc::ServerReaderWriter<v1::AttachResponse, v1::AttachRequest>* stream,
      v1::OutputStream which, const std::string& data) {
    v1::AttachResponse response;
    response.mutable_output()->set_stream(which);
    response.mutable_output()->set_data(data);
    stream->Write(response);
  }

  absl::Mutex mutex_;
  std::vector<v1::SpawnRequest> spawned_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::string> removed_ ABSL_GUARDED_BY(mutex_);
  std::vector<int> signals_ ABSL_GUARDED_BY(mutex_);
};

class FakeDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_path_ = MakeTempDir() + "/procwarpd.sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path_,
                             grpc::InsecureServerCredentials());
    builder.RegisterService(&admin_);
    builder.RegisterService(&processes_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    absl::StatusOr<Client> client = Client::Connect(socket_path_);
    ASSERT_TRUE(client.ok()) << client.status();
    client_.emplace(*std::move(client));
  }

  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) server_->Shutdown();
  }

  absl::StatusOr<Process> SpawnEcho() {
    return client_->Spawn({.argv = {"/bin/echo", "hi"},
                           .stdout_mode = Stdio::kPipe});
  }

  std::string socket_path_;
  FakeAdmin admin_;
  FakeProcesses processes_;
  std::unique_ptr<grpc::Server> server_;
  std::optional<Client> client_;
};

TEST_F(FakeDaemonTest, ConnectAnswersVersionAndStatus) {
  EXPECT_EQ(client_->socket_path(), socket_path_);
  absl::StatusOr<v1::GetVersionResponse> version = client_->Version();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->version(), "fake");
  absl::StatusOr<v1::GetStatusResponse> status = client_->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->caller().uid(), geteuid());
}

TEST_F(FakeDaemonTest, ConnectToOtherGrpcServerSaysItIsNotProcwarpd) {
  const std::string path = MakeTempDir() + "/other.sock";
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  FakeProcesses only_processes;
  builder.RegisterService(&only_processes);
  std::unique_ptr<grpc::Server> other = builder.BuildAndStart();
  absl::StatusOr<Client> client = Client::Connect(path);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(client.status().message(), HasSubstr("is not procwarpd"));
  other->Shutdown();
}

TEST_F(FakeDaemonTest, SpawnSendsTheRequestAndReturnsTheHandle) {
  absl::StatusOr<Process> process = SpawnEcho();
  ASSERT_TRUE(process.ok()) << process.status();
  EXPECT_EQ(process->id(), "proc-1");
  EXPECT_EQ(process->pid(), 1001);
  EXPECT_TRUE(process->owned());
  ASSERT_EQ(processes_.spawned().size(), 1);
  EXPECT_THAT(processes_.spawned()[0].argv(), ElementsAre("/bin/echo", "hi"));
  EXPECT_EQ(processes_.spawned()[0].stdout().kind(), v1::STDIO_KIND_PIPE);
}

TEST_F(FakeDaemonTest, DestroyingAnOwningHandleForceRemoves) {
  {
    absl::StatusOr<Process> process = SpawnEcho();
    ASSERT_TRUE(process.ok());
  }
  EXPECT_THAT(processes_.removed(), ElementsAre("proc-1!"));
}

TEST_F(FakeDaemonTest, DetachAndReleaseKeepTheProcess) {
  {
    absl::StatusOr<Process> detached = SpawnEcho();
    ASSERT_TRUE(detached.ok());
    detached->Detach();
    EXPECT_EQ(detached->id(), "proc-1");
    absl::StatusOr<Process> released = SpawnEcho();
    ASSERT_TRUE(released.ok());
    EXPECT_EQ(released->Release(), "proc-2");
    EXPECT_TRUE(released->empty());
    EXPECT_EQ(released->Signal(SIGTERM).code(),
              absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_THAT(processes_.removed(), IsEmpty());
}

TEST_F(FakeDaemonTest, MovingTransfersOwnershipOnce) {
  {
    absl::StatusOr<Process> first = SpawnEcho();
    ASSERT_TRUE(first.ok());
    Process moved = *std::move(first);
    absl::StatusOr<Process> second = SpawnEcho();
    ASSERT_TRUE(second.ok());
    // Assigning over an owning handle removes what it owned.
    moved = *std::move(second);
    EXPECT_THAT(processes_.removed(), ElementsAre("proc-1!"));
    EXPECT_EQ(moved.id(), "proc-2");
  }
  EXPECT_THAT(processes_.removed(), ElementsAre("proc-1!", "proc-2!"));
}

TEST_F(FakeDaemonTest, ExplicitRemoveStopsOwning) {
  {
    absl::StatusOr<Process> process = SpawnEcho();
    ASSERT_TRUE(process.ok());
    ASSERT_TRUE(process->Remove().ok());
    EXPECT_FALSE(process->owned());
  }
  EXPECT_THAT(processes_.removed(), ElementsAre("proc-1"));
}

TEST_F(FakeDaemonTest, WaitReturnsTheExitStatus) {
  absl::StatusOr<Process> process = SpawnEcho();
  ASSERT_TRUE(process.ok());
  absl::StatusOr<v1::ExitStatus> exit = process->Wait();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->code(), 3);
  EXPECT_EQ(process->info().state(), v1::PROCESS_STATE_EXITED);
}

TEST_F(FakeDaemonTest, WaitTimeoutIsDeadlineExceeded) {
  absl::StatusOr<Process> slow = client_->Open("slow");
  ASSERT_TRUE(slow.ok()) << slow.status();
  absl::StatusOr<v1::ExitStatus> exit = slow->Wait(absl::Milliseconds(100));
  EXPECT_EQ(exit.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(FakeDaemonTest, OpenGivesANonOwningHandle) {
  {
    absl::StatusOr<Process> known = client_->Open("known");
    ASSERT_TRUE(known.ok()) << known.status();
    EXPECT_FALSE(known->owned());
    EXPECT_EQ(known->id(), "known");
    EXPECT_EQ(known->pid(), 7);
  }
  EXPECT_THAT(processes_.removed(), IsEmpty());
  absl::StatusOr<Process> missing = client_->Open("missing");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "no process missing");
}

TEST_F(FakeDaemonTest, SignalAndResize) {
  absl::StatusOr<Process> process = SpawnEcho();
  ASSERT_TRUE(process.ok());
  EXPECT_TRUE(process->Signal(SIGUSR1).ok());
  EXPECT_THAT(processes_.signals(), ElementsAre(SIGUSR1));
  EXPECT_TRUE(process->ResizePty(24, 80).ok());
  absl::Status bad = process->ResizePty(0, 80);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(), "rows is 0");
}

TEST_F(FakeDaemonTest, AttachReadsOutputWritesStdinAndEndsWithExit) {
  absl::StatusOr<Process> process = SpawnEcho();
  ASSERT_TRUE(process.ok());
  absl::StatusOr<AttachSession> session = process->Attach();
  ASSERT_TRUE(session.ok()) << session.status();

  absl::StatusOr<v1::AttachResponse> first = session->Read();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->output().data(), "hello\n");
  EXPECT_EQ(first->output().stream(), v1::OUTPUT_STREAM_STDOUT);

  ASSERT_TRUE(session->WriteStdin("ping").ok());
  absl::StatusOr<v1::AttachResponse> echoed = session->Read();
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(echoed->output().data(), "ping");
  EXPECT_EQ(echoed->output().stream(), v1::OUTPUT_STREAM_STDERR);

  ASSERT_TRUE(session->CloseStdin().ok());
  absl::StatusOr<v1::AttachResponse> exit = session->Read();
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(exit->has_exit());
  EXPECT_EQ(exit->exit().code(), 0);

  EXPECT_EQ(session->Read().status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(session->Finish().ok());
}

TEST_F(FakeDaemonTest, CancelUnblocksRead) {
  absl::StatusOr<Process> silent = client_->Open("hang");
  ASSERT_TRUE(silent.ok());
  absl::StatusOr<AttachSession> session = silent->Attach();
  ASSERT_TRUE(session.ok()) << session.status();
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(50));
    session->Cancel();
  });
  absl::StatusOr<v1::AttachResponse> next = session->Read();
  canceller.join();
  EXPECT_EQ(next.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(session->Finish().code(), absl::StatusCode::kCancelled);
}

TEST_F(FakeDaemonTest, DestroyingAnOpenSessionCancelsIt) {
  absl::StatusOr<Process> silent = client_->Open("hang");
  ASSERT_TRUE(silent.ok());
  absl::StatusOr<AttachSession> session = silent->Attach();
  ASSERT_TRUE(session.ok());
  session = absl::CancelledError("dropped");  // runs ~AttachSession; no hang
}

TEST_F(FakeDaemonTest, MoveAssigningOverAnOpenSessionCancelsIt) {
  absl::StatusOr<Process> silent = client_->Open("hang");
  ASSERT_TRUE(silent.ok());
  absl::StatusOr<AttachSession> first = silent->Attach();
  absl::StatusOr<AttachSession> second = silent->Attach();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  *first = *std::move(second);  // would block forever without the cancel
  first->Cancel();
  EXPECT_EQ(first->Read().status().code(), absl::StatusCode::kCancelled);
}

TEST_F(FakeDaemonTest, ListPassesAll) {
  absl::StatusOr<std::vector<v1::ProcessInfo>> own = client_->List();
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->size(), 1);
  absl::StatusOr<std::vector<v1::ProcessInfo>> all = client_->List(true);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2);
}

TEST_F(FakeDaemonTest, EventStreamReadsUntilTheEnd) {
  EventStream stream = client_->Events();
  std::vector<v1::ProcessEvent::Kind> kinds;
  absl::StatusOr<v1::ProcessEvent> event;
  while ((event = stream.Next()).ok()) kinds.push_back(event->kind());
  EXPECT_EQ(event.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(kinds, ElementsAre(v1::ProcessEvent::KIND_STARTED,
                                 v1::ProcessEvent::KIND_EXITED,
                                 v1::ProcessEvent::KIND_REMOVED));
}

TEST_F(FakeDaemonTest, EventCallbackStopsWhenAsked) {
  int seen = 0;
  absl::Status status = client_->Events([&](const v1::ProcessEvent&) {
    return ++seen < 2;
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(seen, 2);
}

TEST_F(FakeDaemonTest, CallsAfterTheDaemonStopsAreUnavailable) {
  server_->Shutdown();
  server_.reset();
  EXPECT_EQ(client_->Status().status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace procwarp
