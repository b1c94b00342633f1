// AgentConnection as a parser of untrusted input: the test plays an agent
// taken over by its caller and writes malformed replies (garbage, wrong tags
// and ops, oversize lengths, truncation, fds where none belong, fd floods).
// Each must end in a clean error that says what the agent did, with the
// agent killed, every received fd closed, and no crash; well-formed replies
// (the positive controls) still work.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "daemon/thread/agent_connection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace procwarp {
namespace {

using ::testing::HasSubstr;

int CountOwnFds() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++n;
  }
  return n;
}

// Sends `data` with `fd_count` copies of `fd` as SCM_RIGHTS in one message.
// Returns what sendmsg returns.
ssize_t SendWithFds(int socket, const std::string& data, int fd,
                    int fd_count) {
  iovec iov = {const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fd_count));
  if (fd_count > 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
    for (int i = 0; i < fd_count; ++i) {
      memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof(int));
    }
  }
  return sendmsg(socket, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

std::string Bytes(const void* p, size_t n) {
  return std::string(static_cast<const char*>(p), n);
}

std::string Reply(uint64_t tag, uint32_t op, int64_t result,
                  uint64_t payload_len = 0) {
  pw_agent_response r{};
  r.result = result;
  r.tag = tag;
  r.op = op;
  r.payload_len = payload_len;
  return Bytes(&r, sizeof(r));
}

// A fake agent: the test writes its side of the socket; a real child
// process (which only waits) stands for the agent's process, so the test
// can see it killed.
class FakeAgent {
 public:
  FakeAgent() {
    // Forked first, so it holds no end of the socket (EOF must be EOF).
    pid_ = fork();
    if (pid_ == 0) {
      for (;;) pause();
    }
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    daemon_end_.Reset(sv[0]);
    agent_end_.Reset(sv[1]);
    pidfd_.Reset(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
    dev_null_.Reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  ~FakeAgent() {
    connection_.reset();
    if (pid_ > 0) {  // never kill(-1, ...)
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  std::string Hello() const {
    pw_agent_hello hello{};
    hello.magic = PW_AGENT_MAGIC;
    hello.version = PW_AGENT_PROTOCOL_VERSION;
    hello.hello_size = sizeof(pw_agent_hello);
    hello.request_size = sizeof(pw_agent_request);
    hello.response_size = sizeof(pw_agent_response);
    hello.pid = pid_;
    hello.socket_fd = PW_AGENT_DEFAULT_SOCKET_FD;
    return Bytes(&hello, sizeof(hello));
  }

  // Writes the hello and opens the daemon's side.
  absl::Status Open() {
    if (Write(Hello()) != static_cast<ssize_t>(sizeof(pw_agent_hello))) {
      return absl::InternalError("writing the hello");
    }
    return OpenWithoutHello();
  }
  absl::Status OpenWithoutHello() {
    auto c = AgentConnection::Open(std::move(daemon_end_), pidfd_.get(),
                                   "fake agent");
    if (!c.ok()) return c.status();
    connection_ = *std::move(c);
    return absl::OkStatus();
  }

  ssize_t Write(const std::string& data, int fd_count = 0) {
    return SendWithFds(agent_end_.get(), data, dev_null_.get(), fd_count);
  }
  void CloseAgentEnd() { agent_end_.Reset(); }

  // Whether the stand-in process was killed with SIGKILL (waits for it).
  bool WasKilled() {
    siginfo_t info{};
    if (waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &info,
               WEXITED) != 0) {
      return false;
    }
    pid_ = -1;  // reaped
    return info.si_code == CLD_KILLED && info.si_status == SIGKILL;
  }
  // Whether it still runs (not killed).
  bool Alive() const {
    siginfo_t info{};
    return waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &info,
                  WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == 0;
  }

  AgentConnection& connection() { return *connection_; }
  // Drops the daemon's side, with whatever it still holds.
  void CloseConnection() { connection_.reset(); }
  absl::Status RunOne(AgentCall call, AgentReply* reply = nullptr) {
    std::vector<AgentReply> replies;
    absl::Status s = connection_->Run(absl::MakeConstSpan(&call, 1), &replies);
    if (reply != nullptr && !replies.empty()) *reply = std::move(replies[0]);
    return s;
  }

 private:
  UniqueFd daemon_end_;
  UniqueFd agent_end_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd dev_null_;
  std::unique_ptr<AgentConnection> connection_;
};

// Expects `status` to be the violation error and the agent killed.
void ExpectViolation(FakeAgent& agent, const absl::Status& status,
                     const std::string& says) {
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("broke the protocol"));
  EXPECT_THAT(status.message(), HasSubstr(says));
  EXPECT_TRUE(agent.WasKilled());
  // And it stays broken, saying why.
  EXPECT_THAT(agent.connection().ViolationReason(), HasSubstr(says));
  auto again = agent.connection().Syscall(SYS_getpid);
  EXPECT_TRUE(absl::IsUnavailable(again.status()));
  EXPECT_THAT(again.status().message(), HasSubstr(says));
}

TEST(AgentConnectionHostileTest, WellFormedRepliesWork) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  // A syscall reply, then a SEND_FD reply with its fd, in one read.
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SYSCALL, 42)), 32);
  ASSERT_EQ(agent.Write(Reply(2, PW_OP_SEND_FD, 7), 1), 32);
  std::vector<AgentCall> calls(2);
  calls[0] = AgentCall::Syscall(SYS_getpid);
  calls[1].op = PW_OP_SEND_FD;
  calls[1].args[0] = 7;
  std::vector<AgentReply> replies;
  absl::Status s = agent.connection().Run(calls, &replies);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(replies[0].result, 42);
  EXPECT_FALSE(replies[0].fd.valid());
  EXPECT_EQ(replies[1].result, 7);
  EXPECT_TRUE(replies[1].fd.valid());
  // A READ_MEM reply with its data.
  ASSERT_EQ(agent.Write(Reply(3, PW_OP_READ_MEM, 4, 4) + "abcd"), 36);
  char into[8] = {};
  AgentCall read;
  read.op = PW_OP_READ_MEM;
  read.args[1] = 8;
  read.read_into = into;
  AgentReply reply;
  ASSERT_TRUE(agent.RunOne(read, &reply).ok());
  EXPECT_EQ(reply.result, 4);
  EXPECT_EQ(std::string(into, 4), "abcd");
  EXPECT_TRUE(agent.Alive());
}

