// attack_client: runs, as an unprivileged caller, the attacks on agent
// threads that thread_security_test.cc checks (each one reproduced an
// escalation before the fix), and their legitimate counterparts. It becomes
// the given user before gRPC starts any thread, then prints one line per step:
//
//   KEY CODE [message] [details]
//
// CODE being the gRPC status code name (or a value for plain facts).
//
//   attack_client --socket S --uid U --gid G [--groups G1,G2...] OP [ARGS...]
//   OP: forged_clone TARGET_PID     answer a CLONE request on the taken-over
//                                   socket of its own agent with a pidfd of
//                                   TARGET_PID
//       forged_clone_own_thread     ... naming its own other (child) thread
//       forged_clone_own_process    ... naming a process it spawned
//       raw_exec PROBE FILE [become-root]
//                                   Syscall(execve) of PROBE in a thread
//                                   (tests/testcases/pw_setuid_probe), then
//                                   every privileged operation on it
//       normal_thread FILE          the same operations on a normal thread
//       userns_setgroups FILE       setgroups(0, NULL) in a user-namespaced
//                                   child thread, and FILE (mode 0604 with a
//                                   group of the caller) opened around it
//       traced_exit                 ExitThread of a thread whose agent it
//                                   ptraces (holding its exit back)
//       create_thread               creates and ends one thread
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/protocol.h"
#include "common/fd_passing.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/procwarp/v1/files.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/peer_args.h"
#include "tests/integration/test_channel.h"

namespace {

using procwarp::testing::Ctx;
using procwarp::testing::NewUnixChannel;
using procwarp::testing::CodeName;

namespace v1 = procwarp::v1;

std::string socket_path;

void Report(const std::string& key, const grpc::Status& s,
            const std::string& details = "") {
  printf("%s %s%s%s\n", key.c_str(), CodeName(s).c_str(),
         s.ok() ? "" : (" " + s.error_message()).c_str(),
         details.empty() ? "" : (" " + details).c_str());
  fflush(stdout);
}

void Fact(const std::string& key, const std::string& value) {
  printf("%s %s\n", key.c_str(), value.c_str());
  fflush(stdout);
}

class Api {
 public:
  Api() {
    auto channel = NewUnixChannel(socket_path);
    threads = v1::Threads::NewStub(channel);
    memory = v1::Memory::NewStub(channel);
    files = v1::Files::NewStub(channel);
    processes = v1::Processes::NewStub(channel);
  }

  grpc::Status Create(const v1::CreateThreadRequest& request,
                      v1::ThreadInfo* out) {
    v1::CreateThreadResponse response;
    grpc::Status s = threads->CreateThread(Ctx().get(), request, &response);
    *out = response.thread();
    return s;
  }

  v1::ThreadInfo MustCreate(const v1::CreateThreadRequest& request = {}) {
    v1::ThreadInfo thread;
    grpc::Status s = Create(request, &thread);
    if (!s.ok()) {
      Report("setup_create", s);
      exit(1);
    }
    return thread;
  }

  // The syscall's result (-errno on failure); RPC errors are reported under
  // `key` (when given) and give -1000.
  int64_t Sys(const std::string& thread, int64_t nr, std::vector<int64_t> args,
              const std::string& key = "") {
    v1::SyscallRequest request;
    request.set_thread_id(thread);
    request.mutable_syscall()->set_number(nr);
    for (int64_t a : args) request.mutable_syscall()->add_args(a);
    v1::SyscallResponse response;
    grpc::Status s = threads->Syscall(Ctx().get(), request, &response);
    if (!key.empty()) Report(key, s);
    if (!s.ok()) return -1000;
    return response.result().error() != 0 ? -response.result().error()
                                          : response.result().value();
  }

  v1::Pointer Allocate(const std::string& thread, uint64_t size) {
    v1::AllocateRequest request;
    request.set_thread_id(thread);
    request.set_size(size);
    v1::AllocateResponse response;
    grpc::Status s = memory->Allocate(Ctx().get(), request, &response);
    if (!s.ok()) {
      Report("setup_allocate", s);
      exit(1);
    }
    return response.pointer();
  }

  grpc::Status Write(const v1::Pointer& p, const std::string& data,
                     uint64_t offset = 0) {
    v1::WriteMemoryRequest request;
    request.set_pointer_id(p.id());
    request.set_offset(offset);
    request.set_data(data);
    v1::WriteMemoryResponse response;
    return memory->Write(Ctx().get(), request, &response);
  }

