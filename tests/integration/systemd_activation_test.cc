// systemd integration without systemd: the test plays the service manager.
// It binds the listening socket and passes it as fd 3 (LISTEN_FDS/LISTEN_PID),
// receives READY=1 / WATCHDOG=1 / STOPPING=1 on its own NOTIFY_SOCKET, and
// checks the daemon serves on the passed socket and leaves it listening when
// it stops (the next instance inherits it).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "grpcpp/create_channel.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

int BindUnix(const std::string& path, int type) {
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return -1;
  return fd;
}

// Collects notify messages until one contains `what` (or 20 s pass).
bool AwaitNotify(int notify_fd, const std::string& what, std::string* all) {
  for (;;) {
    pollfd p{notify_fd, POLLIN, 0};
    if (poll(&p, 1, 20000) <= 0) return false;
    char msg[4096];
    ssize_t n = recv(notify_fd, msg, sizeof(msg), 0);
    if (n <= 0) continue;
    all->append(msg, n);
    all->push_back('\n');
    if (absl::StrContains(std::string(msg, n), what)) return true;
  }
}

TEST(SystemdActivationTest, ServesPassedSocketNotifiesAndLeavesItListening) {
  std::string dir = MakeTempDir();
  std::string socket_path = dir + "/activated.sock";
  int listen_fd = BindUnix(socket_path, SOCK_STREAM);
  ASSERT_GE(listen_fd, 0);
  ASSERT_EQ(listen(listen_fd, 16), 0);
  int notify_fd = BindUnix(dir + "/notify.sock", SOCK_DGRAM);
  ASSERT_GE(notify_fd, 0);

  std::string daemon = RunfilePath("daemon/procwarpd");
  std::string notify_env = "NOTIFY_SOCKET=" + dir + "/notify.sock";
  // Everything the child needs is prepared before fork.
  char listen_pid_env[64] = "LISTEN_PID=";
  pid_t pid = fork();
  if (pid == 0) {
    // LISTEN_PID must be the daemon's own pid: format it here, without
    // allocating.
    char digits[24];
    int n = 0;
    for (pid_t p = getpid(); p > 0; p /= 10) digits[n++] = '0' + p % 10;
    char* out = listen_pid_env + strlen(listen_pid_env);
    while (n > 0) *out++ = digits[--n];
    *out = '\0';
    if (listen_fd == 3) {
      fcntl(3, F_SETFD, 0);  // dup2 onto itself would keep close-on-exec
    } else {
      dup2(listen_fd, 3);  // the copy has close-on-exec cleared
    }
    char* argv[] = {daemon.data(), const_cast<char*>("--socket"),
                    const_cast<char*>("/nonexistent/must-not-be-used.sock"),
                    nullptr};
    char* envp[] = {const_cast<char*>("LISTEN_FDS=1"), listen_pid_env,
                    notify_env.data(), const_cast<char*>("WATCHDOG_USEC=200000"),
                    nullptr};
    execve(argv[0], argv, envp);
    _exit(127);
  }
  ASSERT_GT(pid, 0);

  std::string messages;
  ASSERT_TRUE(AwaitNotify(notify_fd, "READY=1", &messages)) << messages;
  // Two watchdog pings (the period is 100 ms).
  ASSERT_TRUE(AwaitNotify(notify_fd, "WATCHDOG=1", &messages));
  ASSERT_TRUE(AwaitNotify(notify_fd, "WATCHDOG=1", &messages));

  auto stub = procwarp::v1::Admin::NewStub(grpc::CreateChannel(
      "unix:" + socket_path, grpc::InsecureChannelCredentials()));
  procwarp::v1::GetStatusResponse status;
  grpc::Status s = stub->GetStatus(Ctx().get(), {}, &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status.daemon_pid(), pid);

  kill(pid, SIGTERM);
  ASSERT_TRUE(AwaitNotify(notify_fd, "STOPPING=1", &messages));
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  EXPECT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);

  // The socket is systemd's: still there and still listening.
  EXPECT_TRUE(std::filesystem::exists(socket_path));
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << strerror(errno);
  close(probe);
  close(listen_fd);
  close(notify_fd);
  std::filesystem::remove_all(dir);
}

TEST(SystemdActivationTest, RefusesSecondDaemonAndReplacesStaleSocket) {
  auto first = DaemonHarness::Start();
  ASSERT_TRUE(first.ok()) << first.status();
  RunResult second = RunProgram({RunfilePath("daemon/procwarpd"), "--socket",
                                 (*first)->socket_path()});
  EXPECT_EQ(second.exit_code, 1);
  // First one keeps serving.
  procwarp::v1::GetStatusResponse status;
  EXPECT_TRUE((*first)->Admin()->GetStatus(Ctx().get(), {}, &status).ok());

  // A stale socket file (nobody listening) is replaced.
  std::string dir = MakeTempDir();
  std::string stale = dir + "/procwarpd.sock";
  int fd = BindUnix(stale, SOCK_STREAM);
  close(fd);  // bound, never listened: connect() is refused
  pid_t pid = fork();
  if (pid == 0) {
    std::string daemon = RunfilePath("daemon/procwarpd");
    execl(daemon.c_str(), daemon.c_str(), "--socket", stale.c_str(), nullptr);
    _exit(127);
  }
  auto stub = procwarp::v1::Admin::NewStub(
      grpc::CreateChannel("unix:" + stale, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);  // until the new daemon listens
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  EXPECT_TRUE(stub->GetStatus(&ctx, {}, &status).ok());
  kill(pid, SIGTERM);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);
  // The daemon removes the socket it made.
  EXPECT_FALSE(std::filesystem::exists(stale));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace procwarp::testing
