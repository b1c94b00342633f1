// Tests for procwarp-agent: starts the real binary on a socketpair, the way
// procwarpd does, and drives every op of agent/protocol.h through it. Also
// checks the ELF properties the snapshot restorer depends on (static PIE, no
// interpreter, no TLS, no relocations).

#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "agent/protocol.h"
#include "common/fd_passing.h"
#include "gtest/gtest.h"

namespace procwarp::agent {
namespace {

#define PW_TEST_CONCAT_INNER(a, b) a##b
#define PW_TEST_CONCAT(a, b) PW_TEST_CONCAT_INNER(a, b)
#define ASSERT_OK(expr)                         \
  do {                                          \
    const absl::Status pw_status_ = (expr);     \
    ASSERT_TRUE(pw_status_.ok()) << pw_status_; \
  } while (0)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(PW_TEST_CONCAT(pw_status_or_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  ASSERT_TRUE(tmp.ok()) << tmp.status();          \
  lhs = std::move(*tmp)

// Relative to the runfiles directory Bazel runs tests in.
constexpr char kAgentPath[] = "agent/procwarp-agent";
constexpr size_t kMiB = 1 << 20;
constexpr size_t kPage = 4096;

absl::Status ErrnoError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", strerror(errno)));
}

// Owns one file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

pw_agent_request MakeRequest(uint32_t op, int64_t nr,
                             std::initializer_list<uint64_t> args, uint64_t tag,
                             uint32_t flags = 0) {
  pw_agent_request req{};
  req.op = op;
  req.flags = flags;
  req.nr = nr;
  int i = 0;
  for (uint64_t a : args) req.args[i++] = a;
  req.tag = tag;
  return req;
}

// One running agent and the daemon's end of its socket.
class Agent {
 public:
  // Starts the agent with its socket on fd 3, or on `socket_fd` passed on the
  // command line. `extra_args` replace the fd argument for usage tests.
  static absl::StatusOr<std::unique_ptr<Agent>> Start(
      std::optional<int> socket_fd = std::nullopt,
      std::optional<std::vector<std::string>> raw_args = std::nullopt) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return ErrnoError("socketpair");
    }
    UniqueFd ours(sv[0]);
    UniqueFd theirs(sv[1]);
    // Room for a whole pipelined batch in flight in both directions, so the
    // tests may write a batch before reading any reply (root may exceed
    // wmem_max; others get what the sysctl allows).
    for (int fd : {ours.get(), theirs.get()}) {
      int size = 8 * kMiB;
      if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) !=
          0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
      }
    }
    const int target_fd = socket_fd.value_or(PW_AGENT_DEFAULT_SOCKET_FD);
    std::vector<std::string> args = {"procwarp-agent"};
    if (raw_args.has_value()) {
      args.insert(args.end(), raw_args->begin(), raw_args->end());
    } else if (socket_fd.has_value()) {
      args.push_back(std::to_string(*socket_fd));
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    char* envp[] = {nullptr};

    pid_t pid = fork();
    if (pid < 0) return ErrnoError("fork");
    if (pid == 0) {
      // Only async-signal-safe calls from here on.
      if (theirs.get() == target_fd) {
        if (fcntl(target_fd, F_SETFD, 0) != 0) _exit(127);
      } else if (dup2(theirs.get(), target_fd) < 0) {
        _exit(127);
      }
      execve(kAgentPath, argv.data(), envp);
      _exit(127);
    }
    auto agent = std::unique_ptr<Agent>(new Agent(pid, std::move(ours)));
    return agent;
  }

