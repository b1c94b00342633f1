// Denial-of-service attacks on the fd side socket and on an agent's socket,
// run as uid 65534 against a real procwarpd (issue 8, point 5 and the slow
// token of point 6), each with its positive control:
// - stuck redemptions (a silent connection, a token trickled in a byte a
//   second, an import into a thread kept busy) hold up neither root's
//   ExportFd/ImportFd nor SIGTERM;
// - a slow token is cut off by one deadline for the whole exchange, and an
//   import into a busy thread gives up with ETIMEDOUT;
// - side connections and unredeemed tokens are capped per uid;
// - an agent socket taken over and flooded with SCM_RIGHTS fds (many
//   messages, many fds in one message, an fd on a reply that carries none)
//   leaves the daemon's fd count bounded, the thread dead with a clear
//   error, and root served.
// The attacker is tests/integration/side_channel_peer.cc.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fd_passing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/agent_thread_fixture.h"
#include "tests/integration/daemon_harness.h"

extern char** environ;

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int kNobody = 65534;

// side_channel_peer running as uid 65534, driven over its stdin/stdout.
class Peer {
 public:
  Peer(const std::string& socket, const std::vector<std::string>& op) {
    std::vector<std::string> argv = PeerCommand("side_channel_peer", socket, kNobody, op);
    int in[2], out[2];
    EXPECT_EQ(pipe2(in, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, cargv[0], &actions, nullptr, cargv.data(),
                          environ),
              0);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  ~Peer() {
    CloseStdin();
    if (pid_ > 0) Wait();
    close(from_);
  }

  // The next line it prints ("" at EOF).
  std::string ReadLine() {
    std::string line;
    char c;
    while (read(from_, &c, 1) == 1) {
      if (c == '\n') return line;
      line += c;
    }
    return line;
  }
  // The next line starting with `prefix` (earlier ones are skipped).
  std::string ReadLineStartingWith(const std::string& prefix) {
    for (;;) {
      std::string line = ReadLine();
      if (line.empty() || line.rfind(prefix, 0) == 0) return line;
    }
  }
  void Go() { (void)!write(to_, "\n", 1); }
  void CloseStdin() {
    if (to_ >= 0) close(to_);
    to_ = -1;
  }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
};

sockaddr_un SideAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// One side-socket exchange (see files_export_test.cc). False when the daemon
// closed without a reply.
bool Exchange(const std::string& path, const std::string& token,
              int fd_to_send, int32_t* reply, int* fd_received) {
  *fd_received = -1;
  sockaddr_un addr = SideAddress(path);
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

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  return out;
}

std::string FileContent(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value of "key=VALUE" in a peer's line.
std::string Field(const std::string& line, const std::string& key) {
  size_t at = line.find(key + "=");
  if (at == std::string::npos) return "";
  at += key.size() + 1;
  return line.substr(at, line.find(' ', at) - at);
}

class SideChannelSecurityTest : public AgentThreadFixture {
 protected:
  Peer StartPeer(const std::vector<std::string>& op) {
    return Peer(daemon_->socket_path(), op);
  }


  // Root's ExportFd of /etc/hostname from its thread, redeemed: the content.
  void ExpectRootExportWorks() {
    int fd = static_cast<int>(Sys(
        SYS_openat, {AT_FDCWD, PutString("/etc/hostname"), O_RDONLY | O_CLOEXEC}));
    v1::ExportFdRequest request;
    request.set_thread_id(thread_);
    request.set_fd(fd);
    v1::ExportFdResponse exported;
    grpc::Status s = files_->ExportFd(Ctx().get(), request, &exported);
    ASSERT_TRUE(s.ok()) << s.error_message();
    int32_t reply = -1;
    int local = -1;
    ASSERT_TRUE(Exchange(exported.side_socket_path(), exported.token(), -1,
                         &reply, &local));
    EXPECT_EQ(reply, 0);
    ASSERT_GE(local, 0);
    EXPECT_EQ(ReadAll(local), FileContent("/etc/hostname"));
    close(local);
    Sys(SYS_close, {fd});
  }

  // Root's ImportFd of a pipe's write end into its thread, used by the thread.
  void ExpectRootImportWorks() {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    v1::ImportFdRequest request;
    request.set_thread_id(thread_);
    request.set_target_fd(-1);
    v1::ImportFdResponse response;
    grpc::Status s = files_->ImportFd(Ctx().get(), request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    int32_t thread_fd = -1;
    int unused = -1;
    ASSERT_TRUE(Exchange(response.side_socket_path(), response.token(), p[1],
                         &thread_fd, &unused));
    ASSERT_GE(thread_fd, 0);
    close(p[1]);
    const std::string message = "via the side socket";
    EXPECT_EQ(Sys(SYS_write, {thread_fd, PutString(message),
                              static_cast<int64_t>(message.size())}),
              static_cast<int64_t>(message.size()));
    Sys(SYS_close, {thread_fd});
    EXPECT_EQ(ReadAll(p[0]), message);
    close(p[0]);
  }

  void ExpectRootServed() {
    v1::GetStatusResponse status;
    grpc::Status s = daemon_->Admin()->GetStatus(Ctx().get(), {}, &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(Sys(SYS_getpid, {}), thread_pid_);
  }

  // SIGTERM; the daemon must exit, and cleanly. The poll bound only keeps a
  // hang from running into the test timeout without a message.
  void ExpectSigtermExits() {
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, daemon_->pid(), 0));
    ASSERT_GE(pidfd, 0);
    ASSERT_EQ(kill(daemon_->pid(), SIGTERM), 0);
    pollfd pfd = {pidfd, POLLIN, 0};
    EXPECT_EQ(poll(&pfd, 1, 60000), 1) << "procwarpd did not exit on SIGTERM";
    close(pidfd);
    EXPECT_EQ(daemon_->Stop(), 0);
  }

};

// Three redemptions stuck for as long as the daemon lets them (a minute
// here): root's Export and Import still complete, and SIGTERM still stops
// the daemon while they hang.
TEST_F(SideChannelSecurityTest, StuckRedemptionsBlockNeitherOthersNorShutdown) {
  StartDaemonAndThread({"--side_exchange_timeout_ms", "60000"});
  Peer silent = StartPeer({"silent"});
  Peer trickle = StartPeer({"trickle", "1000"});
  Peer busy = StartPeer({"busy_import"});
  ASSERT_EQ(silent.ReadLine(), "connected");
  ASSERT_EQ(trickle.ReadLine(), "connected");
  ASSERT_EQ(busy.ReadLine(), "stuck");

  ExpectRootExportWorks();
  ExpectRootImportWorks();
  ExpectRootServed();
  // The silent one is still connected: root was served while it hung.
  silent.Go();
  EXPECT_EQ(silent.ReadLine(), "result open");

  ExpectSigtermExits();
  // At shutdown the busy import is answered (or dropped), never left hanging.
  std::string reply = busy.ReadLineStartingWith("reply");
  EXPECT_THAT(reply, ::testing::AnyOf(absl::StrCat("reply ", -ESHUTDOWN),
                                    "reply closed"));
}

// A token sent a byte every 500 ms would take 16 s: the connection is
// closed at the 2 s deadline of the whole exchange, without a reply. The
// same uid's normal import works.
TEST_F(SideChannelSecurityTest, SlowTokenIsCutOffByOneDeadline) {
  StartDaemonAndThread();
  Peer trickle = StartPeer({"trickle", "500"});
  ASSERT_EQ(trickle.ReadLine(), "connected");
  ExpectRootExportWorks();
  std::string result = trickle.ReadLineStartingWith("result");
  int sent = 0;
  ASSERT_TRUE(absl::SimpleAtoi(Field(result, "sent"), &sent)) << result;
  EXPECT_LT(sent, 32) << result;
  EXPECT_THAT(result, HasSubstr("reply=closed")) << result;
  EXPECT_THAT(result, HasSubstr("cut_off")) << result;

  Peer control = StartPeer({"import_ok"});
  std::string line = control.ReadLineStartingWith("result");
  int fd = -1;
  ASSERT_TRUE(absl::SimpleAtoi(line.substr(strlen("result ")), &fd)) << line;
  EXPECT_GE(fd, 0);
}

// An import into a thread kept busy gives up at the deadline with
// ETIMEDOUT; once the thread is free, the same import works.
TEST_F(SideChannelSecurityTest, ImportIntoABusyThreadTimesOut) {
  StartDaemonAndThread();
  Peer busy = StartPeer({"busy_import"});
  ASSERT_EQ(busy.ReadLine(), "stuck");
  ExpectRootImportWorks();
  EXPECT_EQ(busy.ReadLine(), absl::StrCat("reply ", -ETIMEDOUT));
  std::string result = busy.ReadLineStartingWith("result");
  EXPECT_EQ(Field(result, "written"), absl::StrCat(1 << 20)) << result;
  int fd = -1;
  ASSERT_TRUE(absl::SimpleAtoi(Field(result, "control"), &fd)) << result;
  EXPECT_GE(fd, 0) << result;
}

// One uid opening 20 side connections gets 4 (the limit here); root is
// served meanwhile.
TEST_F(SideChannelSecurityTest, SideConnectionsPerUidAreCapped) {
  StartDaemonAndThread({"--side_exchange_timeout_ms", "60000",
               "--max_side_connections_per_identity", "4"});
  Peer many = StartPeer({"many_connections", "20"});
  std::string control = many.ReadLine();
  int fd = -1;
  ASSERT_TRUE(absl::SimpleAtoi(control.substr(strlen("control ")), &fd))
      << control;
  EXPECT_GE(fd, 0);
  ASSERT_EQ(many.ReadLine(), "opened 20");
  // Root connects after all 20: by the time it is answered, the daemon has
  // accepted (and refused) every one of them.
  ExpectRootExportWorks();
  ExpectRootImportWorks();
  many.Go();
  EXPECT_EQ(many.ReadLine(), "result refused=16");
}

// Unredeemed tokens are capped per uid (8 here): the 9th is
// RESOURCE_EXHAUSTED; redeeming one makes room; root is unaffected.
TEST_F(SideChannelSecurityTest, TokensPerUidAreCapped) {
  StartDaemonAndThread({"--max_fd_tokens_per_identity", "8"});
  Peer tokens = StartPeer({"tokens", "12"});
  std::string result = tokens.ReadLineStartingWith("result");
  EXPECT_EQ(Field(result, "ok"), "8") << result;
  EXPECT_EQ(Field(result, "error"), "RESOURCE_EXHAUSTED") << result;
  EXPECT_THAT(result, HasSubstr("fd tokens")) << result;
  EXPECT_EQ(Field(result, "after_redeem"), "OK") << result;
  ExpectRootImportWorks();
}

class AgentFdFloodTest : public SideChannelSecurityTest,
                         public ::testing::WithParamInterface<const char*> {};

// The caller takes its own agent's socket and sends the daemon fds it does
// not expect. The daemon never holds more than a handful of them, declares
// the thread dead with a message saying why, and serves root and the
// caller's new thread.
TEST_P(AgentFdFloodTest, FdsFromATakenOverAgentAreBounded) {
  StartDaemonAndThread();
  const int baseline = daemon_->CountFds();
  Peer flood = StartPeer({"fd_flood", GetParam()});
  std::string result = flood.ReadLineStartingWith("result");
  int flooded = 0;
  ASSERT_TRUE(absl::SimpleAtoi(Field(result, "flooded"), &flooded)) << result;
  if (std::string(GetParam()) == "many_messages") {
    EXPECT_GE(flooded, 100) << "the socket took too few to prove anything";
  }
  EXPECT_EQ(Field(result, "code"), "UNAVAILABLE") << result;
  EXPECT_THAT(result, HasSubstr("broke the protocol")) << result;
  // The peer's session (a connection, a thread) costs a few fds; the flood
  // none.
  EXPECT_LE(daemon_->CountFds(), baseline + 10)
      << "flooded " << flooded << " fds";
  ExpectRootServed();
  flood.Go();
  EXPECT_EQ(flood.ReadLineStartingWith("control"), "control OK pid_ok");
}

INSTANTIATE_TEST_SUITE_P(Modes, AgentFdFloodTest,
                         ::testing::Values("many_messages", "many_in_one",
                                           "unexpected_fd"));

}  // namespace
}  // namespace procwarp::testing
