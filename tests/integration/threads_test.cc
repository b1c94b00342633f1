// Threads, Memory and Files against a real procwarpd and real agent threads:
// syscalls and their errnos, pipelined batches, large memory transfers,
// moving fds between threads, namespaces, dead agents, session-bound and
// persistent threads, and what another uid can and cannot do.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <array>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using v1::Files;
using v1::Memory;
using v1::SyscallResult;
using v1::ThreadInfo;
using v1::Threads;

constexpr int kNobody = 65534;

// The stubs of one connection to the daemon.
struct Client {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<Threads::Stub> threads;
  std::unique_ptr<Memory::Stub> memory;
  std::unique_ptr<Files::Stub> files;
  std::unique_ptr<v1::Processes::Stub> processes;
};

// True once the process behind `pidfd` has exited, waiting up to `timeout`.
bool ExitsWithin(int pidfd, absl::Duration timeout) {
  pollfd pfd = {pidfd, POLLIN, 0};
  return poll(&pfd, 1, absl::ToInt64Milliseconds(timeout)) == 1;
}

// The real uid in /proc/PID/status.
int RealUidOf(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "Uid:")) return atoi(line.c_str() + 4);
  }
  return -1;
}

class ThreadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonHarness::Start(DaemonHarness::Options::WithAgent());
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    client_ = Connect();
  }

  Client Connect() {
    Client c;
    c.channel = daemon_->NewChannel();
    c.threads = Threads::NewStub(c.channel);
    c.memory = Memory::NewStub(c.channel);
    c.files = Files::NewStub(c.channel);
    c.processes = v1::Processes::NewStub(c.channel);
    return c;
  }

  ThreadInfo Create(Client& c, v1::CreateThreadRequest request = {}) {
    v1::CreateThreadResponse response;
    grpc::Status s = c.threads->CreateThread(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.thread();
  }
  ThreadInfo Create(v1::CreateThreadRequest request = {}) {
    return Create(client_, std::move(request));
  }

  grpc::Status TrySys(Client& c, const std::string& thread, int64_t nr,
                      std::vector<int64_t> args, SyscallResult* result) {
    v1::SyscallRequest request;
    request.set_thread_id(thread);
    request.mutable_syscall()->set_number(nr);
    for (int64_t a : args) request.mutable_syscall()->add_args(a);
    v1::SyscallResponse response;
    grpc::Status s = c.threads->Syscall(Ctx().get(), request, &response);
    *result = response.result();
    return s;
  }
  SyscallResult Sys(const std::string& thread, int64_t nr,
                    std::vector<int64_t> args = {}) {
    SyscallResult result;
    grpc::Status s = TrySys(client_, thread, nr, args, &result);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return result;
  }

  v1::Pointer Allocate(Client& c, const std::string& thread, uint64_t size) {
    v1::AllocateRequest request;
    request.set_thread_id(thread);
    request.set_size(size);
    v1::AllocateResponse response;
    grpc::Status s = c.memory->Allocate(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.pointer();
  }
  v1::Pointer Allocate(const std::string& thread, uint64_t size) {
    return Allocate(client_, thread, size);
  }

  grpc::Status Write(const v1::Pointer& p, uint64_t offset,
                     const std::string& data) {
    v1::WriteMemoryRequest request;
    request.set_pointer_id(p.id());
    request.set_offset(offset);
    request.set_data(data);
    v1::WriteMemoryResponse response;
    return client_.memory->Write(Ctx().get(), request, &response);
  }

  grpc::Status Read(const v1::Pointer& p, uint64_t offset, uint64_t length,
                    std::string* out) {
    v1::ReadMemoryRequest request;
    request.set_pointer_id(p.id());
    request.set_offset(offset);
    request.set_length(length);
    v1::ReadMemoryResponse response;
    grpc::Status s = client_.memory->Read(Ctx().get(), request, &response);
    *out = response.data();
    return s;
  }

  // pipe2(O_CLOEXEC) in `thread`: its read and write fds, as the thread
  // numbers them.
  std::array<int, 2> MakePipe(const std::string& thread) {
    v1::Pointer fds = Allocate(thread, 8);
    EXPECT_EQ(Sys(thread, SYS_pipe2,
                  {static_cast<int64_t>(fds.address()), O_CLOEXEC})
                  .error(),
              0);
    std::string raw;
    EXPECT_TRUE(Read(fds, 0, 8, &raw).ok());
    std::array<int, 2> pipe_fds = {-1, -1};
    if (raw.size() == 8) memcpy(pipe_fds.data(), raw.data(), 8);
    return pipe_fds;
  }

  // A NUL-terminated string in fresh thread memory; returns its address.
  int64_t PutString(const std::string& thread, const std::string& s) {
    v1::Pointer p = Allocate(thread, s.size() + 1);
    EXPECT_TRUE(Write(p, 0, std::string(s.c_str(), s.size() + 1)).ok());
    return static_cast<int64_t>(p.address());
  }

  std::string Peer(int uid, std::vector<std::string> op) {
    std::vector<std::string> argv = {RunfilePath("tests/integration/peer_client"),
                                     "--socket", daemon_->socket_path()};
    if (uid >= 0) {
      argv.insert(argv.end(),
                  {"--uid", absl::StrCat(uid), "--gid", absl::StrCat(uid)});
    }
    argv.insert(argv.end(), op.begin(), op.end());
    RunResult r = RunProgram(argv);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return r.out;
  }

  std::unique_ptr<DaemonHarness> daemon_;
  Client client_;
};

TEST_F(ThreadsTest, MapsShowAllocationsAndTheAgent) {
  ThreadInfo t = Create();
  v1::Pointer p = Allocate(t.id(), 3 * 4096);
  v1::MapsRequest request;
  request.set_thread_id(t.id());
  v1::MapsResponse maps;
  ASSERT_TRUE(client_.memory->Maps(Ctx().get(), request, &maps).ok());
  bool found_allocation = false, found_agent = false;
  for (const auto& m : maps.mappings()) {
    EXPECT_LT(m.start(), m.end());
    EXPECT_EQ(m.permissions().size(), 4u) << m.permissions();
    if (m.start() <= p.address() && p.address() + p.size() <= m.end() &&
        m.permissions().substr(0, 2) == "rw") {
      found_allocation = true;
    }
    if (m.path().find("procwarp-agent") != std::string::npos) found_agent = true;
  }
  EXPECT_TRUE(found_allocation) << "allocation at " << p.address() << " not in maps";
  EXPECT_TRUE(found_agent);
  // Someone else's thread: NOT_FOUND like every other handle.
  request.set_thread_id("00000000000000000000000000000000");
  EXPECT_EQ(client_.memory->Maps(Ctx().get(), request, &maps).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ThreadsTest, GetpidIsTheThreadsPid) {
  ThreadInfo t = Create();
  EXPECT_GT(t.pid(), 0);
  EXPECT_EQ(t.state(), v1::THREAD_STATE_RUNNING);
  EXPECT_EQ(t.uid(), 0u);
  SyscallResult r = Sys(t.id(), SYS_getpid);
  EXPECT_EQ(r.error(), 0);
  EXPECT_EQ(r.value(), t.pid());
  EXPECT_EQ(t.namespace_pid(), t.pid());
  // The agent is running as a child of the daemon.
  std::ifstream stat(absl::StrCat("/proc/", t.pid(), "/stat"));
  std::string content((std::istreambuf_iterator<char>(stat)), {});
  std::vector<std::string> fields = absl::StrSplit(content.substr(content.rfind(')') + 2), ' ');
  EXPECT_EQ(atoi(fields[1].c_str()), daemon_->pid());
}

TEST_F(ThreadsTest, FailedSyscallsAreResultsWithErrno) {
  ThreadInfo t = Create();
  SyscallResult r = Sys(t.id(), SYS_close, {9999});
  EXPECT_EQ(r.value(), -1);
  EXPECT_EQ(r.error(), EBADF);
  EXPECT_EQ(r.error_name(), "EBADF");

  int64_t missing = PutString(t.id(), "/nonexistent/procwarp-test");
  r = Sys(t.id(), SYS_openat, {AT_FDCWD, missing, O_RDONLY});
  EXPECT_EQ(r.error(), ENOENT);

  int64_t zero = PutString(t.id(), "/dev/zero");
  r = Sys(t.id(), SYS_openat, {AT_FDCWD, zero, O_RDONLY | O_CLOEXEC});
  ASSERT_EQ(r.error(), 0);
  int64_t fd = r.value();
  r = Sys(t.id(), SYS_read, {fd, 8, 16});  // address 8: never mapped
  EXPECT_EQ(r.error(), EFAULT);
  EXPECT_EQ(r.error_name(), "EFAULT");

  // Bad requests are RPC errors, and the daemon keeps serving.
  SyscallResult ignored;
  grpc::Status s = TrySys(client_, t.id(), SYS_getpid, {1, 2, 3, 4, 5, 6, 7},
                          &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = TrySys(client_, "0123456789abcdef0123456789abcdef", SYS_getpid, {},
             &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Sys(t.id(), SYS_getpid).value(), t.pid());
}

TEST_F(ThreadsTest, ExecutePipelines100kGetpidsInOrder) {
  ThreadInfo t = Create();
  constexpr int kTotal = 100000;
  constexpr int kBatch = 1000;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto stream = client_.threads->Execute(&ctx);
  auto start = std::chrono::steady_clock::now();
  // Writes from their own thread: the replies must be read while requests
  // are still going out, or flow control stalls both directions.
  std::thread writer([&] {
    for (int b = 0; b < kTotal / kBatch; ++b) {
      v1::ExecuteRequest request;
      if (b == 0) request.set_thread_id(t.id());
      for (int i = 0; i < kBatch; ++i) {
        // Alternate getpid and getppid so the order is visible.
        request.add_syscalls()->set_number(i % 2 == 0 ? SYS_getpid : SYS_getppid);
      }
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  int results = 0, wrong = 0;
  v1::ExecuteResponse response;
  while (stream->Read(&response)) {
    for (const SyscallResult& r : response.results()) {
      int64_t want = results % 2 == 0 ? t.pid() : daemon_->pid();
      if (r.value() != want) ++wrong;
      ++results;
    }
  }
  writer.join();
  grpc::Status s = stream->Finish();
  double seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(results, kTotal);
  EXPECT_EQ(wrong, 0);
  printf("pipelined: %d syscalls in %.3f s = %.0f syscalls/s\n", kTotal, seconds,
         kTotal / seconds);
  RecordProperty("syscalls_per_second", static_cast<int>(kTotal / seconds));
}

TEST_F(ThreadsTest, SixtyFourMebibytesRoundTripByHash) {
  ThreadInfo t = Create();
  constexpr uint64_t kSize = 64 << 20;
  constexpr uint64_t kChunk = 2 << 20;
  v1::Pointer p = Allocate(t.id(), kSize);
  ASSERT_EQ(p.size(), kSize);
  std::string data(kSize, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    uint64_t v = rng();
    memcpy(&data[i], &v, 8);
  }
  auto start = std::chrono::steady_clock::now();
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::WriteMemoryResponse written;
    auto writer = client_.memory->WriteStream(&ctx, &written);
    for (uint64_t off = 0; off < kSize; off += kChunk) {
      v1::WriteMemoryRequest request;
      request.set_pointer_id(p.id());
      request.set_offset(off);
      request.set_data(data.substr(off, kChunk));
      ASSERT_TRUE(writer->Write(request));
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(written.written(), kSize);
  }
  auto written_at = std::chrono::steady_clock::now();
  std::string back;
  back.reserve(kSize);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::ReadMemoryRequest request;
    request.set_pointer_id(p.id());
    request.set_length(kSize);
    auto reader = client_.memory->ReadStream(&ctx, request);
    v1::ReadMemoryChunk chunk;
    while (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.offset(), back.size());
      back += chunk.data();
    }
    grpc::Status s = reader->Finish();
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  auto read_at = std::chrono::steady_clock::now();
  ASSERT_EQ(back.size(), kSize);
  EXPECT_EQ(std::hash<std::string>()(back), std::hash<std::string>()(data));
  EXPECT_TRUE(back == data);
  double mib = kSize / double(1 << 20);
  printf("64 MiB: write %.0f MiB/s, read %.0f MiB/s\n",
         mib / std::chrono::duration<double>(written_at - start).count(),
         mib / std::chrono::duration<double>(read_at - written_at).count());
  // The thread sees the same bytes: a syscall writes part of it to a pipe.
  std::string piece;
  ASSERT_TRUE(Read(p, kSize - 100, 100, &piece).ok());
  EXPECT_EQ(piece, data.substr(kSize - 100));
}

TEST_F(ThreadsTest, PointerBoundsAreChecked) {
  ThreadInfo t = Create();
  v1::Pointer p = Allocate(t.id(), 4096);
  std::string out;
  EXPECT_EQ(Read(p, 4090, 10, &out).error_code(),
            grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(Read(p, 5000, 0, &out).error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(Read(p, 1, ~0ull, &out).error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(Write(p, 4095, "ab").error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_TRUE(Write(p, 4094, "ab").ok());
  ASSERT_TRUE(Read(p, 4094, 2, &out).ok());
  EXPECT_EQ(out, "ab");
  // Freed: the handle is gone.
  v1::FreeRequest free;
  free.set_pointer_id(p.id());
  v1::FreeResponse freed;
  ASSERT_TRUE(client_.memory->Free(Ctx().get(), free, &freed).ok());
  EXPECT_EQ(Read(p, 0, 1, &out).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ThreadsTest, PipeWriteEndTransferredToAnotherThread) {
  ThreadInfo a = Create();
  ThreadInfo b = Create();
  std::array<int, 2> pipe_fds = MakePipe(a.id());
  ASSERT_GE(pipe_fds[0], 0);

  v1::TransferFdRequest transfer;
  transfer.set_source_thread_id(a.id());
  transfer.set_source_fd(pipe_fds[1]);
  transfer.set_target_thread_id(b.id());
  v1::TransferFdResponse transferred;
  grpc::Status s =
      client_.files->TransferFd(Ctx().get(), transfer, &transferred);
  ASSERT_TRUE(s.ok()) << s.error_message();
  int b_write = transferred.fd();
  // A keeps only the read end, so the data can only have come through B.
  v1::CloseFdRequest close;
  close.set_thread_id(a.id());
  close.set_fd(pipe_fds[1]);
  v1::CloseFdResponse closed;
  ASSERT_TRUE(client_.files->CloseFd(Ctx().get(), close, &closed).ok());

  const std::string message = "through the pipe";
  int64_t source = PutString(b.id(), message);
  SyscallResult w = Sys(b.id(), SYS_write,
                        {b_write, source, static_cast<int64_t>(message.size())});
  ASSERT_EQ(w.value(), static_cast<int64_t>(message.size()));
  v1::Pointer into = Allocate(a.id(), 64);
  SyscallResult r = Sys(a.id(), SYS_read, {pipe_fds[0],
                                           static_cast<int64_t>(into.address()), 64});
  ASSERT_EQ(r.value(), static_cast<int64_t>(message.size()));
  std::string got;
  ASSERT_TRUE(Read(into, 0, message.size(), &got).ok());
  EXPECT_EQ(got, message);

  // ListFds shows B's end as a pipe, not close-on-exec.
  v1::ListFdsRequest list;
  list.set_thread_id(b.id());
  v1::ListFdsResponse listed;
  ASSERT_TRUE(client_.files->ListFds(Ctx().get(), list, &listed).ok());
  bool found = false;
  for (const auto& fd : listed.fds()) {
    if (fd.fd() == b_write) {
      found = true;
      EXPECT_THAT(fd.path(), StartsWith("pipe:"));
      EXPECT_FALSE(fd.cloexec());
      EXPECT_EQ(fd.flags() & O_ACCMODE, O_WRONLY);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(ThreadsTest, NewUserNamespaceMakesTheCallerRootInside) {
  v1::CreateThreadRequest request;
  request.mutable_namespaces()->set_user(true);
  ThreadInfo t = Create(request);
  EXPECT_EQ(Sys(t.id(), SYS_getuid).value(), 0);
  EXPECT_EQ(RealUidOf(t.pid()), 0);  // the caller (root) outside
  std::ifstream map(absl::StrCat("/proc/", t.pid(), "/uid_map"));
  std::string line;
  std::getline(map, line);
  std::vector<std::string> fields =
      absl::StrSplit(line, ' ', absl::SkipEmpty());
  ASSERT_EQ(fields.size(), 3u);
  EXPECT_EQ(fields[0], "0");
  EXPECT_EQ(fields[1], "0");
  EXPECT_EQ(fields[2], "1");
}

TEST_F(ThreadsTest, TmpfsMountedInNewMountNamespaceIsInvisibleToTheHost) {
  std::string dir = MakeTempDir();
  v1::CreateThreadRequest request;
  request.mutable_namespaces()->set_user(true);
  request.mutable_namespaces()->set_mount(true);
  ThreadInfo t = Create(request);
  int64_t source = PutString(t.id(), "procwarp-tmpfs");
  int64_t target = PutString(t.id(), dir);
  int64_t type = PutString(t.id(), "tmpfs");
  SyscallResult r = Sys(t.id(), SYS_mount, {source, target, type, 0, 0});
  ASSERT_EQ(r.error(), 0) << r.error_name();
  int64_t inside = PutString(t.id(), dir + "/made-inside");
  ASSERT_EQ(Sys(t.id(), SYS_mkdirat, {AT_FDCWD, inside, 0755}).error(), 0);

  // The thread sees the mount; the host neither the mount nor the file.
  std::ifstream thread_mounts(absl::StrCat("/proc/", t.pid(), "/mounts"));
  std::string thread_view((std::istreambuf_iterator<char>(thread_mounts)), {});
  EXPECT_THAT(thread_view, HasSubstr("procwarp-tmpfs " + dir));
  std::ifstream host_mounts("/proc/self/mounts");
  std::string host_view((std::istreambuf_iterator<char>(host_mounts)), {});
  EXPECT_THAT(host_view, ::testing::Not(HasSubstr(dir)));
  struct stat st;
  EXPECT_NE(stat((dir + "/made-inside").c_str(), &st), 0);
  rmdir(dir.c_str());
}

TEST_F(ThreadsTest, KilledAgentMidExecuteIsUnavailableNotAHang) {
  ThreadInfo t = Create();
  v1::Pointer fds = Allocate(t.id(), 8);
  ASSERT_EQ(Sys(t.id(), SYS_pipe2, {static_cast<int64_t>(fds.address()), 0})
                .error(), 0);
  std::string raw;
  ASSERT_TRUE(Read(fds, 0, 8, &raw).ok());
  int pipe_fds[2];
  memcpy(pipe_fds, raw.data(), 8);
  int pidfd = syscall(SYS_pidfd_open, t.pid(), 0);
  ASSERT_GE(pidfd, 0);

  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto stream = client_.threads->Execute(&ctx);
  v1::ExecuteRequest request;
  request.set_thread_id(t.id());
  request.add_syscalls()->set_number(SYS_getpid);
  // Blocks forever: nobody writes to the pipe.
  auto* blocked = request.add_syscalls();
  blocked->set_number(SYS_read);
  blocked->add_args(pipe_fds[0]);
  blocked->add_args(static_cast<int64_t>(fds.address()));
  blocked->add_args(1);
  ASSERT_TRUE(stream->Write(request));
  ASSERT_EQ(kill(t.pid(), SIGKILL), 0);
  ASSERT_TRUE(ExitsWithin(pidfd, absl::Seconds(10)));
  close(pidfd);
  v1::ExecuteResponse response;
  EXPECT_FALSE(stream->Read(&response));
  stream->WritesDone();
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("signal 9"));

  // Later calls say so too, until the handle is released.
  SyscallResult ignored;
  s = TrySys(client_, t.id(), SYS_getpid, {}, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  std::string out;
  EXPECT_EQ(Read(fds, 0, 8, &out).error_code(), grpc::StatusCode::UNAVAILABLE);
  v1::GetThreadRequest get;
  get.set_id(t.id());
  v1::GetThreadResponse got;
  ASSERT_TRUE(client_.threads->GetThread(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.thread().state(), v1::THREAD_STATE_EXITED);
  EXPECT_EQ(got.thread().exit_status().signal(), SIGKILL);
  v1::ExitThreadRequest exit;
  exit.set_id(t.id());
  v1::ExitThreadResponse exited;
  ASSERT_TRUE(client_.threads->ExitThread(Ctx().get(), exit, &exited).ok());
  s = TrySys(client_, t.id(), SYS_getpid, {}, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ThreadsTest, ExitThreadEndsTheAgentWithItsCode) {
  ThreadInfo t = Create();
  v1::ExitThreadRequest exit;
  exit.set_id(t.id());
  exit.set_exit_code(7);
  v1::ExitThreadResponse exited;
  ASSERT_TRUE(client_.threads->ExitThread(Ctx().get(), exit, &exited).ok());
  EXPECT_EQ(exited.thread().state(), v1::THREAD_STATE_EXITED);
  EXPECT_EQ(exited.thread().exit_status().code(), 7);
  EXPECT_FALSE(std::ifstream(absl::StrCat("/proc/", t.pid(), "/stat")).good());
}

TEST_F(ThreadsTest, DisconnectEndsNonPersistentThreadsAndFreesFds) {
  // The fixture's own connection is up before the count.
  v1::ListThreadsResponse listed;
  ASSERT_TRUE(client_.threads->ListThreads(Ctx().get(), {}, &listed).ok());
  int fds_before = daemon_->CountFds();
  std::vector<int> pidfds;
  {
    Client c = Connect();
    for (int i = 0; i < 3; ++i) {
      ThreadInfo t = Create(c);
      ASSERT_GT(t.pid(), 0);
      Allocate(c, t.id(), 4096);  // pointers go with their thread
      pidfds.push_back(syscall(SYS_pidfd_open, t.pid(), 0));
      ASSERT_GE(pidfds.back(), 0);
    }
  }
  for (int pidfd : pidfds) {
    EXPECT_TRUE(ExitsWithin(pidfd, absl::Seconds(10)));
    close(pidfd);
  }
  // The daemon reaps and closes right after the kill; allow it a moment.
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (daemon_->CountFds() > fds_before && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_LE(daemon_->CountFds(), fds_before);
  listed.Clear();
  ASSERT_TRUE(client_.threads->ListThreads(Ctx().get(), {}, &listed).ok());
  EXPECT_EQ(listed.threads_size(), 0);
}

TEST_F(ThreadsTest, ClientVanishingDuringCreateLeavesNoThread) {
  // The client sends CreateThread and exits at various points of the
  // daemon's launch: before it, during it, after it. The session may end
  // before the thread exists; it must be ended all the same.
  v1::ListThreadsResponse listed;
  ASSERT_TRUE(client_.threads->ListThreads(Ctx().get(), {}, &listed).ok());
  int fds_before = daemon_->CountFds();
  for (int micros : {0, 100, 300, 1000, 2000, 5000, 10000, 30000}) {
    Peer(-1, {"thread_create_and_vanish", absl::StrCat(micros)});
  }
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    listed.Clear();
    ASSERT_TRUE(client_.threads->ListThreads(Ctx().get(), {}, &listed).ok());
    if (listed.threads_size() == 0 && daemon_->CountFds() <= fds_before) break;
    absl::SleepFor(absl::Milliseconds(20));
  } while (absl::Now() < deadline);
  EXPECT_EQ(listed.threads_size(), 0);
  EXPECT_LE(daemon_->CountFds(), fds_before);
}

TEST_F(ThreadsTest, ThreadLimitHoldsUnderConcurrentCreates) {
  daemon_.reset();
  DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
  options.flags.insert(options.flags.end(), {"--max_threads_per_identity", "3"});
  auto d = DaemonHarness::Start(options);
  ASSERT_TRUE(d.ok()) << d.status();
  daemon_ = *std::move(d);
  client_ = Connect();

  constexpr int kCreators = 8;
  std::vector<grpc::StatusCode> codes(kCreators);
  std::vector<std::string> ids(kCreators);
  std::vector<std::thread> creators;
  for (int i = 0; i < kCreators; ++i) {
    creators.emplace_back([&, i] {
      Client c = Connect();
      v1::CreateThreadRequest request;
      request.set_persistent(true);  // outlives this creator's connection
      v1::CreateThreadResponse response;
      codes[i] = c.threads->CreateThread(Ctx().get(), request, &response)
                     .error_code();
      ids[i] = response.thread().id();
    });
  }
  for (auto& t : creators) t.join();
  std::vector<std::string> created;
  for (int i = 0; i < kCreators; ++i) {
    if (codes[i] == grpc::StatusCode::OK) {
      created.push_back(ids[i]);
    } else {
      EXPECT_EQ(codes[i], grpc::StatusCode::RESOURCE_EXHAUSTED);
    }
  }
  ASSERT_EQ(created.size(), 3u);

  // Child threads count for their parent's owner too.
  v1::CreateThreadRequest child;
  child.set_parent_thread_id(created[0]);
  v1::CreateThreadResponse response;
  EXPECT_EQ(client_.threads->CreateThread(Ctx().get(), child, &response)
                .error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  v1::ExitThreadRequest exit;
  exit.set_id(created[1]);
  v1::ExitThreadResponse exited;
  ASSERT_TRUE(client_.threads->ExitThread(Ctx().get(), exit, &exited).ok());
  grpc::Status s = client_.threads->CreateThread(Ctx().get(), child, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(ThreadsTest, PersistentThreadOutlivesItsConnection) {
  std::string id;
  pid_t pid;
  {
    Client c = Connect();
    v1::CreateThreadRequest request;
    request.set_persistent(true);
    ThreadInfo t = Create(c, request);
    id = t.id();
    pid = t.pid();
    EXPECT_TRUE(t.persistent());
  }
  // It still answers, from a new connection of the same identity.
  Client c = Connect();
  SyscallResult r;
  ASSERT_TRUE(TrySys(c, id, SYS_getpid, {}, &r).ok());
  EXPECT_EQ(r.value(), pid);
  v1::ExitThreadRequest exit;
  exit.set_id(id);
  v1::ExitThreadResponse exited;
  ASSERT_TRUE(c.threads->ExitThread(Ctx().get(), exit, &exited).ok());
}

TEST_F(ThreadsTest, NobodyCannotReachRootsThreadsOrPointers) {
  ThreadInfo t = Create();
  v1::Pointer p = Allocate(t.id(), 64);
  EXPECT_THAT(Peer(kNobody, {"thread_syscall", t.id(), "39"}),
              StartsWith("NOT_FOUND"));
  EXPECT_THAT(Peer(kNobody, {"thread_get", t.id()}), StartsWith("NOT_FOUND"));
  EXPECT_THAT(Peer(kNobody, {"thread_exit", t.id()}), StartsWith("NOT_FOUND"));
  EXPECT_THAT(Peer(kNobody, {"mem_read", p.id()}), StartsWith("NOT_FOUND"));
  EXPECT_THAT(Peer(kNobody, {"thread_list"}), StartsWith("OK n=0"));
  // Root's own client can (admins can).
  EXPECT_THAT(Peer(-1, {"thread_syscall", t.id(), "39"}),
              StartsWith(absl::StrCat("OK value=", t.pid())));
  EXPECT_EQ(Sys(t.id(), SYS_getpid).value(), t.pid());
}

TEST_F(ThreadsTest, NobodysThreadRunsAsNobodyAndCannotTouchRoot) {
  std::string answer =
      Peer(kNobody, {"thread_probe", absl::StrCat(getpid())});
  EXPECT_EQ(answer,
            "OK uid=65534 status_uid=65534 kill=EPERM process_vm_readv=EPERM\n");
}

TEST_F(ThreadsTest, NobodysUserNamespaceThreadIsRootInsideOnly) {
  std::string answer =
      Peer(kNobody, {"thread_probe", "--userns", absl::StrCat(getpid())});
  EXPECT_EQ(answer,
            "OK uid=0 status_uid=65534 kill=EPERM process_vm_readv=EPERM\n");
}

// ---------------------------------------------------------------------------
// Child threads: cloned by an agent thread (rsyscall's ChildThread).

TEST_F(ThreadsTest, ChildWithCopiedFdTableUsesTheParentsFds) {
  ThreadInfo parent = Create();
  v1::Pointer fds = Allocate(parent.id(), 8);
  ASSERT_EQ(Sys(parent.id(), SYS_pipe2,
                {static_cast<int64_t>(fds.address()), O_CLOEXEC})
                .error(),
            0);
  std::string raw;
  ASSERT_TRUE(Read(fds, 0, 8, &raw).ok());
  int pipe_fds[2];
  memcpy(pipe_fds, raw.data(), 8);
  const std::string message = "from the parent";
  int64_t source = PutString(parent.id(), message);
  ASSERT_EQ(Sys(parent.id(), SYS_write,
                {pipe_fds[1], source, static_cast<int64_t>(message.size())})
                .value(),
            static_cast<int64_t>(message.size()));

  v1::CreateThreadRequest request;
  request.set_parent_thread_id(parent.id());
  ThreadInfo child = Create(request);
  ASSERT_FALSE(child.id().empty());
  EXPECT_NE(child.pid(), parent.pid());
  EXPECT_EQ(child.parent_thread_id(), parent.id());
  EXPECT_FALSE(child.shares_fd_table());
  EXPECT_EQ(Sys(child.id(), SYS_getpid).value(), child.pid());
  // CLONE_PARENT: the daemon's child, like every other thread.
  std::ifstream stat(absl::StrCat("/proc/", child.pid(), "/stat"));
  std::string content((std::istreambuf_iterator<char>(stat)), {});
  std::vector<std::string> fields =
      absl::StrSplit(content.substr(content.rfind(')') + 2), ' ');
  EXPECT_EQ(atoi(fields[1].c_str()), daemon_->pid());

  // The child reads what the parent wrote, through its copy of the fd; the
  // memory it reads into is its own copy of the parent's.
  SyscallResult r = Sys(child.id(), SYS_read,
                        {pipe_fds[0], static_cast<int64_t>(fds.address()), 8});
  ASSERT_EQ(r.value(), 8);
  // A copied table: closing the read end in the child leaves the parent's.
  ASSERT_EQ(Sys(child.id(), SYS_close, {pipe_fds[0]}).error(), 0);
  EXPECT_EQ(Sys(parent.id(), SYS_fcntl, {pipe_fds[0], F_GETFD}).error(), 0);
  EXPECT_EQ(Sys(child.id(), SYS_fcntl, {pipe_fds[0], F_GETFD}).error(), EBADF);
}

TEST_F(ThreadsTest, ChildWithSharedFdTableShowsItsFdsInTheParent) {
  ThreadInfo parent = Create();
  v1::CreateThreadRequest request;
  request.set_parent_thread_id(parent.id());
  request.set_share_fd_table(true);
  ThreadInfo child = Create(request);
  ASSERT_FALSE(child.id().empty());
  EXPECT_TRUE(child.shares_fd_table());

  std::array<int, 2> pipe_fds = MakePipe(child.id());
  ASSERT_GE(pipe_fds[0], 0);
  const std::string message = "from the child";
  int64_t source = PutString(child.id(), message);
  ASSERT_EQ(Sys(child.id(), SYS_write,
                {pipe_fds[1], source, static_cast<int64_t>(message.size())})
                .value(),
            static_cast<int64_t>(message.size()));
  // The parent reads it through the same fd numbers.
  v1::Pointer into = Allocate(parent.id(), 64);
  SyscallResult r =
      Sys(parent.id(), SYS_read,
          {pipe_fds[0], static_cast<int64_t>(into.address()), 64});
  ASSERT_EQ(r.value(), static_cast<int64_t>(message.size()));
  std::string got;
  ASSERT_TRUE(Read(into, 0, message.size(), &got).ok());
  EXPECT_EQ(got, message);
}

TEST_F(ThreadsTest, ChildInNewUserNamespaceIsRootInside) {
  ThreadInfo parent = Create();
  v1::CreateThreadRequest request;
  request.set_parent_thread_id(parent.id());
  request.mutable_namespaces()->set_user(true);
  ThreadInfo child = Create(request);
  ASSERT_FALSE(child.id().empty());
  EXPECT_EQ(Sys(child.id(), SYS_getuid).value(), 0);
  std::ifstream map(absl::StrCat("/proc/", child.pid(), "/uid_map"));
  std::string line;
  std::getline(map, line);
  EXPECT_EQ(
      std::vector<std::string>(absl::StrSplit(line, ' ', absl::SkipEmpty())),
      (std::vector<std::string>{"0", "0", "1"}));
  char parent_ns[64] = {}, child_ns[64] = {};
  ASSERT_GT(readlink(absl::StrCat("/proc/", parent.pid(), "/ns/user").c_str(),
                     parent_ns, sizeof(parent_ns) - 1),
            0);
  ASSERT_GT(readlink(absl::StrCat("/proc/", child.pid(), "/ns/user").c_str(),
                     child_ns, sizeof(child_ns) - 1),
            0);
  EXPECT_STRNE(parent_ns, child_ns);
  // An unprivileged caller's child becomes root inside only.
  EXPECT_EQ(Peer(kNobody, {"thread_child_userns"}),
            "OK parent_uid=65534 child_uid=0 child_status_uid=65534\n");
}

TEST_F(ThreadsTest, ChildOfMountNamespaceThreadSeesItsTmpfs) {
  std::string dir = MakeTempDir();
  v1::CreateThreadRequest request;
  request.mutable_namespaces()->set_user(true);
  request.mutable_namespaces()->set_mount(true);
  ThreadInfo parent = Create(request);
  int64_t source = PutString(parent.id(), "procwarp-tmpfs");
  int64_t target = PutString(parent.id(), dir);
  int64_t type = PutString(parent.id(), "tmpfs");
  SyscallResult r = Sys(parent.id(), SYS_mount, {source, target, type, 0, 0});
  ASSERT_EQ(r.error(), 0) << r.error_name();
  int64_t inside = PutString(parent.id(), dir + "/made-inside");
  ASSERT_EQ(Sys(parent.id(), SYS_mkdirat, {AT_FDCWD, inside, 0755}).error(), 0);

  v1::CreateThreadRequest child_request;
  child_request.set_parent_thread_id(parent.id());
  ThreadInfo child = Create(child_request);
  ASSERT_FALSE(child.id().empty());
  // `inside` is at the same address in the child's copy of the memory.
  EXPECT_EQ(Sys(child.id(), SYS_faccessat, {AT_FDCWD, inside, F_OK}).error(),
            0);
  struct stat st;
  EXPECT_NE(stat((dir + "/made-inside").c_str(), &st), 0);
  rmdir(dir.c_str());
}

TEST_F(ThreadsTest, NobodyCannotUseRootsThreadAsParent) {
  ThreadInfo t = Create();
  EXPECT_THAT(Peer(kNobody, {"thread_child", t.id()}), StartsWith("NOT_FOUND"));
  v1::CreateThreadRequest request;
  request.set_share_fd_table(true);
  v1::CreateThreadResponse response;
  EXPECT_EQ(client_.threads->CreateThread(Ctx().get(), request, &response)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ThreadsTest, KillingTheParentLeavesTheChildWorking) {
  for (bool shared : {false, true}) {
    ThreadInfo parent = Create();
    v1::CreateThreadRequest request;
    request.set_parent_thread_id(parent.id());
    request.set_share_fd_table(shared);
    ThreadInfo child = Create(request);
    ASSERT_FALSE(child.id().empty());
    int pidfd = syscall(SYS_pidfd_open, parent.pid(), 0);
    ASSERT_GE(pidfd, 0);
    ASSERT_EQ(kill(parent.pid(), SIGKILL), 0);
    ASSERT_TRUE(ExitsWithin(pidfd, absl::Seconds(10)));
    close(pidfd);
    EXPECT_EQ(Sys(child.id(), SYS_getpid).value(), child.pid()) << shared;
    SyscallResult ignored;
    EXPECT_EQ(
        TrySys(client_, parent.id(), SYS_getpid, {}, &ignored).error_code(),
        grpc::StatusCode::UNAVAILABLE);
    // A dead parent cannot have children: a clear error, not a hang.
    v1::CreateThreadRequest orphan;
    orphan.set_parent_thread_id(parent.id());
    v1::CreateThreadResponse response;
    EXPECT_EQ(client_.threads->CreateThread(Ctx().get(), orphan, &response)
                  .error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
}

// ---------------------------------------------------------------------------
// Exec: a thread becomes a managed process.

TEST_F(ThreadsTest, ExecCatWithAnInheritedPipeAsStdin) {
  ThreadInfo t = Create();
  v1::Pointer fds = Allocate(t.id(), 16);
  const int64_t at = static_cast<int64_t>(fds.address());
  ASSERT_EQ(Sys(t.id(), SYS_pipe2, {at, O_CLOEXEC}).error(), 0);
  ASSERT_EQ(Sys(t.id(), SYS_pipe2, {at + 8, O_CLOEXEC}).error(), 0);
  std::string raw;
  ASSERT_TRUE(Read(fds, 0, 16, &raw).ok());
  int in[2], out[2];
  memcpy(in, raw.data(), 8);
  memcpy(out, raw.data() + 8, 8);

  // A failed execve is the RPC's error and leaves the thread usable.
  v1::ExecRequest exec;
  exec.set_thread_id(t.id());
  exec.set_path("/nonexistent/procwarp-cat");
  exec.add_argv("cat");
  v1::ExecResponse execed;
  grpc::Status s = client_.threads->Exec(Ctx().get(), exec, &execed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("execve"));
  EXPECT_EQ(Sys(t.id(), SYS_getpid).value(), t.pid());

  // stdin: the read end of `in`; stdout: the write end of `out` (dup3
  // without O_CLOEXEC, so they survive the exec; the originals do not).
  ASSERT_EQ(Sys(t.id(), SYS_dup3, {in[0], 0, 0}).value(), 0);
  ASSERT_EQ(Sys(t.id(), SYS_dup3, {out[1], 1, 0}).value(), 1);
  // The other ends live on in a child thread that keeps them.
  v1::CreateThreadRequest child_request;
  child_request.set_parent_thread_id(t.id());
  ThreadInfo w = Create(child_request);
  ASSERT_FALSE(w.id().empty());

  exec.set_path("/bin/cat");
  (*exec.mutable_labels())["via"] = "exec";
  s = client_.threads->Exec(Ctx().get(), exec, &execed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const v1::ProcessInfo& process = execed.process();
  EXPECT_EQ(process.pid(), t.pid());
  EXPECT_EQ(process.state(), v1::PROCESS_STATE_RUNNING);
  EXPECT_EQ(process.labels().at("via"), "exec");
  // The thread handle is gone.
  SyscallResult ignored;
  EXPECT_EQ(TrySys(client_, t.id(), SYS_getpid, {}, &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // cat holds no agent socket (it is close-on-exec), nor the pipes' other
  // ends: only what was dup3()ed without O_CLOEXEC.
  for (int fd = 0; fd < 64; ++fd) {
    char link[256] = {};
    if (readlink(absl::StrCat("/proc/", t.pid(), "/fd/", fd).c_str(), link,
                 sizeof(link) - 1) < 0) {
      continue;
    }
    EXPECT_FALSE(absl::StartsWith(link, "socket:")) << fd << " " << link;
  }

  v1::ListProcessesResponse listed;
  ASSERT_TRUE(client_.processes->List(Ctx().get(), {}, &listed).ok());
  bool found = false;
  for (const auto& p : listed.processes()) found |= p.id() == process.id();
  EXPECT_TRUE(found);

  const std::string message = "through cat\n";
  int64_t source = PutString(w.id(), message);
  ASSERT_EQ(Sys(w.id(), SYS_write,
                {in[1], source, static_cast<int64_t>(message.size())})
                .value(),
            static_cast<int64_t>(message.size()));
  ASSERT_EQ(Sys(w.id(), SYS_close, {in[1]}).error(), 0);  // cat sees EOF
  v1::Pointer into = Allocate(w.id(), 64);
  std::string got;
  while (got.size() < message.size()) {
    SyscallResult r = Sys(w.id(), SYS_read,
                          {out[0], static_cast<int64_t>(into.address()), 64});
    ASSERT_GT(r.value(), 0) << r.error_name();
    std::string chunk;
    ASSERT_TRUE(Read(into, 0, r.value(), &chunk).ok());
    got += chunk;
  }
  EXPECT_EQ(got, message);

  v1::WaitRequest wait;
  wait.set_id(process.id());
  v1::WaitResponse waited;
  s = client_.processes->Wait(Ctx().get(), wait, &waited);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(waited.process().state(), v1::PROCESS_STATE_EXITED);
  EXPECT_FALSE(waited.process().exit_status().has_signal());
  EXPECT_EQ(waited.process().exit_status().code(), 0);
}

}  // namespace
}  // namespace procwarp::testing
