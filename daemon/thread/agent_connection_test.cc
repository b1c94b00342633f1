// Tests for AgentConnection against the real procwarp-agent: pipelined
// batches, the in-band memory path (the fallback the integration tests never
// need as root), fds both ways, a cancelled call whose late replies must not
// confuse the next one, and a dead agent.
#include "daemon/thread/agent_connection.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace procwarp {
namespace {

// Relative to the runfiles directory Bazel runs tests in.
constexpr char kAgentPath[] = "agent/procwarp-agent";

// One agent started with fork+exec, the way the agent's own tests do.
class AgentProcess {
 public:
  AgentProcess() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_ = fork();
    if (pid_ == 0) {
      if (dup2(sv[1], PW_AGENT_DEFAULT_SOCKET_FD) < 0) _exit(127);
      char* argv[] = {const_cast<char*>("procwarp-agent"), nullptr};
      char* envp[] = {nullptr};
      execve(kAgentPath, argv, envp);
      _exit(127);
    }
    close(sv[1]);
    pidfd_.Reset(syscall(SYS_pidfd_open, pid_, 0));
    auto connection =
        AgentConnection::Open(UniqueFd(sv[0]), pidfd_.get(), "test agent");
    EXPECT_TRUE(connection.ok()) << connection.status();
    if (connection.ok()) connection_ = *std::move(connection);
  }
  ~AgentProcess() {
    connection_.reset();
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }

  pid_t pid() const { return pid_; }
  AgentConnection& connection() { return *connection_; }

  uint64_t Mmap(size_t length) {
    const uint64_t args[] = {0, length, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS,
                             static_cast<uint64_t>(-1), 0};
    auto r = connection_->Syscall(SYS_mmap, args);
    EXPECT_TRUE(r.ok() && *r > 0);
    return r.ok() ? static_cast<uint64_t>(*r) : 0;
  }

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::unique_ptr<AgentConnection> connection_;
};

TEST(AgentConnectionTest, HelloAndSyscall) {
  AgentProcess agent;
  EXPECT_EQ(agent.connection().hello().pid, agent.pid());
  auto r = agent.connection().Syscall(SYS_getpid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, agent.pid());
  const uint64_t bad_fd[] = {9999};
  EXPECT_EQ(*agent.connection().Syscall(SYS_close, bad_fd), -EBADF);
}

TEST(AgentConnectionTest, BatchLargerThanSocketBuffersAnswersInOrder) {
  AgentProcess agent;
  // Default socket buffers here: ~200 KiB; 50k requests are 3.6 MB.
  std::vector<AgentCall> calls;
  for (int i = 0; i < 50000; ++i) {
    calls.push_back(AgentCall::Syscall(i % 2 ? SYS_getppid : SYS_getpid));
  }
  std::vector<AgentReply> replies;
  ASSERT_TRUE(agent.connection().Run(calls, &replies).ok());
  ASSERT_EQ(replies.size(), calls.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_EQ(replies[i].result, i % 2 ? getpid() : agent.pid()) << i;
  }
}

TEST(AgentConnectionTest, InBandMemoryRoundTrip) {
  AgentProcess agent;
  constexpr size_t kSize = 3 << 20;
  uint64_t address = agent.Mmap(kSize);
  std::string data(kSize, '\0');
  for (size_t i = 0; i < kSize; ++i) data[i] = static_cast<char>(i * 7 + i / 4096);
  // Write in two pieces, read back in one, in a single pipelined Run.
  std::string back(kSize, '\0');
  std::vector<AgentCall> calls(3);
  calls[0].op = calls[1].op = PW_OP_WRITE_MEM;
  calls[0].payload = absl::string_view(data).substr(0, kSize / 2);
  calls[0].args[0] = address;
  calls[0].args[1] = kSize / 2;
  calls[1].payload = absl::string_view(data).substr(kSize / 2);
  calls[1].args[0] = address + kSize / 2;
  calls[1].args[1] = kSize - kSize / 2;
  calls[2].op = PW_OP_READ_MEM;
  calls[2].args[0] = address;
  calls[2].args[1] = kSize;
  calls[2].read_into = back.data();
  std::vector<AgentReply> replies;
  ASSERT_TRUE(agent.connection().Run(calls, &replies).ok());
  EXPECT_EQ(replies[0].result, static_cast<int64_t>(kSize / 2));
  EXPECT_EQ(replies[2].result, static_cast<int64_t>(kSize));
  EXPECT_TRUE(back == data);
  // An unmapped address is a result, not a broken stream.
  AgentCall bad;
  bad.op = PW_OP_READ_MEM;
  bad.args[0] = 8;
  bad.args[1] = 16;
  char sink[16];
  bad.read_into = sink;
  ASSERT_TRUE(agent.connection().Run(absl::MakeConstSpan(&bad, 1), &replies).ok());
  EXPECT_EQ(replies[0].result, -EFAULT);
}

TEST(AgentConnectionTest, FdsTravelBothWays) {
  AgentProcess agent;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  // RECV_FD the write end at fd 50, then SEND_FD it straight back.
  std::vector<AgentCall> calls(2);
  calls[0].op = PW_OP_RECV_FD;
  calls[0].args[0] = 50;
  calls[0].fd_to_pass = write_end.get();
  calls[1].op = PW_OP_SEND_FD;
  calls[1].args[0] = 50;
  std::vector<AgentReply> replies;
  ASSERT_TRUE(agent.connection().Run(calls, &replies).ok());
  EXPECT_EQ(replies[0].result, 50);
  EXPECT_EQ(replies[1].result, 50);
  ASSERT_TRUE(replies[1].fd.valid());
  write_end.Reset();
  ASSERT_EQ(write(replies[1].fd.get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(read(read_end.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(AgentConnectionTest, CancelledCallsLateRepliesAreSkipped) {
  AgentProcess agent;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  AgentCall receive;
  receive.op = PW_OP_RECV_FD;
  receive.args[0] = static_cast<uint64_t>(-1);
  receive.fd_to_pass = read_end.get();
  std::vector<AgentReply> replies;
  ASSERT_TRUE(
      agent.connection().Run(absl::MakeConstSpan(&receive, 1), &replies).ok());
  const uint64_t agent_read_end = replies[0].result;
  uint64_t buffer = agent.Mmap(4096);

  // read() blocks until we write: the call is given up after 200 ms.
  const uint64_t read_args[] = {agent_read_end, buffer, 1};
  absl::Time deadline = absl::Now() + absl::Milliseconds(200);
  auto blocked = agent.connection().Syscall(
      SYS_read, read_args, [deadline] { return absl::Now() > deadline; });
  EXPECT_TRUE(absl::IsCancelled(blocked.status())) << blocked.status();
  // Unblock it: its late reply (1) must not be taken for getpid's.
  ASSERT_EQ(write(write_end.get(), "y", 1), 1);
  auto r = agent.connection().Syscall(SYS_getpid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, agent.pid());
}

TEST(AgentConnectionTest, DeadAgentIsUnavailable) {
  AgentProcess agent;
  ASSERT_EQ(kill(agent.pid(), SIGKILL), 0);
  auto r = agent.connection().Syscall(SYS_getpid);
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  r = agent.connection().Syscall(SYS_getpid);
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
}

}  // namespace
}  // namespace procwarp
