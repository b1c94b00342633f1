// Files.ExportFd / Files.ImportFd against a real procwarpd: fds crossing
// between agent threads and this (local) client over the side socket, and
// who may redeem a token: only the asking process, only once.
//
// The side socket is driven by hand here (client/cc's Thread::ExportFd and
// ImportFd wrap the same exchange) so tests can also misuse it: present a
// token twice, from another process, from another uid.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "common/fd_passing.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/agent_thread_fixture.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kNobody = 65534;

sockaddr_un SideAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// One side-socket exchange: sends `token` (with `fd_to_send` as SCM_RIGHTS
// when >= 0) and reads the int32 reply and any fd with it. Only raw syscalls
// (fd_passing allocates nothing), so a forked child of this multi-threaded
// test may run it. Returns false
// when the daemon closed without a reply (a refused token).
bool Exchange(const sockaddr_un& addr, const std::string& token, int fd_to_send,
              int32_t* reply, int* fd_received) {
  *fd_received = -1;
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  if (connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(s);
    return false;
  }
  bool ok = SendWithFd(s, token.data(), token.size(), fd_to_send) ==
                static_cast<ssize_t>(token.size()) &&
            ReceiveWithFd(s, reply, sizeof(*reply), fd_received) ==
                static_cast<ssize_t>(sizeof(*reply));
  close(s);
  if (!ok && *fd_received >= 0) close(*fd_received);
  if (!ok) *fd_received = -1;
  return ok;
}

// Everything readable from `fd` until EOF.
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  return out;
}

class FilesExportTest : public AgentThreadFixture {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartDaemonAndThread()); }

  // `path` opened read-only in the thread; returns the thread's fd.
  int OpenInThread(const std::string& path) {
    return static_cast<int>(
        Sys(SYS_openat, {AT_FDCWD, PutString(path), O_RDONLY | O_CLOEXEC}));
  }

  grpc::Status Export(int fd, v1::ExportFdResponse* response,
                      const std::string& thread = "") {
    v1::ExportFdRequest request;
    request.set_thread_id(thread.empty() ? thread_ : thread);
    request.set_fd(fd);
    return files_->ExportFd(Ctx().get(), request, response);
  }
};

std::string FileContent(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(FilesExportTest, ExportedFdIsReadLocally) {
  int fd = OpenInThread("/etc/hostname");
  v1::ExportFdResponse exported;
  grpc::Status s = Export(fd, &exported);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(exported.side_socket_path(), daemon_->socket_path() + ".fds");
  EXPECT_EQ(exported.token().size(), 32u);
  int32_t reply = -1;
  int local = -1;
  ASSERT_TRUE(Exchange(SideAddress(exported.side_socket_path()), exported.token(),
                       -1, &reply, &local));
  EXPECT_EQ(reply, 0);
  ASSERT_GE(local, 0);
  EXPECT_EQ(ReadAll(local), FileContent("/etc/hostname"));
  close(local);
}

TEST_F(FilesExportTest, ImportedPipeIsWrittenByTheThread) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  v1::ImportFdRequest request;
  request.set_thread_id(thread_);
  request.set_target_fd(-1);
  v1::ImportFdResponse response;
  grpc::Status s = files_->ImportFd(Ctx().get(), request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  int32_t thread_fd = -1;
  int unused = -1;
  ASSERT_TRUE(Exchange(SideAddress(response.side_socket_path()), response.token(),
                       pipe_fds[1], &thread_fd, &unused));
  ASSERT_GE(thread_fd, 0);
  close(pipe_fds[1]);  // the thread's copy is now the only write end

  const std::string message = "written by the thread";
  EXPECT_EQ(Sys(SYS_write, {thread_fd, PutString(message),
                            static_cast<int64_t>(message.size())}),
            static_cast<int64_t>(message.size()));
  Sys(SYS_close, {thread_fd});
  EXPECT_EQ(ReadAll(pipe_fds[0]), message);
  close(pipe_fds[0]);
}

TEST_F(FilesExportTest, ImportAtTargetFd) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  v1::ImportFdRequest request;
  request.set_thread_id(thread_);
  request.set_target_fd(77);
  v1::ImportFdResponse response;
  ASSERT_TRUE(files_->ImportFd(Ctx().get(), request, &response).ok());
  int32_t thread_fd = -1;
  int unused = -1;
  ASSERT_TRUE(Exchange(SideAddress(response.side_socket_path()), response.token(),
                       pipe_fds[0], &thread_fd, &unused));
  EXPECT_EQ(thread_fd, 77);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

// A token given to another uid (and so another process) is refused; the
// owner can still use it afterwards and the daemon keeps serving.
TEST_F(FilesExportTest, OtherUidIsRefused) {
  int fd = OpenInThread("/etc/hostname");
  v1::ExportFdResponse exported;
  ASSERT_TRUE(Export(fd, &exported).ok());
  sockaddr_un addr = SideAddress(exported.side_socket_path());
  std::string token = exported.token();

  for (int uid : {kNobody, -1}) {  // another uid; our uid in another process
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (uid >= 0 && (setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)) {
        _exit(3);
      }
      // 2: could not even connect, which would prove nothing about tokens.
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (probe < 0 ||
          connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
        _exit(2);
      }
      close(probe);
      int32_t reply;
      int got;
      // 0: refused (the expected outcome); 1: the fd was handed over.
      _exit(Exchange(addr, token, -1, &reply, &got) ? 1 : 0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "uid " << uid << " got the fd";
  }

  int32_t reply = -1;
  int local = -1;
  ASSERT_TRUE(Exchange(addr, token, -1, &reply, &local));
  ASSERT_GE(local, 0);
  EXPECT_EQ(ReadAll(local), FileContent("/etc/hostname"));
  close(local);
}

TEST_F(FilesExportTest, TokenIsSingleUse) {
  int fd = OpenInThread("/etc/hostname");
  v1::ExportFdResponse exported;
  ASSERT_TRUE(Export(fd, &exported).ok());
  sockaddr_un addr = SideAddress(exported.side_socket_path());
  int32_t reply = -1;
  int local = -1;
  ASSERT_TRUE(Exchange(addr, exported.token(), -1, &reply, &local));
  close(local);
  EXPECT_FALSE(Exchange(addr, exported.token(), -1, &reply, &local));
  // Made-up tokens fare no better.
  EXPECT_FALSE(Exchange(addr, std::string(32, 'a'), -1, &reply, &local));
  EXPECT_FALSE(Exchange(addr, "short", -1, &reply, &local));
}

TEST_F(FilesExportTest, UnknownThreadIsNotFound) {
  v1::ExportFdResponse exported;
  grpc::Status s = Export(0, &exported, std::string(32, '0'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  v1::ImportFdRequest request;
  request.set_thread_id(std::string(32, '0'));
  v1::ImportFdResponse response;
  s = files_->ImportFd(Ctx().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(FilesExportTest, BadFdIsTheErrno) {
  v1::ExportFdResponse exported;
  grpc::Status s = Export(999, &exported);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("pidfd_getfd"));
  EXPECT_THAT(s.error_message(), HasSubstr("fd=999"));
  EXPECT_TRUE(exported.token().empty());
  s = Export(-1, &exported);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace procwarp::testing
