// threads_bench: the Threads/Memory performance targets, each against a
// baseline measured in the same run (docs/architecture.md, "Performance targets"):
//   0. in-process syscall(SYS_getpid), ns/op (for scale).
//   1. one getpid through Threads.Syscall (unary) vs a bare gRPC unary echo
//      on the same kind of socket. Target: <= 1.3x.
//   2. 100k getpids through Threads.Execute, pipelined in batches.
//      Target: >= 300k syscalls/s.
//   3. a 64 MiB read of a thread's memory through Memory (ReadToClient, the
//      direct local path; ReadStream, the streamed one, for comparison) vs
//      process_vm_readv of the same memory into a local buffer.
//      Target: >= 0.5x its bandwidth.
// Each runs pinned (client, daemon and agent on CPU 0) and unpinned, and
// reports the daemon's CPU time where it helps.
//
//   bazel run -c opt //bench:threads_bench [-- --iterations N]
//       [--only getpid|unary|pipelined|memory]... [--placement pinned|unpinned]
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "daemon/thread/agent_connection.h"
#include "daemon/util/unique_fd.h"
#include "bench/echo_server.h"
#include "grpcpp/client_context.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::bench {
namespace {

using procwarp::testing::Ctx;
using procwarp::testing::DaemonHarness;
using procwarp::testing::RunfilePath;

constexpr uint64_t kReadBytes = 64 << 20;

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

void InProcessGetpid() {
  constexpr int kN = 2'000'000;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) syscall(SYS_getpid);
  printf("  in-process syscall(SYS_getpid)     %9.1f ns/op\n",
         Seconds(start) * 1e9 / kN);
}

void CompareUnary(const std::string& self, DaemonHarness* daemon,
                  v1::Threads::Stub* threads, const v1::ThreadInfo& thread,
                  int n) {
  EchoServer echo(self, daemon->dir());
  v1::SyscallRequest request;
  request.set_thread_id(thread.id());
  request.mutable_syscall()->set_number(SYS_getpid);
  bool wrong = false;
  // The agent works only in the measured rounds (and their warm-up).
  double agent_cpu = ProcessCpuMicros(thread.pid());
  Paired paired = echo.MeasureAgainst(daemon->pid(), n, [&] {
    v1::SyscallResponse response;
    grpc::Status s = threads->Syscall(Ctx().get(), request, &response);
    if (!s.ok() || response.result().value() != thread.pid()) wrong = true;
  });
  agent_cpu = ProcessCpuMicros(thread.pid()) - agent_cpu;
  if (wrong) printf("  !! some Threads.Syscall calls failed\n");
  Report("Threads.Syscall getpid (unary)", paired.measured,
         "bare gRPC unary echo", paired.baseline, "<= 1.3x");
  printf("  server CPU per call: procwarpd %.1f us + agent %.1f us, echo %.1f us\n",
         paired.measured_counter_per_op, agent_cpu / (n + n / 10),
         paired.baseline_counter_per_op);
}