  ~Agent() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Wraps an agent this process did not start itself (a clone of another
  // agent, made our child by CLONE_PARENT) and its socket.
  static std::unique_ptr<Agent> Adopt(pid_t pid, UniqueFd sock) {
    return std::unique_ptr<Agent>(new Agent(pid, std::move(sock)));
  }

  pid_t pid() const { return pid_; }
  int sock() const { return sock_.get(); }
  void CloseSocket() { sock_.Reset(); }

  // Reads and checks the hello.
  absl::StatusOr<pw_agent_hello> ReadHello() {
    pw_agent_hello hello;
    std::vector<UniqueFd> fds;
    if (absl::Status s = RecvExact(&hello, sizeof(hello), &fds); !s.ok()) {
      return s;
    }
    if (!fds.empty()) return absl::InternalError("fd passed with hello");
    return hello;
  }

  // Writes all of data; attaches fd_to_pass (if >= 0) as SCM_RIGHTS to the
  // first sendmsg, which carries data's first byte.
  absl::Status Send(const void* data, size_t len, int fd_to_pass = -1) {
    const char* p = static_cast<const char*>(data);
    while (len > 0) {
      ssize_t n = SendWithFd(sock(), p, len, fd_to_pass);
      if (n < 0) return ErrnoError("sendmsg");
      fd_to_pass = -1;
      p += n;
      len -= n;
    }
    return absl::OkStatus();
  }

  absl::Status SendRequest(const pw_agent_request& req,
                           const std::vector<uint8_t>& payload = {},
                           int fd_to_pass = -1) {
    std::vector<uint8_t> bytes(sizeof(req));
    memcpy(bytes.data(), &req, sizeof(req));
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    return Send(bytes.data(), bytes.size(), fd_to_pass);
  }

  // Reads exactly len bytes, collecting passed fds. Fails at EOF or after
  // 10 s without data (a hang would otherwise only end at Bazel's timeout).
  absl::Status RecvExact(void* buf, size_t len, std::vector<UniqueFd>* fds) {
    char* p = static_cast<char*>(buf);
    while (len > 0) {
      pollfd pfd = {sock(), POLLIN, 0};
      int ready = poll(&pfd, 1, 10000);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return ErrnoError("poll");
      if (ready == 0) return absl::DeadlineExceededError("agent is silent");
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
      iovec iov = {p, len};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      ssize_t n = recvmsg(sock(), &msg, MSG_CMSG_CLOEXEC);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("recvmsg");
      }
      for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr;
           cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
          continue;
        }
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
          fds->emplace_back(fd);
        }
      }
      if (n == 0) return absl::UnavailableError("EOF from agent");
      p += n;
      len -= n;
    }
    return absl::OkStatus();
  }

  // Reads one response. Fds passed with it go to *fds; without fds, any
  // passed fd is an error.
  absl::StatusOr<pw_agent_response> ReadResponse(
      std::vector<UniqueFd>* fds = nullptr) {
    pw_agent_response resp;
    std::vector<UniqueFd> local;
    if (absl::Status s = RecvExact(&resp, sizeof(resp), &local); !s.ok()) {
      return s;
    }
    if (fds != nullptr) {
      for (UniqueFd& fd : local) fds->push_back(std::move(fd));
    } else if (!local.empty()) {
      return absl::InternalError("unexpected fd with response");
    }
    return resp;
  }

  // One request, one response with the same tag and op.
  absl::StatusOr<pw_agent_response> Call(const pw_agent_request& req,
                                         const std::vector<uint8_t>& payload,
                                         int fd_to_pass = -1,
                                         std::vector<UniqueFd>* fds = nullptr) {
    if (absl::Status s = SendRequest(req, payload, fd_to_pass); !s.ok()) {
      return s;
    }
    absl::StatusOr<pw_agent_response> resp = ReadResponse(fds);
    if (!resp.ok()) return resp;
    if (resp->tag != req.tag || resp->op != req.op) {
      return absl::InternalError(absl::StrCat("response tag ", resp->tag,
                                              " op ", resp->op, " for tag ",
                                              req.tag, " op ", req.op));
    }
    return resp;
  }

  // Runs a syscall in the agent; returns the raw result.
  absl::StatusOr<int64_t> Syscall(int64_t nr,
                                  std::initializer_list<uint64_t> args = {}) {
    absl::StatusOr<pw_agent_response> resp =
        Call(MakeRequest(PW_OP_SYSCALL, nr, args, ++next_tag_), {});
    if (!resp.ok()) return resp.status();
    return resp->result;
  }

  // Sends `fd` to the agent (PW_OP_RECV_FD, any free number); the number
  // it has there, or the agent's -errno.
  absl::StatusOr<int64_t> SendFd(int fd) {
    absl::StatusOr<pw_agent_response> resp = Call(
        MakeRequest(PW_OP_RECV_FD, 0, {static_cast<uint64_t>(-1), 0}, ++next_tag_),
        {}, fd);
    if (!resp.ok()) return resp.status();
    return resp->result;
  }

  // Maps `len` bytes of fresh read-write memory in the agent.
  absl::StatusOr<uint64_t> Mmap(size_t len) {
    absl::StatusOr<int64_t> r = Syscall(
        SYS_mmap, {0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   static_cast<uint64_t>(-1), 0});
    if (!r.ok()) return r.status();
    if (*r < 0 && *r >= -4095) {
      return absl::InternalError(absl::StrCat("mmap in agent: ", -*r));
    }
    return static_cast<uint64_t>(*r);
  }

  // WRITE_MEM; returns the raw result.
  absl::StatusOr<int64_t> WriteMem(uint64_t addr,
                                   const std::vector<uint8_t>& data) {
    absl::StatusOr<pw_agent_response> resp =
        Call(MakeRequest(PW_OP_WRITE_MEM, 0, {addr, data.size()}, ++next_tag_),
             data);
    if (!resp.ok()) return resp.status();
    return resp->result;
  }

  // READ_MEM; returns the bytes sent, or an error holding the -errno result.
  absl::StatusOr<std::vector<uint8_t>> ReadMem(uint64_t addr, size_t len) {
    absl::StatusOr<pw_agent_response> resp =
        Call(MakeRequest(PW_OP_READ_MEM, 0, {addr, len}, ++next_tag_), {});
    if (!resp.ok()) return resp.status();
    if (resp->result < 0) {
      if (resp->payload_len != 0) return absl::InternalError("data on error");
      return absl::FailedPreconditionError(
          absl::StrCat("READ_MEM result ", resp->result));
    }
    if (resp->payload_len != static_cast<uint64_t>(resp->result)) {
      return absl::InternalError("payload_len != result");
    }
    std::vector<uint8_t> data(resp->payload_len);
    std::vector<UniqueFd> fds;
    if (absl::Status s = RecvExact(data.data(), data.size(), &fds); !s.ok()) {
      return s;
    }
    return data;
  }

  // Waits for the agent to end; returns its wait status.
  absl::StatusOr<int> Wait() {
    int status;
    pid_t r;
    do {
      r = waitpid(pid_, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return ErrnoError("waitpid");
    pid_ = -1;
    return status;
  }

  uint64_t NextTag() { return ++next_tag_; }

 private:
  Agent(pid_t pid, UniqueFd sock) : pid_(pid), sock_(std::move(sock)) {}

  pid_t pid_;
  UniqueFd sock_;
  uint64_t next_tag_ = 1000;
};

// Starts an agent and consumes its hello.
absl::StatusOr<std::unique_ptr<Agent>> StartReady() {
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start();
  if (!agent.ok()) return agent;
  absl::StatusOr<pw_agent_hello> hello = (*agent)->ReadHello();
  if (!hello.ok()) return hello.status();
  return agent;
}

std::vector<uint8_t> Bytes(absl::string_view s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

std::string ExitDescription(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("status ", status);
}

TEST(AgentTest, HelloDescribesProtocolAndPid) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, Agent::Start());
  ASSERT_OK_AND_ASSIGN(pw_agent_hello hello, agent->ReadHello());
  EXPECT_EQ(hello.magic, PW_AGENT_MAGIC);
  EXPECT_EQ(hello.version, PW_AGENT_PROTOCOL_VERSION);
  EXPECT_EQ(hello.hello_size, sizeof(pw_agent_hello));
  EXPECT_EQ(hello.request_size, sizeof(pw_agent_request));
  EXPECT_EQ(hello.response_size, sizeof(pw_agent_response));
  EXPECT_EQ(hello.pid, agent->pid());
  EXPECT_EQ(hello.socket_fd, PW_AGENT_DEFAULT_SOCKET_FD);
  EXPECT_EQ(hello.reserved0, 0u);
  EXPECT_EQ(hello.reserved1, 0u);
}