  grpc::Status Read(const v1::Pointer& p, uint64_t length, std::string* out) {
    v1::ReadMemoryRequest request;
    request.set_pointer_id(p.id());
    request.set_length(length);
    v1::ReadMemoryResponse response;
    grpc::Status s = memory->Read(Ctx().get(), request, &response);
    *out = response.data();
    return s;
  }

  grpc::Status ReadStream(const v1::Pointer& p, uint64_t length,
                          std::string* out) {
    v1::ReadMemoryRequest request;
    request.set_pointer_id(p.id());
    request.set_length(length);
    auto ctx = Ctx();
    auto reader = memory->ReadStream(ctx.get(), request);
    v1::ReadMemoryChunk chunk;
    while (reader->Read(&chunk)) out->append(chunk.data());
    return reader->Finish();
  }

  grpc::Status WriteStream(const v1::Pointer& p, const std::string& data) {
    auto ctx = Ctx();
    v1::WriteMemoryResponse response;
    auto writer = memory->WriteStream(ctx.get(), &response);
    v1::WriteMemoryRequest request;
    request.set_pointer_id(p.id());
    request.set_data(data);
    writer->Write(request);
    writer->WritesDone();
    return writer->Finish();
  }

  // `s` NUL-terminated in fresh thread memory; its address.
  int64_t PutString(const std::string& thread, const std::string& s) {
    v1::Pointer p = Allocate(thread, s.size() + 1);
    Write(p, std::string(s.c_str(), s.size() + 1));
    return static_cast<int64_t>(p.address());
  }

  // A NULL-terminated array of `words` in thread memory; its address.
  int64_t PutArray(const std::string& thread, std::vector<int64_t> words) {
    words.push_back(0);
    v1::Pointer p = Allocate(thread, words.size() * 8);
    Write(p, std::string(reinterpret_cast<const char*>(words.data()),
                         words.size() * 8));
    return static_cast<int64_t>(p.address());
  }

  grpc::Status Maps(const std::string& thread, v1::MapsResponse* response) {
    v1::MapsRequest request;
    request.set_thread_id(thread);
    return memory->Maps(Ctx().get(), request, response);
  }

  grpc::Status ListFds(const std::string& thread,
                       v1::ListFdsResponse* response) {
    v1::ListFdsRequest request;
    request.set_thread_id(thread);
    return files->ListFds(Ctx().get(), request, response);
  }

  grpc::Status Export(const std::string& thread, int fd,
                      v1::ExportFdResponse* response) {
    v1::ExportFdRequest request;
    request.set_thread_id(thread);
    request.set_fd(fd);
    return files->ExportFd(Ctx().get(), request, response);
  }

  grpc::Status Transfer(const std::string& from, int fd,
                        const std::string& to) {
    v1::TransferFdRequest request;
    request.set_source_thread_id(from);
    request.set_source_fd(fd);
    request.set_target_thread_id(to);
    v1::TransferFdResponse response;
    return files->TransferFd(Ctx().get(), request, &response);
  }

  grpc::Status Exit(const std::string& thread) {
    v1::ExitThreadRequest request;
    request.set_id(thread);
    v1::ExitThreadResponse response;
    return threads->ExitThread(Ctx().get(), request, &response);
  }

  grpc::Status Get(const std::string& thread, v1::ThreadInfo* out) {
    v1::GetThreadRequest request;
    request.set_id(thread);
    v1::GetThreadResponse response;
    grpc::Status s = threads->GetThread(Ctx().get(), request, &response);
    *out = response.thread();
    return s;
  }

  std::vector<v1::ThreadInfo> List() {
    v1::ListThreadsResponse response;
    threads->ListThreads(Ctx().get(), {}, &response);
    return {response.threads().begin(), response.threads().end()};
  }

  std::unique_ptr<v1::Threads::Stub> threads;
  std::unique_ptr<v1::Memory::Stub> memory;
  std::unique_ptr<v1::Files::Stub> files;
  std::unique_ptr<v1::Processes::Stub> processes;
};

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

// Fd `fd` of process `pid` (one of the caller's own), or -1.
int TakeFd(pid_t pid, int fd) {
  int pidfd = PidfdOpen(pid);
  if (pidfd < 0) return -1;
  int copy = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0));
  close(pidfd);
  return copy;
}

// Reads exactly `len` bytes (collecting at most one passed fd into *fd).
bool ReadExactly(int socket, void* data, size_t len, int* fd) {
  size_t done = 0;
  while (done < len) {
    int got_fd = -1;
    ssize_t n = procwarp::ReceiveWithFd(socket, static_cast<char*>(data) + done,
                                        len - done, &got_fd);
    if (got_fd >= 0) {
      if (fd != nullptr && *fd < 0) {
        *fd = got_fd;
      } else {
        close(got_fd);
      }
    }
    if (n <= 0) return false;
    done += n;
  }
  return true;
}

