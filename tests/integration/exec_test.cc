// Exec against a real procwarpd and real targets it did not spawn
// (tests/testcases/attach_target.c): remote calls in busy and blocked
// targets (their own behaviour intact afterwards), calls by address, a
// crash in the callee, library injection and unloading, static targets,
// the authorisation rules as uid 65534 (exec_peer), a target killed during
// a call, a client that goes away mid-call, and the preflight (`doctor`) of
// traced, stopped and zombie targets.
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "client/cc/client.h"
#include "daemon/ptrace/testing/target_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/procwarp/exec/v1/exec.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int kNobody = 65534;


std::string Target() { return RunfilePath("tests/testcases/attach_target"); }
std::string StaticTarget() { return RunfilePath("tests/testcases/attach_target_static"); }
std::string MarkerLib() {
  char resolved[PATH_MAX];
  if (realpath(RunfilePath("tests/testcases/attach_marker_lib.so").c_str(), resolved) ==
      nullptr) {
    abort();
  }
  return resolved;
}

uint64_t ChecksumStep(uint64_t state, uint64_t i) {
  state ^= i + 0x9e3779b97f4a7c15ULL + (state << 6) + (state >> 2);
  return state * 0xff51afd7ed558ccdULL;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int CountFds(pid_t pid) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"))) {
    (void)e;
    ++n;
  }
  return n;
}

// TracerPid of /proc/PID/status.
int TracerPid(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest(line);
    if (absl::ConsumePrefix(&rest, "TracerPid:")) {
      int tracer = -1;
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &tracer);
      return tracer;
    }
  }
  return -1;
}

class ExecTest : public ::testing::Test {
 protected:
  void SetUp() override { StartDaemon({}); }

  // (Re)starts the daemon with extra procwarpd `flags` and connects to it.
  void StartDaemon(std::vector<std::string> flags) {
    client_.reset();
    daemon_.reset();
    DaemonHarness::Options options;
    options.flags = std::move(flags);
    auto daemon = DaemonHarness::Start(options);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    auto client = Client::Connect(daemon_->socket_path());
    ASSERT_TRUE(client.ok()) << client.status();
    client_.emplace(*std::move(client));
    // Writable for uid 65534's targets (markers) and libraries.
    dir_ = daemon_->dir();
    chmod(dir_.c_str(), 0777);
  }

  // exec_peer's one-line answer, run as uid/gid 65534.
  std::string AsNobody(std::vector<std::string> args) {
    RunResult r = RunProgram(PeerCommand("exec_peer", daemon_->socket_path(), kNobody, args));
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return r.out;
  }

  // A copy of `from` in the test directory with `mode`, owned by root (the
  // runfiles are under root's home, out of uid 65534's reach).
  std::string Copy(const std::string& from, const std::string& name, mode_t mode) {
    std::string path = absl::StrCat(dir_, "/", name);
    std::filesystem::copy_file(from, path,
                               std::filesystem::copy_options::overwrite_existing);
    chmod(path.c_str(), mode);
    return path;
  }

  std::unique_ptr<DaemonHarness> daemon_;
  std::optional<Client> client_;
  std::string dir_;
};

TEST_F(ExecTest, CallInABusyTargetLeavesItsComputationIntact) {
  ReadyTarget t = StartReady({Target(), "checksum"});
  for (int i = 0; i < 20; ++i) {
    auto pid = client_->Call(t.process.pid(), "getpid");
    ASSERT_TRUE(pid.ok()) << pid.status();
    EXPECT_EQ(pid->return_value(), static_cast<uint64_t>(t.process.pid()));
    EXPECT_FALSE(pid->has_crash());
  }
  auto step = client_->Call(t.process.pid(), "main-program:checksum_step", {12345, 678});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->return_value(), ChecksumStep(12345, 678));
  ASSERT_TRUE(t.process.Write("x").ok());
  absl::StatusOr<std::string> out = t.process.ReadLine();
  ASSERT_TRUE(out.ok());
  uint64_t iterations = 0, checksum = 0;
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "iterations"), &iterations)) << *out;
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(*out, "checksum"), &checksum));
  uint64_t state = 1;
  for (uint64_t i = 0; i < iterations; ++i) state = ChecksumStep(state, i);
  EXPECT_EQ(checksum, state);
}