TEST(AgentConnectionHostileTest, GarbageIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  ASSERT_EQ(agent.Write(std::string(32, '\x5a')), 32);
  ExpectViolation(agent, agent.RunOne(AgentCall::Syscall(SYS_getpid)),
                  "tagged");
}

TEST(AgentConnectionHostileTest, ReplyToNoRequestIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  // Tag 1 is due; tag 2 was never sent.
  ASSERT_EQ(agent.Write(Reply(2, PW_OP_SYSCALL, 0)), 32);
  ExpectViolation(agent, agent.RunOne(AgentCall::Syscall(SYS_getpid)),
                  "tagged 2");
}

TEST(AgentConnectionHostileTest, ExtraReplyIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  // Both arrive with one read: the second answers a request never sent.
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SYSCALL, 5) + Reply(2, PW_OP_SYSCALL, 6)),
            64);
  ExpectViolation(agent, agent.RunOne(AgentCall::Syscall(SYS_getpid)),
                  "tagged 2 where no reply was due");
}

TEST(AgentConnectionHostileTest, AnsweringUnsentRequestsIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  // 4 MiB of WRITE_MEM data cannot all be in the socket yet: its reply
  // cannot be real.
  const std::string data(4 << 20, 'w');
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SYSCALL, 0) +
                        Reply(2, PW_OP_WRITE_MEM, data.size())),
            64);
  std::vector<AgentCall> calls(2);
  calls[0] = AgentCall::Syscall(SYS_getpid);
  calls[1].op = PW_OP_WRITE_MEM;
  calls[1].args[1] = data.size();
  calls[1].payload = data;
  std::vector<AgentReply> replies;
  ExpectViolation(agent, agent.connection().Run(calls, &replies),
                  "before they were sent");
}

