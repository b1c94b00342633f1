// Fuzzes the agent reply decoder (AgentConnection) as the daemon meets it:
// over a real socketpair, with real SCM_RIGHTS fds, the input playing an
// agent taken over by its caller. The input chooses a batch of requests and
// the bytes and fds written back; every outcome must be replies or a clean
// UNAVAILABLE, never a crash, an out-of-bounds copy, a leaked fd or a read
// past what a READ_MEM asked for. agent_connection_hostile_test.cc has the
// hand-written cases; see docs/fuzzing.md.
//
// Input: byte 0: bit 7 = the hello comes from the input too; bits 0-2 =
// requests in the batch - 1. One byte per request: its op (low 3 bits) and,
// for READ_MEM, its size (high 5 bits). Then segments until the input ends:
// a header byte (low 2 bits: how many fds ride along), a length byte, and
// that many bytes (fewer at the end), each segment one sendmsg.
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "agent/protocol.h"
#include "daemon/thread/agent_connection.h"

namespace procwarp {
namespace {

constexpr uint32_t kOps[] = {PW_OP_SYSCALL, PW_OP_READ_MEM, PW_OP_WRITE_MEM,
                             PW_OP_SEND_FD, PW_OP_RECV_FD,  PW_OP_EXIT,
                             PW_OP_CLONE,   PW_OP_SYSCALL};

// Stands for the agent's process. A zombie, never reaped: its pidfd stays
// valid, polls as exited (so the decoder never waits for it), and the
// SIGKILL a violation sends it is harmless, so one serves every input.
int StandInPidfd() {
  static int pidfd = [] {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) std::abort();
    return fd;
  }();
  return pidfd;
}

int DevNull() {
  static int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return fd;
}

int CountOwnFds() {
  DIR* dir = opendir("/proc/self/fd");
  int n = 0;
  while (readdir(dir) != nullptr) ++n;
  closedir(dir);
  return n;
}

void Send(int socket, const uint8_t* data, size_t size, int fd_count) {
  iovec iov = {const_cast<uint8_t*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)] = {};
  if (fd_count > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
    for (int i = 0; i < fd_count; ++i) {
      int fd = DevNull();
      memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof(int));
    }
  }
  // Fuzz inputs are small next to the socket buffer: nothing blocks.
  (void)sendmsg(socket, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

std::string GoodHello() {
  pw_agent_hello hello{};
  hello.magic = PW_AGENT_MAGIC;
  hello.version = PW_AGENT_PROTOCOL_VERSION;
  hello.hello_size = sizeof(pw_agent_hello);
  hello.request_size = sizeof(pw_agent_request);
  hello.response_size = sizeof(pw_agent_response);
  hello.pid = 1;
  hello.socket_fd = PW_AGENT_DEFAULT_SOCKET_FD;
  return std::string(reinterpret_cast<const char*>(&hello), sizeof(hello));
}

void Fail(const char* what) {
  std::fprintf(stderr, "agent reply fuzzer: %s\n", what);
  std::abort();
}

void RunOne(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const bool own_hello = data[0] & 0x80;
  const size_t count = (data[0] & 7) + 1;
  size_t at = 1;
  if (size < at + count) return;
  // READ_MEM buffers of exactly the size asked for: ASan reports any byte
  // the decoder writes past it.
  std::vector<std::unique_ptr<char[]>> buffers;
  std::vector<AgentCall> calls(count);
  for (size_t i = 0; i < count; ++i, ++at) {
    calls[i].op = kOps[data[at] & 7];
    if (calls[i].op == PW_OP_READ_MEM) {
      calls[i].args[1] = data[at] >> 3;
      buffers.emplace_back(new char[calls[i].args[1]]);
      calls[i].read_into = buffers.back().get();
    }
  }

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) Fail("socketpair");
  UniqueFd daemon_end(sv[0]);
  UniqueFd agent_end(sv[1]);
  if (!own_hello) {
    const std::string hello = GoodHello();
    Send(agent_end.get(), reinterpret_cast<const uint8_t*>(hello.data()),
         hello.size(), 0);
  }
  while (at + 2 <= size) {
    const int fds = data[at] & 3;
    const size_t length = std::min<size_t>(data[at + 1], size - at - 2);
    Send(agent_end.get(), data + at + 2, length, fds);
    at += 2 + length;
  }
  // EOF after the input: the decoder never waits for more.
  agent_end.Reset();

  auto connection =
      AgentConnection::Open(std::move(daemon_end), StandInPidfd(), "fuzz agent");
  if (!connection.ok()) {
    if (!absl::IsUnavailable(connection.status()) &&
        !absl::IsInternal(connection.status())) {
      Fail("Open failed with an unexpected code");
    }
    return;
  }
  for (int round = 0; round < 2; ++round) {
    std::vector<AgentReply> replies;
    absl::Status status = (*connection)->Run(calls, &replies);
    if (status.ok()) {
      for (size_t i = 0; i < count; ++i) {
        const bool fd_expected =
            (calls[i].op == PW_OP_SEND_FD || calls[i].op == PW_OP_CLONE) &&
            replies[i].result >= 0;
        if (replies[i].fd.valid() != fd_expected) {
          Fail("an fd where the protocol has none, or none where it has one");
        }
      }
    } else if (!absl::IsUnavailable(status)) {
      Fail("Run failed with a code other than UNAVAILABLE");
    }
  }
}

}  // namespace
}  // namespace procwarp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Opened once, before the baseline is taken.
  procwarp::StandInPidfd();
  procwarp::DevNull();
  const int before = procwarp::CountOwnFds();
  procwarp::RunOne(data, size);
  if (procwarp::CountOwnFds() != before) procwarp::Fail("an fd leaked");
  return 0;
}