char ProcessState(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  size_t close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size()
             ? '?'
             : text[close + 2];
}

// Takes over `parent`'s agent socket, parks the real agent, asks for a child
// thread of `parent` and answers the agent's side of it with a pidfd of
// `target`. Reports under `key`.
void ForgeClone(Api& api, const v1::ThreadInfo& parent, pid_t target,
                const std::string& key) {
  auto handles_on_target = [&] {
    int n = 0;
    for (const auto& t : api.List()) n += t.pid() == target ? 1 : 0;
    return n;
  };
  const int handles_before = handles_on_target();
  int sock = TakeFd(parent.pid(), PW_AGENT_DEFAULT_SOCKET_FD);
  int target_pidfd = PidfdOpen(target);
  if (sock < 0 || target_pidfd < 0) {
    Fact(key + "_setup", absl::StrCat("FAILED errno=", errno));
    return;
  }
  // Parked (stopped) before any request reaches it, so the requests are ours.
  kill(parent.pid(), SIGSTOP);
  for (absl::Time end = absl::Now() + absl::Seconds(20);
       ProcessState(parent.pid()) != 'T' && absl::Now() < end;) {
    sched_yield();
  }
  grpc::Status created;
  v1::ThreadInfo child;
  std::thread asker([&] {
    v1::CreateThreadRequest request;
    request.set_parent_thread_id(parent.id());
    created = api.Create(request, &child);
  });
  // RECV_FD (carrying the child's socket): say it went to fd 100.
  pw_agent_request request{};
  int passed = -1;
  bool ok = ReadExactly(sock, &request, sizeof(request), &passed);
  pw_agent_response response{};
  response.result = 100;
  response.tag = request.tag;
  response.op = request.op;
  ok = ok && request.op == PW_OP_RECV_FD &&
       procwarp::SendWithFd(sock, &response, sizeof(response), -1) ==
           sizeof(response);
  // CLONE: "here is the child", with the target's pidfd.
  ok = ok && ReadExactly(sock, &request, sizeof(request), nullptr) &&
       request.op == PW_OP_CLONE;
  response.result = target;
  response.tag = request.tag;
  response.op = request.op;
  ok = ok && procwarp::SendWithFd(sock, &response, sizeof(response),
                                  target_pidfd) == sizeof(response);
  // And the "child's" hello on the child socket the daemon handed over, so a
  // daemon that believed the reply would have a working thread on it. (A
  // daemon that refused the reply may have closed its end already.)
  pw_agent_hello hello{};
  hello.magic = PW_AGENT_MAGIC;
  hello.version = PW_AGENT_PROTOCOL_VERSION;
  hello.hello_size = sizeof(pw_agent_hello);
  hello.request_size = sizeof(pw_agent_request);
  hello.response_size = sizeof(pw_agent_response);
  hello.pid = target;
  hello.socket_fd = 100;
  if (ok && passed >= 0) send(passed, &hello, sizeof(hello), MSG_NOSIGNAL);
  Fact(key + "_protocol", ok ? "spoken" : "FAILED");
  asker.join();
  Report(key + "_create", created, absl::StrCat("child_pid=", child.pid()));
  // A new handle on the target (its own thread, if it is one, was there).
  Fact(key + "_handle_on_target",
       handles_on_target() > handles_before ? "yes" : "no");
  v1::ThreadInfo info;
  api.Get(parent.id(), &info);
  Fact(key + "_parent_state", v1::ThreadState_Name(info.state()));
  api.Sys(parent.id(), SYS_getpid, {}, key + "_parent_syscall");
  if (passed >= 0) close(passed);
  close(sock);
  close(target_pidfd);
}

int ForgedClone(pid_t target) {
  Api api;
  ForgeClone(api, api.MustCreate(), target, "forged");
  return 0;
}

int ForgedCloneOwnThread() {
  Api api;
  v1::ThreadInfo first = api.MustCreate();
  v1::CreateThreadRequest request;
  request.set_parent_thread_id(first.id());
  v1::ThreadInfo legit;
  Report("legit_child", api.Create(request, &legit));
  ForgeClone(api, api.MustCreate(), legit.pid(), "forged");
  // The real child thread is untouched and still works.
  int64_t pid = api.Sys(legit.id(), SYS_getpid, {}, "legit_child_after");
  Fact("legit_child_pid_matches", pid == legit.namespace_pid() ? "yes" : "no");
  return 0;
}

