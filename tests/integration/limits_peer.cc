// limits_peer: a client that tries to make procwarpd hold more than its
// limits allow, run by limits_test as an unprivileged user. It drops to
// --uid/--gid before gRPC starts any thread, sets up its attack, prints one
// line "READY <counts>" once what it could get is held, keeps holding it
// until its stdin closes, then prints "DONE <details>" and exits.
//
//   limits_peer --socket S [--uid U --gid G] OP [ARGS...]
//   OP:
//     syscalls N FINISHED    N Threads.Syscall(pause) on one agent thread
//     waits N FINISHED       N Processes.Wait on one running process
//     read_streams N FINISHED   N Memory.ReadStream of 8 MiB, never read
//     write_streams N FINISHED  N Memory.WriteStream that never send
//     reflection_streams N FINISHED  N server-reflection streams that never
//                            send
//     connections N          N connections, each tried with one GetVersion
//     events ROUNDS LABEL_BYTES  an Events stream it does not read, while it
//                            spawns, waits for and removes ROUNDS processes
//                            with LABEL_BYTES of labels each
//     spawn_labels N LABEL_BYTES  N sleeping processes with big labels
//     thread_labels N LABEL_BYTES  N agent threads with big labels
//     status                 one GetStatus: its counts
//     spawn_flood CLIENTS ROUNDS  CLIENTS connections, each doing
//                            Spawn+Wait+Remove of /bin/true in a loop (at
//                            most ROUNDS times); READY once each has made
//                            one, DONE (with the codes, and how many were
//                            still flooding) once stdin closes
//     cheap_calls ROUNDS     ROUNDS times GetStatus, List and a Wait on an
//                            exited child of its own, then DONE with the
//                            counts; exits by itself
//   For the floods, READY comes once FINISHED of the N calls have ended (the
//   ones refused), or after 30 s; it counts the calls that ended by status
//   code. The others are still running in the daemon and are cancelled at
//   the end.
#include <grp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
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
using procwarp::testing::CodeName;

std::string socket_path;

int Fail(const std::string& what, const grpc::Status& status) {
  printf("FAILED %s: %s %s\n", what.c_str(), CodeName(status).c_str(),
         status.error_message().c_str());
  return 1;
}

// Blocks until stdin reaches EOF: the test's signal to let go.
void HoldUntilStdinCloses() {
  char c;
  while (read(0, &c, 1) > 0) {
  }
}

// N calls of `method` on one channel through the generic stub (any RPC
// kind looks like a bidi stream on the wire). `request` (if any) is sent
// and the call half-closed; without one the call stays open with nothing
// sent, as a stalled client-streaming call does.
class Flood {
 public:
  Flood(std::shared_ptr<grpc::Channel> channel, std::string method)
      : stub_(std::move(channel)), method_(std::move(method)) {}

  void Start(int n, const google::protobuf::Message* request) {
    calls_.resize(n);
    for (int i = 0; i < n; ++i) {
      Call& call = calls_[i];
      call.context.set_deadline(
          absl::ToChronoTime(absl::Now() + absl::Minutes(10)));
      call.stream = stub_.PrepareCall(&call.context, method_, &cq_);
      // One operation of a kind at a time: start, then send, then finish.
      call.stream->StartCall(Tag(i, kStarted));
      AwaitTag(Tag(i, kStarted));
      if (request != nullptr) {
        grpc::Slice slice(request->SerializeAsString());
        grpc::ByteBuffer buffer(&slice, 1);
        call.stream->WriteLast(buffer, grpc::WriteOptions(), Tag(i, kWritten));
        AwaitTag(Tag(i, kWritten));
      }
      call.stream->Finish(&call.status, Tag(i, kFinished));
    }
  }

  // Drives the calls until `finished` of them have ended or `timeout`
  // passes; returns the ended ones' status codes, counted.
  std::map<std::string, int> AwaitFinished(int finished,
                                           absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (finished_ < finished) {
      void* tag = nullptr;
      bool ok = false;
      auto next = cq_.AsyncNext(&tag, &ok, absl::ToChronoTime(deadline));
      if (next != grpc::CompletionQueue::GOT_EVENT) break;
      Completed(tag);
    }
    std::map<std::string, int> codes;
    for (const Call& call : calls_) {
      if (call.finished) ++codes[CodeName(call.status)];
    }
    return codes;
  }

  // A refused call's message (the first one seen), for the test to check.
  std::string FirstError() const {
    for (const Call& call : calls_) {
      if (call.finished && !call.status.ok()) return call.status.error_message();
    }
    return "";
  }

