// Tests of the attach core against real target programs
// (tests/testcases/attach_target.c): attach, inject, read/write memory,
// detach — and the target's own behaviour afterwards is exactly what it
// would have been (checksum, pipe read, sleep, futex and epoll waits, signal
// mask, signals). Targets are started as non-children (TargetProcess).
#include "daemon/ptrace/tracer_thread.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <functional>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/testing/target_process.h"
#include "gtest/gtest.h"

namespace procwarp::ptrace {
namespace {

using ::procwarp::testing::ReadyTarget;
using ::procwarp::testing::RunfilePath;
using ::procwarp::testing::StartReady;
using ::procwarp::testing::TargetProcess;

std::string TargetPath() { return RunfilePath("tests/testcases/attach_target"); }
std::string StaticTargetPath() {
  return RunfilePath("tests/testcases/attach_target_static");
}

absl::Time Soon() { return absl::Now() + absl::Seconds(20); }

// After what a test did to it, the attachment still serves (an injected
// getpid answers the target's pid); once detached, the target's own blocked
// read() returns exactly `data`, with no EINTR seen.
void ExpectStillServesThenReadsOn(std::unique_ptr<TracerThread>& tracer, ReadyTarget& t,
                                  const std::string& data) {
  absl::StatusOr<SyscallResult> pid;
  ASSERT_TRUE(tracer->Run([&](Operation& op) {
    pid = op.Syscall(SYS_getpid);
    return pid.status();
  }, Soon()).ok());
  EXPECT_EQ(pid->value, t.process.pid());
  tracer.reset();
  ASSERT_TRUE(t.process.Write(data).ok());
  EXPECT_EQ(*t.process.ReadLine(),
            absl::StrCat("read=", data.size(), " data=", data, " errno=0"));
}

std::unique_ptr<TracerThread> AttachTo(const TargetProcess& p,
                                       AttachOptions options = {}) {
  absl::StatusOr<std::unique_ptr<TracerThread>> t =
      TracerThread::Attach(p.OpenPidfd(), p.pid(), options, Soon());
  if (!t.ok()) {
    ADD_FAILURE() << t.status();
    return nullptr;
  }
  return *std::move(t);
}

uint64_t Hex(const std::string& text) {
  uint64_t v = 0;
  EXPECT_TRUE(absl::SimpleHexAtoi(text, &v)) << text;
  return v;
}

pid_t TracerOf(pid_t tid) {
  absl::StatusOr<ProcStatus> st = ReadStatus(tid);
  return st.ok() ? st->tracer_pid : -1;
}

std::string SigBlk(pid_t pid) {
  absl::StatusOr<std::string> text = ReadProcFile(absl::StrCat("/proc/", pid, "/status"));
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::StartsWith(line, "SigBlk:")) return std::string(line);
  }
  return "";
}

// The work every target goes through: getpid, open/write/close of a file,
// mmap/munmap with the memory used in between, in one stop.
absl::Status InjectTheUsualThings(Operation& op, const std::string& file) {
  absl::StatusOr<SyscallResult> pid = op.Syscall(SYS_getpid);
  if (!pid.ok()) return pid.status();
  if (pid->value != op.pid()) return absl::InternalError("getpid mismatch");
  absl::StatusOr<SyscallResult> map =
      op.Syscall(SYS_mmap, {0, 4096, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0});
  if (!map.ok()) return map.status();
  if (map->value < 0) return absl::InternalError("mmap failed");
  uint64_t at = static_cast<uint64_t>(map->value);
  std::string text = file + "\0";
  std::vector<uint8_t> bytes(file.begin(), file.end());
  bytes.push_back(0);
  if (absl::Status st = op.memory().Write(at, absl::MakeConstSpan(bytes)); !st.ok()) return st;
  absl::StatusOr<SyscallResult> fd = op.Syscall(
      SYS_openat, {static_cast<uint64_t>(AT_FDCWD), at,
                   O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644});
  if (!fd.ok()) return fd.status();
  if (fd->value < 0) return absl::InternalError(absl::StrCat("open: ", fd->value));
  const char kMessage[] = "written by an injected write\n";
  if (absl::Status st = op.memory().Write(
          at + 1024, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(kMessage),
                                         sizeof(kMessage) - 1));
      !st.ok()) {
    return st;
  }
  absl::StatusOr<SyscallResult> wrote = op.Syscall(
      SYS_write, {static_cast<uint64_t>(fd->value), at + 1024, sizeof(kMessage) - 1});
  if (!wrote.ok()) return wrote.status();
  if (wrote->value != sizeof(kMessage) - 1) return absl::InternalError("short write");
  absl::StatusOr<SyscallResult> closed =
      op.Syscall(SYS_close, {static_cast<uint64_t>(fd->value)});
  if (!closed.ok()) return closed.status();
  absl::StatusOr<SyscallResult> unmapped = op.Syscall(SYS_munmap, {at, 4096});
  if (!unmapped.ok()) return unmapped.status();
  if (unmapped->value != 0) return absl::InternalError("munmap failed");
  return absl::OkStatus();
}

