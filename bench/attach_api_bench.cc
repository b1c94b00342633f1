// attach_api_bench: injected syscalls into an attached thread *through the
// daemon* (Threads.AttachThread), against the same calls on an agent thread
// of the same daemon, measured in the same run and printed as ratios:
//   unary      one getpid per Threads.Syscall RPC (attached: one ptrace stop,
//              an authority check and an audit line per call)
//   pipelined  getpids through Threads.Execute in batches of 500 (attached:
//              one stop per batch)
// The attach backend's own costs without gRPC are in attach_bench (it links
// the ptrace tests' target helper, which cannot share a binary with the
// daemon harness used here). Runs pinned (client, daemon, agent and target
// on CPU 0) and unpinned.
//
//   bazel run -c opt //bench:attach_api_bench [-- --iterations N]
//       [--only unary|pipelined]... [--placement pinned|unpinned]
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "grpcpp/client_context.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::bench {
namespace {

using procwarp::testing::Ctx;
using procwarp::testing::DaemonHarness;
using procwarp::testing::RunfilePath;

// attach_target in "read" mode (blocked in read(0) on a pipe we hold), not a
// child of the daemon. Returns its pid once it is ready.
pid_t StartTarget(int* stdin_fd) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return -1;
  const std::string path = RunfilePath("tests/testcases/attach_target");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execl(path.c_str(), path.c_str(), "read", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') {
  }
  close(out[0]);
  *stdin_fd = in[1];
  return pid;
}

grpc::Status Getpid(v1::Threads::Stub* threads, const std::string& id) {
  v1::SyscallRequest request;
  request.set_thread_id(id);
  request.mutable_syscall()->set_number(SYS_getpid);
  v1::SyscallResponse response;
  grpc::ClientContext context;
  return threads->Syscall(&context, request, &response);
}

void Check(const grpc::Status& s, const char* what) {
  if (!s.ok()) {
    fprintf(stderr, "%s: %s\n", what, s.error_message().c_str());
    exit(1);
  }
}

void CompareUnary(DaemonHarness* daemon, v1::Threads::Stub* threads,
                  const std::string& agent, const std::string& attached, int n) {
  auto daemon_cpu = [daemon] { return ProcessCpuMicros(daemon->pid()); };
  Paired p = MeasurePaired(
      n, [&] { Check(Getpid(threads, agent), "agent getpid"); },
      [&] { Check(Getpid(threads, attached), "attached getpid"); }, daemon_cpu,
      daemon_cpu);
  Report("attached thread: getpid via Threads.Syscall", p.measured,
         "agent thread, same RPC", p.baseline, "(none; the agent is the floor)");
  printf("  procwarpd CPU per call: attached %.1f us, agent %.1f us\n",
         p.measured_counter_per_op, p.baseline_counter_per_op);
}

// Syscalls per second through one Execute stream of `total` getpids.
double Pipelined(v1::Threads::Stub* threads, const std::string& id, int total) {
  constexpr int kBatch = 500;
  grpc::ClientContext context;
  auto stream = threads->Execute(&context);
  auto start = std::chrono::steady_clock::now();
  std::thread writer([&] {
    v1::ExecuteRequest request;
    request.set_thread_id(id);
    for (int i = 0; i < kBatch; ++i) request.add_syscalls()->set_number(SYS_getpid);
    for (int sent = 0; sent < total; sent += kBatch) {
      if (!stream->Write(request)) break;
      request.clear_thread_id();
    }
    stream->WritesDone();
  });
  int results = 0;
  v1::ExecuteResponse response;
  while (stream->Read(&response)) results += response.results_size();
  writer.join();
  Check(stream->Finish(), "Execute");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                              start).count();
  return results / secs;
}

void ComparePipelined(v1::Threads::Stub* threads, const std::string& agent,
                      const std::string& attached) {
  constexpr int kRounds = 5;
  constexpr int kTotal = 20'000;
  Samples agent_rate, attached_rate;
  // Alternating rounds, so drift hits both alike.
  for (int round = 0; round < kRounds; ++round) {
    agent_rate.micros.push_back(Pipelined(threads, agent, kTotal));
    attached_rate.micros.push_back(Pipelined(threads, attached, kTotal));
  }
  const double a = attached_rate.Median(), b = agent_rate.Median();
  printf("  pipelined getpid (Execute, batches of 500): attached %.0f/s, agent "
         "%.0f/s => attached/agent %.3f (target >= 100000/s attached: %s)\n",
         a, b, a / b, a >= 100000 ? "met" : "NOT met");
}

int Main(int argc, char** argv) {
  BenchOptions options = ParseBenchOptions(
      argc, argv, "Attached vs agent threads through procwarpd",
      {"unary", "pipelined"});
  for (int cpu : options.Cpus()) {
    PinToCpu(cpu);
    printf("== %s ==\n", cpu >= 0 ? "pinned: everything on CPU 0" : "unpinned");
    DaemonHarness::Options daemon_options;
    daemon_options.flags = {"--agent_path", RunfilePath("agent/procwarp-agent")};
    auto daemon = DaemonHarness::Start(daemon_options);
    if (!daemon.ok()) {
      fprintf(stderr, "cannot start procwarpd: %s\n",
              daemon.status().ToString().c_str());
      return 1;
    }
    int target_stdin = -1;
    pid_t target = StartTarget(&target_stdin);
    auto threads = v1::Threads::NewStub((*daemon)->NewChannel());
    v1::CreateThreadResponse created;
    Check(threads->CreateThread(Ctx().get(), {}, &created), "CreateThread");
    v1::AttachThreadRequest attach;
    attach.set_pid(target);
    v1::AttachThreadResponse attached;
    Check(threads->AttachThread(Ctx().get(), attach, &attached), "AttachThread");
    if (options.Wants("unary")) {
      CompareUnary(daemon->get(), threads.get(), created.thread().id(),
                   attached.thread().id(), options.iterations);
    }
    if (options.Wants("pipelined")) {
      ComparePipelined(threads.get(), created.thread().id(),
                       attached.thread().id());
    }
    threads.reset();
    daemon->reset();
    kill(target, SIGKILL);
    waitpid(target, nullptr, 0);
    close(target_stdin);
  }
  PinToCpu(-1);
  return 0;
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
