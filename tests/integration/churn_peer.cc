// churn_peer: one user's side of churn_test.cc. Becomes the given user before
// gRPC starts any thread, then either spawns its secret process or churns
// connections: each cycle opens a new connection, puts several calls in
// flight on it and, every other cycle, cuts the connection under them
// (shutdown of the socket) after the first answer, so the daemon closes and
// reuses the fd number while calls of the old connection are still being
// handled. Every answer that arrives is checked to be this user's and to
// carry nothing of the other user's.
//
//   churn_peer --socket S --uid U --gid U secret
//       spawns "sleep 1000" labelled owner=U; prints its id
//   churn_peer --socket S --uid U --gid U churn THREADS CYCLES OTHER_ID
//       THREADS threads × CYCLES cycles; OTHER_ID is the other user's secret
//       process. Prints "OK cycles=N answers=N cut=N violations=N" (and the
//       first violations on stderr).
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "tests/integration/peer_args.h"
#include "tests/integration/test_channel.h"

namespace {

namespace v1 = procwarp::v1;

std::string socket_path;
uid_t me;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "churn_peer: %s\n", what.c_str());
  std::exit(2);
}

std::atomic<int> answers{0}, cut{0}, violations{0};

void Violation(const std::string& what) {
  if (violations.fetch_add(1) < 10) {
    std::fprintf(stderr, "churn_peer uid %u: %s\n", me, what.c_str());
  }
}

std::string OwnerLabel(const v1::ProcessInfo& p) {
  auto it = p.labels().find("owner");
  return it == p.labels().end() ? "" : it->second;
}

void CheckProcess(const v1::ProcessInfo& p, const char* call) {
  if (p.owner().uid() != me || p.uid() != me ||
      (!OwnerLabel(p).empty() && OwnerLabel(p) != absl::StrCat(me))) {
    Violation(absl::StrCat(call, " returned process ", p.id(), " of owner ",
                           p.owner().uid(), " labelled ", OwnerLabel(p)));
  }
}

// One connection's calls, all in flight at once.
struct Calls {
  grpc::ClientContext status_ctx, list_ctx, get_ctx, spawn_ctx;
  v1::GetStatusResponse status;
  v1::ListProcessesResponse list;
  v1::GetProcessResponse got;
  v1::SpawnResponse spawned;
  grpc::Status status_s, list_s, get_s, spawn_s;
};

