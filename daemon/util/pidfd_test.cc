// The pidfd owner: exit statuses, reaping, signalling a gone process, start
// times, with real child processes.
#include "daemon/util/pidfd.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace procwarp {
namespace {

// A forked child that runs `body` and _exits with its result.
Pidfd Fork(int (*body)()) {
  pid_t pid = fork();
  if (pid == 0) _exit(body());
  auto opened = Pidfd::Open(pid);
  EXPECT_TRUE(opened.ok()) << opened.status();
  return *std::move(opened);
}

TEST(PidfdTest, ReapsExitCode) {
  Pidfd child = Fork([] { return 7; });
  auto status = child.Reap(/*block=*/true);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(status->has_value());
  EXPECT_EQ((*status)->code(), 7);
  EXPECT_TRUE(child.Exited());
  // Reaped: nothing more to reap.
  EXPECT_FALSE(child.Reap(/*block=*/false).ok());
}

TEST(PidfdTest, SignalledChildAndGoneProcess) {
  Pidfd child = Fork([] {
    pause();
    return 0;
  });
  auto running = child.Reap(/*block=*/false);
  ASSERT_TRUE(running.ok());
  EXPECT_FALSE(running->has_value());
  EXPECT_FALSE(child.Exited());
  auto started = ProcessStartTime(child.pid());
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_GT(*started, 0u);
  ASSERT_TRUE(child.Signal(SIGKILL, "the child").ok());
  auto status = child.Reap(/*block=*/true);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)->signal(), SIGKILL);
  absl::Status again = child.Signal(SIGTERM, "the child");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.message().find("the child has already exited"), std::string::npos);
  EXPECT_FALSE(PidOfPidfd(child.get()).ok());  // reaped
}

TEST(PidfdTest, PidOfPidfdAndStartTimeOfSelf) {
  auto self = Pidfd::Open(getpid());
  ASSERT_TRUE(self.ok());
  auto pid = PidOfPidfd(self->get());
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(*pid, getpid());
  EXPECT_FALSE(PidOfPidfd(STDIN_FILENO).ok());
  EXPECT_FALSE(ProcessStartTime(-1).ok());
}

}  // namespace
}  // namespace procwarp
