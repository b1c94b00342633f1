// Tests of remote calls and library injection against real target programs
// (tests/testcases/attach_target.c, attach_marker_lib.c): symbols resolved
// from the target's mapped objects, calls that return, calls that crash
// (the target survives, unchanged), full XSAVE state restored, a library
// loaded and unloaded with its constructor/destructor run, and the refusals
// for targets without glibc.
#include <elf.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "daemon/exec/elf_symbols.h"
#include "daemon/exec/library_injector.h"
#include "daemon/exec/remote_call.h"
#include "daemon/ptrace/proc_info.h"
#include "daemon/ptrace/ptrace_call.h"
#include "daemon/ptrace/testing/target_process.h"
#include "daemon/ptrace/tracer_thread.h"
#include "gtest/gtest.h"

namespace procwarp::exec {
namespace {

using ::procwarp::ptrace::AttachOptions;
using ::procwarp::ptrace::Operation;
using ::procwarp::ptrace::TracerThread;
using ::procwarp::testing::ReadyTarget;
using ::procwarp::testing::RunfilePath;
using ::procwarp::testing::StartReady;
using ::procwarp::testing::TargetProcess;

absl::Time Soon() { return absl::Now() + absl::Seconds(20); }


std::string Target() { return RunfilePath("tests/testcases/attach_target"); }
std::string StaticTarget() { return RunfilePath("tests/testcases/attach_target_static"); }

std::unique_ptr<TracerThread> AttachTo(const TargetProcess& p) {
  absl::StatusOr<std::unique_ptr<TracerThread>> t =
      TracerThread::Attach(p.OpenPidfd(), p.pid(), AttachOptions{}, Soon());
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

uint64_t ChecksumStep(uint64_t state, uint64_t i) {
  state ^= i + 0x9e3779b97f4a7c15ULL + (state << 6) + (state >> 2);
  return state * 0xff51afd7ed558ccdULL;
}

// Resolves and calls `symbol` in one operation.
absl::StatusOr<CallResult> Call(TracerThread& tracer, const std::string& symbol,
                                std::vector<uint64_t> args) {
  absl::StatusOr<CallResult> result;
  absl::Status st = tracer.Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<SymbolResolver> symbols =
        SymbolResolver::ForProcess(op.pid(), &op.memory());
    if (!symbols.ok()) return symbols.status();
    result = CallSymbol(op, *symbols, symbol, args);
    return result.status();
  }, Soon());
  if (!st.ok()) return st;
  return result;
}

TEST(SymbolResolverTest, ObjectsInLoadOrderAndSymbols) {
  ReadyTarget t = StartReady({Target(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<SymbolResolver> symbols =
        SymbolResolver::ForProcess(op.pid(), &op.memory());
    if (!symbols.ok()) return symbols.status();
    const auto& objects = symbols->objects();
    EXPECT_GE(objects.size(), 3u) << symbols->DescribeObjects();
    EXPECT_TRUE(objects.front().main_program) << symbols->DescribeObjects();
    size_t libc = 0, ld = 0;
    for (size_t i = 0; i < objects.size(); ++i) {
      if (absl::EndsWith(objects[i].path, "/libc.so.6")) libc = i;
      if (absl::StrContains(objects[i].path, "ld-linux")) ld = i;
    }
    EXPECT_GT(libc, 0u);
    EXPECT_GT(ld, libc) << symbols->DescribeObjects();
    absl::StatusOr<ResolvedSymbol> qualified = symbols->Resolve("libc.so.6:getpid");
    absl::StatusOr<ResolvedSymbol> searched = symbols->Resolve("getpid");
    EXPECT_TRUE(qualified.ok()) << qualified.status();
    EXPECT_TRUE(searched.ok()) << searched.status();
    if (qualified.ok() && searched.ok()) {
      EXPECT_EQ(qualified->address, searched->address);
    }
    absl::StatusOr<ResolvedSymbol> own = symbols->Resolve("main-program:checksum_step");
    EXPECT_TRUE(own.ok()) << own.status();
    absl::StatusOr<ResolvedSymbol> dlopen = symbols->Resolve("libc.so.6:dlopen");
    EXPECT_TRUE(dlopen.ok()) << dlopen.status();
    absl::StatusOr<ResolvedSymbol> missing = symbols->Resolve("libnothing.so:foo");
    EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
    EXPECT_TRUE(absl::StrContains(missing.status().message(), "libc.so.6"));
    absl::StatusOr<ResolvedSymbol> no_symbol = symbols->Resolve("no_such_function_xyz");
    EXPECT_TRUE(absl::IsNotFound(no_symbol.status()));
    EXPECT_TRUE(absl::IsInvalidArgument(symbols->Resolve(":x").status()));
    return absl::OkStatus();
  }, Soon()).ok());
}

TEST(RemoteCallTest, CallsLibcAndTheProgramsOwnFunction) {
  ReadyTarget t = StartReady({Target(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::StatusOr<CallResult> pid = Call(*tracer, "libc.so.6:getpid", {});
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_FALSE(pid->crashed());
  EXPECT_EQ(pid->value, static_cast<uint64_t>(t.process.pid()));
  absl::StatusOr<CallResult> step = Call(*tracer, "main-program:checksum_step", {12345, 678});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->value, ChecksumStep(12345, 678));
  // An IFUNC (strlen) is resolved through its resolver first.
  absl::StatusOr<CallResult> len;
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<SymbolResolver> symbols = SymbolResolver::ForProcess(op.pid(), &op.memory());
    if (!symbols.ok()) return symbols.status();
    absl::StatusOr<ResolvedSymbol> buf = symbols->Resolve("main-program:pw_buffer");
    if (!buf.ok()) return buf.status();
    len = CallSymbol(op, *symbols, "strlen", {buf->address});
    return len.status();
  }, Soon()).ok());
  EXPECT_EQ(len->value, strlen("procwarp attach target buffer"));
  tracer.reset();
  ASSERT_TRUE(t.process.Write("after calls").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=11 data=after calls errno=0");
}

TEST(RemoteCallTest, CrashInCalleeLeavesTargetRunning) {
  ReadyTarget t = StartReady({Target(), "checksum"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::StatusOr<CallResult> null_deref = Call(*tracer, "main-program:crash_null", {1});
  ASSERT_TRUE(null_deref.ok()) << null_deref.status();
  EXPECT_EQ(null_deref->signal, SIGSEGV);
  EXPECT_EQ(null_deref->fault_address, 0u);
  EXPECT_NE(null_deref->fault_rip, 0u);
  absl::StatusOr<CallResult> at_zero = Call(*tracer, "0x0", {});
  ASSERT_TRUE(at_zero.ok()) << at_zero.status();
  EXPECT_EQ(at_zero->signal, SIGSEGV);
  EXPECT_EQ(at_zero->fault_rip, 0u);
  // A call that works, after the crashes.
  absl::StatusOr<CallResult> step = Call(*tracer, "main-program:checksum_step", {1, 0});
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->value, ChecksumStep(1, 0));
  tracer.reset();
  ASSERT_TRUE(t.process.Write("x").ok());
  absl::StatusOr<std::string> out = t.process.ReadLine();
  ASSERT_TRUE(out.ok());
  uint64_t iterations = 0, checksum = 0;
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "iterations"), &iterations));
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "checksum"), &checksum));
  uint64_t state = 1;
  for (uint64_t i = 0; i < iterations; ++i) state = ChecksumStep(state, i);
  EXPECT_EQ(checksum, state);
}

