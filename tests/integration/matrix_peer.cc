// matrix_peer: the caller side of authorization_matrix_test.cc. It becomes
// the given user (uid, gid, supplementary groups) before gRPC starts any
// thread, then either creates the handles the matrix acts on, or makes the
// matrix's calls and prints each one's status code.
//
//   matrix_peer --socket S --uid U --gid G [--groups G1,G2] setup
//       as the owner: spawns a running and an exited process, starts two
//       persistent threads and allocates memory in the first; prints
//       "running=ID done=ID thread=ID thread2=ID pointer=ID" on one line.
//   matrix_peer --socket S --uid U --gid G [--groups ...] calls FILE
//       FILE has one call a line: LABEL<TAB>METHOD<TAB>DEADLINE_MS<TAB>HEX,...
//       (the request messages, serialized, hex, comma-separated). Each call
//       is made on a generic stream whatever the method's kind (the wire is
//       the same): the messages are written, the client half-closes, every
//       response is read. Prints "LABEL CODE" per call.
//   matrix_peer --tls HOST:PORT --ca F --cert F --key F calls FILE
//       the same calls as a remote caller, over mutual TLS with that client
//       certificate: the daemon knows the caller only by its mapping.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/peer_args.h"
#include "tests/integration/test_channel.h"

namespace {

using procwarp::testing::Ctx;

procwarp::testing::PeerArgs args;

// Over mutual TLS when --tls is given, else the unix socket.
std::shared_ptr<grpc::Channel> Channel() {
  if (!args.flags.contains("tls")) {
    return procwarp::testing::NewUnixChannel(args.socket_path);
  }
  return procwarp::testing::NewTlsChannel(args.flags["tls"], args.flags["ca"],
                                          args.flags["cert"], args.flags["key"]);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "matrix_peer: %s\n", what.c_str());
  std::exit(2);
}

void Check(const grpc::Status& status, const char* what) {
  if (!status.ok()) Die(absl::StrCat(what, ": ", status.error_message()));
}

int Setup() {
  auto processes = procwarp::v1::Processes::NewStub(Channel());
  auto threads = procwarp::v1::Threads::NewStub(Channel());
  auto memory = procwarp::v1::Memory::NewStub(Channel());
  auto spawn = [&](std::vector<std::string> argv) {
    procwarp::v1::SpawnRequest request;
    for (const auto& a : argv) request.add_argv(a);
    request.mutable_stdin()->set_kind(procwarp::v1::STDIO_KIND_PIPE);
    request.mutable_stdout()->set_kind(procwarp::v1::STDIO_KIND_PIPE);
    procwarp::v1::SpawnResponse spawned;
    Check(processes->Spawn(Ctx().get(), request, &spawned), "Spawn");
    return spawned.process().id();
  };
  const std::string running = spawn({"/bin/sleep", "1000"});
  const std::string done = spawn({"/bin/echo", "done"});
  procwarp::v1::WaitRequest wait;
  wait.set_id(done);
  procwarp::v1::WaitResponse waited;
  Check(processes->Wait(Ctx().get(), wait, &waited), "Wait");
  auto thread = [&] {
    procwarp::v1::CreateThreadRequest request;
    // Persistent: they outlive this client, for the others' calls.
    request.set_persistent(true);
    procwarp::v1::CreateThreadResponse created;
    Check(threads->CreateThread(Ctx().get(), request, &created), "CreateThread");
    return created.thread().id();
  };
  const std::string thread1 = thread();
  const std::string thread2 = thread();
  procwarp::v1::AllocateRequest allocate;
  allocate.set_thread_id(thread1);
  allocate.set_size(4096);
  procwarp::v1::AllocateResponse allocated;
  Check(memory->Allocate(Ctx().get(), allocate, &allocated), "Allocate");
  std::printf("running=%s done=%s thread=%s thread2=%s pointer=%s\n",
              running.c_str(), done.c_str(), thread1.c_str(), thread2.c_str(),
              allocated.pointer().id().c_str());
  return 0;
}

// Waits for the next completion; whether the operation succeeded.
bool Next(grpc::CompletionQueue* cq) {
  void* tag;
  bool ok = false;
  if (!cq->Next(&tag, &ok)) Die("completion queue shut down");
  return ok;
}

grpc::Status GenericCall(grpc::GenericStub* stub, const std::string& method,
                         const std::vector<std::string>& messages,
                         int deadline_ms) {
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Milliseconds(deadline_ms)));
  auto call = stub->PrepareCall(&ctx, method, &cq);
  call->StartCall(nullptr);
  bool open = Next(&cq);
  for (const std::string& bytes : messages) {
    if (!open) break;
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, nullptr);
    open = Next(&cq);
  }
  if (open) {
    call->WritesDone(nullptr);
    Next(&cq);
  }
  for (;;) {
    grpc::ByteBuffer response;
    call->Read(&response, nullptr);
    if (!Next(&cq)) break;
  }
  grpc::Status status;
  call->Finish(&status, nullptr);
  Next(&cq);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

int Calls(const std::string& file) {
  std::ifstream in(file);
  if (!in) Die("cannot read " + file);
  grpc::GenericStub stub(Channel());
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, '\t');
    if (fields.size() != 4) Die("bad line: " + line);
    int deadline_ms = 0;
    if (!absl::SimpleAtoi(fields[2], &deadline_ms)) Die("bad deadline: " + line);
    std::vector<std::string> messages;
    for (absl::string_view hex : absl::StrSplit(fields[3], ',', absl::SkipEmpty())) {
      messages.push_back(absl::HexStringToBytes(hex));
    }
    // An empty message is still one message (all fields default).
    if (messages.empty()) messages.emplace_back();
    grpc::Status status = GenericCall(&stub, fields[1], messages, deadline_ms);
    std::printf("%s %s\n", fields[0].c_str(),
                procwarp::testing::CodeName(status).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Becomes the caller before gRPC starts any thread.
  args = procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  if (args.op == "setup") return Setup();
  if (args.op == "calls" && !args.rest.empty()) return Calls(args.rest[0]);
  Die("unknown operation " + args.op);
}