TEST(AgentTest, SocketFdFromCommandLine) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, Agent::Start(7));
  ASSERT_OK_AND_ASSIGN(pw_agent_hello hello, agent->ReadHello());
  EXPECT_EQ(hello.socket_fd, 7);
  ASSERT_OK_AND_ASSIGN(int64_t pid, agent->Syscall(SYS_getpid));
  EXPECT_EQ(pid, agent->pid());
}

TEST(AgentTest, BadCommandLineExitsWithUsage) {
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Agent> agent,
      Agent::Start(std::nullopt, std::vector<std::string>{"not-a-number"}));
  ASSERT_OK_AND_ASSIGN(int status, agent->Wait());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == PW_AGENT_EXIT_USAGE)
      << ExitDescription(status);
}

TEST(AgentTest, GetpidIsTheChildPid) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  ASSERT_OK_AND_ASSIGN(int64_t pid, agent->Syscall(SYS_getpid));
  EXPECT_EQ(pid, agent->pid());
}

TEST(AgentTest, FailedSyscallReturnsMinusErrno) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  ASSERT_OK_AND_ASSIGN(int64_t r, agent->Syscall(SYS_close, {9999}));
  EXPECT_EQ(r, -EBADF);
}

TEST(AgentTest, UnknownOpAndFlagsAreRejectedAndStreamStaysInSync) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  ASSERT_OK_AND_ASSIGN(pw_agent_response resp,
                       agent->Call(MakeRequest(77, 0, {}, 1), {}));
  EXPECT_EQ(resp.result, -ENOSYS);
  ASSERT_OK_AND_ASSIGN(
      resp,
      agent->Call(MakeRequest(PW_OP_SYSCALL, SYS_getpid, {}, 2, 0x80), {}));
  EXPECT_EQ(resp.result, -EINVAL);
  // A WRITE_MEM with bad flags still has its data consumed.
  ASSERT_OK_AND_ASSIGN(
      resp, agent->Call(MakeRequest(PW_OP_WRITE_MEM, 0, {0, 5000}, 3, 0x80),
                        std::vector<uint8_t>(5000, 0xab)));
  EXPECT_EQ(resp.result, -EINVAL);
  ASSERT_OK_AND_ASSIGN(int64_t pid, agent->Syscall(SYS_getpid));
  EXPECT_EQ(pid, agent->pid());
}