  // Cancels what still runs and waits until every call has ended.
  void CancelAll() {
    for (Call& call : calls_) call.context.TryCancel();
    cq_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) Completed(tag);
  }

 private:
  enum Kind { kStarted = 0, kWritten = 1, kFinished = 2 };
  struct Call {
    grpc::ClientContext context;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> stream;
    grpc::Status status;
    bool finished = false;
  };
  static void* Tag(int i, Kind kind) {
    return reinterpret_cast<void*>(static_cast<intptr_t>(i * 4 + kind + 4));
  }
  // Drives the queue until `tag` completes (others are recorded on the way).
  void AwaitTag(void* tag) {
    void* got = nullptr;
    bool ok = false;
    while (cq_.Next(&got, &ok)) {
      Completed(got);
      if (got == tag) return;
    }
  }
  void Completed(void* tag) {
    intptr_t value = reinterpret_cast<intptr_t>(tag) - 4;
    if (value % 4 == kFinished) {
      calls_[value / 4].finished = true;
      ++finished_;
    }
  }

  grpc::GenericStub stub_;
  const std::string method_;
  grpc::CompletionQueue cq_;
  std::deque<Call> calls_;  // stable addresses: gRPC holds pointers into them
  int finished_ = 0;
};

std::string Counts(const std::map<std::string, int>& codes) {
  std::vector<std::string> parts;
  for (const auto& [code, n] : codes) parts.push_back(absl::StrCat(code, "=", n));
  return parts.empty() ? "none" : absl::StrJoin(parts, ",");
}

int RunFlood(const std::shared_ptr<grpc::Channel>& channel,
             const std::string& method, const google::protobuf::Message* request,
             int n, int finished) {
  Flood flood(channel, method);
  flood.Start(n, request);
  auto codes = flood.AwaitFinished(finished, absl::Seconds(30));
  printf("READY %s error=%s\n", Counts(codes).c_str(), flood.FirstError().c_str());
  fflush(stdout);
  HoldUntilStdinCloses();
  flood.CancelAll();
  printf("DONE\n");
  return 0;
}

// A thread of this caller, for the floods that need one.
int CreateThread(const std::shared_ptr<grpc::Channel>& channel,
                 std::string* id) {
  auto threads = procwarp::v1::Threads::NewStub(channel);
  procwarp::v1::CreateThreadResponse created;
  grpc::Status s = threads->CreateThread(Ctx().get(), {}, &created);
  if (!s.ok()) return Fail("CreateThread", s);
  *id = created.thread().id();
  return 0;
}

procwarp::v1::SpawnRequest SpawnWithLabels(std::vector<std::string> argv,
                                           size_t label_bytes) {
  procwarp::v1::SpawnRequest request;
  for (auto& a : argv) request.add_argv(std::move(a));
  if (label_bytes > 0) {
    (*request.mutable_labels())["big"] = std::string(label_bytes - 3, 'L');
  }
  return request;
}

int Events(int rounds, size_t label_bytes) {
  auto channel = NewUnixChannel(socket_path);
  auto processes = procwarp::v1::Processes::NewStub(channel);
  grpc::ClientContext events_context;
  auto events = processes->Events(&events_context, {});
  // The daemon sends initial metadata once the subscription is live.
  events->WaitForInitialMetadata();
  int spawned = 0;
  for (int i = 0; i < rounds; ++i) {
    procwarp::v1::SpawnResponse process;
    grpc::Status s = processes->Spawn(
        Ctx().get(), SpawnWithLabels({"/bin/true"}, label_bytes), &process);
    if (!s.ok()) return Fail("Spawn", s);
    procwarp::v1::WaitRequest wait;
    wait.set_id(process.process().id());
    procwarp::v1::WaitResponse waited;
    s = processes->Wait(Ctx().get(), wait, &waited);
    if (!s.ok()) return Fail("Wait", s);
    procwarp::v1::RemoveProcessRequest remove;
    remove.set_id(process.process().id());
    procwarp::v1::RemoveProcessResponse removed;
    s = processes->Remove(Ctx().get(), remove, &removed);
    if (!s.ok()) return Fail("Remove", s);
    ++spawned;
  }
  printf("READY spawned=%d\n", spawned);
  fflush(stdout);
  HoldUntilStdinCloses();
  // Now read: whatever was delivered before the daemon dropped us, then the
  // stream's end.
  int read = 0;
  procwarp::v1::ProcessEvent event;
  while (events->Read(&event)) {
    if (++read == 3 * rounds) events_context.TryCancel();
  }
  grpc::Status end = events->Finish();
  printf("DONE read=%d status=%s %s\n", read, CodeName(end).c_str(),
         end.error_message().c_str());
  return 0;
}

