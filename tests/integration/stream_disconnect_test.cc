// Faults: a client that disconnects at every point of every stream (issue
// 12). Each long-lived RPC (Attach, Events, Execute with a syscall blocked
// in the agent, ReadStream, WriteStream, Wait, health Watch, reflection's
// ServerReflectionInfo: every streaming RPC the daemon serves, and the one
// unary call that blocks) is opened on a
// connection of its own and the connection is cut (shutdown of the socket)
// at each step: before the first message, after it, after the first
// answer, after the half-close. The daemon must keep serving and, once
// every cut call has ended, hold no more fds than before and no stream slot
// of a cut call.
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/protos/reflection.grpc.pb.h"
#include "tests/integration/test_channel.h"

namespace procwarp::testing {
namespace {

namespace v1 = procwarp::v1;

constexpr int64_t kSysPause = 34;
constexpr int64_t kSysGetpid = 39;
// Long-lived calls root may have open at once (the daemon's flag): few, so
// one left behind by a cut shows.
constexpr int kStreamSlots = 4;

class StreamDisconnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
    options.flags.push_back(absl::StrCat("--max_streams_per_admin=", kStreamSlots));
    auto d = DaemonHarness::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    control_ = std::make_unique<CuttableChannel>(daemon_->socket_path());
    processes_ = v1::Processes::NewStub(control_->channel());
    threads_ = v1::Threads::NewStub(control_->channel());
    memory_ = v1::Memory::NewStub(control_->channel());
    // What the streams act on, made once: a chatty process, one that waits,
    // a thread and 3 MiB of its memory.
    chatty_ = Spawn({"/bin/sh", "-c", "while :; do echo tick; sleep 0.01; done"});
    idle_ = Spawn({"/bin/sleep", "1000"});
    v1::CreateThreadRequest create;
    create.set_persistent(true);
    v1::CreateThreadResponse created;
    ASSERT_TRUE(threads_->CreateThread(Ctx().get(), create, &created).ok());
    thread_ = created.thread().id();
    v1::AllocateRequest allocate;
    allocate.set_thread_id(thread_);
    allocate.set_size(3 << 20);
    v1::AllocateResponse allocated;
    ASSERT_TRUE(memory_->Allocate(Ctx().get(), allocate, &allocated).ok());
    pointer_ = allocated.pointer().id();
    fds_before_ = daemon_->CountFds();
  }

  std::string Spawn(const std::vector<std::string>& argv) {
    v1::SpawnResponse spawned;
    EXPECT_TRUE(processes_->Spawn(Ctx().get(), PipedSpawn(argv), &spawned).ok());
    return spawned.process().id();
  }

  // Runs `scenario` once for each cut point 0..points-1: the scenario gets
  // a fresh connection and calls `step(k)` at each of its steps, which cuts
  // the connection when k is the chosen point. The call must then fail.
  void AtEveryPoint(const std::string& name, int points,
                    const std::function<grpc::Status(
                        CuttableChannel&, const std::function<void(int)>&)>& scenario) {
    for (int point = 0; point < points; ++point) {
      auto connection = std::make_unique<CuttableChannel>(daemon_->socket_path());
      bool cut = false;
      grpc::Status status = scenario(*connection, [&](int step) {
        if (step == point && !cut) {
          connection->Cut();
          cut = true;
        }
      });
      EXPECT_TRUE(cut) << name << " never reached point " << point;
      // (The call may still have ended well: a server stream can be all
      // sent, and buffered by the client, before the cut.)
      (void)status;
      // Still serving.
      v1::GetProcessRequest get;
      get.set_id(idle_);
      v1::GetProcessResponse got;
      EXPECT_TRUE(processes_->Get(Ctx().get(), get, &got).ok())
          << "after " << name << " cut at point " << point;
    }
  }

