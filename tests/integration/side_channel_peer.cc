// side_channel_peer: the attacks on the fd side socket and on an agent's
// socket, run by side_channel_security_test as an unprivileged caller
// (--uid/--gid drop privileges before gRPC starts), plus the legitimate use
// each test needs as its positive control.
//
// Talks to the test on stdin/stdout: it prints one line per milestone
// ("connected", "stuck", "result ...") and, where the test must act in
// between, waits for a line (or EOF) on stdin.
//
//   side_channel_peer --socket S [--uid U --gid G] OP [ARGS...]
//   OP: import_ok | silent | trickle DELAY_MS | busy_import |
//       many_connections N | tokens N |
//       fd_flood many_messages|many_in_one|unexpected_fd
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/protocol.h"
#include "common/fd_passing.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/peer_args.h"
#include "tests/integration/test_channel.h"

namespace {

using procwarp::testing::NewUnixChannel;
using procwarp::testing::Ctx;
using procwarp::testing::CodeName;

using procwarp::ReceiveWithFd;
using procwarp::SendWithFd;
using procwarp::v1::Files;
using procwarp::v1::Memory;
using procwarp::v1::Threads;

std::string socket_path;

void Say(const std::string& line) {
  printf("%s\n", line.c_str());
  fflush(stdout);
}

// Blocks until the test writes a line or closes our stdin.
void AwaitTest() {
  char c;
  while (read(0, &c, 1) == 1 && c != '\n') {
  }
}

[[noreturn]] void Fail(const std::string& what) {
  Say("error " + what);
  exit(1);
}

struct Clients {
  std::shared_ptr<grpc::Channel> channel = NewUnixChannel(socket_path);
  std::unique_ptr<Threads::Stub> threads = Threads::NewStub(channel);
  std::unique_ptr<Files::Stub> files = Files::NewStub(channel);
  std::unique_ptr<Memory::Stub> memory = Memory::NewStub(channel);
};

procwarp::v1::ThreadInfo CreateThread(Clients& c) {
  procwarp::v1::CreateThreadResponse created;
  grpc::Status s = c.threads->CreateThread(Ctx(absl::Seconds(20)).get(), {}, &created);
  if (!s.ok()) Fail("CreateThread: " + s.error_message());
  return created.thread();
}

grpc::Status Syscall(Clients& c, const std::string& thread, int64_t nr,
                     const std::vector<int64_t>& args, int64_t* value,
                     absl::Duration timeout = absl::Seconds(20)) {
  procwarp::v1::SyscallRequest request;
  request.set_thread_id(thread);
  request.mutable_syscall()->set_number(nr);
  for (int64_t a : args) request.mutable_syscall()->add_args(a);
  procwarp::v1::SyscallResponse response;
  grpc::Status s = c.threads->Syscall(Ctx(timeout).get(), request, &response);
  *value = response.result().error() != 0 ? -response.result().error()
                                          : response.result().value();
  return s;
}

std::string ImportToken(Clients& c, const std::string& thread,
                        grpc::Status* status) {
  procwarp::v1::ImportFdRequest request;
  request.set_thread_id(thread);
  request.set_target_fd(-1);
  procwarp::v1::ImportFdResponse response;
  *status = c.files->ImportFd(Ctx(absl::Seconds(20)).get(), request, &response);
  return response.token();
}

int ConnectSide() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = socket_path + ".fds";
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) Fail("socket");
  if (connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    Fail(absl::StrCat("connect side socket: ", strerror(errno)));
  }
  return s;
}

// The daemon's int32 reply on `s`, "closed" if it closed without one.
std::string ReadReply(int s) {
  int32_t reply = 0;
  int fd = -1;
  ssize_t n = ReceiveWithFd(s, &reply, sizeof(reply), &fd);
  if (fd >= 0) close(fd);
  if (n != sizeof(reply)) return "closed";
  return absl::StrCat(reply);
}

