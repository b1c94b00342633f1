// The typed thread API (thread.h) against a real procwarpd and real agent
// threads: files read through thread memory, pipes, pipelined batches, errno
// turned into statuses, and RAII handles cleaning up after themselves.
#include "client/cc/thread.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cc/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace procwarp {
namespace {

using ::testing::HasSubstr;

std::string RunfilePath(const std::string& relative) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* workspace = getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) return relative;
  return absl::StrCat(srcdir, "/", workspace ? workspace : "procwarp", "/",
                      relative);
}

// A procwarpd with the agent on a socket of its own, stopped with SIGTERM
// when destroyed. Readiness is the first successful Client::Connect.
class Daemon {
 public:
  Daemon() {
    char dir[] = "/tmp/procwarp-thread-test-XXXXXX";
    dir_ = mkdtemp(dir);
    socket_path_ = dir_ + "/procwarpd.sock";
    const std::vector<std::string> argv = {
        RunfilePath("daemon/procwarpd"), "--socket", socket_path_,
        "--socket_mode", "0666", "--agent_path",
        RunfilePath("agent/procwarp-agent")};
    std::vector<char*> raw;
    for (const std::string& arg : argv) raw.push_back(const_cast<char*>(arg.c_str()));
    raw.push_back(nullptr);
    // posix_spawn: no fork of a process that may already run gRPC threads.
    if (posix_spawn(&pid_, raw[0], nullptr, nullptr, raw.data(), environ) != 0) {
      pid_ = -1;
    }
  }
  ~Daemon() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    unlink(socket_path_.c_str());
    rmdir(dir_.c_str());
  }

  // Connects, retrying while the daemon starts (bounded).
  absl::StatusOr<Client> Connect() const {
    absl::Status last = absl::UnavailableError("procwarpd did not start");
    for (int i = 0; i < 200 && pid_ > 0; ++i) {
      absl::StatusOr<Client> client = Client::Connect(socket_path_);
      if (client.ok()) return client;
      last = client.status();
      absl::SleepFor(absl::Milliseconds(50));
    }
    return last;
  }

 private:
  std::string dir_;
  std::string socket_path_;
  pid_t pid_ = -1;
};

// True once the process behind `pidfd` has exited, waiting up to 5 s.
bool Exits(int pidfd) {
  pollfd pfd = {pidfd, POLLIN, 0};
  return poll(&pfd, 1, 5000) == 1;
}

std::string LocalFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

class ThreadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>();
    absl::StatusOr<Client> client = daemon_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::make_unique<Client>(*std::move(client));
  }

  Thread NewThread(const ThreadOptions& options = {}) {
    absl::StatusOr<Thread> thread = client_->CreateThread(options);
    EXPECT_TRUE(thread.ok()) << thread.status();
    return *std::move(thread);
  }

  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(ThreadTest, LargeBuffersRoundTripAndStayInBounds) {
  // 6 MiB: the direct local path (ReadToClient / WriteFromClient), at odd
  // offsets so nothing depends on page alignment.
  Thread t = NewThread();
  constexpr size_t kSize = 6 << 20;
  absl::StatusOr<Pointer> buffer = t.Allocate(kSize);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  std::string data(kSize - 3, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + 7);
  ASSERT_TRUE(buffer->Write(data, 3).ok());
  absl::StatusOr<std::string> back = buffer->Read(3);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data) << "read back differs";
  EXPECT_TRUE(absl::IsOutOfRange(buffer->Write(data, 4)));
  EXPECT_TRUE(absl::IsOutOfRange(buffer->Read(3, kSize).status()));
}

TEST_F(ThreadTest, OpenAndReadEtcHostnameLikeTheLocalFile) {
  Thread t = NewThread();
  absl::StatusOr<FileDescriptor> fd = t.Open("/etc/hostname", O_RDONLY);
  ASSERT_TRUE(fd.ok()) << fd.status();
  absl::StatusOr<Pointer> buffer = t.Allocate(4096);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  absl::StatusOr<size_t> n = fd->Read(*buffer);
  ASSERT_TRUE(n.ok()) << n.status();
  absl::StatusOr<std::string> text = buffer->Read(0, *n);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, LocalFile("/etc/hostname"));
}

TEST_F(ThreadTest, PipeCarriesDataWithinOneThread) {
  Thread t = NewThread();
  auto pipe = t.Pipe(O_CLOEXEC);
  ASSERT_TRUE(pipe.ok()) << pipe.status();
  const std::string message = "hello through a remote pipe";
  absl::StatusOr<Pointer> out = t.Allocate(message.size());
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(out->Write(message).ok());
  absl::StatusOr<size_t> written = pipe->second.Write(*out);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, message.size());
  absl::StatusOr<Pointer> in = t.Allocate(256);
  ASSERT_TRUE(in.ok());
  absl::StatusOr<size_t> got = pipe->first.Read(*in);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*in->Read(0, *got), message);
}

