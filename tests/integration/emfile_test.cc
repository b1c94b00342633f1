// Faults: the daemon out of file descriptors (issue 12). With its
// RLIMIT_NOFILE lowered to a little above what it holds, spawns and threads
// (each takes several fds) are made until the kernel says EMFILE: each
// refusal is a clear RESOURCE_EXHAUSTED naming the cause, the daemon keeps
// serving on the connections it has, and once the processes and threads are
// gone its fds are back at the baseline and spawning works again.
#include <sys/resource.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/test_channel.h"

namespace procwarp::testing {
namespace {

namespace v1 = procwarp::v1;

constexpr int kHeadroom = 40;  // fds the daemon may open past its baseline

TEST(EmfileTest, OutOfFdsIsAClearRefusalAndLeavesNothingBehind) {
  auto started = DaemonHarness::Start(DaemonHarness::Options::WithAgent());
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<DaemonHarness> daemon = *std::move(started);
  // One connection for everything: new ones would need fds too.
  auto channel = daemon->NewChannel();
  auto processes = v1::Processes::NewStub(channel);
  auto threads = v1::Threads::NewStub(channel);
  auto admin = v1::Admin::NewStub(channel);
  v1::GetStatusResponse status;
  ASSERT_TRUE(admin->GetStatus(Ctx().get(), {}, &status).ok());
  const int fds_before = daemon->CountFds();

  struct rlimit original {};
  ASSERT_EQ(prlimit(daemon->pid(), RLIMIT_NOFILE, nullptr, &original), 0);
  struct rlimit low = original;
  low.rlim_cur = fds_before + kHeadroom;
  ASSERT_EQ(prlimit(daemon->pid(), RLIMIT_NOFILE, &low, nullptr), 0);

  // Spawns until refused.
  std::vector<std::string> spawned;
  grpc::Status refused;
  for (int i = 0; i < kHeadroom; ++i) {
    v1::SpawnResponse response;
    refused = processes->Spawn(Ctx().get(), PipedSpawn({"/bin/sleep", "1000"}),
                               &response);
    if (!refused.ok()) break;
    spawned.push_back(response.process().id());
  }
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("open files"));
  EXPECT_FALSE(spawned.empty());

  // Free a few, then threads until refused.
  for (int i = 0; i < 3 && !spawned.empty(); ++i) {
    v1::RemoveProcessRequest remove;
    remove.set_id(spawned.back());
    remove.set_force(true);
    v1::RemoveProcessResponse removed;
    EXPECT_TRUE(processes->Remove(Ctx().get(), remove, &removed).ok());
    spawned.pop_back();
  }
  std::vector<std::string> made;
  grpc::Status thread_refused;
  for (int i = 0; i < kHeadroom; ++i) {
    v1::CreateThreadResponse created;
    thread_refused = threads->CreateThread(Ctx().get(), {}, &created);
    if (!thread_refused.ok()) break;
    made.push_back(created.thread().id());
  }
  EXPECT_EQ(thread_refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << thread_refused.error_message();
  EXPECT_FALSE(thread_refused.error_message().empty());

  // Still serving, out of fds as it is.
  EXPECT_TRUE(admin->GetStatus(Ctx().get(), {}, &status).ok());

  for (const std::string& id : made) {
    v1::ExitThreadRequest exit;
    exit.set_id(id);
    v1::ExitThreadResponse exited;
    EXPECT_TRUE(threads->ExitThread(Ctx().get(), exit, &exited).ok());
  }
  for (const std::string& id : spawned) {
    v1::RemoveProcessRequest remove;
    remove.set_id(id);
    remove.set_force(true);
    v1::RemoveProcessResponse removed;
    EXPECT_TRUE(processes->Remove(Ctx().get(), remove, &removed).ok());
  }
  // Everything the refused and the ended calls held is closed.
  const int fds_after = daemon->AwaitFdsAtMost(fds_before);
  EXPECT_LE(fds_after, fds_before);

  // With its limit back, it spawns again.
  ASSERT_EQ(prlimit(daemon->pid(), RLIMIT_NOFILE, &original, nullptr), 0);
  v1::SpawnResponse again;
  EXPECT_TRUE(processes->Spawn(Ctx().get(), PipedSpawn({"/bin/true"}), &again).ok());
}

}  // namespace
}  // namespace procwarp::testing