// The XSAVE area is put back whole: the op scribbles over xmm0-15 (as a
// callee using vector registers would) and calls a function; the target's
// own registers still hold its pattern when its read returns.
TEST(RemoteCallTest, ExtendedStateIsRestored) {
  ReadyTarget t = StartReady({Target(), "vector"});
  {
    auto tracer = AttachTo(t.process);
    ASSERT_NE(tracer, nullptr);
    ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
      absl::StatusOr<const ptrace::ThreadState*> saved = op.SavedState();
      if (!saved.ok()) return saved.status();
      std::vector<uint8_t> scribbled = (*saved)->xstate;
      constexpr size_t kXmmOffset = 160;  // FXSAVE layout: xmm0..15
      for (size_t i = 0; i < 256; ++i) scribbled[kXmmOffset + i] ^= 0x5a;
      struct iovec iov = {scribbled.data(), scribbled.size()};
      absl::Status set = ptrace::Ptrace(PTRACE_SETREGSET, op.tid(), NT_X86_XSTATE,
                                        reinterpret_cast<unsigned long>(&iov));
      if (!set.ok()) return set;
      absl::StatusOr<SymbolResolver> symbols = SymbolResolver::ForProcess(op.pid(), &op.memory());
      if (!symbols.ok()) return symbols.status();
      return CallSymbol(op, *symbols, "getpid", {}).status();
    }, Soon()).ok());
  }
  ASSERT_TRUE(t.process.Write("v").ok());
  EXPECT_EQ(*t.process.ReadLine(), "vector read=1 same=1");
}