void Cycle(int index, const std::string& other_id) {
  procwarp::testing::CuttableChannel connection(socket_path);
  auto admin = v1::Admin::NewStub(connection.channel());
  auto processes = v1::Processes::NewStub(connection.channel());
  grpc::CompletionQueue cq;
  Calls c;
  const auto deadline = absl::ToChronoTime(absl::Now() + absl::Seconds(20));
  for (auto* ctx : {&c.status_ctx, &c.list_ctx, &c.get_ctx, &c.spawn_ctx}) {
    ctx->set_deadline(deadline);
  }
  int pending = 0;
  auto status_call = admin->AsyncGetStatus(&c.status_ctx, {}, &cq);
  status_call->Finish(&c.status, &c.status_s, reinterpret_cast<void*>(1));
  ++pending;
  auto list_call = processes->AsyncList(&c.list_ctx, {}, &cq);
  list_call->Finish(&c.list, &c.list_s, reinterpret_cast<void*>(2));
  ++pending;
  v1::GetProcessRequest get;
  get.set_id(other_id);
  auto get_call = processes->AsyncGet(&c.get_ctx, get, &cq);
  get_call->Finish(&c.got, &c.get_s, reinterpret_cast<void*>(3));
  ++pending;
  // Now and then a call that makes something: a spawn attributed to the
  // wrong connection would show up as the other user's process.
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::SpawnResponse>> spawn_call;
  if (index % 16 == 0) {
    v1::SpawnRequest spawn;
    spawn.add_argv("/bin/true");
    (*spawn.mutable_labels())["owner"] = absl::StrCat(me);
    spawn_call = processes->AsyncSpawn(&c.spawn_ctx, spawn, &cq);
    spawn_call->Finish(&c.spawned, &c.spawn_s, reinterpret_cast<void*>(4));
    ++pending;
  }
  const bool cut_early = index % 2 == 1;
  bool first = true;
  while (pending > 0) {
    void* tag;
    bool ok;
    if (!cq.Next(&tag, &ok)) break;
    --pending;
    switch (reinterpret_cast<intptr_t>(tag)) {
      case 1:
        if (c.status_s.ok()) {
          ++answers;
          if (c.status.caller().uid() != me) {
            Violation(absl::StrCat("GetStatus answered for uid ",
                                   c.status.caller().uid()));
          }
        }
        break;
      case 2:
        if (c.list_s.ok()) {
          ++answers;
          for (const auto& p : c.list.processes()) CheckProcess(p, "List");
        }
        break;
      case 3:
        if (c.get_s.ok()) {
          Violation(absl::StrCat("Get of the other user's process ", other_id,
                                 " succeeded"));
        } else if (c.get_s.error_code() == grpc::StatusCode::NOT_FOUND) {
          ++answers;
        }
        break;
      case 4:
        if (c.spawn_s.ok()) {
          ++answers;
          CheckProcess(c.spawned.process(), "Spawn");
        }
        break;
    }
    if (first && cut_early) {
      // The rest are in flight: cut the connection under them.
      connection.Cut();
      ++cut;
    }
    first = false;
  }
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

int Secret() {
  auto stub =
      v1::Processes::NewStub(procwarp::testing::NewUnixChannel(socket_path));
  v1::SpawnRequest spawn;
  spawn.add_argv("/bin/sleep");
  spawn.add_argv("1000");
  (*spawn.mutable_labels())["owner"] = absl::StrCat(me);
  v1::SpawnResponse spawned;
  grpc::ClientContext ctx;
  grpc::Status s = stub->Spawn(&ctx, spawn, &spawned);
  if (!s.ok()) Die("Spawn: " + s.error_message());
  std::printf("%s\n", spawned.process().id().c_str());
  return 0;
}

// The user's own list at the end: its spawns, all its own; then removed.
void FinalCheck() {
  auto stub =
      v1::Processes::NewStub(procwarp::testing::NewUnixChannel(socket_path));
  grpc::ClientContext ctx;
  v1::ListProcessesResponse list;
  grpc::Status s = stub->List(&ctx, {}, &list);
  if (!s.ok()) Die("List: " + s.error_message());
  for (const auto& p : list.processes()) {
    CheckProcess(p, "final List");
    if (p.argv_size() > 0 && p.argv(0) == "/bin/true") {
      grpc::ClientContext remove_ctx;
      v1::RemoveProcessRequest remove;
      remove.set_id(p.id());
      remove.set_force(true);
      v1::RemoveProcessResponse removed;
      stub->Remove(&remove_ctx, remove, &removed);
    }
  }
}

int Churn(int threads, int cycles, const std::string& other_id) {
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([=] {
      for (int i = 0; i < cycles; ++i) Cycle(i, other_id);
    });
  }
  for (auto& w : workers) w.join();
  FinalCheck();
  std::printf("OK cycles=%d answers=%d cut=%d violations=%d\n", threads * cycles,
              answers.load(), cut.load(), violations.load());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Becomes the caller before gRPC starts any thread.
  procwarp::testing::PeerArgs args =
      procwarp::testing::ParseArgsAndBecomeCaller(argc, argv);
  socket_path = args.socket_path;
  me = getuid();
  if (args.op == "secret") return Secret();
  if (args.op == "churn" && args.rest.size() == 3) {
    return Churn(atoi(args.rest[0].c_str()), atoi(args.rest[1].c_str()),
                 args.rest[2]);
  }
  Die("unknown operation " + args.op);
}