// One injected getpid through `tracer`, by `deadline`: the smallest
// operation, for tests about what happens around an operation.
absl::Status InjectGetpid(TracerThread& tracer, absl::Time deadline = Soon()) {
  return tracer.Run([](Operation& op) { return op.Syscall(SYS_getpid).status(); },
                    deadline);
}

std::string TempFile(const std::string& name) {
  return absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                      "/", name, "-", getpid());
}

std::string FileContents(const std::string& path) {
  absl::StatusOr<std::string> text = ReadProcFile(path);
  return text.ok() ? *text : "";
}

// A copy of `path` that uid 65534 can execute (the runfiles live under
// /root, which it cannot search).
std::string ReachableCopy(const std::string& path) {
  char dir[] = "/tmp/pw-attach-XXXXXX";
  if (mkdtemp(dir) == nullptr) abort();
  chmod(dir, 0755);
  std::string copy = absl::StrCat(dir, "/attach_target");
  std::string contents = *ReadProcFile(path);
  int fd = open(copy.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  if (fd < 0 || write(fd, contents.data(), contents.size()) != static_cast<ssize_t>(contents.size())) abort();
  close(fd);
  return copy;
}

uint64_t ChecksumStep(uint64_t state, uint64_t i) {
  state ^= i + 0x9e3779b97f4a7c15ULL + (state << 6) + (state >> 2);
  return state * 0xff51afd7ed558ccdULL;
}

TEST(TracerThreadTest, XStateSizeComesFromTheKernel) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  size_t size = 0;
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<const ThreadState*> saved = op.SavedState();
    if (!saved.ok()) return saved.status();
    size = (*saved)->xstate.size();
    return absl::OkStatus();
  }, Soon()).ok());
  XSaveInfo cpu = CpuXSaveInfo();
  // The kernel's regset covers the features it enabled (XCR0): at least the
  // legacy area + header, at most what CPUID says all features need.
  EXPECT_GE(size, 576u);
  EXPECT_LE(size, std::max(cpu.enabled, cpu.supported));
  EXPECT_EQ(size, cpu.enabled) << "xcr0=0x" << std::hex << cpu.xcr0;
  std::cout << "XSAVE regset " << size << " bytes, CPUID enabled " << cpu.enabled
            << " supported " << cpu.supported << std::hex << " XCR0 0x" << cpu.xcr0
            << "\n";
}

TEST(TracerThreadTest, ChecksumLoopIsUndisturbed) {
  ReadyTarget t = StartReady({TargetPath(), "checksum"});
  std::string file = TempFile("checksum");
  {
    auto tracer = AttachTo(t.process);
    ASSERT_NE(tracer, nullptr);
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(tracer->Run([&](Operation& op) {
        return InjectTheUsualThings(op, file);
      }, Soon()).ok());
    }
    EXPECT_NE(TracerOf(t.process.pid()), 0);
  }
  EXPECT_EQ(TracerOf(t.process.pid()), 0);
  EXPECT_EQ(FileContents(file), "written by an injected write\n");
  ASSERT_TRUE(t.process.Write("x").ok());
  absl::StatusOr<std::string> out = t.process.ReadLine();
  ASSERT_TRUE(out.ok());
  uint64_t iterations = 0, checksum = 0;
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "iterations"), &iterations)) << *out;
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "checksum"), &checksum)) << *out;
  uint64_t state = 1;
  for (uint64_t i = 0; i < iterations; ++i) state = ChecksumStep(state, i);
  EXPECT_EQ(checksum, state) << "after " << iterations << " iterations";
  unlink(file.c_str());
}