TEST(LibraryInjectionTest, LoadsRunsConstructorAndUnloads) {
  std::string marker = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                                    "/marker-", getpid());
  unlink(marker.c_str());
  TargetProcess::Options options;
  options.env.push_back(absl::StrCat("PW_MARKER_PATH=", marker));
  ReadyTarget t = StartReady({Target(), "read"}, options);
  std::string library = RunfilePath("tests/testcases/attach_marker_lib.so");
  char resolved[PATH_MAX];
  ASSERT_NE(realpath(library.c_str(), resolved), nullptr);
  library = resolved;
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  uint64_t handle = 0;
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<SymbolResolver> symbols = SymbolResolver::ForProcess(op.pid(), &op.memory());
    if (!symbols.ok()) return symbols.status();
    absl::StatusOr<uint64_t> h = InjectLibrary(op, *symbols, library);
    if (!h.ok()) return h.status();
    handle = *h;
    return absl::OkStatus();
  }, Soon()).ok());
  EXPECT_NE(handle, 0u);
  EXPECT_EQ(*ptrace::ReadProcFile(marker), absl::StrCat("loaded pid=", t.process.pid(), "\n"));
  absl::StatusOr<CallResult> answer = Call(*tracer, "attach_marker_lib.so:pw_marker_answer", {});
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(static_cast<int>(answer->value), 42);
  ASSERT_TRUE(tracer->Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<SymbolResolver> symbols = SymbolResolver::ForProcess(op.pid(), &op.memory());
    if (!symbols.ok()) return symbols.status();
    return UnloadLibrary(op, *symbols, handle);
  }, Soon()).ok());
  EXPECT_EQ(*ptrace::ReadProcFile(marker),
            absl::StrCat("loaded pid=", t.process.pid(), "\nunloaded pid=", t.process.pid(), "\n"));
  EXPECT_FALSE(absl::StrContains(
      *ptrace::ReadProcFile(absl::StrCat("/proc/", t.process.pid(), "/maps")),
      "attach_marker_lib"));
  // No scratch page left behind, and the target goes on.
  absl::Status missing = tracer->Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<SymbolResolver> symbols = SymbolResolver::ForProcess(op.pid(), &op.memory());
    if (!symbols.ok()) return symbols.status();
    return InjectLibrary(op, *symbols, "/nonexistent/libnothing.so").status();
  }, Soon());
  EXPECT_TRUE(absl::IsFailedPrecondition(missing)) << missing;
  EXPECT_TRUE(absl::StrContains(missing.message(), "libnothing.so")) << missing;
  tracer.reset();
  ASSERT_TRUE(t.process.Write("ok").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=2 data=ok errno=0");
  unlink(marker.c_str());
}

TEST(LibraryInjectionTest, StaticTargetIsRefusedButCallsWork) {
  ReadyTarget t = StartReady({StaticTarget(), "read"});
  auto tracer = AttachTo(t.process);
  ASSERT_NE(tracer, nullptr);
  absl::Status st = tracer->Run([&](Operation& op) -> absl::Status {
    absl::StatusOr<SymbolResolver> symbols = SymbolResolver::ForProcess(op.pid(), &op.memory());
    if (!symbols.ok()) return symbols.status();
    return InjectLibrary(op, *symbols, "/lib/x86_64-linux-gnu/libm.so.6").status();
  }, Soon());
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "no libc.so.6 mapped")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "static binary")) << st;
  absl::StatusOr<CallResult> step = Call(*tracer, "main-program:checksum_step", {7, 9});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->value, ChecksumStep(7, 9));
  tracer.reset();
  ASSERT_TRUE(t.process.Write("s").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=1 data=s errno=0");
}

}  // namespace
}  // namespace procwarp::exec
