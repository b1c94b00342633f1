// peer_client: one gRPC call (or a short script) against procwarpd, made by a
// process that first becomes another user. Integration tests run it with
// --uid/--gid to act as an unprivileged caller; dropping privileges happens
// before gRPC starts any thread.
//
// Prints "<CODE> <details>" on stdout, CODE being the gRPC status code name.
//
//   peer_client --socket S [--uid U --gid G] OP [ARGS...]
//   peer_client --tls HOST:PORT --ca F --cert F --key F OP [ARGS...]
// (over mutual TLS the identity is the certificate's mapping, whoever runs
// the program: tests run the same operations over both transports).
//   OP: status | list | get ID | signal ID SIG | wait ID | remove ID |
//       attach ID | resize ID | list_all |
//       run [--userns] [--as-uid U] ARGV... | churn N |
//       events MILLIS |
//       thread_syscall ID NR [ARGS...] | thread_get ID | thread_exit ID |
//       thread_list | mem_read POINTER_ID | thread_child PARENT_ID |
//       thread_probe [--userns] ROOT_PID | thread_child_userns |
//       thread_create_and_vanish MICROS
#include <grp.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/peer_args.h"
#include "tests/integration/test_channel.h"

namespace {

using procwarp::testing::NewUnixChannel;
using procwarp::testing::Ctx;

using procwarp::v1::Admin;
using procwarp::v1::Processes;

std::string socket_path;
std::string tls_address, tls_ca, tls_cert, tls_key;
// The uid every call must be answered as (churn): ours, or over TLS the one
// the certificate maps to (--expect_uid).
int expected_uid = -1;

// Over mutual TLS when --tls is given, else the unix socket.
std::shared_ptr<grpc::Channel> Channel() {
  if (tls_address.empty()) return NewUnixChannel(socket_path);
  return procwarp::testing::NewTlsChannel(tls_address, tls_ca, tls_cert, tls_key);
}

int Print(const grpc::Status& status, const std::string& details = "") {
  std::string code = absl::StatusCodeToString(
      static_cast<absl::StatusCode>(status.error_code()));
  printf("%s %s%s\n", code.c_str(),
         status.ok() ? "" : (status.error_message() + " ").c_str(),
         details.c_str());
  return 0;
}

int Run(const std::vector<std::string>& args, bool userns, int as_uid) {
  auto stub = Processes::NewStub(Channel());
  procwarp::v1::SpawnRequest request;
  for (const auto& a : args) request.add_argv(a);
  request.mutable_stdout()->set_kind(procwarp::v1::STDIO_KIND_PIPE);
  request.mutable_stderr()->set_kind(procwarp::v1::STDIO_KIND_PIPE);
  request.mutable_namespaces()->set_user(userns);
  if (as_uid >= 0) request.set_uid(as_uid);
  procwarp::v1::SpawnResponse spawned;
  grpc::Status s = stub->Spawn(Ctx(absl::Seconds(20)).get(), request, &spawned);
  if (!s.ok()) return Print(s);
  auto ctx = Ctx(absl::Seconds(20));
  auto stream = stub->Attach(ctx.get());
  procwarp::v1::AttachRequest first;
  first.set_id(spawned.process().id());
  stream->Write(first);
  std::string output;
  int code = -1;
  procwarp::v1::AttachResponse r;
  while (stream->Read(&r)) {
    if (r.has_output()) output += r.output().data();
    if (r.has_exit()) {
      code = r.exit().code();
      stream->WritesDone();
    }
  }
  stream->Finish();
  procwarp::v1::RemoveProcessResponse removed;
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  stub->Remove(Ctx(absl::Seconds(20)).get(), remove, &removed);
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return Print(grpc::Status::OK,
               absl::StrCat("id=", spawned.process().id(),
                            " uid=", spawned.process().uid(), " exit=", code,
                            " output=", output));
}

int Churn(int rounds) {
  int mismatches = 0, failures = 0;
  for (int i = 0; i < rounds; ++i) {
    // A new channel each round: a new connection, likely a reused fd number
    // in the daemon.
    auto stub = Admin::NewStub(Channel());
    procwarp::v1::GetStatusResponse status;
    grpc::Status s = stub->GetStatus(Ctx(absl::Seconds(20)).get(), {}, &status);
    if (!s.ok()) {
      ++failures;
      continue;
    }
    uid_t expected = expected_uid >= 0 ? expected_uid : getuid();
    if (status.caller().uid() != expected) ++mismatches;
  }
  return Print(grpc::Status::OK,
               absl::StrCat("mismatches=", mismatches, " failures=", failures));
}

int Events(int millis) {
  auto stub = Processes::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(millis)));
  auto reader = stub->Events(&ctx, {});
  std::vector<std::string> seen;
  procwarp::v1::ProcessEvent event;
  while (reader->Read(&event)) seen.push_back(event.process().id());
  reader->Finish();
  return Print(grpc::Status::OK, absl::StrCat("events=", seen.size(), " ",
                                              absl::StrJoin(seen, ",")));
}