int ForgedCloneOwnProcess() {
  Api api;
  v1::SpawnRequest spawn;
  spawn.add_argv("/bin/sleep");
  spawn.add_argv("1000");
  v1::SpawnResponse spawned;
  grpc::Status s = api.processes->Spawn(Ctx().get(), spawn, &spawned);
  Report("spawn", s);
  if (!s.ok()) return 1;
  ForgeClone(api, api.MustCreate(), spawned.process().pid(), "forged");
  v1::SignalRequest kill_it;
  kill_it.set_id(spawned.process().id());
  kill_it.set_signal(SIGKILL);
  v1::SignalResponse killed;
  api.processes->Signal(Ctx().get(), kill_it, &killed);
  return 0;
}

// Every privileged operation on `thread` (whose fd `fd` holds `file`'s file,
// and `pointer` some memory), reported under its name.
void PrivilegedOperations(Api& api, const std::string& thread, int fd,
                          const v1::Pointer& pointer) {
  v1::MapsResponse maps;
  Report("maps", api.Maps(thread, &maps),
         absl::StrCat("n=", maps.mappings_size()));
  v1::ListFdsResponse fds;
  Report("listfds", api.ListFds(thread, &fds),
         absl::StrCat("n=", fds.fds_size()));
  v1::ExportFdResponse exported;
  grpc::Status s = api.Export(thread, fd, &exported);
  std::string content;
  if (s.ok()) {
    // Redeem the token on the side socket and read what came.
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s",
             exported.side_socket_path().c_str());
    int side = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int32_t reply = -1;
    int received = -1;
    if (connect(side, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        procwarp::SendWithFd(side, exported.token().data(),
                             exported.token().size(), -1) > 0 &&
        procwarp::ReceiveWithFd(side, &reply, sizeof(reply), &received) > 0 &&
        received >= 0) {
      char buf[256];
      ssize_t n = pread(received, buf, sizeof(buf), 0);
      if (n > 0) content.assign(buf, strnlen(buf, n));
      close(received);
    }
    close(side);
  }
  Report("export", s, absl::StrCat("content=[", content, "]"));
  v1::ThreadInfo other = api.MustCreate();
  Report("transfer", api.Transfer(thread, fd, other.id()));
  api.Exit(other.id());
  std::string data;
  s = api.Read(pointer, 64, &data);
  Report("read", s, absl::StrCat("data=[", data.c_str(), "]"));
  data.clear();
  s = api.ReadStream(pointer, 64, &data);
  Report("readstream", s, absl::StrCat("data=[", data.c_str(), "]"));
  Report("write", api.Write(pointer, "overwritten"));
  Report("writestream", api.WriteStream(pointer, "overwritten"));
}

int RawExec(const std::string& probe, const std::string& file,
            bool become_root) {
  Api api;
  v1::ThreadInfo thread = api.MustCreate();
  Fact("pid", absl::StrCat(thread.pid()));
  v1::Pointer pointer = api.Allocate(thread.id(), 4096);
  api.Write(pointer, "agent data");
  // A pipe whose write end the program inherits, to say it is ready.
  v1::Pointer pipe_fds = api.Allocate(thread.id(), 8);
  api.Sys(thread.id(), SYS_pipe2,
          {static_cast<int64_t>(pipe_fds.address()), 0});
  std::string raw;
  api.Read(pipe_fds, 8, &raw);
  int fds[2] = {-1, -1};
  if (raw.size() == 8) memcpy(fds, raw.data(), 8);
  int ready = TakeFd(thread.pid(), fds[0]);
  if (ready < 0) {
    Fact("setup_pipe", "FAILED");
    return 1;
  }
  std::vector<int64_t> argv = {
      api.PutString(thread.id(), probe), api.PutString(thread.id(), file),
      api.PutString(thread.id(), absl::StrCat(fds[1])),
      api.PutString(thread.id(), absl::StrCat(absl::Hex(pointer.address())))};
  if (become_root) argv.push_back(api.PutString(thread.id(), "become-root"));
  const int64_t argv_address = api.PutArray(thread.id(), argv);
  const int64_t envp_address = api.PutArray(thread.id(), {});
  // Raw execve: the agent is replaced, its socket closes, no reply comes.
  api.Sys(thread.id(), SYS_execve, {argv[0], argv_address, envp_address},
          "execve");
  std::string line;
  pollfd pfd = {ready, POLLIN, 0};
  char c;
  while (poll(&pfd, 1, 20000) == 1 && read(ready, &c, 1) == 1 && c != '\n') {
    line.push_back(c);
  }
  close(ready);
  Fact("probe", line);
  int fd = -1;
  absl::SimpleAtoi(absl::StripPrefix(line, "fd="), &fd);
  PrivilegedOperations(api, thread.id(), fd < 0 ? 0 : fd, pointer);
  Report("exit", api.Exit(thread.id()));
  return 0;
}