TEST(AgentTest, PipelinedBatchAnswersInOrder) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  constexpr int kCount = 10000;
  std::vector<pw_agent_request> batch;
  batch.reserve(kCount);
  for (int i = 0; i < kCount; ++i) {
    batch.push_back(
        MakeRequest(PW_OP_SYSCALL, SYS_getpid, {}, 0x5000000000ull + i));
  }
  // Every request is written before any reply is read.
  ASSERT_OK(agent->Send(batch.data(), batch.size() * sizeof(batch[0])));
  std::vector<pw_agent_response> replies(kCount);
  std::vector<UniqueFd> fds;
  ASSERT_OK(agent->RecvExact(replies.data(),
                             replies.size() * sizeof(replies[0]), &fds));
  EXPECT_TRUE(fds.empty());
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(replies[i].tag, 0x5000000000ull + i) << "reply " << i;
    ASSERT_EQ(replies[i].op, PW_OP_SYSCALL) << "reply " << i;
    ASSERT_EQ(replies[i].result, agent->pid()) << "reply " << i;
    ASSERT_EQ(replies[i].payload_len, 0u) << "reply " << i;
  }
}

TEST(AgentTest, WriteThenReadOneMebibyte) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  ASSERT_OK_AND_ASSIGN(uint64_t addr, agent->Mmap(kMiB));
  const std::vector<uint8_t> data = RandomBytes(kMiB, 1);
  ASSERT_OK_AND_ASSIGN(int64_t written, agent->WriteMem(addr, data));
  EXPECT_EQ(written, static_cast<int64_t>(kMiB));
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> back, agent->ReadMem(addr, kMiB));
  EXPECT_TRUE(back == data);
  // A small read in the middle (copied into the response buffer, not sent
  // from the source like the big one).
  ASSERT_OK_AND_ASSIGN(back, agent->ReadMem(addr + 12345, 100));
  EXPECT_TRUE(std::equal(back.begin(), back.end(), data.begin() + 12345));
}

TEST(AgentTest, PipelinedSmallMemoryOps) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  ASSERT_OK_AND_ASSIGN(uint64_t addr, agent->Mmap(kPage));
  // WRITE_MEM, READ_MEM, WRITE_MEM, READ_MEM in one write.
  std::vector<uint8_t> stream;
  auto append = [&stream](const pw_agent_request& req,
                          const std::vector<uint8_t>& payload) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&req);
    stream.insert(stream.end(), p, p + sizeof(req));
    stream.insert(stream.end(), payload.begin(), payload.end());
  };
  append(MakeRequest(PW_OP_WRITE_MEM, 0, {addr, 5}, 1), Bytes("hello"));
  append(MakeRequest(PW_OP_READ_MEM, 0, {addr, 5}, 2), {});
  append(MakeRequest(PW_OP_WRITE_MEM, 0, {addr, 5}, 3), Bytes("world"));
  append(MakeRequest(PW_OP_READ_MEM, 0, {addr, 5}, 4), {});
  ASSERT_OK(agent->Send(stream.data(), stream.size()));
  for (uint64_t tag = 1; tag <= 4; ++tag) {
    ASSERT_OK_AND_ASSIGN(pw_agent_response resp, agent->ReadResponse());
    EXPECT_EQ(resp.tag, tag);
    EXPECT_EQ(resp.result, 5);
    if (resp.op == PW_OP_READ_MEM) {
      ASSERT_EQ(resp.payload_len, 5u);
      std::string got(5, '\0');
      std::vector<UniqueFd> fds;
      ASSERT_OK(agent->RecvExact(got.data(), got.size(), &fds));
      EXPECT_EQ(got, tag == 2 ? "hello" : "world");
    }
  }
}