TEST(TracerThreadTest, BlockedReadGetsTheDataWrittenLater) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  std::string file = TempFile("read");
  {
    auto tracer = AttachTo(t.process);
    ASSERT_NE(tracer, nullptr);
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(tracer->Run([&](Operation& op) {
        return InjectTheUsualThings(op, file);
      }, Soon()).ok());
    }
  }
  ASSERT_TRUE(t.process.Write("hello").ok());
  absl::StatusOr<std::string> out = t.process.ReadLine();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "read=5 data=hello errno=0");
  unlink(file.c_str());
}

TEST(TracerThreadTest, StaticBinaryWorksThroughTheVdso) {
  ReadyTarget t = StartReady({StaticTargetPath(), "read"});
  std::string file = TempFile("static");
  {
    auto tracer = AttachTo(t.process);
    ASSERT_NE(tracer, nullptr);
    ASSERT_TRUE(tracer->Run([&](Operation& op) {
      return InjectTheUsualThings(op, file);
    }, Soon()).ok());
  }
  ASSERT_TRUE(t.process.Write("static").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=6 data=static errno=0");
  unlink(file.c_str());
}

// Operations keep interrupting the sleep until it ends: a restart that began
// the whole sleep again would never end; one that returned early or with
// EINTR shows in the target's report.
TEST(TracerThreadTest, NanosleepEndsOnTimeWithoutEintr) {
  constexpr int kSleepMs = 1000;
  ReadyTarget t = StartReady({TargetPath(), "sleep", absl::StrCat(kSleepMs)});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  int operations = 0;
  absl::Time stop_trying = absl::Now() + absl::Seconds(30);
  for (;;) {
    absl::Status st = InjectGetpid(*tracer);
    if (!st.ok()) {
      EXPECT_TRUE(absl::IsNotFound(st)) << st;  // the target finished
      break;
    }
    ++operations;
    ASSERT_LT(absl::Now(), stop_trying) << "the sleep never ended";
  }
  EXPECT_GT(operations, 10);
  absl::StatusOr<std::string> out = t.process.ReadLine();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(TargetProcess::Field(*out, "rc"), "0") << *out;
  EXPECT_EQ(TargetProcess::Field(*out, "errno"), "0") << *out;
  int elapsed = 0;
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "elapsed_ms"), &elapsed));
  EXPECT_GE(elapsed, kSleepMs);
  // Generous: only a sleep restarted from scratch (or never ending) fails.
  EXPECT_LT(elapsed, kSleepMs * 3);
}

TEST(TracerThreadTest, FutexWaitRestarts) {
  ReadyTarget t = StartReady({TargetPath(), "futex"});
  {
    auto tracer = AttachTo(t.process);
    ASSERT_NE(tracer, nullptr);
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(InjectGetpid(*tracer).ok());
    }
  }
  ASSERT_TRUE(t.process.Write("w").ok());
  EXPECT_EQ(*t.process.ReadLine(), "futex eintr=0 value=1");
}

TEST(TracerThreadTest, EpollWaitSeesNoEintr) {
  ReadyTarget t = StartReady({TargetPath(), "epoll"});
  {
    auto tracer = AttachTo(t.process);
    ASSERT_NE(tracer, nullptr);
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(InjectGetpid(*tracer).ok());
    }
  }
  ASSERT_TRUE(t.process.Write("e").ok());
  EXPECT_EQ(*t.process.ReadLine(), "epoll rc=1 errno=0");
}

TEST(TracerThreadTest, BatchRunsInOneStop) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  std::vector<SyscallRequest> batch(1000);
  for (SyscallRequest& r : batch) r.nr = SYS_getpid;
  std::vector<SyscallResult> results;
  ASSERT_TRUE(tracer->Run([&](Operation& op) {
    return op.Syscalls(batch, &results);
  }, Soon()).ok());
  ASSERT_EQ(results.size(), batch.size());
  for (const SyscallResult& r : results) EXPECT_EQ(r.value, t.process.pid());
  // A failing syscall is a result, not an error.
  absl::StatusOr<SyscallResult> bad;
  ASSERT_TRUE(tracer->Run([&](Operation& op) {
    bad = op.Syscall(SYS_close, {9999});
    return bad.status();
  }, Soon()).ok());
  EXPECT_EQ(bad->value, -EBADF);
}