TEST(AgentConnectionHostileTest, WrongOpIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_CLONE, 0)), 32);
  ExpectViolation(agent, agent.RunOne(AgentCall::Syscall(SYS_getpid)),
                  "answered a SYSCALL request as op 7");
}

TEST(AgentConnectionHostileTest, OversizePayloadIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_READ_MEM, 1ll << 40, 1ull << 40)), 32);
  char into[16];
  AgentCall read;
  read.op = PW_OP_READ_MEM;
  read.args[1] = sizeof(into);
  read.read_into = into;
  ExpectViolation(agent, agent.RunOne(read), "for a READ_MEM of 16");
}

TEST(AgentConnectionHostileTest, PayloadOnASyscallReplyIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SYSCALL, 0, 100)), 32);
  ExpectViolation(agent, agent.RunOne(AgentCall::Syscall(SYS_getpid)),
                  "carries none");
}

TEST(AgentConnectionHostileTest, TruncatedReplyIsACleanError) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SYSCALL, 0).substr(0, 20)), 20);
  agent.CloseAgentEnd();
  // Not a violation (an agent may die mid-write), but the end of the stream.
  absl::Status s = agent.RunOne(AgentCall::Syscall(SYS_getpid));
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("procwarp-agent"));
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("broke the protocol")));
}

TEST(AgentConnectionHostileTest, FdWithAReplyThatCarriesNoneIsClosed) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  const int before = CountOwnFds();
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SYSCALL, 0), 1), 32);
  ExpectViolation(agent, agent.RunOne(AgentCall::Syscall(SYS_getpid)),
                  "sent an fd with a SYSCALL reply");
  EXPECT_EQ(CountOwnFds(), before);
}

TEST(AgentConnectionHostileTest, SendFdReplyWithoutItsFdIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SEND_FD, 3)), 32);
  AgentCall call;
  call.op = PW_OP_SEND_FD;
  call.args[0] = 3;
  ExpectViolation(agent, agent.RunOne(call), "without its fd");
}

TEST(AgentConnectionHostileTest, ManyFdsInOneMessageAreAllClosed) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  const int before = CountOwnFds();
  // A SEND_FD reply that looks right but carries 200 fds.
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SEND_FD, 3), 200), 32);
  AgentCall call;
  call.op = PW_OP_SEND_FD;
  call.args[0] = 3;
  ExpectViolation(agent, agent.RunOne(call), "in one message");
  EXPECT_EQ(CountOwnFds(), before);
}

TEST(AgentConnectionHostileTest, TwoFdsInOneMessageAreAViolation) {
  // Two fit in the control buffer's padding without MSG_CTRUNC.
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  const int before = CountOwnFds();
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_SEND_FD, 3), 2), 32);
  AgentCall call;
  call.op = PW_OP_SEND_FD;
  call.args[0] = 3;
  ExpectViolation(agent, agent.RunOne(call), "more than one fd");
  EXPECT_EQ(CountOwnFds(), before);
}

TEST(AgentConnectionHostileTest, FdFloodOfSmallMessagesIsBounded) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  const int before = CountOwnFds();
  // One byte and one fd per message, as many as the socket takes.
  int sent = 0;
  while (sent < 2000 && agent.Write("x", 1) == 1) ++sent;
  ASSERT_GT(sent, 16);
  ExpectViolation(agent, agent.RunOne(AgentCall::Syscall(SYS_getpid)),
                  "fd");
  EXPECT_EQ(CountOwnFds(), before);
}