TEST(AgentTest, MemoryFaultsAreResultsNotCrashes) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  // Address 0 and a non-canonical address: nothing readable at all.
  absl::StatusOr<std::vector<uint8_t>> r = agent->ReadMem(0, 16);
  EXPECT_EQ(r.status().message(), absl::StrCat("READ_MEM result ", -EFAULT));
  r = agent->ReadMem(0x8000000000000000ull, 16);
  EXPECT_EQ(r.status().message(), absl::StrCat("READ_MEM result ", -EFAULT));

  // Three pages: read-write, read-only, none.
  ASSERT_OK_AND_ASSIGN(uint64_t addr, agent->Mmap(3 * kPage));
  const std::vector<uint8_t> first = RandomBytes(kPage, 2);
  ASSERT_OK_AND_ASSIGN(int64_t n, agent->WriteMem(addr, first));
  ASSERT_EQ(n, static_cast<int64_t>(kPage));
  ASSERT_OK_AND_ASSIGN(
      n, agent->Syscall(SYS_mprotect, {addr + kPage, kPage, PROT_READ}));
  ASSERT_EQ(n, 0);
  ASSERT_OK_AND_ASSIGN(
      n, agent->Syscall(SYS_mprotect, {addr + 2 * kPage, kPage, PROT_NONE}));
  ASSERT_EQ(n, 0);

  // A read running into the PROT_NONE page sends the readable prefix.
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> back,
                       agent->ReadMem(addr + 100, 3 * kPage - 100));
  ASSERT_EQ(back.size(), 2 * kPage - 100);
  EXPECT_TRUE(std::equal(first.begin() + 100, first.end(), back.begin()));
  r = agent->ReadMem(addr + 2 * kPage, 1);
  EXPECT_EQ(r.status().message(), absl::StrCat("READ_MEM result ", -EFAULT));

  // A write into the read-only page fails; one running into it writes the
  // prefix. Both consume all their data.
  ASSERT_OK_AND_ASSIGN(
      n, agent->WriteMem(addr + kPage, std::vector<uint8_t>(100, 1)));
  EXPECT_EQ(n, -EFAULT);
  ASSERT_OK_AND_ASSIGN(
      n, agent->WriteMem(addr + kPage - 10, std::vector<uint8_t>(100000, 7)));
  EXPECT_EQ(n, 10);
  ASSERT_OK_AND_ASSIGN(back, agent->ReadMem(addr + kPage - 12, 14));
  EXPECT_EQ(back[0], first[kPage - 12]);
  EXPECT_EQ(back[1], first[kPage - 11]);
  for (int i = 2; i < 12; ++i) EXPECT_EQ(back[i], 7) << i;
  EXPECT_EQ(back[12], 0);  // the read-only page is untouched

  // Still in sync and alive.
  ASSERT_OK_AND_ASSIGN(int64_t pid, agent->Syscall(SYS_getpid));
  EXPECT_EQ(pid, agent->pid());
}

TEST(AgentTest, RecvFdInstallsPipeForSyscalls) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]);
  UniqueFd write_end(p[1]);

  ASSERT_OK_AND_ASSIGN(const int64_t sent, agent->SendFd(write_end.get()));
  ASSERT_GE(sent, 0);
  const int64_t agent_fd = sent;
  // Not close-on-exec unless asked for.
  ASSERT_OK_AND_ASSIGN(
      int64_t fd_flags,
      agent->Syscall(SYS_fcntl, {static_cast<uint64_t>(agent_fd), F_GETFD}));
  EXPECT_EQ(fd_flags, 0);

  const std::string message = "written by the agent";
  ASSERT_OK_AND_ASSIGN(uint64_t buf, agent->Mmap(kPage));
  ASSERT_OK_AND_ASSIGN(int64_t n, agent->WriteMem(buf, Bytes(message)));
  ASSERT_EQ(n, static_cast<int64_t>(message.size()));
  ASSERT_OK_AND_ASSIGN(
      n, agent->Syscall(SYS_write, {static_cast<uint64_t>(agent_fd), buf,
                                    message.size()}));
  EXPECT_EQ(n, static_cast<int64_t>(message.size()));
  std::string got(message.size(), '\0');
  ASSERT_EQ(read(read_end.get(), got.data(), got.size()),
            static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, message);

  // Once both copies of the write end are closed, the reader sees EOF: the
  // agent really held the pipe, not something else.
  write_end.Reset();
  ASSERT_OK_AND_ASSIGN(
      n, agent->Syscall(SYS_close, {static_cast<uint64_t>(agent_fd)}));
  EXPECT_EQ(n, 0);
  char c;
  EXPECT_EQ(read(read_end.get(), &c, 1), 0);
}

TEST(AgentTest, RecvFdToTargetNumberWithCloexec) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]);
  UniqueFd write_end(p[1]);
  ASSERT_OK_AND_ASSIGN(
      pw_agent_response resp,
      agent->Call(MakeRequest(PW_OP_RECV_FD, 0, {100, PW_RECV_FD_CLOEXEC}, 1),
                  {}, write_end.get()));
  EXPECT_EQ(resp.result, 100);
  ASSERT_OK_AND_ASSIGN(int64_t fd_flags,
                       agent->Syscall(SYS_fcntl, {100, F_GETFD}));
  EXPECT_EQ(fd_flags, FD_CLOEXEC);

  // No fd passed; and the agent's own socket is not a valid target.
  ASSERT_OK_AND_ASSIGN(
      resp, agent->Call(MakeRequest(PW_OP_RECV_FD, 0, {50, 0}, 2), {}));
  EXPECT_EQ(resp.result, -ENOMSG);
  ASSERT_OK_AND_ASSIGN(
      resp, agent->Call(MakeRequest(PW_OP_RECV_FD, 0,
                                    {PW_AGENT_DEFAULT_SOCKET_FD, 0}, 3),
                        {}, write_end.get()));
  EXPECT_EQ(resp.result, -EBUSY);
  ASSERT_OK_AND_ASSIGN(int64_t pid, agent->Syscall(SYS_getpid));
  EXPECT_EQ(pid, agent->pid());
}