// Runs one syscall in `thread`; the raw result as "value" and errno name.
std::string ThreadSyscall(procwarp::v1::Threads::Stub* stub,
                          const std::string& thread, int64_t nr,
                          const std::vector<int64_t>& args,
                          grpc::Status* status) {
  procwarp::v1::SyscallRequest request;
  request.set_thread_id(thread);
  request.mutable_syscall()->set_number(nr);
  for (int64_t a : args) request.mutable_syscall()->add_args(a);
  procwarp::v1::SyscallResponse response;
  *status = stub->Syscall(Ctx(absl::Seconds(20)).get(), request, &response);
  if (response.result().error() != 0) return response.result().error_name();
  return absl::StrCat(response.result().value());
}

// Creates a thread as this caller, then a child of it in a new user
// namespace, and reports both uids as the threads see them and the child's
// real uid outside.
int ThreadChildUserns() {
  auto threads = procwarp::v1::Threads::NewStub(Channel());
  procwarp::v1::CreateThreadRequest create;
  procwarp::v1::CreateThreadResponse parent;
  grpc::Status s = threads->CreateThread(Ctx(absl::Seconds(20)).get(), create, &parent);
  if (!s.ok()) return Print(s);
  create.set_parent_thread_id(parent.thread().id());
  create.mutable_namespaces()->set_user(true);
  procwarp::v1::CreateThreadResponse child;
  s = threads->CreateThread(Ctx(absl::Seconds(20)).get(), create, &child);
  if (!s.ok()) return Print(s);
  std::string parent_uid =
      ThreadSyscall(threads.get(), parent.thread().id(), SYS_getuid, {}, &s);
  if (!s.ok()) return Print(s);
  std::string child_uid =
      ThreadSyscall(threads.get(), child.thread().id(), SYS_getuid, {}, &s);
  if (!s.ok()) return Print(s);
  int status_uid = -1;
  std::ifstream proc_status(
      absl::StrCat("/proc/", child.thread().pid(), "/status"));
  std::string line;
  while (std::getline(proc_status, line)) {
    if (line.rfind("Uid:", 0) == 0) status_uid = atoi(line.c_str() + 4);
  }
  return Print(s, absl::StrCat("parent_uid=", parent_uid, " child_uid=",
                               child_uid, " child_status_uid=", status_uid));
}

