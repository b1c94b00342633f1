// attach_peer: a client of the attach API for attach_test.cc that runs as
// another uid (the test starts it as 65534) or must be killed mid-call (a
// caller that disconnects). Prints one line per step, "KEY CODE [message]"
// or "KEY VALUE", flushed at once.
//
//   attach_peer [--uid U] SOCKET OP ARGS...: becomes uid/gid U (no
//   supplementary groups) first, before gRPC starts any thread.
//
//   attach_peer SOCKET attach PID
//       AttachThread(PID); when it works, an injected getpid and ExitThread.
//   attach_peer SOCKET setuid_exec TARGET SETUID_COPY
//       starts its own TARGET ("read" mode), attaches to it, and makes it
//       execve SETUID_COPY (a setuid-root copy of the target, "read" mode)
//       through injected syscalls; then tries the handle and a fresh attach.
//   attach_peer SOCKET undumpable PID
//       attaches, injects prctl(PR_SET_DUMPABLE, 0) into its own process,
//       then tries getpid and Maps (its authority is checked at each call).
//   attach_peer SOCKET block PID
//       attaches (not persistent), prints "attached", then injects a read of
//       the target's stdin that blocks until the peer is killed.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/peer_args.h"
#include "tests/integration/test_channel.h"

namespace {

namespace v1 = procwarp::v1;

using procwarp::testing::Ctx;

void Report(const std::string& key, const grpc::Status& s,
            const std::string& details = "") {
  printf("%s %s%s%s\n", key.c_str(),
         procwarp::testing::CodeName(s).c_str(),
         s.ok() ? "" : (" " + s.error_message()).c_str(),
         details.empty() ? "" : (" " + details).c_str());
  fflush(stdout);
}

struct Api {
  explicit Api(const std::string& socket) {
    auto channel = procwarp::testing::NewUnixChannel(socket);
    threads = v1::Threads::NewStub(channel);
    memory = v1::Memory::NewStub(channel);
  }

  grpc::Status Attach(pid_t pid, v1::ThreadInfo* info) {
    v1::AttachThreadRequest request;
    request.set_pid(pid);
    v1::AttachThreadResponse response;
    grpc::Status s = threads->AttachThread(Ctx().get(), request, &response);
    *info = response.thread();
    return s;
  }

  grpc::Status Allocate(const std::string& id, v1::Pointer* pointer) {
    v1::AllocateRequest request;
    request.set_thread_id(id);
    request.set_size(4096);
    v1::AllocateResponse response;
    grpc::Status s = memory->Allocate(Ctx().get(), request, &response);
    *pointer = response.pointer();
    return s;
  }

  grpc::Status Exit(const std::string& id) {
    v1::ExitThreadRequest request;
    request.set_id(id);
    v1::ExitThreadResponse response;
    return threads->ExitThread(Ctx().get(), request, &response);
  }

  grpc::Status Syscall(const std::string& id, int64_t nr,
                       std::vector<int64_t> args, v1::SyscallResult* result) {
    v1::SyscallRequest request;
    request.set_thread_id(id);
    request.mutable_syscall()->set_number(nr);
    for (int64_t a : args) request.mutable_syscall()->add_args(a);
    v1::SyscallResponse response;
    grpc::Status s = threads->Syscall(Ctx().get(), request, &response);
    *result = response.result();
    return s;
  }