TEST(AgentTest, SendFdOfFileOpenedByAgent) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  std::ifstream in("/etc/hostname", std::ios::binary);
  ASSERT_TRUE(in) << "/etc/hostname is needed by this test";
  const std::string expected((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());

  ASSERT_OK_AND_ASSIGN(uint64_t path, agent->Mmap(kPage));
  std::vector<uint8_t> path_bytes = Bytes("/etc/hostname");
  path_bytes.push_back(0);
  ASSERT_OK_AND_ASSIGN(int64_t n, agent->WriteMem(path, path_bytes));
  ASSERT_EQ(n, static_cast<int64_t>(path_bytes.size()));
  ASSERT_OK_AND_ASSIGN(
      int64_t file_fd,
      agent->Syscall(SYS_openat, {static_cast<uint64_t>(AT_FDCWD), path,
                                  O_RDONLY | O_CLOEXEC, 0}));
  ASSERT_GE(file_fd, 0);

  std::vector<UniqueFd> fds;
  ASSERT_OK_AND_ASSIGN(
      pw_agent_response resp,
      agent->Call(
          MakeRequest(PW_OP_SEND_FD, 0, {static_cast<uint64_t>(file_fd)}, 1),
          {}, -1, &fds));
  EXPECT_EQ(resp.result, file_fd);
  ASSERT_EQ(fds.size(), 1u);
  std::string got(expected.size() + 16, '\0');
  ssize_t got_len = pread(fds[0].get(), got.data(), got.size(), 0);
  ASSERT_GE(got_len, 0);
  got.resize(got_len);
  EXPECT_EQ(got, expected);

  // A bad fd is a result, with nothing attached.
  fds.clear();
  ASSERT_OK_AND_ASSIGN(
      resp,
      agent->Call(MakeRequest(PW_OP_SEND_FD, 0, {9999}, 2), {}, -1, &fds));
  EXPECT_EQ(resp.result, -EBADF);
  EXPECT_TRUE(fds.empty());
}

TEST(AgentTest, PipelinedSendFdsArriveWithTheirResponses) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  // getpid, SEND_FD(socket), getpid, SEND_FD(socket): fds must come with the
  // SEND_FD responses, not with the getpid ones.
  std::vector<pw_agent_request> batch = {
      MakeRequest(PW_OP_SYSCALL, SYS_getpid, {}, 1),
      MakeRequest(PW_OP_SEND_FD, 0, {PW_AGENT_DEFAULT_SOCKET_FD}, 2),
      MakeRequest(PW_OP_SYSCALL, SYS_getpid, {}, 3),
      MakeRequest(PW_OP_SEND_FD, 0, {PW_AGENT_DEFAULT_SOCKET_FD}, 4),
  };
  ASSERT_OK(agent->Send(batch.data(), batch.size() * sizeof(batch[0])));
  for (uint64_t tag = 1; tag <= 4; ++tag) {
    std::vector<UniqueFd> fds;
    ASSERT_OK_AND_ASSIGN(pw_agent_response resp, agent->ReadResponse(&fds));
    EXPECT_EQ(resp.tag, tag);
    EXPECT_EQ(fds.size(), tag % 2 == 0 ? 1u : 0u) << "tag " << tag;
  }
}

TEST(AgentTest, FlushFirstAvoidsDeadlockOnBlockingSyscall) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]);
  UniqueFd write_end(p[1]);
  ASSERT_OK_AND_ASSIGN(const int64_t sent, agent->SendFd(read_end.get()));
  ASSERT_GE(sent, 0);
  const uint64_t agent_read_fd = sent;
  ASSERT_OK_AND_ASSIGN(uint64_t buf, agent->Mmap(kPage));

  // The test only feeds the pipe after seeing the getpid answer; without
  // PW_REQ_FLUSH_FIRST that answer would sit in the agent's buffer while the
  // read() blocks.
  std::vector<pw_agent_request> batch = {
      MakeRequest(PW_OP_SYSCALL, SYS_getpid, {}, 2),
      MakeRequest(PW_OP_SYSCALL, SYS_read, {agent_read_fd, buf, 1}, 3,
                  PW_REQ_FLUSH_FIRST),
  };
  ASSERT_OK(agent->Send(batch.data(), batch.size() * sizeof(batch[0])));
  ASSERT_OK_AND_ASSIGN(pw_agent_response resp, agent->ReadResponse());
  EXPECT_EQ(resp.tag, 2u);
  EXPECT_EQ(resp.result, agent->pid());
  ASSERT_EQ(write(write_end.get(), "x", 1), 1);
  ASSERT_OK_AND_ASSIGN(resp, agent->ReadResponse());
  EXPECT_EQ(resp.tag, 3u);
  EXPECT_EQ(resp.result, 1);
}