TEST(AgentConnectionHostileTest, FdInsideReadMemDataIsAViolation) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Open().ok());
  const int before = CountOwnFds();
  ASSERT_EQ(agent.Write(Reply(1, PW_OP_READ_MEM, 64, 64) + std::string(16, 'a')),
            48);
  ASSERT_EQ(agent.Write(std::string(48, 'b'), 1), 48);
  ASSERT_EQ(agent.Write(Reply(2, PW_OP_SYSCALL, 0)), 32);
  char into[64];
  std::vector<AgentCall> calls(2);
  calls[0].op = PW_OP_READ_MEM;
  calls[0].args[1] = sizeof(into);
  calls[0].read_into = into;
  calls[1] = AgentCall::Syscall(SYS_getpid);
  std::vector<AgentReply> replies;
  ExpectViolation(agent, agent.connection().Run(calls, &replies),
                  "where no reply carries one");
  EXPECT_EQ(CountOwnFds(), before);
}

TEST(AgentConnectionHostileTest, FdWithTheHelloFailsOpen) {
  FakeAgent agent;
  const int before = CountOwnFds();
  ASSERT_EQ(agent.Write(agent.Hello(), 1), 32);
  absl::Status s = agent.OpenWithoutHello();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("hello"));
  EXPECT_TRUE(agent.WasKilled());
  // The daemon's end of the socket went with the failed connection.
  EXPECT_EQ(CountOwnFds(), before - 1);
}

TEST(AgentConnectionHostileTest, FdFloodBeforeTheHelloFailsOpen) {
  FakeAgent agent;
  const int before = CountOwnFds();
  for (int i = 0; i < 50; ++i) ASSERT_EQ(agent.Write("h", 1), 1);
  absl::Status s = agent.OpenWithoutHello();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("hello"));
  EXPECT_TRUE(agent.WasKilled());
  EXPECT_EQ(CountOwnFds(), before - 1);
}

// Random streams (fixed seed): whatever they hold, the result is a reply or
// a clean error, and no fd stays behind once the connection is gone.
TEST(AgentConnectionHostileTest, RandomStreamsNeverLeakOrCrash) {
  std::mt19937_64 random(20261208);
  for (int round = 0; round < 150; ++round) {
    FakeAgent agent;
    const int before = CountOwnFds();  // the daemon's end included
    ASSERT_TRUE(agent.Open().ok());
    const int messages = 1 + random() % 6;
    for (int m = 0; m < messages; ++m) {
      std::string data;
      if (random() % 2) {
        // Plausible replies with random fields, maybe cut short.
        const uint32_t ops[] = {PW_OP_SYSCALL, PW_OP_READ_MEM, PW_OP_SEND_FD,
                                PW_OP_CLONE, 99};
        data = Reply(1 + random() % 3, ops[random() % 5],
                     static_cast<int64_t>(random() % 64) - 8,
                     random() % 3 == 0 ? random() % 128 : 0);
        data.resize(1 + random() % 40);
      } else {
        data.resize(1 + random() % 64);
        for (char& c : data) c = static_cast<char>(random());
      }
      agent.Write(data, random() % 4 == 0 ? 1 + random() % 3 : 0);
    }
    const bool closed = random() % 2;
    if (closed) agent.CloseAgentEnd();
    std::vector<AgentCall> calls(2);
    char into[64];
    calls[0].op = PW_OP_READ_MEM;
    calls[0].args[1] = sizeof(into);
    calls[0].read_into = into;
    calls[1].op = PW_OP_SEND_FD;
    std::vector<AgentReply> replies;
    // Silence is given up at once (the stand-in never answers by itself).
    absl::Status s =
        agent.connection().Run(calls, &replies, [] { return true; });
    EXPECT_TRUE(s.ok() || absl::IsUnavailable(s) || absl::IsCancelled(s)) << s;
    replies.clear();
    agent.CloseConnection();
    EXPECT_EQ(CountOwnFds(), before - 1 - (closed ? 1 : 0)) << "round " << round;
  }
}

}  // namespace
}  // namespace procwarp