  std::unique_ptr<v1::Threads::Stub> threads;
  std::unique_ptr<v1::Memory::Stub> memory;
};

int Attach(Api& api, pid_t pid) {
  v1::ThreadInfo info;
  grpc::Status s = api.Attach(pid, &info);
  Report("attach", s);
  if (!s.ok()) return 0;
  v1::SyscallResult result;
  s = api.Syscall(info.id(), SYS_getpid, {}, &result);
  Report("getpid", s, absl::StrCat(result.value()));
  Report("exit", api.Exit(info.id()));
  return 0;
}

// Starts `target read` with a stdin pipe (kept open) and waits for its
// ready line.
pid_t StartTarget(const std::string& target) {
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execl(target.c_str(), target.c_str(), "read", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') {
  }
  return pid;
}

int SetuidExec(Api& api, const std::string& target, const std::string& copy) {
  pid_t pid = StartTarget(target);
  printf("target_pid %d\n", pid);
  fflush(stdout);
  v1::ThreadInfo info;
  grpc::Status s = api.Attach(pid, &info);
  Report("attach", s);
  if (!s.ok()) return 1;
  // argv and the path in memory of the target: [argv0, "read", NULL] + strings.
  v1::Pointer pointer;
  s = api.Allocate(info.id(), &pointer);
  Report("allocate", s);
  if (!s.ok()) return 1;
  const uint64_t base = pointer.address();
  std::string block(24, '\0');
  const uint64_t path = base + 24;
  const uint64_t mode = path + copy.size() + 1;
  const uint64_t argv[3] = {path, mode, 0};
  memcpy(block.data(), argv, sizeof(argv));
  block += copy + std::string(1, '\0') + "read" + std::string(1, '\0');
  v1::WriteMemoryRequest write;
  write.set_pointer_id(pointer.id());
  write.set_data(block);
  v1::WriteMemoryResponse written;
  Report("write", api.memory->Write(Ctx().get(), write, &written));
  v1::SyscallResult result;
  s = api.Syscall(info.id(), SYS_execve,
                  {static_cast<int64_t>(path), static_cast<int64_t>(base), 0},
                  &result);
  Report("execve", s, absl::StrCat(result.value()));
  s = api.Syscall(info.id(), SYS_getpid, {}, &result);
  Report("after_getpid", s);
  v1::ReadMemoryRequest read;
  read.set_pointer_id(pointer.id());
  read.set_length(8);
  v1::ReadMemoryResponse data;
  Report("after_read", api.memory->Read(Ctx().get(), read, &data));
  v1::GetThreadRequest get;
  get.set_id(info.id());
  v1::GetThreadResponse got;
  s = api.threads->GetThread(Ctx().get(), get, &got);
  Report("after_state", s, v1::ThreadState_Name(got.thread().state()));
  v1::ThreadInfo again;
  Report("reattach", api.Attach(pid, &again));
  return 0;
}

int Undumpable(Api& api, pid_t pid) {
  v1::ThreadInfo info;
  grpc::Status s = api.Attach(pid, &info);
  Report("attach", s);
  if (!s.ok()) return 1;
  v1::SyscallResult result;
  s = api.Syscall(info.id(), SYS_prctl, {PR_SET_DUMPABLE, 0}, &result);
  Report("prctl", s, absl::StrCat(result.value()));
  s = api.Syscall(info.id(), SYS_getpid, {}, &result);
  Report("getpid", s);
  Report("exit", api.Exit(info.id()));
  return 0;
}

int Block(Api& api, pid_t pid) {
  v1::ThreadInfo info;
  grpc::Status s = api.Attach(pid, &info);
  Report("attached", s);
  if (!s.ok()) return 1;
  v1::Pointer pointer;
  Report("allocate", api.Allocate(info.id(), &pointer));
  v1::SyscallResult result;
  // Blocks: nothing is written to the target's stdin until the peer is gone.
  s = api.Syscall(info.id(), SYS_read,
                  {0, static_cast<int64_t>(pointer.address()), 1}, &result);
  Report("read", s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // attach_peer --socket PATH [--uid U --gid G] OP PID [ARG]
  procwarp::testing::PeerArgs args =
      procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  if (args.rest.empty()) return 2;
  Api api(args.socket_path);
  const std::string& op = args.op;
  const int pid = atoi(args.rest[0].c_str());
  if (op == "attach") return Attach(api, pid);
  if (op == "setuid_exec" && args.rest.size() > 1) {
    return SetuidExec(api, args.rest[0], args.rest[1]);
  }
  if (op == "block") return Block(api, pid);
  if (op == "undumpable") return Undumpable(api, pid);
  return 2;
}