// Later syscalls of a batch write only the registers that changed
// (injector.h): mixed numbers and arguments, a failing call, and a seccomp
// trap in the middle (which falls back to the full write) all give each
// call its own result.
TEST(TracerThreadTest, MixedBatchGivesEveryCallItsOwnResult) {
  ReadyTarget t = StartReady({TargetPath(), "seccomp"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  std::vector<SyscallRequest> batch = {
      {.nr = SYS_getpid},
      {.nr = SYS_close, .args = {9999}},
      {.nr = SYS_getpid},
      {.nr = SYS_getppid},  // trapped by the target's filter
      {.nr = SYS_getuid},   // refused with EPERM by it
      {.nr = SYS_fcntl, .args = {0, F_GETFD}},
      {.nr = SYS_fcntl, .args = {9998, F_GETFD}},
      {.nr = SYS_getpid},
  };
  std::vector<SyscallResult> results;
  ASSERT_TRUE(tracer->Run([&](Operation& op) {
    return op.Syscalls(batch, &results);
  }, Soon()).ok());
  ASSERT_EQ(results.size(), batch.size());
  EXPECT_EQ(results[0].value, t.process.pid());
  EXPECT_EQ(results[1].value, -EBADF);
  EXPECT_EQ(results[2].value, t.process.pid());
  EXPECT_TRUE(results[3].seccomp_refused);
  EXPECT_FALSE(results[4].seccomp_refused);
  EXPECT_EQ(results[4].value, -EPERM);
  EXPECT_GE(results[5].value, 0);
  EXPECT_EQ(results[6].value, -EBADF);
  EXPECT_EQ(results[7].value, t.process.pid());
  tracer.reset();
  ASSERT_TRUE(t.process.Write("alive").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=5 data=alive errno=0");
}

TEST(TracerThreadTest, SignalMaskIsRestored) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  std::string before = SigBlk(t.process.pid());
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    // Block everything blockable from inside the target...
    absl::StatusOr<SyscallResult> map =
        op.Syscall(SYS_mmap, {0, 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0});
    if (!map.ok()) return map.status();
    uint64_t all = ~0ULL;
    absl::Status w = op.memory().Write(
        map->value, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(&all), 8));
    if (!w.ok()) return w;
    absl::StatusOr<SyscallResult> blocked =
        op.Syscall(SYS_rt_sigprocmask, {SIG_BLOCK, static_cast<uint64_t>(map->value), 0, 8});
    if (!blocked.ok()) return blocked.status();
    if (blocked->value != 0) return absl::InternalError("rt_sigprocmask failed");
    return op.Syscall(SYS_munmap, {static_cast<uint64_t>(map->value), 4096}).status();
  }, Soon()).ok());
  EXPECT_EQ(SigBlk(t.process.pid()), before);
}

// A signal that arrives while the target is stopped for injection is
// delivered afterwards, not swallowed: SIGUSR1 (default action: terminate)
// ends the target once the operation is over.
TEST(TracerThreadTest, SignalArrivingDuringInjectionIsDelivered) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  int pidfd = tracer->pidfd();
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGUSR1, nullptr, 0) != 0) {
      return absl::InternalError("pidfd_send_signal");
    }
    for (int i = 0; i < 10; ++i) {
      absl::StatusOr<SyscallResult> r = op.Syscall(SYS_getpid);
      if (!r.ok()) return r.status();
    }
    return absl::OkStatus();
  }, Soon()).ok());
  t.process.WaitExit();
  // The tracer reports the exit the signal caused.
  absl::Status st;
  while ((st = tracer->status()).ok()) {
    ASSERT_TRUE(absl::IsNotFound(tracer->Run([](Operation&) { return absl::OkStatus(); }, Soon())) ||
                !tracer->status().ok());
  }
  EXPECT_TRUE(absl::StrContains(st.message(), "killed by SIGUSR1")) << st;
}

TEST(TracerThreadTest, SeccompRefusalIsReportedAndTargetSurvives) {
  ReadyTarget t = StartReady({TargetPath(), "seccomp"});
  {
    auto tracer = AttachTo(t.process);
    ASSERT_NE(tracer, nullptr);
    SyscallResult trapped, errno_denied, allowed;
    ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
      absl::StatusOr<SyscallResult> r = op.Syscall(SYS_getppid);
      if (!r.ok()) return r.status();
      trapped = *r;
      r = op.Syscall(SYS_getuid);
      if (!r.ok()) return r.status();
      errno_denied = *r;
      r = op.Syscall(SYS_getpid);
      if (!r.ok()) return r.status();
      allowed = *r;
      return absl::OkStatus();
    }, Soon()).ok());
    EXPECT_TRUE(trapped.seccomp_refused);
    EXPECT_FALSE(errno_denied.seccomp_refused);
    EXPECT_EQ(errno_denied.value, -EPERM);
    EXPECT_EQ(allowed.value, t.process.pid());
  }
  ASSERT_TRUE(t.process.Write("alive").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=5 data=alive errno=0");
}