TEST_F(ExecTest, CallInTargetsBlockedInReadAndNanosleep) {
  ReadyTarget reader = StartReady({Target(), "read"});
  ReadyTarget sleeper = StartReady({Target(), "sleep", "1500"});
  for (int i = 0; i < 10; ++i) {
    auto a = client_->Call(reader.process.pid(), "libc.so.6:getpid");
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->return_value(), static_cast<uint64_t>(reader.process.pid()));
    auto b = client_->Call(sleeper.process.pid(), "getpid");
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->return_value(), static_cast<uint64_t>(sleeper.process.pid()));
  }
  ASSERT_TRUE(reader.process.Write("after").ok());
  EXPECT_EQ(*reader.process.ReadLine(), "read=5 data=after errno=0");
  absl::StatusOr<std::string> slept = sleeper.process.ReadLine();
  ASSERT_TRUE(slept.ok());
  EXPECT_EQ(TargetProcess::Field(*slept, "rc"), "0") << *slept;
  EXPECT_EQ(TargetProcess::Field(*slept, "errno"), "0") << *slept;
}

TEST_F(ExecTest, CallByAddressAndTheAddressBySymbolAgree) {
  ReadyTarget t = StartReady({Target(), "read"});
  auto by_symbol = client_->Call(t.process.pid(), "main-program:checksum_step", {7, 9});
  ASSERT_TRUE(by_symbol.ok()) << by_symbol.status();
  EXPECT_THAT(by_symbol->object(), HasSubstr("attach_target"));
  ASSERT_NE(by_symbol->address(), 0u);
  auto by_address = client_->Call(t.process.pid(),
                                  absl::StrCat("0x", absl::Hex(by_symbol->address())), {7, 9});
  ASSERT_TRUE(by_address.ok()) << by_address.status();
  EXPECT_EQ(by_address->return_value(), ChecksumStep(7, 9));
  EXPECT_EQ(by_address->address(), by_symbol->address());
}

TEST_F(ExecTest, CrashInTheCalleeIsReportedAndTheTargetSurvives) {
  ReadyTarget t = StartReady({Target(), "read"});
  auto crash = client_->Call(t.process.pid(), "main-program:crash_null", {1});
  ASSERT_TRUE(crash.ok()) << crash.status();
  ASSERT_TRUE(crash->has_crash());
  EXPECT_EQ(crash->crash().signal(), SIGSEGV);
  EXPECT_EQ(crash->crash().signal_name(), "SIGSEGV");
  EXPECT_EQ(crash->crash().fault_address(), 0u);
  EXPECT_NE(crash->crash().rip(), 0u);
  auto after = client_->Call(t.process.pid(), "getpid");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->return_value(), static_cast<uint64_t>(t.process.pid()));
  ASSERT_TRUE(t.process.Write("ok").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=2 data=ok errno=0");
}