  // Once every cut call has ended (sessions end on hang-up, handlers on
  // their next cancellation check): no fd is left behind, and no handler
  // still holds its stream slot: all kStreamSlots of root's streams can be
  // open at once. (The daemon's thread count is no measure: gRPC's own
  // pools grow on demand and keep idle threads.)
  void ExpectBackToBaseline() {
    EXPECT_EQ(daemon_->AwaitFdsAtMost(fds_before_), fds_before_);
    const absl::Time until = absl::Now() + absl::Seconds(30);
    int admitted = 0;
    while (admitted < kStreamSlots && absl::Now() < until) {
      admitted = OpenStreamsAtOnce();
    }
    EXPECT_EQ(admitted, kStreamSlots) << "a cut stream's handler holds its slot";
  }

  // Opens kStreamSlots Events streams together; how many the daemon
  // admitted (an admitted one stays open until its deadline, a refused one
  // ends at once with RESOURCE_EXHAUSTED).
  int OpenStreamsAtOnce() {
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<grpc::ClientReader<v1::ProcessEvent>>> streams;
    for (int i = 0; i < kStreamSlots; ++i) {
      contexts.push_back(Ctx(absl::Seconds(1)));
      streams.push_back(processes_->Events(contexts.back().get(), {}));
      streams.back()->WaitForInitialMetadata();
    }
    int admitted = 0;
    for (auto& stream : streams) {
      v1::ProcessEvent event;
      while (stream->Read(&event)) {
      }
      if (stream->Finish().error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        ++admitted;
      }
    }
    return admitted;
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::unique_ptr<CuttableChannel> control_;
  std::unique_ptr<v1::Processes::Stub> processes_;
  std::unique_ptr<v1::Threads::Stub> threads_;
  std::unique_ptr<v1::Memory::Stub> memory_;
  std::string chatty_, idle_, thread_, pointer_;
  int fds_before_ = 0;
};

TEST_F(StreamDisconnectTest, EveryStreamCutAtEveryPointLeavesNothingBehind) {
  AtEveryPoint("Attach", 4, [&](CuttableChannel& c, const auto& step) {
    auto stub = v1::Processes::NewStub(c.channel());
    auto ctx = Ctx();
    auto stream = stub->Attach(ctx.get());
    step(0);  // before the first message
    v1::AttachRequest first;
    first.set_id(chatty_);
    stream->Write(first);
    step(1);  // after it
    v1::AttachResponse out;
    stream->Read(&out);
    step(2);  // after the first output
    stream->WritesDone();
    step(3);  // after the half-close
    while (stream->Read(&out)) {
    }
    return stream->Finish();
  });
  AtEveryPoint("Events", 3, [&](CuttableChannel& c, const auto& step) {
    auto stub = v1::Processes::NewStub(c.channel());
    auto ctx = Ctx();
    auto stream = stub->Events(ctx.get(), {});
    step(0);
    stream->WaitForInitialMetadata();
    step(1);  // subscribed
    Spawn({"/bin/true"});
    v1::ProcessEvent event;
    stream->Read(&event);
    step(2);  // after the first event
    while (stream->Read(&event)) {
    }
    return stream->Finish();
  });
  AtEveryPoint("Execute", 4, [&](CuttableChannel& c, const auto& step) {
    auto stub = v1::Threads::NewStub(c.channel());
    auto ctx = Ctx();
    auto stream = stub->Execute(ctx.get());
    step(0);
    v1::ExecuteRequest request;
    request.set_thread_id(thread_);
    request.add_syscalls()->set_number(kSysGetpid);
    stream->Write(request);
    step(1);
    v1::ExecuteResponse response;
    stream->Read(&response);
    step(2);  // after the first batch's answer
    // A syscall that blocks in the agent until a signal: the cut comes
    // while the daemon waits for it.
    v1::ExecuteRequest blocking;
    blocking.add_syscalls()->set_number(kSysPause);
    stream->Write(blocking);
    step(3);
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  });
  AtEveryPoint("ReadStream", 3, [&](CuttableChannel& c, const auto& step) {
    auto stub = v1::Memory::NewStub(c.channel());
    auto ctx = Ctx();
    v1::ReadMemoryRequest request;
    request.set_pointer_id(pointer_);
    request.set_length(3 << 20);
    auto stream = stub->ReadStream(ctx.get(), request);
    step(0);
    v1::ReadMemoryChunk chunk;
    stream->Read(&chunk);
    step(1);  // after the first chunk
    stream->Read(&chunk);
    step(2);  // after the second
    while (stream->Read(&chunk)) {
    }
    return stream->Finish();
  });
  AtEveryPoint("WriteStream", 3, [&](CuttableChannel& c, const auto& step) {
    auto stub = v1::Memory::NewStub(c.channel());
    auto ctx = Ctx();
    v1::WriteMemoryResponse response;
    auto stream = stub->WriteStream(ctx.get(), &response);
    step(0);
    v1::WriteMemoryRequest request;
    request.set_pointer_id(pointer_);
    request.set_data(std::string(1 << 20, 'x'));
    stream->Write(request);
    step(1);
    request.set_offset(1 << 20);
    stream->Write(request);
    step(2);
    stream->WritesDone();
    return stream->Finish();
  });
  AtEveryPoint("Wait", 1, [&](CuttableChannel& c, const auto& step) {
    auto stub = v1::Processes::NewStub(c.channel());
    // The cut comes from another thread while Wait blocks on the idle
    // process.
    auto ctx = Ctx();
    v1::WaitRequest wait;
    wait.set_id(idle_);
    v1::WaitResponse waited;
    grpc::CompletionQueue cq;
    auto call = stub->AsyncWait(ctx.get(), wait, &cq);
    grpc::Status status;
    call->Finish(&waited, &status, nullptr);
    step(0);
    void* tag;
    bool ok;
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  });
  AtEveryPoint("Health.Watch", 2, [&](CuttableChannel& c, const auto& step) {
    auto stub = grpc::health::v1::Health::NewStub(c.channel());
    auto ctx = Ctx();
    auto stream = stub->Watch(ctx.get(), {});
    step(0);
    grpc::health::v1::HealthCheckResponse response;
    stream->Read(&response);
    step(1);
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  });

  AtEveryPoint("ServerReflectionInfo", 4, [&](CuttableChannel& c, const auto& step) {
    namespace refl = grpc::reflection::v1alpha;
    auto stub = refl::ServerReflection::NewStub(c.channel());
    auto ctx = Ctx();
    auto stream = stub->ServerReflectionInfo(ctx.get());
    step(0);
    refl::ServerReflectionRequest request;
    request.set_list_services("");
    stream->Write(request);
    step(1);
    refl::ServerReflectionResponse response;
    stream->Read(&response);
    step(2);  // after the first answer
    stream->WritesDone();
    step(3);  // after the half-close
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  });

  // Processes spawned for events: removed, so only the fixtures remain.
  v1::ListProcessesResponse listed;
  ASSERT_TRUE(processes_->List(Ctx().get(), {}, &listed).ok());
  for (const auto& p : listed.processes()) {
    if (p.id() == chatty_ || p.id() == idle_) continue;
    v1::RemoveProcessRequest remove;
    remove.set_id(p.id());
    remove.set_force(true);
    v1::RemoveProcessResponse removed;
    EXPECT_TRUE(processes_->Remove(Ctx().get(), remove, &removed).ok());
  }
  // The fixtures (thread included) are as they were at the baseline.
  ExpectBackToBaseline();

  // The agent left in pause() by the Execute cuts still answers once
  // interrupted: end the thread, which kills it.
  v1::ExitThreadRequest exit;
  exit.set_id(thread_);
  v1::ExitThreadResponse exited;
  EXPECT_TRUE(threads_->ExitThread(Ctx().get(), exit, &exited).ok());
}

}  // namespace
}  // namespace procwarp::testing