TEST(TracerThreadTest, JobControlStoppedTargetIsRefusedUntilContinued) {
  ReadyTarget t = StartReady({TargetPath(), "sigstop"});
  // Wait for the stop itself (no timing: the state is polled).
  while (ReadStatus(t.process.pid())->state != 'T') sched_yield();
  {
    // Attaching and detaching leave it job-control stopped.
    auto first = AttachTo(t.process);
    ASSERT_NE(first, nullptr);
    absl::Status st = InjectGetpid(*first);
    EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "job control")) << st;
  }
  // Detaching wakes it briefly to re-enter its job-control stop ('R', then
  // 'T'); a detach that let it run would never get back to 'T'.
  absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (ReadStatus(t.process.pid())->state != 'T' && absl::Now() < give_up) {
    sched_yield();
  }
  EXPECT_EQ(ReadStatus(t.process.pid())->state, 'T');
  EXPECT_EQ(TracerOf(t.process.pid()), 0);
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::Status st = InjectGetpid(*tracer);
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_EQ(t.process.Alive(), true);
  ASSERT_EQ(syscall(SYS_pidfd_send_signal, tracer->pidfd(), SIGCONT, nullptr, 0), 0);
  EXPECT_EQ(*t.process.ReadLine(), "continued");
  ASSERT_TRUE(InjectGetpid(*tracer).ok());
  tracer.reset();
  ASSERT_TRUE(t.process.Write("go").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=2 data=go errno=0");
}

TEST(TracerThreadTest, TargetExitingDuringAnOperationIsACleanError) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::Status st = tracer->Run([](Operation& op) {
    return op.Syscall(SYS_exit_group, {3}).status();
  }, Soon());
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "exited with status 3")) << st;
  EXPECT_FALSE(tracer->status().ok());
  EXPECT_TRUE(absl::IsNotFound(tracer->Run([](Operation&) { return absl::OkStatus(); }, Soon())));
}

TEST(TracerThreadTest, TargetKilledWhileStoppedForInjection) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  int pidfd = tracer->pidfd();
  absl::Status st = tracer->Run([&](Operation& op) -> absl::Status {
    if (absl::StatusOr<SyscallResult> r = op.Syscall(SYS_getpid); !r.ok()) return r.status();
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    for (;;) {
      absl::StatusOr<SyscallResult> r = op.Syscall(SYS_getpid);
      if (!r.ok()) return r.status();
    }
  }, Soon());
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "SIGKILL")) << st;
  EXPECT_TRUE(absl::IsNotFound(tracer->status())) << tracer->status();
  t.process.WaitExit();
  tracer.reset();  // nothing left to detach
}

// The work's own NOT_FOUND (say, a symbol the target does not have) is an
// answer, not the target dying: with no deadline at all the call still
// returns, with the work's status, and the target is attached and runs on.
TEST(TracerThreadTest, WorkNotFoundOnALiveTargetReturnsAtOnce) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::Status st = tracer->Run([](Operation& op) -> absl::Status {
    if (absl::StatusOr<SyscallResult> r = op.Syscall(SYS_getpid); !r.ok()) return r.status();
    return absl::NotFoundError("no symbol 'missing' in the target");
  }, absl::InfiniteFuture());
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  EXPECT_EQ(st.message(), "no symbol 'missing' in the target");
  EXPECT_TRUE(tracer->status().ok()) << tracer->status();
  ExpectStillServesThenReadsOn(tracer, t, "alive");
}

TEST(TracerThreadTest, DeadlineAbortsABlockedInjectionAndPutsTheTargetBack) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  // An injected read on the target's empty stdin blocks until the deadline.
  absl::Status st = tracer->Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<const ThreadState*> saved = op.SavedState();
    if (!saved.ok()) return saved.status();
    uint64_t scratch = (*saved)->regs.rsp - 4096;
    return op.Syscall(SYS_read, {0, scratch, 1}).status();
  }, absl::Now() + absl::Milliseconds(300));
  EXPECT_TRUE(absl::IsDeadlineExceeded(st)) << st;
  EXPECT_TRUE(tracer->status().ok());
  ASSERT_TRUE(InjectGetpid(*tracer).ok());
  tracer.reset();
  ASSERT_TRUE(t.process.Write("later").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=5 data=later errno=0");
}

