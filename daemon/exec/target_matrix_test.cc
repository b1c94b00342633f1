// The whole round on every kind of target (tests/testcases/attach_target.c):
// attach; inject getpid, mmap, write a path and a message into the new
// memory, open/write/close a file, munmap; call getpid (libc, or the static
// binary's own) and the program's own checksum_step; detach — then let the
// target finish and check that what its own code saw is exactly what it
// would have seen without us.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/exec/remote_call.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/testing/target_process.h"
#include "daemon/ptrace/tracer_thread.h"
#include "gtest/gtest.h"

namespace procwarp::exec {
namespace {

using ::procwarp::ptrace::Operation;
using ::procwarp::ptrace::RunOptions;
using ::procwarp::ptrace::SyscallResult;
using ::procwarp::ptrace::TracerThread;
using ::procwarp::testing::RunfilePath;
using ::procwarp::testing::TargetProcess;

absl::Time Soon() { return absl::Now() + absl::Seconds(20); }

uint64_t ChecksumStep(uint64_t state, uint64_t i) {
  state ^= i + 0x9e3779b97f4a7c15ULL + (state << 6) + (state >> 2);
  return state * 0xff51afd7ed558ccdULL;
}

struct Case {
  const char* name;
  std::vector<std::string> args;  // after the binary
  bool static_binary = false;
  bool stop_all_threads = false;
  std::string input;     // written to stdin after detaching
  std::string expected;  // the line the target then prints ("" = checked by name)
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

class TargetMatrixTest : public ::testing::TestWithParam<Case> {};

absl::Status Everything(Operation& op, const std::string& file, pid_t pid) {
  auto check = [](absl::StatusOr<SyscallResult> r, const char* what) -> absl::StatusOr<int64_t> {
    if (!r.ok()) return r.status();
    if (r->value < 0) return absl::InternalError(absl::StrCat(what, " failed: ", r->value));
    return r->value;
  };
  absl::StatusOr<int64_t> got = check(op.Syscall(SYS_getpid), "getpid");
  if (!got.ok()) return got.status();
  if (*got != pid) return absl::InternalError("getpid mismatch");
  absl::StatusOr<int64_t> page = check(
      op.Syscall(SYS_mmap, {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            static_cast<uint64_t>(-1), 0}),
      "mmap");
  if (!page.ok()) return page.status();
  uint64_t at = static_cast<uint64_t>(*page);
  std::string message = "hello from an injected write\n";
  std::vector<uint8_t> bytes(file.begin(), file.end());
  bytes.push_back(0);
  bytes.resize(2048, 0);
  bytes.insert(bytes.end(), message.begin(), message.end());
  if (absl::Status st = op.memory().Write(at, bytes); !st.ok()) return st;
  std::vector<uint8_t> back(bytes.size());
  if (absl::Status st = op.memory().Read(at, absl::MakeSpan(back)); !st.ok()) return st;
  if (back != bytes) return absl::InternalError("memory read back differs");
  absl::StatusOr<int64_t> fd = check(
      op.Syscall(SYS_openat, {static_cast<uint64_t>(AT_FDCWD), at,
                              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644}),
      "openat");
  if (!fd.ok()) return fd.status();
  absl::StatusOr<int64_t> wrote = check(
      op.Syscall(SYS_write, {static_cast<uint64_t>(*fd), at + 2048, message.size()}), "write");
  if (!wrote.ok()) return wrote.status();
  if (absl::StatusOr<int64_t> c = check(op.Syscall(SYS_close, {static_cast<uint64_t>(*fd)}), "close"); !c.ok()) {
    return c.status();
  }
  if (absl::StatusOr<int64_t> u = check(op.Syscall(SYS_munmap, {at, 4096}), "munmap"); !u.ok()) {
    return u.status();
  }
  absl::StatusOr<SymbolResolver> symbols = SymbolResolver::ForProcess(op.pid(), &op.memory());
  if (!symbols.ok()) return symbols.status();
  absl::StatusOr<CallResult> called = CallSymbol(op, *symbols, "getpid", {});
  if (!called.ok()) return called.status();
  if (called->crashed() || called->value != static_cast<uint64_t>(pid)) {
    return absl::InternalError("remote getpid failed");
  }
  called = CallSymbol(op, *symbols, "main-program:checksum_step", {3, 4});
  if (!called.ok()) return called.status();
  if (called->value != ChecksumStep(3, 4)) return absl::InternalError("checksum_step");
  return absl::OkStatus();
}

TEST_P(TargetMatrixTest, AttachEverythingDetachTargetUnchanged) {
  const Case& c = GetParam();
  std::vector<std::string> argv = {RunfilePath(
      c.static_binary ? "tests/testcases/attach_target_static" : "tests/testcases/attach_target")};
  argv.insert(argv.end(), c.args.begin(), c.args.end());
  absl::StatusOr<TargetProcess> target = TargetProcess::Start(argv);
  ASSERT_TRUE(target.ok()) << target.status();
  absl::StatusOr<std::string> ready = target->ReadLine();
  ASSERT_TRUE(ready.ok() && absl::StartsWith(*ready, "ready")) << ready.status();
  std::string file = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                                  "/matrix-", c.name, "-", getpid());
  {
    absl::StatusOr<std::unique_ptr<TracerThread>> tracer =
        TracerThread::Attach(target->OpenPidfd(), target->pid(), {}, Soon());
    ASSERT_TRUE(tracer.ok()) << tracer.status();
    RunOptions options;
    options.stop_all_threads = c.stop_all_threads;
    for (int round = 0; round < 3; ++round) {
      absl::Status st = (*tracer)->Run([&](Operation& op) {
        return Everything(op, file, target->pid());
      }, Soon(), options);
      ASSERT_TRUE(st.ok()) << st;
    }
  }
  EXPECT_EQ(*ptrace::ReadProcFile(file), "hello from an injected write\n");
  unlink(file.c_str());
  if (!c.input.empty()) {
    ASSERT_TRUE(target->Write(c.input).ok());
  }
  absl::StatusOr<std::string> out = target->ReadLine();
  ASSERT_TRUE(out.ok()) << out.status();
  if (!c.expected.empty()) {
    EXPECT_EQ(*out, c.expected);
  } else if (std::string(c.name) == "checksum") {
    uint64_t iterations = 0, checksum = 0;
    ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "iterations"), &iterations)) << *out;
    ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "checksum"), &checksum)) << *out;
    uint64_t state = 1;
    for (uint64_t i = 0; i < iterations; ++i) state = ChecksumStep(state, i);
    EXPECT_EQ(checksum, state);
  } else if (std::string(c.name) == "sleep") {
    int elapsed = 0;
    EXPECT_EQ(TargetProcess::Field(*out, "rc"), "0") << *out;
    EXPECT_EQ(TargetProcess::Field(*out, "errno"), "0") << *out;
    ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "elapsed_ms"), &elapsed));
    EXPECT_GE(elapsed, 500);
    EXPECT_LT(elapsed, 500 * 3);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Targets, TargetMatrixTest,
    ::testing::Values(
        Case{"checksum", {"checksum"}, false, false, "x", ""},
        Case{"read", {"read"}, false, false, "hello", "read=5 data=hello errno=0"},
        Case{"sleep", {"sleep", "500"}, false, false, "", ""},
        Case{"futex", {"futex"}, false, false, "w", "futex eintr=0 value=1"},
        Case{"epoll", {"epoll"}, false, false, "e", "epoll rc=1 errno=0"},
        Case{"threads", {"threads", "2"}, false, true, "t", "read=1 data=t errno=0"},
        Case{"seccomp", {"seccomp"}, false, false, "s", "read=1 data=s errno=0"},
        Case{"vector", {"vector"}, false, false, "v", "vector read=1 same=1"},
        Case{"static", {"read"}, true, false, "z", "read=1 data=z errno=0"}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace procwarp::exec