TEST(AgentTest, ExitRepliesThenExitsWithCode) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  ASSERT_OK_AND_ASSIGN(pw_agent_response resp,
                       agent->Call(MakeRequest(PW_OP_EXIT, 0, {42}, 9), {}));
  EXPECT_EQ(resp.result, 0);
  char c;
  EXPECT_EQ(read(agent->sock(), &c, 1), 0);
  ASSERT_OK_AND_ASSIGN(int status, agent->Wait());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42)
      << ExitDescription(status);
}

TEST(AgentTest, EofOnSocketExitsZero) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  agent->CloseSocket();
  ASSERT_OK_AND_ASSIGN(int status, agent->Wait());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == PW_AGENT_EXIT_EOF)
      << ExitDescription(status);
}

TEST(AgentTest, HalfCloseStillGetsPendingReplies) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  pw_agent_request req = MakeRequest(PW_OP_SYSCALL, SYS_getpid, {}, 5);
  ASSERT_OK(agent->Send(&req, sizeof(req)));
  ASSERT_EQ(shutdown(agent->sock(), SHUT_WR), 0);
  ASSERT_OK_AND_ASSIGN(pw_agent_response resp, agent->ReadResponse());
  EXPECT_EQ(resp.tag, 5u);
  EXPECT_EQ(resp.result, agent->pid());
  ASSERT_OK_AND_ASSIGN(int status, agent->Wait());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == PW_AGENT_EXIT_EOF)
      << ExitDescription(status);
}

TEST(AgentTest, EofInsideRequestIsTruncation) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> agent, StartReady());
  pw_agent_request req = MakeRequest(PW_OP_SYSCALL, SYS_getpid, {}, 5);
  ASSERT_OK(agent->Send(&req, 10));
  ASSERT_EQ(shutdown(agent->sock(), SHUT_WR), 0);
  ASSERT_OK_AND_ASSIGN(int status, agent->Wait());
  EXPECT_TRUE(WIFEXITED(status) &&
              WEXITSTATUS(status) == PW_AGENT_EXIT_TRUNCATED)
      << ExitDescription(status);
}

// The snapshot restorer runs the agent inside an address space it rebuilds:
// the binary must be one self-contained, position-independent image.
TEST(AgentTest, CloneStartsAChildAgentOnItsOwnSocket) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Agent> parent, StartReady());
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd ours(sv[0]);
  UniqueFd theirs(sv[1]);
  ASSERT_OK_AND_ASSIGN(
      pw_agent_response resp,
      parent->Call(
          MakeRequest(PW_OP_RECV_FD, 0,
                      {static_cast<uint64_t>(-1), PW_RECV_FD_CLOEXEC}, 1),
          {}, theirs.get()));
  ASSERT_GE(resp.result, 0);
  const uint64_t child_sock = static_cast<uint64_t>(resp.result);
  theirs.Reset();

  // Refused: flags outside the allowed set, the agent's own socket, no fd.
  ASSERT_OK_AND_ASSIGN(
      resp,
      parent->Call(MakeRequest(PW_OP_CLONE, 0, {CLONE_VM, child_sock}, 2), {}));
  EXPECT_EQ(resp.result, -EINVAL);
  ASSERT_OK_AND_ASSIGN(
      resp,
      parent->Call(
          MakeRequest(PW_OP_CLONE, 0, {0, PW_AGENT_DEFAULT_SOCKET_FD}, 3), {}));
  EXPECT_EQ(resp.result, -EBUSY);
  ASSERT_OK_AND_ASSIGN(
      resp, parent->Call(MakeRequest(PW_OP_CLONE, 0, {0, 9999}, 4), {}));
  EXPECT_EQ(resp.result, -EBADF);

  std::vector<UniqueFd> fds;
  ASSERT_OK_AND_ASSIGN(
      resp,
      parent->Call(MakeRequest(PW_OP_CLONE, 0, {CLONE_PARENT, child_sock}, 5),
                   {}, -1, &fds));
  ASSERT_GT(resp.result, 0);
  ASSERT_EQ(fds.size(), 1u);  // the child's pidfd
  const pid_t child_pid = static_cast<pid_t>(resp.result);
  std::unique_ptr<Agent> child = Agent::Adopt(child_pid, std::move(ours));
  ASSERT_OK_AND_ASSIGN(pw_agent_hello hello, child->ReadHello());
  EXPECT_EQ(hello.pid, child_pid);
  EXPECT_EQ(hello.socket_fd, static_cast<int32_t>(child_sock));
  ASSERT_OK_AND_ASSIGN(int64_t pid, child->Syscall(SYS_getpid));
  EXPECT_EQ(pid, child_pid);
  ASSERT_OK_AND_ASSIGN(int64_t ppid, child->Syscall(SYS_getppid));
  EXPECT_EQ(ppid, getpid());  // CLONE_PARENT

  // Copied fd tables: each keeps only its own socket, close-on-exec.
  ASSERT_OK_AND_ASSIGN(
      int64_t r,
      child->Syscall(SYS_fcntl, {PW_AGENT_DEFAULT_SOCKET_FD, F_GETFD}));
  EXPECT_EQ(r, -EBADF);
  ASSERT_OK_AND_ASSIGN(r, child->Syscall(SYS_fcntl, {child_sock, F_GETFD}));
  EXPECT_EQ(r, FD_CLOEXEC);
  ASSERT_OK_AND_ASSIGN(r, parent->Syscall(SYS_fcntl, {child_sock, F_GETFD}));
  EXPECT_EQ(r, -EBADF);
  ASSERT_OK_AND_ASSIGN(
      r, parent->Syscall(SYS_fcntl, {PW_AGENT_DEFAULT_SOCKET_FD, F_GETFD}));
  EXPECT_EQ(r, FD_CLOEXEC);

  // The pidfd names the child: it sees it exit.
  ASSERT_OK_AND_ASSIGN(resp,
                       child->Call(MakeRequest(PW_OP_EXIT, 0, {5}, 6), {}));
  pollfd pfd = {fds[0].get(), POLLIN, 0};
  EXPECT_EQ(poll(&pfd, 1, 10000), 1);
  ASSERT_OK_AND_ASSIGN(int status, child->Wait());
  EXPECT_EQ(ExitDescription(status), "exit 5");
  ASSERT_OK_AND_ASSIGN(pid, parent->Syscall(SYS_getpid));
  EXPECT_EQ(pid, parent->pid());
}