TEST_F(ExecTest, InjectRunsTheConstructorAndUnloadTheDestructor) {
  const std::string marker = absl::StrCat(dir_, "/marker");
  TargetProcess::Options options;
  options.env.push_back(absl::StrCat("PW_MARKER_PATH=", marker));
  ReadyTarget t = StartReady({Target(), "read"}, options);
  const pid_t pid = t.process.pid();
  const int fds_before = CountFds(pid);
  auto injected = client_->InjectLibrary(pid, MarkerLib());
  ASSERT_TRUE(injected.ok()) << injected.status();
  EXPECT_EQ(injected->handle().size(), 32u);
  EXPECT_EQ(injected->pid(), pid);
  EXPECT_EQ(injected->path(), MarkerLib());
  EXPECT_EQ(ReadFile(marker), absl::StrCat("loaded pid=", pid, "\n"));
  // Nothing of the fd passing is left in the target.
  EXPECT_EQ(CountFds(pid), fds_before);
  auto answer = client_->Call(pid, "attach_marker_lib.so:pw_marker_answer");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(static_cast<int>(answer->return_value()), 42);
  ASSERT_TRUE(client_->UnloadLibrary(injected->handle()).ok());
  EXPECT_EQ(ReadFile(marker),
            absl::StrCat("loaded pid=", pid, "\nunloaded pid=", pid, "\n"));
  EXPECT_FALSE(absl::StrContains(ReadFile(absl::StrCat("/proc/", pid, "/maps")),
                                 "attach_marker_lib"));
  absl::Status again = client_->UnloadLibrary(injected->handle());
  EXPECT_TRUE(absl::IsNotFound(again)) << again;
  ASSERT_TRUE(t.process.Write("go").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=2 data=go errno=0");
}

TEST_F(ExecTest, StaticTargetIsRefusedInjectionButTakesCalls) {
  ReadyTarget t = StartReady({StaticTarget(), "read"});
  auto injected = client_->InjectLibrary(t.process.pid(), MarkerLib());
  ASSERT_TRUE(absl::IsFailedPrecondition(injected.status())) << injected.status();
  EXPECT_THAT(injected.status().message(), HasSubstr("no libc.so.6 mapped"));
  EXPECT_THAT(injected.status().message(), HasSubstr("static binary"));
  auto step = client_->Call(t.process.pid(), "main-program:checksum_step", {3, 4});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->return_value(), ChecksumStep(3, 4));
  auto doctor = client_->Preflight(t.process.pid());
  ASSERT_TRUE(doctor.ok()) << doctor.status();
  EXPECT_TRUE(doctor->can_call());
  EXPECT_FALSE(doctor->can_inject());
  ASSERT_TRUE(t.process.Write("s").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=1 data=s errno=0");
}

TEST_F(ExecTest, BadRequestsAreRefusedCleanly) {
  ReadyTarget t = StartReady({Target(), "read"});
  auto stub = exec::v1::Exec::NewStub(daemon_->NewChannel());
  exec::v1::CallRequest request;
  exec::v1::CallResponse response;
  grpc::Status s = stub->Call(Ctx().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  request.mutable_target()->set_thread_id("0123");
  request.set_function("getpid");
  s = stub->Call(Ctx().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  request.mutable_target()->set_pid(t.process.pid());
  request.set_function("");
  s = stub->Call(Ctx().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  request.set_function("getpid");
  for (int i = 0; i < 7; ++i) request.add_args(i);
  s = stub->Call(Ctx().get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();

  auto unknown = client_->Call(t.process.pid(), "no_such_function_xyz");
  EXPECT_TRUE(absl::IsNotFound(unknown.status())) << unknown.status();
  auto no_process = client_->Call(0x3ffffff, "getpid");
  EXPECT_TRUE(absl::IsNotFound(no_process.status())) << no_process.status();
  auto daemon_itself = client_->Call(daemon_->pid(), "getpid");
  EXPECT_FALSE(daemon_itself.ok());
  auto relative = client_->InjectLibrary(t.process.pid(), "lib.so");
  EXPECT_TRUE(absl::IsInvalidArgument(relative.status())) << relative.status();
  auto directory = client_->InjectLibrary(t.process.pid(), "/tmp");
  EXPECT_TRUE(absl::IsInvalidArgument(directory.status())) << directory.status();
  auto missing = client_->InjectLibrary(t.process.pid(), "/nonexistent/lib.so");
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_TRUE(absl::IsNotFound(client_->UnloadLibrary("0123456789abcdef0123456789abcdef")));
  // The daemon serves on, the target noticed nothing.
  auto serves = client_->Call(t.process.pid(), "getpid");
  EXPECT_TRUE(serves.ok()) << serves.status();
  ASSERT_TRUE(t.process.Write("b").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=1 data=b errno=0");
}

// The authorisation rule, as uid 65534: root's process and a non-dumpable
// process of its own are refused, its own process works, and a library it
// cannot read is never loaded, even into its own process.
TEST_F(ExecTest, NobodyActsOnlyWhereItCouldPtraceAndLoadsOnlyWhatItCanRead) {
  const std::string marker = absl::StrCat(dir_, "/nobody-marker");
  TargetProcess::Options env;
  env.env.push_back(absl::StrCat("PW_MARKER_PATH=", marker));
  const std::string target = Copy(Target(), "attach_target", 0755);
  ReadyTarget roots = StartReady({target, "read"}, env);
  TargetProcess::Options nobody = env;
  nobody.uid = kNobody;
  ReadyTarget own = StartReady({target, "read"}, nobody);
  ReadyTarget nodump = StartReady({target, "nodump"}, nobody);
  const std::string readable = Copy(MarkerLib(), "readable.so", 0644);
  const std::string secret = Copy(MarkerLib(), "secret.so", 0600);
  const std::string root_pid = absl::StrCat(roots.process.pid());
  const std::string own_pid = absl::StrCat(own.process.pid());

  EXPECT_THAT(AsNobody({"call", root_pid, "getpid"}), StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(AsNobody({"inject", root_pid, readable}), StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(AsNobody({"call", absl::StrCat(nodump.process.pid()), "getpid"}),
              StartsWith("PERMISSION_DENIED"));
  std::string doctor = AsNobody({"doctor", root_pid});
  EXPECT_THAT(doctor, StartsWith("OK can_call=0 can_inject=0 exe= "));
  EXPECT_THAT(doctor, HasSubstr("ptrace rule=VERDICT_FAIL"));

  EXPECT_EQ(AsNobody({"call", own_pid, "getpid"}), absl::StrCat("OK ", own_pid, "\n"));
  const int fds_before = CountFds(own.process.pid());
  std::string denied = AsNobody({"inject", own_pid, secret});
  EXPECT_THAT(denied, StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(denied, HasSubstr(secret));
  EXPECT_EQ(CountFds(own.process.pid()), fds_before);
  EXPECT_FALSE(absl::StrContains(ReadFile(absl::StrCat("/proc/", own_pid, "/maps")), "secret.so"));
  EXPECT_EQ(ReadFile(marker), "");

  std::string injected = AsNobody({"inject", own_pid, readable});
  ASSERT_THAT(injected, StartsWith("OK "));
  std::string handle(absl::StripAsciiWhitespace(injected.substr(3)));
  EXPECT_EQ(ReadFile(marker), absl::StrCat("loaded pid=", own_pid, "\n"));
  // Handles are their maker's: 65534 cannot use one root made.
  auto roots_handle = client_->InjectLibrary(roots.process.pid(), readable);
  ASSERT_TRUE(roots_handle.ok()) << roots_handle.status();
  EXPECT_THAT(AsNobody({"unload", roots_handle->handle()}), StartsWith("NOT_FOUND"));
  EXPECT_EQ(AsNobody({"unload", handle}), "OK \n");
  EXPECT_TRUE(client_->UnloadLibrary(roots_handle->handle()).ok());

  ASSERT_TRUE(roots.process.Write("r").ok());
  EXPECT_EQ(*roots.process.ReadLine(), "read=1 data=r errno=0");
  ASSERT_TRUE(own.process.Write("o").ok());
  EXPECT_EQ(*own.process.ReadLine(), "read=1 data=o errno=0");
}

// Library handles per identity are bounded (docs/security.md, "Bounds"):
// uid 65534 holding max_library_handles_per_identity handles is refused the
// next injection before anything is loaded, root is still served, and an
// unload gives the slot back.
TEST_F(ExecTest, LibraryHandlesPerUserAreBounded) {
  StartDaemon({"--max_library_handles_per_identity", "2"});
  const std::string marker = absl::StrCat(dir_, "/handles-marker");
  TargetProcess::Options nobody;
  nobody.env.push_back(absl::StrCat("PW_MARKER_PATH=", marker));
  nobody.uid = kNobody;
  ReadyTarget own = StartReady({Copy(Target(), "attach_target", 0755), "read"}, nobody);
  const std::string pid = absl::StrCat(own.process.pid());
  // Each injection of the same library is one more dlopen reference and
  // one more handle.
  const std::string lib = Copy(MarkerLib(), "marker.so", 0644);
  std::vector<std::string> handles;
  for (int i = 0; i < 2; ++i) {
    std::string out = AsNobody({"inject", pid, lib});
    ASSERT_THAT(out, StartsWith("OK ")) << out;
    handles.emplace_back(absl::StripAsciiWhitespace(out.substr(3)));
  }
  std::string refused = AsNobody({"inject", pid, lib});
  EXPECT_THAT(refused, StartsWith("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(refused, HasSubstr("2 library handles"));

  // Root has its own count.
  auto roots = client_->InjectLibrary(own.process.pid(), lib);
  ASSERT_TRUE(roots.ok()) << roots.status();
  EXPECT_TRUE(client_->UnloadLibrary(roots->handle()).ok());

  // Unloading gives the slot back.
  EXPECT_EQ(AsNobody({"unload", handles[0]}), "OK \n");
  std::string again = AsNobody({"inject", pid, lib});
  ASSERT_THAT(again, StartsWith("OK ")) << again;
  handles[0] = std::string(absl::StripAsciiWhitespace(again.substr(3)));
  for (const std::string& handle : handles) EXPECT_EQ(AsNobody({"unload", handle}), "OK \n");
  // The last reference went with the last handle.
  EXPECT_EQ(ReadFile(marker), absl::StrCat("loaded pid=", pid, "\nunloaded pid=", pid, "\n"));

  ASSERT_TRUE(own.process.Write("o").ok());
  EXPECT_EQ(*own.process.ReadLine(), "read=1 data=o errno=0");
}

// The root-tracer trap (docs/security.md, "Exec"): procwarpd traces with
// CAP_SYS_PTRACE, so a traced process that execs a setuid program gains its
// credentials. uid 65534 makes its own process execve() a setuid-root
// program through a remote call: the exec ends the operation (and the
// attachment) before the new program runs, and from then on the process is
// root's: every later call or injection by 65534 is refused.
TEST_F(ExecTest, ASetuidExecDuringACallEndsItAndTheCallerLosesTheProcess) {
  const std::string target = Copy(Target(), "attach_target", 0755);
  const std::string setuid_target = Copy(Target(), "attach_target_setuid", 04755);
  const std::string readable = Copy(MarkerLib(), "readable.so", 0644);
  TargetProcess::Options nobody;
  nobody.uid = kNobody;
  ReadyTarget own = StartReady({target, "read"}, nobody);
  const pid_t pid = own.process.pid();
  // argv for execve, written into the target's scratch buffer (the caller
  // could do as much to its own process).
  uint64_t buf = 0;
  ASSERT_TRUE(absl::SimpleHexAtoi(TargetProcess::Field(own.ready, "buf"), &buf));
  std::string strings = setuid_target + std::string(1, '\0') + "read" + std::string(1, '\0');
  const uint64_t argv_at = buf + 2048;
  const uint64_t argv[3] = {buf, buf + setuid_target.size() + 1, 0};
  {
    std::fstream mem(absl::StrCat("/proc/", pid, "/mem"),
                     std::ios::in | std::ios::out | std::ios::binary);
    mem.seekp(static_cast<std::streamoff>(buf));
    mem.write(strings.data(), static_cast<std::streamsize>(strings.size()));
    mem.seekp(static_cast<std::streamoff>(argv_at));
    mem.write(reinterpret_cast<const char*>(argv), sizeof(argv));
    ASSERT_TRUE(mem.good());
  }
  std::string exec = AsNobody({"call", absl::StrCat(pid), "libc.so.6:execve",
                               absl::StrCat(buf), absl::StrCat(argv_at), "0"});
  EXPECT_THAT(exec, StartsWith("FAILED_PRECONDITION")) << exec;
  EXPECT_THAT(exec, HasSubstr("exec")) << exec;
  // The setuid program runs, untraced, as root (effective and saved).
  EXPECT_THAT(*own.process.ReadLine(), StartsWith("ready"));
  std::string status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  EXPECT_THAT(status, HasSubstr("Uid:\t65534\t0\t0\t0"));
  EXPECT_THAT(status, HasSubstr("TracerPid:\t0\n"));
  EXPECT_THAT(AsNobody({"call", absl::StrCat(pid), "getpid"}), StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(AsNobody({"inject", absl::StrCat(pid), readable}),
              StartsWith("PERMISSION_DENIED"));
  EXPECT_THAT(AsNobody({"doctor", absl::StrCat(pid)}), HasSubstr("ptrace rule=VERDICT_FAIL"));
}

// Killed while a called function runs: a clean error, and the daemon holds
// no fd of it afterwards and serves on. (Its thread count is no measure:
// gRPC's synchronous server adds pollers while a call blocks.)
TEST_F(ExecTest, TargetKilledDuringACallFailsCleanly) {
  ASSERT_TRUE(client_->Preflight().ok());  // the connection's own fds exist
  const int daemon_fds = daemon_->CountFds();
  ReadyTarget t = StartReady({Target(), "read"});
  absl::StatusOr<exec::v1::CallResponse> result;
  std::thread caller([&] {
    result = client_->Call(t.process.pid(), "main-program:announce_and_block");
  });
  EXPECT_EQ(*t.process.ReadLine(), "in call");
  kill(t.process.pid(), SIGKILL);
  caller.join();
  EXPECT_TRUE(absl::IsNotFound(result.status())) << result.status();
  EXPECT_EQ(daemon_->CountFds(), daemon_fds);
  ReadyTarget next = StartReady({Target(), "read"});
  auto served = client_->Call(next.process.pid(), "getpid");
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(served->return_value(), static_cast<uint64_t>(next.process.pid()));
}

// The client goes away mid-call: the callee is abandoned, the target put
// back and detached, and it goes on as before.
TEST_F(ExecTest, ClientGoingAwayMidCallLeavesTheTargetRunningAndDetached) {
  ReadyTarget t = StartReady({Target(), "read"});
  auto stub = exec::v1::Exec::NewStub(daemon_->NewChannel());
  grpc::ClientContext context;
  exec::v1::CallRequest request;
  request.mutable_target()->set_pid(t.process.pid());
  request.set_function("main-program:announce_and_block");
  exec::v1::CallResponse response;
  grpc::Status status;
  std::thread caller([&] { status = stub->Call(&context, request, &response); });
  EXPECT_EQ(*t.process.ReadLine(), "in call");
  context.TryCancel();
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  // Detached: the daemon lets go before its handler ends (a bounded wait
  // for that handler, on the target's own /proc state).
  absl::Time give_up = absl::Now() + absl::Seconds(20);
  int tracer = -1;
  while (absl::Now() < give_up) {
    auto doctor = client_->Preflight(t.process.pid());
    ASSERT_TRUE(doctor.ok()) << doctor.status();
    tracer = doctor->facts().tracer_pid();
    if (tracer == 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(tracer, 0);
  // Put back: its read goes on and sees the data.
  ASSERT_TRUE(t.process.Write("after").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=5 data=after errno=0");
}

// Target.thread_id: Call, InjectLibrary and UnloadLibrary run on the
// caller's attached thread (its tracer thread; no second attach), which
// stays attached afterwards; the target runs on as before.
TEST_F(ExecTest, CallAndInjectThroughTheCallersAttachedThread) {
  const std::string marker = absl::StrCat(dir_, "/thread-marker");
  TargetProcess::Options options;
  options.env.push_back(absl::StrCat("PW_MARKER_PATH=", marker));
  ReadyTarget t = StartReady({Target(), "read"}, options);
  const pid_t pid = t.process.pid();
  absl::StatusOr<Thread> thread = client_->AttachThread(pid);
  ASSERT_TRUE(thread.ok()) << thread.status();
  auto got = thread->Call("getpid");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->return_value(), static_cast<uint64_t>(pid));
  auto step = thread->Call("main-program:checksum_step", {12345, 678});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->return_value(), ChecksumStep(12345, 678));
  // Still attached, by the daemon (a thread of it): the handle's
  // attachment did the call.
  const int tracer = TracerPid(pid);
  EXPECT_TRUE(std::filesystem::exists(
      absl::StrCat("/proc/", daemon_->daemon_pid(), "/task/", tracer)))
      << tracer;
  auto injected = thread->InjectLibrary(MarkerLib());
  ASSERT_TRUE(injected.ok()) << injected.status();
  EXPECT_EQ(ReadFile(marker), absl::StrCat("loaded pid=", pid, "\n"));
  // Unloaded through the same attachment while the caller holds it.
  ASSERT_TRUE(client_->UnloadLibrary(injected->handle()).ok());
  EXPECT_EQ(ReadFile(marker),
            absl::StrCat("loaded pid=", pid, "\nunloaded pid=", pid, "\n"));
  EXPECT_EQ(TracerPid(pid), tracer);
  // By pid instead: refused (procwarpd already traces it), naming why.
  auto by_pid = client_->Call(pid, "getpid");
  EXPECT_TRUE(absl::IsFailedPrecondition(by_pid.status())) << by_pid.status();
  // Unknown ids: NOT_FOUND.
  auto stub = exec::v1::Exec::NewStub(daemon_->NewChannel());
  grpc::ClientContext context;
  exec::v1::CallRequest request;
  request.mutable_target()->set_thread_id("00000000000000000000000000000000");
  request.set_function("getpid");
  exec::v1::CallResponse response;
  EXPECT_EQ(stub->Call(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(thread->Exit().ok());
  EXPECT_EQ(TracerPid(pid), 0);
  ASSERT_TRUE(t.process.Write("go").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=2 data=go errno=0");
}

// Target.thread_id naming one of the caller's *agent* threads: Call and
// InjectLibrary refuse with FAILED_PRECONDITION that says what the thread is
// and what Exec acts on (exec_target.h), nothing is loaded, and the agent
// serves on.
TEST_F(ExecTest, CallAndInjectOnAnAgentThreadAreFailedPrecondition) {
  absl::StatusOr<Thread> agent = client_->CreateThread();
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto call = agent->Call("getpid");
  EXPECT_TRUE(absl::IsFailedPrecondition(call.status())) << call.status();
  EXPECT_THAT(call.status().message(), HasSubstr("is an agent thread"));
  EXPECT_THAT(call.status().message(), HasSubstr("Threads.AttachThread"));
  auto injected = agent->InjectLibrary(MarkerLib());
  EXPECT_TRUE(absl::IsFailedPrecondition(injected.status())) << injected.status();
  EXPECT_THAT(injected.status().message(), HasSubstr("is an agent thread"));
  absl::StatusOr<pid_t> pid = agent->GetPid();
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_THAT(ReadFile(absl::StrCat("/proc/", *pid, "/maps")),
              ::testing::Not(HasSubstr("attach_marker_lib")));
  ASSERT_TRUE(agent->Exit().ok());
}

// Another caller's thread id is NOT_FOUND, exactly like an unknown one, and
// nothing is done to the process; 65534's own attached thread works.
TEST_F(ExecTest, ThreadIdsOfOtherCallersAreNotFound) {
  ReadyTarget t = StartReady({Target(), "read"});
  absl::StatusOr<Thread> roots = client_->AttachThread(t.process.pid());
  ASSERT_TRUE(roots.ok()) << roots.status();
  EXPECT_THAT(AsNobody({"call-thread", roots->id(), "getpid"}),
              StartsWith("NOT_FOUND"));
  EXPECT_THAT(AsNobody({"inject-thread", roots->id(), MarkerLib()}),
              StartsWith("NOT_FOUND"));
  TargetProcess::Options nobody;
  nobody.uid = kNobody;
  const std::string target = Copy(Target(), "attach_target", 0755);
  ReadyTarget own = StartReady({target, "read"}, nobody);
  EXPECT_EQ(AsNobody({"attach-call", absl::StrCat(own.process.pid()), "getpid"}),
            absl::StrCat("OK ", own.process.pid(), "\n"));
  ASSERT_TRUE(roots->Exit().ok());
  ASSERT_TRUE(t.process.Write("r").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=1 data=r errno=0");
  ASSERT_TRUE(own.process.Write("o").ok());
  EXPECT_EQ(*own.process.ReadLine(), "read=1 data=o errno=0");
}

// A Call through an attached thread whose client goes away is abandoned at
// once (the target put back), not at the operation bound: with that bound at
// an hour, the next operation on the same attachment runs (it would wait
// behind the blocked call until its own 10 s bound otherwise).
TEST_F(ExecTest, CancelledCallOnAnAttachedThreadIsAbandoned) {
  StartDaemon({"--exec_operation_timeout_ms", "3600000"});
  ReadyTarget t = StartReady({Target(), "read"});
  absl::StatusOr<Thread> thread = client_->AttachThread(t.process.pid());
  ASSERT_TRUE(thread.ok()) << thread.status();
  auto stub = exec::v1::Exec::NewStub(daemon_->NewChannel());
  grpc::ClientContext context;
  exec::v1::CallRequest request;
  request.mutable_target()->set_thread_id(thread->id());
  request.set_function("main-program:announce_and_block");
  exec::v1::CallResponse response;
  grpc::Status status;
  std::thread caller([&] { status = stub->Call(&context, request, &response); });
  EXPECT_EQ(*t.process.ReadLine(), "in call");
  context.TryCancel();
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  absl::StatusOr<pid_t> pid = thread->GetPid();
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(*pid, t.process.pid());
  ASSERT_TRUE(thread->Exit().ok());
  ASSERT_TRUE(t.process.Write("after").ok());
  EXPECT_EQ(*t.process.ReadLine(), "read=5 data=after errno=0");
}

TEST_F(ExecTest, DoctorExplainsTracedStoppedAndZombieTargets) {
  // Traced by this test.
  ReadyTarget traced = StartReady({Target(), "read"});
  ASSERT_EQ(ptrace(PTRACE_SEIZE, traced.process.pid(), 0, 0), 0) << strerror(errno);
  auto doctor = client_->Preflight(traced.process.pid());
  ASSERT_TRUE(doctor.ok()) << doctor.status();
  EXPECT_EQ(doctor->facts().tracer_pid(), getpid());
  EXPECT_FALSE(doctor->facts().tracer_comm().empty());
  EXPECT_FALSE(doctor->can_call());
  bool tracer_check = false;
  for (const auto& c : doctor->target()) {
    if (c.name() == "tracer") {
      tracer_check = true;
      EXPECT_EQ(c.verdict(), exec::v1::VERDICT_FAIL);
      EXPECT_THAT(c.detail(), HasSubstr(absl::StrCat("traced by pid ", getpid())));
    }
  }
  EXPECT_TRUE(tracer_check);
  auto call = client_->Call(traced.process.pid(), "getpid");
  EXPECT_TRUE(absl::IsFailedPrecondition(call.status())) << call.status();
  EXPECT_THAT(call.status().message(), HasSubstr(absl::StrCat(getpid())));

  // Stopped by job control (it stops itself after its ready line).
  ReadyTarget stopped = StartReady({Target(), "sigstop"});
  absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (absl::Now() < give_up) {
    doctor = client_->Preflight(stopped.process.pid());
    ASSERT_TRUE(doctor.ok());
    if (absl::StartsWith(doctor->facts().state(), "T")) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT(doctor->facts().state(), StartsWith("T"));
  EXPECT_FALSE(doctor->can_call());
  bool fix_named = false;
  for (const auto& c : doctor->target()) {
    if (c.name() == "state") {
      EXPECT_EQ(c.verdict(), exec::v1::VERDICT_FAIL);
      fix_named = absl::StrContains(c.fix(), "kill -CONT");
    }
  }
  EXPECT_TRUE(fix_named);
  call = client_->Call(stopped.process.pid(), "getpid");
  EXPECT_TRUE(absl::IsFailedPrecondition(call.status())) << call.status();

  // A zombie (the target's never-reaped child).
  ReadyTarget parent = StartReady({Target(), "zombie"});
  int zombie = 0;
  ASSERT_TRUE(absl::SimpleAtoi(TargetProcess::Field(parent.ready, "child"), &zombie));
  doctor = client_->Preflight(zombie);
  ASSERT_TRUE(doctor.ok()) << doctor.status();
  EXPECT_THAT(doctor->facts().state(), StartsWith("Z"));
  EXPECT_FALSE(doctor->can_call());
  call = client_->Call(zombie, "getpid");
  EXPECT_TRUE(absl::IsFailedPrecondition(call.status())) << call.status();

  // And a healthy one, with what only a permitted caller sees.
  ReadyTarget fine = StartReady({Target(), "read"});
  doctor = client_->Preflight(fine.process.pid());
  ASSERT_TRUE(doctor.ok());
  EXPECT_TRUE(doctor->can_call());
  EXPECT_TRUE(doctor->can_inject());
  EXPECT_THAT(doctor->facts().exe(), HasSubstr("attach_target"));
  EXPECT_TRUE(doctor->facts().exe_through_root());
  EXPECT_THAT(doctor->facts().libc(), HasSubstr("libc.so.6"));
  ASSERT_FALSE(doctor->facts().ns_pids().empty());
  EXPECT_EQ(doctor->facts().ns_pids(0), fine.process.pid());
  auto daemon_only = client_->Preflight();
  ASSERT_TRUE(daemon_only.ok());
  EXPECT_FALSE(daemon_only->daemon().empty());
  EXPECT_FALSE(daemon_only->has_facts());
}

}  // namespace
}  // namespace procwarp::testing