// A whole, legitimate import of a fresh pipe's write end into `thread`:
// the reply (the thread's fd number, or -errno) or "closed".
std::string ImportPipe(Clients& c, const std::string& thread) {
  grpc::Status status;
  std::string token = ImportToken(c, thread, &status);
  if (!status.ok()) return CodeName(status);
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) Fail("pipe2");
  int s = ConnectSide();
  SendWithFd(s, token.data(), token.size(), p[1]);
  std::string reply = ReadReply(s);
  close(s);
  close(p[0]);
  close(p[1]);
  return reply;
}

// --- the side socket -------------------------------------------------------

// The legitimate use: prints "result <reply>".
int ImportOk() {
  Clients c;
  std::string thread = CreateThread(c).id();
  Say("result " + ImportPipe(c, thread));
  return 0;
}

// Connects and sends nothing. After the test's go: whether the daemon has
// closed the connection meanwhile.
int Silent() {
  int s = ConnectSide();
  Say("connected");
  AwaitTest();
  pollfd pfd = {s, POLLIN, 0};
  bool closed = poll(&pfd, 1, 0) == 1 && ReadReply(s) == "closed";
  Say(closed ? "result closed" : "result open");
  return 0;
}

// Redeems a real ImportFd token one byte every `delay_ms` (the attack's own
// pace), the fd riding on the first byte. Reports how many bytes went in
// before the daemon closed the connection, and what it answered.
int Trickle(int delay_ms) {
  Clients c;
  std::string thread = CreateThread(c).id();
  grpc::Status status;
  std::string token = ImportToken(c, thread, &status);
  if (!status.ok()) Fail("ImportFd: " + status.error_message());
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) Fail("pipe2");
  int s = ConnectSide();
  size_t sent = 0;
  bool closed = false;
  for (; sent < token.size(); ++sent) {
    if (sent > 0) {
      // Closed by the daemon while we wait? Then stop.
      pollfd pfd = {s, POLLIN, 0};
      if (poll(&pfd, 1, delay_ms) == 1) {
        closed = true;
        break;
      }
    }
    if (SendWithFd(s, token.data() + sent, 1, sent == 0 ? p[1] : -1) != 1) {
      closed = true;
      break;
    }
    if (sent == 0) Say("connected");
  }
  std::string reply = ReadReply(s);
  Say(absl::StrCat("result sent=", sent, " reply=", reply,
                   closed ? " cut_off" : ""));
  return 0;
}

