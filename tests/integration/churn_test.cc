// Identity under connection churn (DESIGN.md, "Transport", the fd-reuse
// pitfall): two users open thousands of connections, each with several
// calls in flight, and cut half of them under their calls, so the daemon
// reuses fd numbers while calls of closed connections are still handled.
// No answer may carry the other user's identity or data, nothing either
// made may be attributed to the other, and the daemon's fds return to where
// they were. Sized for a 2-CPU machine (well under a minute).
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int kUserA = 65534;
constexpr int kUserB = 60001;
constexpr int kThreads = 2;
// Per thread: 2 users x 2 x 800 = 3200 connection cycles. The peer's cycle
// kinds repeat every 16 cycles (cut under calls in flight or not: index % 2;
// a spawn in flight or not: index % 16), so any multiple of 16 covers every
// interleaving the test drives, each many times over. Under ASan (about 15x
// slower here; CI time is tight) 192 cycles per thread: still 12 full
// periods, 192 connections per user cut under their calls, so fd numbers
// are reused with calls of closed connections in flight hundreds of times.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kCycles = 192;  // 2 users x 2 x 192 = 768
#else
constexpr int kCycles = 800;
#endif
static_assert(kCycles % 16 == 0, "whole periods of the peer's cycle kinds");

std::string Peer(const DaemonHarness& daemon, int uid,
                 const std::vector<std::string>& op) {
  std::vector<std::string> argv = {RunfilePath("tests/integration/churn_peer"),
                                   "--socket", daemon.socket_path(), "--uid",
                                   absl::StrCat(uid), "--gid", absl::StrCat(uid)};
  argv.insert(argv.end(), op.begin(), op.end());
  RunResult r = RunProgram(argv);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  return std::string(absl::StripTrailingAsciiWhitespace(r.out));
}

TEST(ChurnTest, TwoUsersNeverSeeEachOthersIdentityOrDataUnderFdReuse) {
  auto started = DaemonHarness::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<DaemonHarness> daemon = *std::move(started);
  const std::string secret_a = Peer(*daemon, kUserA, {"secret"});
  const std::string secret_b = Peer(*daemon, kUserB, {"secret"});
  ASSERT_FALSE(secret_a.empty());
  ASSERT_FALSE(secret_b.empty());
  const int fds_before = daemon->CountFds();

  std::string answer_a, answer_b;
  const std::string threads = absl::StrCat(kThreads), cycles = absl::StrCat(kCycles);
  std::thread a([&] {
    answer_a = Peer(*daemon, kUserA, {"churn", threads, cycles, secret_b});
  });
  std::thread b([&] {
    answer_b = Peer(*daemon, kUserB, {"churn", threads, cycles, secret_a});
  });
  a.join();
  b.join();
  const std::string all = absl::StrCat(kThreads * kCycles);
  EXPECT_THAT(answer_a, StartsWith("OK cycles=" + all));
  EXPECT_THAT(answer_a, HasSubstr("violations=0"));
  EXPECT_THAT(answer_b, StartsWith("OK cycles=" + all));
  EXPECT_THAT(answer_b, HasSubstr("violations=0"));
  // The cuts happened (half the cycles), and answers came through them.
  EXPECT_THAT(answer_a, HasSubstr(absl::StrCat("cut=", kThreads * kCycles / 2)));

  // Every process's record says whose it is; root sees each where its
  // label puts it.
  {
    // (Its connection closes at the end of the block, before fds are
    // counted.)
    auto stub = daemon->Processes();
    procwarp::v1::ListProcessesRequest list_all;
    list_all.set_all(true);
    procwarp::v1::ListProcessesResponse listed;
    ASSERT_TRUE(stub->List(Ctx().get(), list_all, &listed).ok());
    for (const auto& p : listed.processes()) {
      auto label = p.labels().find("owner");
      ASSERT_NE(label, p.labels().end()) << p.id();
      EXPECT_EQ(label->second, absl::StrCat(p.owner().uid())) << p.id();
      EXPECT_EQ(p.uid(), p.owner().uid()) << p.id();
    }
  }

  // Every cut connection is cleaned up: the daemon's fds come back to where
  // they were.
  const int fds_after = daemon->AwaitFdsAtMost(fds_before);
  EXPECT_LE(fds_after, fds_before);
}

}  // namespace
}  // namespace procwarp::testing