int SpawnLabels(int n, size_t label_bytes) {
  auto processes = procwarp::v1::Processes::NewStub(NewUnixChannel(socket_path));
  std::map<std::string, int> codes;
  std::string error;
  for (int i = 0; i < n; ++i) {
    procwarp::v1::SpawnResponse process;
    grpc::Status s = processes->Spawn(
        Ctx().get(), SpawnWithLabels({"/bin/sleep", "1000"}, label_bytes),
        &process);
    ++codes[CodeName(s)];
    if (!s.ok() && error.empty()) error = s.error_message();
  }
  printf("READY %s error=%s\n", Counts(codes).c_str(), error.c_str());
  fflush(stdout);
  HoldUntilStdinCloses();
  printf("DONE\n");
  return 0;
}

int ThreadLabels(int n, size_t label_bytes) {
  auto threads = procwarp::v1::Threads::NewStub(NewUnixChannel(socket_path));
  std::map<std::string, int> codes;
  std::string error;
  for (int i = 0; i < n; ++i) {
    procwarp::v1::CreateThreadRequest request;
    (*request.mutable_labels())["big"] = std::string(label_bytes - 3, 'L');
    procwarp::v1::CreateThreadResponse created;
    grpc::Status s = threads->CreateThread(Ctx().get(), request, &created);
    ++codes[CodeName(s)];
    if (!s.ok() && error.empty()) error = s.error_message();
  }
  printf("READY %s error=%s\n", Counts(codes).c_str(), error.c_str());
  fflush(stdout);
  HoldUntilStdinCloses();
  printf("DONE\n");
  return 0;
}

// Spawn+Wait+Remove of /bin/true; the first failure's status.
grpc::Status SpawnWaitRemove(procwarp::v1::Processes::Stub* processes) {
  procwarp::v1::SpawnRequest spawn;
  spawn.add_argv("/bin/true");
  procwarp::v1::SpawnResponse spawned;
  grpc::Status s = processes->Spawn(Ctx().get(), spawn, &spawned);
  if (!s.ok()) return s;
  procwarp::v1::WaitRequest wait;
  wait.set_id(spawned.process().id());
  procwarp::v1::WaitResponse waited;
  s = processes->Wait(Ctx().get(), wait, &waited);
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  remove.set_force(true);  // (a refused Wait leaves it perhaps running)
  procwarp::v1::RemoveProcessResponse removed;
  grpc::Status r = processes->Remove(Ctx().get(), remove, &removed);
  return s.ok() ? r : s;
}

int SpawnFlood(int clients, int rounds) {
  std::atomic<bool> stop{false};
  std::atomic<int> started{0}, flooding{clients};
  std::mutex mu;
  std::map<std::string, int> codes;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      auto processes = procwarp::v1::Processes::NewStub(NewUnixChannel(socket_path));
      std::map<std::string, int> mine;
      for (int i = 0; i < rounds && !stop.load(); ++i) {
        ++mine[CodeName(SpawnWaitRemove(processes.get()))];
        if (i == 0) ++started;
      }
      --flooding;
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [code, count] : mine) codes[code] += count;
    });
  }
  while (started.load() < clients && flooding.load() == clients) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  printf("READY\n");
  fflush(stdout);
  HoldUntilStdinCloses();
  const int still_flooding = flooding.load();
  stop = true;
  for (auto& t : threads) t.join();
  printf("DONE still_flooding=%d %s\n", still_flooding, Counts(codes).c_str());
  return 0;
}

int CheapCalls(int rounds) {
  auto channel = NewUnixChannel(socket_path);
  auto admin = procwarp::v1::Admin::NewStub(channel);
  auto processes = procwarp::v1::Processes::NewStub(channel);
  procwarp::v1::SpawnResponse spawned;
  grpc::Status s = processes->Spawn(
      Ctx().get(), SpawnWithLabels({"/bin/true"}, 0), &spawned);
  if (!s.ok()) return Fail("Spawn", s);
  int answered = 0;
  std::map<std::string, int> failed;
  auto note = [&](const grpc::Status& status) {
    if (status.ok()) {
      ++answered;
    } else {
      ++failed[CodeName(status)];
    }
  };
  for (int i = 0; i < rounds; ++i) {
    procwarp::v1::GetStatusResponse status;
    note(admin->GetStatus(Ctx().get(), {}, &status));
    procwarp::v1::ListProcessesResponse listed;
    note(processes->List(Ctx().get(), {}, &listed));
    procwarp::v1::WaitRequest wait;
    wait.set_id(spawned.process().id());
    procwarp::v1::WaitResponse waited;
    note(processes->Wait(Ctx().get(), wait, &waited));
  }
  printf("DONE answered=%d failed=%s\n", answered,
         failed.empty() ? "none" : Counts(failed).c_str());
  return 0;
}