// Keeps its own thread busy in a write() that fills a pipe, then redeems an
// ImportFd token for that thread: the redemption has to wait for the agent.
// Prints "stuck" once the token is in, then the daemon's reply; then frees
// the thread and, as the positive control, imports into it normally.
int BusyImport() {
  Clients c;
  std::string thread = CreateThread(c).id();
  // The write end of a pipe in the thread (the legitimate path).
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) Fail("pipe2");
  grpc::Status status;
  std::string token = ImportToken(c, thread, &status);
  if (!status.ok()) Fail("ImportFd: " + status.error_message());
  int s = ConnectSide();
  SendWithFd(s, token.data(), token.size(), p[1]);
  std::string installed = ReadReply(s);
  close(s);
  close(p[1]);
  const int64_t thread_fd = atoll(installed.c_str());
  if (installed == "closed" || thread_fd < 0) Fail("import: " + installed);
  // A buffer larger than the pipe: write() blocks once the pipe is full.
  constexpr int64_t kSize = 1 << 20;
  procwarp::v1::AllocateRequest allocate;
  allocate.set_thread_id(thread);
  allocate.set_size(kSize);
  procwarp::v1::AllocateResponse allocated;
  status = c.memory->Allocate(Ctx(absl::Seconds(20)).get(), allocate, &allocated);
  if (!status.ok()) Fail("Allocate: " + status.error_message());
  const int64_t address = static_cast<int64_t>(allocated.pointer().address());
  int64_t written = 0;
  grpc::Status write_status;
  std::thread writer([&] {
    write_status = Syscall(c, thread, SYS_write, {thread_fd, address, kSize},
                           &written, absl::Seconds(120));
  });
  // Data in the pipe: the agent is inside write(), its call holds the
  // thread.
  pollfd pfd = {p[0], POLLIN, 0};
  if (poll(&pfd, 1, -1) != 1) Fail("poll pipe");

  int q[2];
  if (pipe2(q, O_CLOEXEC) != 0) Fail("pipe2");
  token = ImportToken(c, thread, &status);
  if (!status.ok()) Fail("ImportFd: " + status.error_message());
  s = ConnectSide();
  SendWithFd(s, token.data(), token.size(), q[1]);
  Say("stuck");
  Say("reply " + ReadReply(s));
  close(s);

  // Drain the pipe: the write completes and the thread is free again.
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  std::vector<char> buf(65536);
  int64_t drained = 0;
  while (drained < kSize) {
    ssize_t n = read(p[0], buf.data(), buf.size());
    if (n > 0) {
      drained += n;
      continue;
    }
    if (n == 0 || errno != EAGAIN) break;
    pollfd more = {p[0], POLLIN, 0};
    if (poll(&more, 1, 30000) != 1) break;  // the daemon is gone
  }
  writer.join();
  Say(absl::StrCat("result written=", written, " ", CodeName(write_status),
                   " control=", ImportPipe(c, thread)));
  return 0;
}

// Opens `n` side connections and sends nothing. After the test's go,
// reports how many the daemon refused (closed, with or without an -EAGAIN
// reply). The positive control comes first: a normal import.
int ManyConnections(int n) {
  Clients c;
  std::string thread = CreateThread(c).id();
  Say("control " + ImportPipe(c, thread));
  std::vector<int> conns;
  for (int i = 0; i < n; ++i) conns.push_back(ConnectSide());
  Say(absl::StrCat("opened ", conns.size()));
  AwaitTest();
  int refused = 0;
  for (int s : conns) {
    pollfd pfd = {s, POLLIN, 0};
    if (poll(&pfd, 1, 0) == 1) ++refused;
  }
  Say(absl::StrCat("result refused=", refused));
  AwaitTest();
  return 0;
}

// Asks for `n` ImportFd tokens without redeeming any; reports how many it
// got and the first error. Then redeems one and asks again.
int Tokens(int n) {
  Clients c;
  std::string thread = CreateThread(c).id();
  std::vector<std::string> tokens;
  grpc::Status first_error;
  for (int i = 0; i < n; ++i) {
    grpc::Status status;
    std::string token = ImportToken(c, thread, &status);
    if (status.ok()) {
      tokens.push_back(token);
    } else if (first_error.ok()) {
      first_error = status;
    }
  }
  std::string after = "none";
  if (!tokens.empty()) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) Fail("pipe2");
    int s = ConnectSide();
    SendWithFd(s, tokens[0].data(), tokens[0].size(), p[1]);
    ReadReply(s);
    close(s);
    close(p[0]);
    close(p[1]);
    grpc::Status status;
    ImportToken(c, thread, &status);
    after = CodeName(status);
  }
  Say(absl::StrCat("result ok=", tokens.size(), " error=", CodeName(first_error),
                   " after_redeem=", after, " message=",
                   first_error.error_message()));
  return 0;
}

// --- an agent's socket taken over -----------------------------------------