TEST_F(ThreadTest, BatchOfThousandGetpidsAnswersInOrder) {
  Thread t = NewThread();
  SyscallBatch batch = t.Batch();
  for (int i = 0; i < 1000; ++i) batch.Add(i % 2 == 0 ? SYS_getpid : SYS_getppid);
  absl::StatusOr<std::vector<SyscallResult>> results = batch.Run();
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 1000u);
  const int64_t parent = (*results)[1].value;
  EXPECT_NE(parent, t.pid());
  for (size_t i = 0; i < results->size(); ++i) {
    EXPECT_EQ((*results)[i].value, i % 2 == 0 ? t.pid() : parent) << i;
  }
}

TEST_F(ThreadTest, FailedRawSyscallIsAResult) {
  Thread t = NewThread();
  absl::StatusOr<SyscallResult> r = t.Syscall(SYS_close, 9999);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->value, -1);
  EXPECT_EQ(r->error, EBADF);
  EXPECT_EQ(r->error_name, "EBADF");
  absl::StatusOr<pid_t> pid = t.GetPid();
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(*pid, t.pid());
}

TEST_F(ThreadTest, WrappersTurnErrnoIntoStatusNamingTheCall) {
  Thread t = NewThread();
  absl::StatusOr<FileDescriptor> fd = t.Open("/nope", O_RDONLY);
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fd.status().message(), "openat(/nope): No such file or directory");
  absl::Status chdir = t.Chdir("/etc/hostname");
  EXPECT_EQ(chdir.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(chdir.message(), HasSubstr("chdir(/etc/hostname): Not a directory"));
  EXPECT_TRUE(t.Chdir("/").ok());
}

TEST_F(ThreadTest, FdTransferredToAnotherThreadReadsThePipe) {
  Thread a = NewThread();
  Thread b = NewThread();
  auto pipe = a.Pipe();
  ASSERT_TRUE(pipe.ok()) << pipe.status();
  absl::StatusOr<FileDescriptor> b_write = a.TransferFd(pipe->second, b);
  ASSERT_TRUE(b_write.ok()) << b_write.status();
  EXPECT_EQ(b_write->thread_id(), b.id());
  ASSERT_TRUE(pipe->second.Close().ok());
  absl::StatusOr<Pointer> out = b.PutString("via b");
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(b_write->Write(*out, 5).ok());
  absl::StatusOr<Pointer> in = a.Allocate(16);
  ASSERT_TRUE(in.ok());
  absl::StatusOr<size_t> got = pipe->first.Read(*in);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*in->Read(0, *got), "via b");
  // Memory of one thread is not a buffer for another thread's fd.
  EXPECT_EQ(pipe->first.Read(*out).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ThreadTest, FdsExportedToAndImportedFromThisProcess) {
  Thread t = NewThread();
  auto pipe = t.Pipe();
  ASSERT_TRUE(pipe.ok()) << pipe.status();
  // The thread's read end, read here.
  absl::StatusOr<int> local_read = t.ExportFd(pipe->first);
  ASSERT_TRUE(local_read.ok()) << local_read.status();
  // Our pipe's write end, written by the thread.
  int ours[2];
  ASSERT_EQ(pipe2(ours, O_CLOEXEC), 0);
  absl::StatusOr<FileDescriptor> thread_write = t.ImportFd(ours[1]);
  ASSERT_TRUE(thread_write.ok()) << thread_write.status();
  close(ours[1]);
  absl::StatusOr<Pointer> text = t.PutString("both ways");
  ASSERT_TRUE(text.ok());
  ASSERT_TRUE(pipe->second.Write(*text, 9).ok());
  ASSERT_TRUE(thread_write->Write(*text, 9).ok());
  char buf[16] = {};
  EXPECT_EQ(read(*local_read, buf, sizeof(buf)), 9);
  EXPECT_EQ(std::string(buf, 9), "both ways");
  EXPECT_EQ(read(ours[0], buf, sizeof(buf)), 9);
  EXPECT_EQ(std::string(buf, 9), "both ways");
  close(*local_read);
  close(ours[0]);
  // A negative local fd is refused before anything is sent.
  EXPECT_EQ(t.ImportFd(-5).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ThreadTest, SocketpairAndEpollGiveFds) {
  Thread t = NewThread();
  auto pair = t.Socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_NE(pair->first.number(), pair->second.number());
  absl::StatusOr<FileDescriptor> epoll = t.EpollCreate();
  ASSERT_TRUE(epoll.ok()) << epoll.status();
  EXPECT_GE(epoll->number(), 0);
}

TEST_F(ThreadTest, HandlesCleanUpWhenDestroyed) {
  Thread t = NewThread();
  int number = -1;
  {
    absl::StatusOr<FileDescriptor> fd = t.Open("/etc/hostname", O_RDONLY);
    ASSERT_TRUE(fd.ok());
    number = fd->number();
  }
  // The fd was closed: fcntl(F_GETFD) on its number fails.
  absl::StatusOr<SyscallResult> r = t.Syscall(SYS_fcntl, number, F_GETFD);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->error, EBADF);

  std::string pointer_id;
  {
    absl::StatusOr<Pointer> p = t.Allocate(64);
    ASSERT_TRUE(p.ok());
    pointer_id = p->id();
  }

  const pid_t pid = t.pid();
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  ASSERT_GE(pidfd, 0);
  const std::string id = t.id();
  { Thread gone = std::move(t); }
  EXPECT_TRUE(t.empty());
  EXPECT_TRUE(Exits(pidfd));
  close(pidfd);
  EXPECT_FALSE(client_->GetThread(id).ok());
}