// The agent hop on its own: getpid through AgentConnection on a socketpair to
// a procwarp-agent started here, without gRPC or the daemon. Threads.Syscall
// costs about a gRPC echo plus this.
void AgentRoundTrip(const std::string& agent_path, int n) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
  pid_t pid = fork();
  if (pid == 0) {
    if (dup2(sv[1], PW_AGENT_DEFAULT_SOCKET_FD) < 0) _exit(127);
    char* argv[] = {const_cast<char*>("procwarp-agent"), nullptr};
    char* envp[] = {nullptr};
    execve(agent_path.c_str(), argv, envp);
    _exit(127);
  }
  close(sv[1]);
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  auto connection =
      AgentConnection::Open(UniqueFd(sv[0]), pidfd.get(), "bench agent");
  if (connection.ok()) {
    Samples hop = Measure(n, n / 10, [&] { (*connection)->Syscall(SYS_getpid); });
    printf("  agent round trip, no gRPC           median %9.1f us (min %9.1f)\n",
           hop.Median(), hop.Min());
  } else {
    printf("  !! agent: %s\n", connection.status().ToString().c_str());
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

void Pipelined(DaemonHarness* daemon, v1::Threads::Stub* threads,
               const v1::ThreadInfo& thread) {
  constexpr int kTotal = 100'000;
  constexpr int kBatch = 500;
  grpc::ClientContext context;
  auto stream = threads->Execute(&context);
  double daemon_cpu = ProcessCpuMicros(daemon->pid());
  auto start = std::chrono::steady_clock::now();
  // The writer runs ahead; gRPC's flow control bounds how far, and this
  // thread keeps reading, so neither side can stall the other.
  std::thread writer([&] {
    v1::ExecuteRequest request;
    request.set_thread_id(thread.id());
    for (int i = 0; i < kBatch; ++i) {
      request.add_syscalls()->set_number(SYS_getpid);
    }
    for (int sent = 0; sent < kTotal; sent += kBatch) {
      if (!stream->Write(request)) break;
      request.clear_thread_id();
    }
    stream->WritesDone();
  });
  int results = 0;
  bool wrong = false;
  v1::ExecuteResponse response;
  while (stream->Read(&response)) {
    for (const auto& r : response.results()) {
      if (r.value() != thread.pid()) wrong = true;
    }
    results += response.results_size();
  }
  writer.join();
  grpc::Status s = stream->Finish();
  double secs = Seconds(start);
  daemon_cpu = ProcessCpuMicros(daemon->pid()) - daemon_cpu;
  if (!s.ok() || wrong || results != kTotal) {
    printf("  !! Execute: %d of %d results, status %s\n", results, kTotal,
           s.error_message().c_str());
  }
  double rate = results / secs;
  printf("  Threads.Execute pipelined getpid    %9.0f syscalls/s "
         "(%d in batches of %d, %.1f ms) => %.2fx of target 300k/s\n",
         rate, results, kBatch, secs * 1e3, rate / 300e3);
  printf("  procwarpd CPU per syscall: %.2f us\n", daemon_cpu / results);
}

void CompareMemory(v1::Memory::Stub* memory, const v1::ThreadInfo& thread,
                   int n) {
  v1::AllocateRequest allocate;
  allocate.set_thread_id(thread.id());
  allocate.set_size(kReadBytes);
  v1::AllocateResponse allocated;
  grpc::Status s = memory->Allocate(Ctx().get(), allocate, &allocated);
  if (!s.ok()) {
    printf("  !! Allocate: %s\n", s.error_message().c_str());
    return;
  }
  const v1::Pointer& pointer = allocated.pointer();
  // One local buffer, faulted in once and reused (faults are expensive on
  // this VM and are not what is measured).
  std::vector<char> local(kReadBytes);
  for (size_t i = 0; i < local.size(); ++i) local[i] = static_cast<char>(i * 7);

  // Fill the thread's memory (faulting it in) through the direct path too.
  v1::DirectMemoryRequest direct;
  direct.set_pointer_id(pointer.id());
  direct.set_length(kReadBytes);
  direct.set_client_address(reinterpret_cast<uint64_t>(local.data()));
  v1::DirectMemoryResponse copied;
  s = memory->WriteFromClient(Ctx().get(), direct, &copied);
  if (!s.ok()) {
    printf("  !! WriteFromClient: %s\n", s.error_message().c_str());
    return;
  }
  Samples write = Measure(n, 2, [&] {
    memory->WriteFromClient(Ctx().get(), direct, &copied);
  });

  Samples baseline = Measure(n, 2, [&] {
    iovec l = {local.data(), kReadBytes};
    iovec r = {reinterpret_cast<void*>(pointer.address()), kReadBytes};
    if (process_vm_readv(thread.pid(), &l, 1, &r, 1, 0) !=
        static_cast<ssize_t>(kReadBytes)) {
      printf("  !! process_vm_readv: %s\n", strerror(errno));
    }
  });
  bool failed = false;
  Samples api = Measure(n, 2, [&] {
    grpc::Status st = memory->ReadToClient(Ctx().get(), direct, &copied);
    if (!st.ok() || copied.copied() != kReadBytes) failed = true;
  });
  if (failed) printf("  !! some ReadToClient calls failed\n");
  Samples streamed = Measure(std::max(1, n / 2), 1, [&] {
    v1::ReadMemoryRequest request;
    request.set_pointer_id(pointer.id());
    request.set_length(kReadBytes);
    grpc::ClientContext context;
    auto reader = memory->ReadStream(&context, request);
    v1::ReadMemoryChunk chunk;
    while (reader->Read(&chunk)) {
      memcpy(local.data() + chunk.offset(), chunk.data().data(),
             chunk.data().size());
    }
    reader->Finish();
  });
  auto gbps = [](const Samples& s) { return kReadBytes / s.Median() / 1e3; };
  printf("  process_vm_readv 64 MiB (baseline)  %9.2f GB/s (median %.1f ms)\n",
         gbps(baseline), baseline.Median() / 1e3);
  printf("  Memory.ReadToClient 64 MiB          %9.2f GB/s (median %.1f ms) "
         "=> %.2fx bandwidth (target >= 0.5x)\n",
         gbps(api), api.Median() / 1e3, gbps(api) / gbps(baseline));
  printf("  Memory.WriteFromClient 64 MiB       %9.2f GB/s => %.2fx\n",
         gbps(write), gbps(write) / gbps(baseline));
  printf("  Memory.ReadStream 64 MiB (streamed) %9.2f GB/s => %.2fx\n",
         gbps(streamed), gbps(streamed) / gbps(baseline));
}

// The agent in this binary's runfiles, as an absolute path: the daemon does
// not run from our working directory.
std::string AgentPath() {
  std::string path = RunfilePath("agent/procwarp-agent");
  if (access(path.c_str(), X_OK) != 0) {
    path = SelfPath() + ".runfiles/procwarp/agent/procwarp-agent";
  }
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) != nullptr) return resolved;
  return path;
}