// Creates a thread as this (unprivileged) caller and reports what it is and
// what it may do to root's process `root_pid`: its uid inside, its real uid
// outside, kill(root_pid, 0) and process_vm_readv(root_pid, ...).
int ThreadProbe(bool userns, int root_pid) {
  auto channel = Channel();
  auto threads = procwarp::v1::Threads::NewStub(channel);
  auto memory = procwarp::v1::Memory::NewStub(channel);
  procwarp::v1::CreateThreadRequest create;
  create.mutable_namespaces()->set_user(userns);
  procwarp::v1::CreateThreadResponse created;
  grpc::Status s = threads->CreateThread(Ctx(absl::Seconds(20)).get(), create, &created);
  if (!s.ok()) return Print(s);
  const std::string& id = created.thread().id();
  std::string uid = ThreadSyscall(threads.get(), id, SYS_getuid, {}, &s);
  if (!s.ok()) return Print(s);
  int status_uid = -1;
  std::ifstream proc_status(absl::StrCat("/proc/", created.thread().pid(), "/status"));
  std::string line;
  while (std::getline(proc_status, line)) {
    if (line.rfind("Uid:", 0) == 0) status_uid = atoi(line.c_str() + 4);
  }
  std::string kill_result =
      ThreadSyscall(threads.get(), id, SYS_kill, {root_pid, 0}, &s);
  if (!s.ok()) return Print(s);
  // Two iovecs in thread memory: local (into the buffer) and remote (any
  // address of root's process: permission is checked first).
  procwarp::v1::AllocateRequest allocate;
  allocate.set_thread_id(id);
  allocate.set_size(64);
  procwarp::v1::AllocateResponse allocated;
  s = memory->Allocate(Ctx(absl::Seconds(20)).get(), allocate, &allocated);
  if (!s.ok()) return Print(s);
  uint64_t base = allocated.pointer().address();
  struct iovec iovs[2] = {{reinterpret_cast<void*>(base + 32), 8},
                          {reinterpret_cast<void*>(0x10000), 8}};
  procwarp::v1::WriteMemoryRequest write;
  write.set_pointer_id(allocated.pointer().id());
  write.set_data(std::string(reinterpret_cast<const char*>(iovs), sizeof(iovs)));
  procwarp::v1::WriteMemoryResponse written;
  s = memory->Write(Ctx(absl::Seconds(20)).get(), write, &written);
  if (!s.ok()) return Print(s);
  std::string vm_result = ThreadSyscall(
      threads.get(), id, SYS_process_vm_readv,
      {root_pid, static_cast<int64_t>(base), 1, static_cast<int64_t>(base + 16), 1, 0},
      &s);
  if (!s.ok()) return Print(s);
  return Print(grpc::Status::OK,
               absl::StrCat("uid=", uid, " status_uid=", status_uid,
                            " kill=", kill_result,
                            " process_vm_readv=", vm_result));
}

}  // namespace