int NormalThread(const std::string& file) {
  Api api;
  v1::ThreadInfo thread = api.MustCreate();
  v1::Pointer pointer = api.Allocate(thread.id(), 4096);
  api.Write(pointer, "agent data");
  int64_t fd = api.Sys(thread.id(), SYS_openat,
                       {AT_FDCWD, api.PutString(thread.id(), file), O_RDONLY});
  PrivilegedOperations(api, thread.id(), static_cast<int>(fd), pointer);
  std::string data;
  api.Read(pointer, 11, &data);
  Fact("read_after_write", data);
  Report("exit", api.Exit(thread.id()));
  return 0;
}

int UsernsSetgroups(const std::string& file) {
  Api api;
  v1::ThreadInfo parent = api.MustCreate();
  v1::CreateThreadRequest request;
  request.set_parent_thread_id(parent.id());
  request.mutable_namespaces()->set_user(true);
  v1::ThreadInfo child;
  Report("child", api.Create(request, &child));
  Fact("child_pid", absl::StrCat(child.pid()));
  auto open_result = [&](const std::string& thread) {
    int64_t r = api.Sys(thread, SYS_openat,
                        {AT_FDCWD, api.PutString(thread, file), O_RDONLY});
    return r >= 0 ? std::string("OK") : std::string(strerrorname_np(-r));
  };
  Fact("parent_open", open_result(parent.id()));
  Fact("child_uid", absl::StrCat(api.Sys(child.id(), SYS_getuid, {})));
  int64_t r = api.Sys(child.id(), SYS_setgroups, {0, 0});
  Fact("setgroups", r == 0 ? "0" : strerrorname_np(-r));
  Fact("child_open", open_result(child.id()));
  // What a user namespace is for still works: root's powers inside it.
  Fact("child_setresgid",
       absl::StrCat(api.Sys(child.id(), SYS_setresgid, {0, 0, 0})));
  Fact("child_setresuid",
       absl::StrCat(api.Sys(child.id(), SYS_setresuid, {0, 0, 0})));
  return 0;
}

// Traces its own thread's agent (as any owner may) so that the agent's exit
// is held back from the daemon, then ends the thread: the daemon must not
// wait for it forever, and must reap it once the tracer lets go.
int TracedExit() {
  Api api;
  v1::ThreadInfo thread = api.MustCreate();
  const pid_t pid = thread.pid();
  Fact("traced", ptrace(PTRACE_SEIZE, pid, 0, 0) == 0 ? "yes" : "no");
  Report("exit", api.Exit(thread.id()));
  // Let go: as its tracer, collect the exit; the daemon (its parent) can
  // then reap it, which it does when it next counts the owner's threads.
  int status = 0;
  Fact("tracer_wait", waitpid(pid, &status, __WALL) == pid ? "yes" : "no");
  v1::ThreadInfo again;
  Report("create", api.Create({}, &again));
  Fact("reaped", kill(pid, 0) != 0 && errno == ESRCH ? "yes" : "no");
  api.Exit(again.id());
  return 0;
}

int CreateThread() {
  Api api;
  v1::ThreadInfo thread;
  grpc::Status s = api.Create({}, &thread);
  Report("create", s);
  if (s.ok()) Report("exit", api.Exit(thread.id()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  procwarp::testing::PeerArgs peer =
      procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  socket_path = peer.socket_path;
  const std::string& op = peer.op;
  const std::vector<std::string>& rest = peer.rest;
  if (op == "forged_clone" && rest.size() == 1) {
    return ForgedClone(atoi(rest[0].c_str()));
  }
  if (op == "forged_clone_own_thread") return ForgedCloneOwnThread();
  if (op == "forged_clone_own_process") return ForgedCloneOwnProcess();
  if (op == "raw_exec" && rest.size() >= 2) {
    return RawExec(rest[0], rest[1],
                   rest.size() > 2 && rest[2] == "become-root");
  }
  if (op == "normal_thread" && rest.size() == 1) return NormalThread(rest[0]);
  if (op == "userns_setgroups" && rest.size() == 1)
    return UsernsSetgroups(rest[0]);
  if (op == "create_thread") return CreateThread();
  if (op == "traced_exit") return TracedExit();
  return 2;
}