TEST(AgentTest, ElfIsStaticPieWithoutInterpreterTlsOrRelocations) {
  std::ifstream in(kAgentPath, std::ios::binary);
  ASSERT_TRUE(in) << kAgentPath;
  const std::string elf((std::istreambuf_iterator<char>(in)),
                        std::istreambuf_iterator<char>());
  ASSERT_GE(elf.size(), sizeof(Elf64_Ehdr));
  Elf64_Ehdr eh;
  memcpy(&eh, elf.data(), sizeof(eh));
  ASSERT_EQ(memcmp(eh.e_ident, ELFMAG, SELFMAG), 0);
  ASSERT_EQ(eh.e_ident[EI_CLASS], ELFCLASS64);
  EXPECT_EQ(eh.e_machine, EM_X86_64);
  EXPECT_EQ(eh.e_type, ET_DYN) << "not position-independent";
  ASSERT_EQ(eh.e_phentsize, sizeof(Elf64_Phdr));
  ASSERT_LE(eh.e_phoff + eh.e_phnum * sizeof(Elf64_Phdr), elf.size());

  bool has_load = false;
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    memcpy(&ph, elf.data() + eh.e_phoff + i * sizeof(ph), sizeof(ph));
    EXPECT_NE(ph.p_type, PT_INTERP) << "has a dynamic loader";
    EXPECT_NE(ph.p_type, PT_TLS) << "has thread-local storage";
    if (ph.p_type == PT_LOAD) has_load = true;
    if (ph.p_type == PT_GNU_STACK) {
      EXPECT_EQ(ph.p_flags & PF_X, 0u) << "executable stack";
    }
    if (ph.p_type != PT_DYNAMIC) continue;
    // Nothing in the agent applies relocations, so there must be none, and
    // no libraries.
    ASSERT_LE(ph.p_offset + ph.p_filesz, elf.size());
    for (size_t off = 0; off + sizeof(Elf64_Dyn) <= ph.p_filesz;
         off += sizeof(Elf64_Dyn)) {
      Elf64_Dyn dyn;
      memcpy(&dyn, elf.data() + ph.p_offset + off, sizeof(dyn));
      if (dyn.d_tag == DT_NULL) break;
      EXPECT_NE(dyn.d_tag, DT_NEEDED);
      EXPECT_NE(dyn.d_tag, DT_TEXTREL);
      if (dyn.d_tag == DT_RELASZ || dyn.d_tag == DT_RELSZ ||
          dyn.d_tag == DT_PLTRELSZ || dyn.d_tag == 35 /* DT_RELRSZ */) {
        EXPECT_EQ(dyn.d_un.d_val, 0u) << "relocations, tag " << dyn.d_tag;
      }
    }
  }
  EXPECT_TRUE(has_load);
}

}  // namespace
}  // namespace procwarp::agent