int main(int argc, char** argv) {
  procwarp::testing::PeerArgs peer =
      procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  socket_path = peer.socket_path;
  tls_address = peer.flags["tls"];
  tls_ca = peer.flags["ca"];
  tls_cert = peer.flags["cert"];
  tls_key = peer.flags["key"];
  if (peer.flags.contains("expect_uid")) {
    expected_uid = atoi(peer.flags["expect_uid"].c_str());
  }
  const std::string& op = peer.op;
  std::vector<std::string>& rest = peer.rest;
  std::string id = rest.empty() ? "" : rest[0];

  auto stub = Processes::NewStub(Channel());
  if (op == "status") {
    procwarp::v1::GetStatusResponse r;
    grpc::Status s = Admin::NewStub(Channel())->GetStatus(Ctx(absl::Seconds(20)).get(), {}, &r);
    return Print(s, absl::StrCat("uid=", r.caller().uid()));
  }
  if (op == "list" || op == "list_all") {
    procwarp::v1::ListProcessesRequest q;
    q.set_all(op == "list_all");
    procwarp::v1::ListProcessesResponse r;
    grpc::Status s = stub->List(Ctx(absl::Seconds(20)).get(), q, &r);
    std::vector<std::string> ids;
    for (const auto& p : r.processes()) ids.push_back(p.id());
    return Print(s, absl::StrCat("n=", ids.size(), " ", absl::StrJoin(ids, ",")));
  }
  if (op == "get") {
    procwarp::v1::GetProcessRequest q;
    q.set_id(id);
    procwarp::v1::GetProcessResponse r;
    return Print(stub->Get(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "signal") {
    procwarp::v1::SignalRequest q;
    q.set_id(id);
    q.set_signal(rest.size() > 1 ? atoi(rest[1].c_str()) : 15);
    procwarp::v1::SignalResponse r;
    return Print(stub->Signal(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "wait") {
    procwarp::v1::WaitRequest q;
    q.set_id(id);
    procwarp::v1::WaitResponse r;
    return Print(stub->Wait(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "remove") {
    procwarp::v1::RemoveProcessRequest q;
    q.set_id(id);
    q.set_force(true);
    procwarp::v1::RemoveProcessResponse r;
    return Print(stub->Remove(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "resize") {
    procwarp::v1::ResizePtyRequest q;
    q.set_id(id);
    q.mutable_size()->set_rows(10);
    q.mutable_size()->set_cols(10);
    procwarp::v1::ResizePtyResponse r;
    return Print(stub->ResizePty(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "attach") {
    auto ctx = Ctx(absl::Seconds(20));
    auto stream = stub->Attach(ctx.get());
    procwarp::v1::AttachRequest q;
    q.set_id(id);
    q.set_stdin("x");
    stream->Write(q);
    stream->WritesDone();
    procwarp::v1::AttachResponse r;
    int messages = 0;
    while (stream->Read(&r)) ++messages;
    return Print(stream->Finish(), absl::StrCat("messages=", messages));
  }
  if (op == "run") {
    bool userns = !rest.empty() && rest[0] == "--userns";
    if (userns) rest.erase(rest.begin());
    int as_uid = -1;
    if (rest.size() > 1 && rest[0] == "--as-uid") {
      as_uid = atoi(rest[1].c_str());
      rest.erase(rest.begin(), rest.begin() + 2);
    }
    return Run(rest, userns, as_uid);
  }
  if (op == "churn") return Churn(atoi(id.c_str()));
  auto threads = procwarp::v1::Threads::NewStub(Channel());
  if (op == "thread_syscall") {
    std::vector<int64_t> args;
    for (size_t k = 2; k < rest.size(); ++k) args.push_back(atoll(rest[k].c_str()));
    grpc::Status s;
    std::string value = ThreadSyscall(threads.get(), id,
                                      rest.size() > 1 ? atoll(rest[1].c_str()) : 39,
                                      args, &s);
    return Print(s, s.ok() ? "value=" + value : "");
  }
  if (op == "thread_get") {
    procwarp::v1::GetThreadRequest q;
    q.set_id(id);
    procwarp::v1::GetThreadResponse r;
    return Print(threads->GetThread(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "thread_exit") {
    procwarp::v1::ExitThreadRequest q;
    q.set_id(id);
    procwarp::v1::ExitThreadResponse r;
    return Print(threads->ExitThread(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "thread_child") {
    procwarp::v1::CreateThreadRequest q;
    q.set_parent_thread_id(id);
    procwarp::v1::CreateThreadResponse r;
    return Print(threads->CreateThread(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "thread_list") {
    procwarp::v1::ListThreadsResponse r;
    grpc::Status s = threads->ListThreads(Ctx(absl::Seconds(20)).get(), {}, &r);
    return Print(s, absl::StrCat("n=", r.threads_size()));
  }
  if (op == "mem_read") {
    procwarp::v1::ReadMemoryRequest q;
    q.set_pointer_id(id);
    q.set_length(1);
    procwarp::v1::ReadMemoryResponse r;
    return Print(procwarp::v1::Memory::NewStub(Channel())->Read(Ctx(absl::Seconds(20)).get(), q, &r));
  }
  if (op == "thread_probe") {
    bool userns = !rest.empty() && rest[0] == "--userns";
    if (userns) rest.erase(rest.begin());
    if (rest.empty()) return 2;
    return ThreadProbe(userns, atoi(rest[0].c_str()));
  }
  if (op == "thread_child_userns") return ThreadChildUserns();
  if (op == "thread_create_and_vanish") {
    // Sends CreateThread and exits MICROS later without waiting for the
    // answer, so the session may end while the daemon starts the thread.
    auto channel = Channel();
    channel->WaitForConnected(
        absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    auto threads_stub = procwarp::v1::Threads::NewStub(channel);
    grpc::ClientContext context;
    grpc::CompletionQueue cq;
    procwarp::v1::CreateThreadRequest q;
    auto call = threads_stub->AsyncCreateThread(&context, q, &cq);
    procwarp::v1::CreateThreadResponse r;
    grpc::Status s;
    call->Finish(&r, &s, nullptr);
    // Polling the queue drives the call's I/O until the deadline.
    void* tag = nullptr;
    bool ok = false;
    cq.AsyncNext(&tag, &ok,
                 absl::ToChronoTime(absl::Now() +
                                    absl::Microseconds(atoi(id.c_str()))));
    _exit(0);
  }
  if (op == "events") return Events(atoi(id.c_str()));
  fprintf(stderr, "unknown op %s\n", op.c_str());
  return 2;
}