// A target that cannot stop (a vfork parent sleeps uninterruptibly until its
// child exits): the operation ends at its deadline saying so, and the target
// is not harmed — it runs on once its child is done.
TEST(TracerThreadTest, TargetThatCannotStopEndsAtTheDeadline) {
  ReadyTarget t = StartReady({TargetPath(), "vfork"});
  pid_t pid = t.process.pid();
  absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (ReadStatus(pid)->state != 'D' && absl::Now() < give_up) sched_yield();
  ASSERT_EQ(ReadStatus(pid)->state, 'D');
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::Status st = InjectGetpid(*tracer, absl::Now() + absl::Milliseconds(300));
  EXPECT_TRUE(absl::IsDeadlineExceeded(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "did not stop")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "state D")) << st;
  ASSERT_TRUE(t.process.Write("c").ok());  // the vfork child reads it and exits
  EXPECT_EQ(*t.process.ReadLine(), "vfork done");
  absl::StatusOr<SyscallResult> r;
  ASSERT_TRUE(tracer->Run([&](Operation& op) {
    r = op.Syscall(SYS_getpid);
    return r.status();
  }, Soon()).ok());
  EXPECT_EQ(r->value, pid);
  tracer.reset();
  ASSERT_TRUE(t.process.Write("p").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=1 data=p errno=0");
}

// The caller goes away mid-operation (a session ends): CancelAll ends the
// blocked injected read at once, the target is put back, and after the
// TracerThread is gone it runs on, untraced.
TEST(TracerThreadTest, CancelAllEndsRunningWorkAndLeavesTargetRunning) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::Notification started;
  absl::Status blocked;
  std::thread caller([&] {
    blocked = tracer->Run([&](Operation& op) -> absl::Status {
      absl::StatusOr<const ThreadState*> saved = op.SavedState();
      if (!saved.ok()) return saved.status();
      started.Notify();
      return op.Syscall(SYS_read, {0, (*saved)->regs.rsp - 4096, 1}).status();
    }, absl::InfiniteFuture());
  });
  started.WaitForNotification();
  tracer->CancelAll();
  caller.join();
  EXPECT_TRUE(absl::IsCancelled(blocked)) << blocked;
  EXPECT_TRUE(absl::IsFailedPrecondition(tracer->Run([](Operation&) {
    return absl::OkStatus();
  }, Soon())));
  tracer.reset();
  EXPECT_EQ(TracerOf(t.process.pid()), 0);
  ASSERT_TRUE(t.process.Write("still here").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=10 data=still here errno=0");
}

// One caller's RPC is cancelled (RunOptions::cancelled turns true): its
// blocked injected read ends with CANCELLED although its deadline is
// infinite, the target is put back, and the attachment goes on serving.
TEST(TracerThreadTest, CallerCancellationEndsOnlyThatWork) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::Notification started;
  std::atomic<bool> gone{false};
  const std::function<bool()> cancelled = [&] { return gone.load(); };
  absl::Status blocked;
  std::thread caller([&] {
    blocked = tracer->Run([&](Operation& op) -> absl::Status {
      absl::StatusOr<const ThreadState*> saved = op.SavedState();
      if (!saved.ok()) return saved.status();
      started.Notify();
      return op.Syscall(SYS_read, {0, (*saved)->regs.rsp - 4096, 1}).status();
    }, absl::InfiniteFuture(), {.cancelled = &cancelled});
  });
  started.WaitForNotification();
  gone = true;
  caller.join();
  EXPECT_TRUE(absl::IsCancelled(blocked)) << blocked;
  EXPECT_TRUE(absl::StrContains(blocked.message(), "put back")) << blocked;
  // Work of a caller cancelled before it ran never runs.
  bool ran = false;
  absl::Status never = tracer->Run([&](Operation&) {
    ran = true;
    return absl::OkStatus();
  }, absl::InfiniteFuture(), {.cancelled = &cancelled});
  EXPECT_FALSE(ran);
  EXPECT_TRUE(absl::IsCancelled(never)) << never;
  ExpectStillServesThenReadsOn(tracer, t, "still here");
}