// Sends `data` with `count` copies of `fd` as SCM_RIGHTS, without blocking.
ssize_t SendFds(int socket, const void* data, size_t len, int fd, int count) {
  iovec iov = {const_cast<void*>(data), len};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * count));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * count);
  for (int i = 0; i < count; ++i) {
    memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof(int));
  }
  return sendmsg(socket, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Takes its own agent's socket (pidfd_getfd: it is our own process) and
// answers the daemon with fds it does not expect:
//   many_messages  a byte and an fd per message, as many as the socket takes
//   many_in_one    a well-tagged reply carrying 250 fds
//   unexpected_fd  a well-tagged SYSCALL reply carrying one fd
// The agent itself is held in a ptrace stop so the forged reply is the only
// one. Prints the call's outcome, waits for the test, then creates a new
// thread and uses it (the positive control).
int FdFlood(const std::string& mode) {
  Clients c;
  procwarp::v1::ThreadInfo info = CreateThread(c);
  const pid_t agent = info.pid();
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, agent, 0));
  if (pidfd < 0) Fail(absl::StrCat("pidfd_open: ", strerror(errno)));
  int sock = static_cast<int>(
      syscall(SYS_pidfd_getfd, pidfd, PW_AGENT_DEFAULT_SOCKET_FD, 0));
  if (sock < 0) Fail(absl::StrCat("pidfd_getfd: ", strerror(errno)));
  // Stop the real agent; waitpid says when it has stopped.
  if (ptrace(PTRACE_SEIZE, agent, nullptr, nullptr) != 0 ||
      ptrace(PTRACE_INTERRUPT, agent, nullptr, nullptr) != 0) {
    Fail(absl::StrCat("ptrace: ", strerror(errno)));
  }
  int wstatus = 0;
  if (waitpid(agent, &wstatus, __WALL) != agent) Fail("waitpid agent");
  int dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);

  int flooded = 0;
  if (mode == "many_messages") {
    while (flooded < 100000 && SendFds(sock, "x", 1, dev_null, 1) == 1) {
      ++flooded;
    }
  }
  int64_t value = 0;
  grpc::Status call_status;
  std::thread call([&] {
    call_status = Syscall(c, info.id(), SYS_getpid, {}, &value);
  });
  if (mode != "many_messages") {
    // The request the stopped agent will not read: we do, for its tag.
    pw_agent_request request{};
    size_t got = 0;
    while (got < sizeof(request)) {
      ssize_t n = recv(sock, reinterpret_cast<char*>(&request) + got,
                       sizeof(request) - got, 0);
      if (n <= 0) Fail("recv request");
      got += n;
    }
    pw_agent_response forged{};
    forged.tag = request.tag;
    forged.op = request.op;
    forged.result = 4242;
    int count = mode == "many_in_one" ? 250 : 1;
    if (SendFds(sock, &forged, sizeof(forged), dev_null, count) !=
        static_cast<ssize_t>(sizeof(forged))) {
      Fail(absl::StrCat("sendmsg forged reply: ", strerror(errno)));
    }
    flooded = count;
  }
  call.join();
  Say(absl::StrCat("result flooded=", flooded, " code=", CodeName(call_status),
                   " value=", value, " message=", call_status.error_message()));
  AwaitTest();
  // The positive control: a new thread of ours works.
  procwarp::v1::ThreadInfo fresh = CreateThread(c);
  grpc::Status s = Syscall(c, fresh.id(), SYS_getpid, {}, &value);
  Say(absl::StrCat("control ", CodeName(s), " ",
                   value == fresh.namespace_pid() ? "pid_ok" : "pid_wrong"));
  close(sock);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  procwarp::testing::PeerArgs peer =
      procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  socket_path = peer.socket_path;
  signal(SIGPIPE, SIG_IGN);
  const std::string& op = peer.op;
  const int n = peer.rest.empty() ? 0 : atoi(peer.rest[0].c_str());
  if (op == "import_ok") return ImportOk();
  if (op == "silent") return Silent();
  if (op == "trickle") return Trickle(n);
  if (op == "busy_import") return BusyImport();
  if (op == "many_connections") return ManyConnections(n);
  if (op == "tokens") return Tokens(n);
  if (op == "fd_flood" && !peer.rest.empty()) return FdFlood(peer.rest[0]);
  return 2;
}