TEST_F(ThreadTest, PersistentAndReleasedThreadsOutliveTheirHandle) {
  std::string id;
  {
    Thread t = NewThread({.persistent = true});
    id = t.id();
  }
  absl::StatusOr<Thread> again = client_->OpenThread(id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->GetPid().ok());
  // OpenThread handles own nothing; Exit ends the thread explicitly.
  EXPECT_TRUE(again->Exit().ok());
}

TEST_F(ThreadTest, TmpfsMountedInNewNamespacesIsInvisibleToTheHost) {
  Thread t = NewThread({.user_namespace = true, .mount_namespace = true});
  char dir[] = "/tmp/procwarp-mount-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  chmod(dir, 0755);
  absl::Status mounted = t.Mount("tmpfs", dir, "tmpfs", 0, "size=1m");
  ASSERT_TRUE(mounted.ok()) << mounted;
  const std::string inside = absl::StrCat(dir, "/only-inside");
  absl::StatusOr<FileDescriptor> fd =
      t.Open(inside, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_NE(access(inside.c_str(), F_OK), 0);
  // More namespaces from inside: the thread is privileged in its userns.
  EXPECT_TRUE(t.Unshare(CLONE_NEWUTS).ok());
  EXPECT_TRUE(t.Chdir(dir).ok());
  ASSERT_TRUE(fd->Close().ok());
  rmdir(dir);
}

TEST_F(ThreadTest, ExecTurnsTheThreadIntoAProcessWithInheritedFds) {
  Thread t = NewThread();
  absl::StatusOr<Process> missing =
      t.Exec({.argv = {"cat"}, .path = "/nonexistent/procwarp-cat"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  ASSERT_FALSE(t.empty());
  // stdout of the program: a pipe whose read end stays in a child thread.
  auto pipe = t.Pipe(O_CLOEXEC);
  ASSERT_TRUE(pipe.ok()) << pipe.status();
  absl::StatusOr<SyscallResult> dup =
      t.Syscall(SYS_dup3, pipe->second.number(), 1, 0);
  ASSERT_TRUE(dup.ok());
  ASSERT_TRUE(dup->ok()) << dup->error_name;
  absl::StatusOr<Thread> reader = t.CreateChild();
  ASSERT_TRUE(reader.ok()) << reader.status();
  const int read_end = pipe->first.number();
  // The fds are the exec'd program's (or the child's copy) from here on.
  pipe->first.Release();
  pipe->second.Release();

  const pid_t pid = t.pid();
  absl::StatusOr<Process> process =
      t.Exec({.argv = {"/bin/echo", "hi from exec"}});
  ASSERT_TRUE(process.ok()) << process.status();
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(process->pid(), pid);
  absl::StatusOr<v1::ExitStatus> exit = process->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(ShellExitCode(*exit), 0);

  absl::StatusOr<Pointer> buffer = reader->Allocate(64);
  ASSERT_TRUE(buffer.ok());
  absl::StatusOr<SyscallResult> got =
      reader->Syscall(SYS_read, read_end, buffer->arg(), 64);
  ASSERT_TRUE(got.ok());
  ASSERT_GT(got->value, 0) << got->error_name;
  EXPECT_EQ(*buffer->Read(0, got->value), "hi from exec\n");
}

TEST_F(ThreadTest, ListThreadsShowsOurs) {
  Thread t = NewThread();
  absl::StatusOr<std::vector<v1::ThreadInfo>> threads = client_->ListThreads();
  ASSERT_TRUE(threads.ok()) << threads.status();
  bool found = false;
  for (const v1::ThreadInfo& info : *threads) found |= info.id() == t.id();
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace procwarp