char ThreadState(pid_t pid, pid_t tid) {
  absl::StatusOr<ProcStatus> st = ReadStatus(tid);
  return st.ok() ? st->state : '?';
}

TEST(TracerThreadTest, StopAllThreadsOnlyWhenAsked) {
  ReadyTarget t = StartReady({TargetPath(), "threads", "3"});
  pid_t pid = t.process.pid();
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  std::vector<pid_t> others;
  std::vector<pid_t> all_tids = *ListThreads(pid);
  for (pid_t tid : all_tids) if (tid != pid) others.push_back(tid);
  ASSERT_EQ(others.size(), 3u);
  RunOptions all;
  all.stop_all_threads = true;
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    for (pid_t tid : others) {
      if (ThreadState(pid, tid) != 't') return absl::InternalError(absl::StrCat("tid ", tid, " runs"));
      if (TracerOf(tid) == 0) return absl::InternalError("not traced");
    }
    return op.Syscall(SYS_getpid).status();
  }, Soon(), all).ok());
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    for (pid_t tid : others) {
      if (ThreadState(pid, tid) == 't' || TracerOf(tid) != 0) {
        return absl::InternalError(absl::StrCat("tid ", tid, " is held"));
      }
    }
    return op.Syscall(SYS_getpid).status();
  }, Soon()).ok());
  tracer.reset();
  ASSERT_TRUE(t.process.Write("t").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=1 data=t errno=0");
}

TEST(TracerThreadTest, AttachToAnotherThread) {
  ReadyTarget t = StartReady({TargetPath(), "threads", "1"});
  pid_t pid = t.process.pid();
  pid_t other = 0;
  std::vector<pid_t> all_tids = *ListThreads(pid);
  for (pid_t tid : all_tids) if (tid != pid) other = tid;
  AttachOptions options;
  options.tid = other;
  auto tracer = AttachTo(t.process, options);
  ASSERT_NE(tracer, nullptr);
  EXPECT_NE(TracerOf(other), 0);
  EXPECT_EQ(TracerOf(pid), 0);
  absl::StatusOr<SyscallResult> tid;
  ASSERT_TRUE(tracer->Run([&](Operation& op) {
    tid = op.Syscall(SYS_gettid);
    return tid.status();
  }, Soon()).ok());
  EXPECT_EQ(tid->value, other);
}

void CheckMemoryPath(MemoryPath path) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  uint64_t buf = Hex(TargetProcess::Field(t.ready, "buf"));
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  RunOptions options;
  options.memory_path = path;
  std::string seen;
  MemoryPath used = MemoryPath::kAuto;
  absl::Status unmapped;
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    std::vector<uint8_t> bytes(29);
    if (absl::Status st = op.memory().Read(buf, absl::MakeSpan(bytes)); !st.ok()) return st;
    seen.assign(bytes.begin(), bytes.end());
    const std::string update = "rewritten at an odd offset";
    if (absl::Status st = op.memory().Write(
            buf + 3, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(update.data()),
                                         update.size() + 1));
        !st.ok()) {
      return st;
    }
    std::vector<uint8_t> back(update.size() + 1);
    if (absl::Status st = op.memory().Read(buf + 3, absl::MakeSpan(back)); !st.ok()) return st;
    if (std::string(back.begin(), back.end() - 1) != update) {
      return absl::InternalError("read back differs");
    }
    used = op.memory().last_path();
    std::vector<uint8_t> one(8);
    unmapped = op.memory().Read(8, absl::MakeSpan(one));
    return absl::OkStatus();
  }, Soon(), options).ok());
  EXPECT_EQ(seen, "procwarp attach target buffer");
  EXPECT_EQ(used, path);
  EXPECT_TRUE(absl::IsOutOfRange(unmapped)) << unmapped;
}

TEST(RemoteMemoryTest, ProcessVm) { CheckMemoryPath(MemoryPath::kProcessVm); }
TEST(RemoteMemoryTest, ProcMem) { CheckMemoryPath(MemoryPath::kProcMem); }
TEST(RemoteMemoryTest, PtracePeekPoke) { CheckMemoryPath(MemoryPath::kPtrace); }