int Main(int argc, char** argv) {
  if (int code = MaybeServeEcho(argc, argv); code >= 0) return code;
  BenchOptions options = ParseBenchOptions(
      argc, argv, "Threads and Memory figures against same-run baselines",
      {"getpid", "unary", "pipelined", "memory"});
  std::string self = SelfPath();
  for (int cpu : options.Cpus()) {
    PinToCpu(cpu);
    printf("== %s ==\n", cpu >= 0 ? "pinned: client, daemon and agent on CPU 0"
                                  : "unpinned");
    DaemonHarness::Options daemon_options;
    daemon_options.flags = {"--agent_path", AgentPath()};
    auto daemon = DaemonHarness::Start(daemon_options);
    if (!daemon.ok()) {
      fprintf(stderr, "cannot start procwarpd: %s\n",
              daemon.status().ToString().c_str());
      return 1;
    }
    auto channel = (*daemon)->NewChannel();
    auto threads = v1::Threads::NewStub(channel);
    auto memory = v1::Memory::NewStub(channel);
    v1::CreateThreadResponse created;
    grpc::Status s = threads->CreateThread(Ctx().get(), {}, &created);
    if (!s.ok()) {
      fprintf(stderr, "CreateThread: %s\n", s.error_message().c_str());
      return 1;
    }
    if (options.Wants("getpid")) InProcessGetpid();
    if (options.Wants("unary")) {
      CompareUnary(self, daemon->get(), threads.get(), created.thread(),
                   options.iterations);
      AgentRoundTrip(AgentPath(), options.iterations);
    }
    if (options.Wants("pipelined")) {
      Pipelined(daemon->get(), threads.get(), created.thread());
    }
    if (options.Wants("memory")) {
      CompareMemory(memory.get(), created.thread(), 10);
    }
  }
  return 0;
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