int Connections(int n) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::map<std::string, int> codes;
  for (int i = 0; i < n; ++i) {
    channels.push_back(NewUnixChannel(socket_path));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    procwarp::v1::GetVersionResponse version;
    ++codes[CodeName(procwarp::v1::Admin::NewStub(channels.back())
                         ->GetVersion(&context, {}, &version))];
  }
  printf("READY %s\n", Counts(codes).c_str());
  fflush(stdout);
  HoldUntilStdinCloses();
  printf("DONE\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  procwarp::testing::PeerArgs peer =
      procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  socket_path = peer.socket_path;
  const std::string& op = peer.op;
  std::vector<int64_t> n;
  for (const std::string& arg : peer.rest) n.push_back(atoll(arg.c_str()));
  auto need = [&](size_t count) {
    if (n.size() < count) {
      fprintf(stderr, "%s needs %zu numbers\n", op.c_str(), count);
      exit(2);
    }
  };

  if (op == "status") {
    procwarp::v1::GetStatusResponse r;
    grpc::Status s =
        procwarp::v1::Admin::NewStub(NewUnixChannel(socket_path))->GetStatus(Ctx().get(), {}, &r);
    printf("%s clients=%d processes=%d running=%d\n", CodeName(s).c_str(),
           r.clients(), r.processes(), r.running_processes());
    return 0;
  }
  if (op == "spawn_flood") {
    need(2);
    return SpawnFlood(n[0], n[1]);
  }
  if (op == "cheap_calls") {
    need(1);
    return CheapCalls(n[0]);
  }
  if (op == "connections") {
    need(1);
    return Connections(n[0]);
  }
  if (op == "events") {
    need(2);
    return Events(n[0], n[1]);
  }
  if (op == "spawn_labels") {
    need(2);
    return SpawnLabels(n[0], n[1]);
  }
  if (op == "thread_labels") {
    need(2);
    return ThreadLabels(n[0], n[1]);
  }
  need(2);
  auto channel = NewUnixChannel(socket_path);
  if (op == "syscalls") {
    procwarp::v1::SyscallRequest request;
    if (int rc = CreateThread(channel, request.mutable_thread_id()); rc != 0) {
      return rc;
    }
    request.mutable_syscall()->set_number(SYS_pause);
    return RunFlood(channel, "/procwarp.v1.Threads/Syscall", &request, n[0], n[1]);
  }
  if (op == "waits") {
    procwarp::v1::SpawnResponse process;
    grpc::Status s = procwarp::v1::Processes::NewStub(channel)->Spawn(
        Ctx().get(), SpawnWithLabels({"/bin/sleep", "1000"}, 0), &process);
    if (!s.ok()) return Fail("Spawn", s);
    procwarp::v1::WaitRequest request;
    request.set_id(process.process().id());
    return RunFlood(channel, "/procwarp.v1.Processes/Wait", &request, n[0], n[1]);
  }
  if (op == "read_streams") {
    std::string thread;
    if (int rc = CreateThread(channel, &thread); rc != 0) return rc;
    procwarp::v1::AllocateRequest allocate;
    allocate.set_thread_id(thread);
    allocate.set_size(8 << 20);
    procwarp::v1::AllocateResponse allocated;
    grpc::Status s = procwarp::v1::Memory::NewStub(channel)->Allocate(
        Ctx().get(), allocate, &allocated);
    if (!s.ok()) return Fail("Allocate", s);
    procwarp::v1::ReadMemoryRequest request;
    request.set_pointer_id(allocated.pointer().id());
    request.set_length(8 << 20);
    return RunFlood(channel, "/procwarp.v1.Memory/ReadStream", &request, n[0],
                    n[1]);
  }
  if (op == "reflection_streams") {
    return RunFlood(channel,
                    "/grpc.reflection.v1alpha.ServerReflection/"
                    "ServerReflectionInfo",
                    nullptr, n[0], n[1]);
  }
  if (op == "write_streams") {
    return RunFlood(channel, "/procwarp.v1.Memory/WriteStream", nullptr, n[0],
                    n[1]);
  }
  fprintf(stderr, "unknown op %s\n", op.c_str());
  return 2;
}