// With process_vm_* denied by seccomp (as in a container), the automatic
// choice falls back to /proc/PID/mem. Runs in a forked child so the filter
// binds only it.
TEST(RemoteMemoryTest, FallsBackWhenProcessVmIsDenied) {
  ReadyTarget t = StartReady({TargetPath(), "read"});
  uint64_t buf = Hex(TargetProcess::Field(t.ready, "buf"));
  UniqueFd pidfd = t.process.OpenPidfd();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_writev, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    };
    struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) _exit(10);
    absl::StatusOr<std::unique_ptr<TracerThread>> tracer =
        TracerThread::Attach(std::move(pidfd), t.process.pid(), {}, Soon());
    if (!tracer.ok()) _exit(11);
    MemoryPath used = MemoryPath::kAuto;
    std::string seen;
    absl::Status st = (*tracer)->Run([&](Operation& op) -> absl::Status {
      std::vector<uint8_t> bytes(8);
      absl::Status r = op.memory().Read(buf, absl::MakeSpan(bytes));
      seen.assign(bytes.begin(), bytes.end());
      used = op.memory().last_path();
      return r;
    }, Soon());
    if (!st.ok()) _exit(12);
    if (seen != "procwarp") _exit(13);
    _exit(used == MemoryPath::kProcMem ? 0 : 14);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// The classic trap of a root tracer: a setuid exec *does* get the new
// credentials under a CAP_SYS_PTRACE tracer. The exec event ends the
// attachment before the new program runs, and nothing more is injected.
TEST(TracerThreadTest, ExecOfSetuidProgramEndsTheAttachment) {
  TargetProcess::Options as_nobody;
  as_nobody.uid = 65534;
  std::string copy = ReachableCopy(TargetPath());
  ReadyTarget t = StartReady({copy, "exec", "/usr/bin/mount"}, as_nobody);
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  ASSERT_TRUE(InjectGetpid(*tracer).ok());
  ASSERT_TRUE(t.process.Write("x").ok());
  absl::StatusOr<std::string> out = t.process.ReadAll();  // mount --version ran
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(absl::StrContains(*out, "mount from util-linux")) << *out;
  absl::Status st = InjectGetpid(*tracer);
  EXPECT_TRUE(absl::IsFailedPrecondition(st) || absl::IsNotFound(st)) << st;
  EXPECT_TRUE(absl::IsFailedPrecondition(tracer->status())) << tracer->status();
  EXPECT_TRUE(absl::StrContains(tracer->status().message(), "executed a new program"))
      << tracer->status();
}

TEST(TracerThreadTest, RefusalsNameTheCause) {
  ReadyTarget t = StartReady({TargetPath(), "zombie"});
  pid_t zombie = 0;
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(t.ready, "child"), &zombie));
  UniqueFd zombie_fd(static_cast<int>(syscall(SYS_pidfd_open, zombie, 0)));
  ASSERT_TRUE(zombie_fd.valid());
  absl::StatusOr<std::unique_ptr<TracerThread>> z =
      TracerThread::Attach(std::move(zombie_fd), zombie, {}, Soon());
  EXPECT_TRUE(absl::IsFailedPrecondition(z.status())) << z.status();
  EXPECT_TRUE(absl::StrContains(z.status().message(), "zombie")) << z.status();

  auto first = AttachTo(t.process);
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<TracerThread>> second =
      TracerThread::Attach(t.process.OpenPidfd(), t.process.pid(), {}, Soon());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(),
                                "already traced by pid"))
      << second.status();

  pid_t own = fork();
  if (own == 0) {
    pause();
    _exit(0);
  }
  UniqueFd own_fd(static_cast<int>(syscall(SYS_pidfd_open, own, 0)));
  absl::StatusOr<std::unique_ptr<TracerThread>> child =
      TracerThread::Attach(std::move(own_fd), own, {}, Soon());
  EXPECT_TRUE(absl::IsFailedPrecondition(child.status())) << child.status();
  kill(own, SIGKILL);
  waitpid(own, nullptr, 0);

  UniqueFd gone_fd = t.process.OpenPidfd();
  absl::StatusOr<std::unique_ptr<TracerThread>> no_thread =
      TracerThread::Attach(std::move(gone_fd), t.process.pid(),
                           AttachOptions{.tid = zombie + 100000}, Soon());
  EXPECT_TRUE(absl::IsNotFound(no_thread.status())) << no_thread.status();
}

}  // namespace
}  // namespace procwarp::ptrace
