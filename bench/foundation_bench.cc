// foundation_bench: the foundation's two performance targets, each against a
// baseline measured in the same run (docs/architecture.md, "Performance targets"):
//   1. Admin.GetStatus through procwarpd vs a bare gRPC unary echo on the
//      same kind of socket (a unix socket, a separate server process).
//      Target: <= 1.3x.
//   2. Processes.Spawn + Wait of /bin/true through procwarpd vs posix_spawn +
//      waitpid in this process. Target: <= 1.3x.
// Each is run pinned to one CPU (client and servers on CPU 0) and unpinned,
// and reports the servers' CPU time per operation, which is steadier than
// wall time on a VM.
//
//   bazel run -c opt //bench:foundation_bench [-- --iterations N]
//       [--only unary|spawn]... [--placement pinned|unpinned]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "bench/process_calls.h"
#include "bench/echo_server.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::bench {
namespace {

using procwarp::testing::Ctx;
using procwarp::testing::DaemonHarness;

void CompareUnary(const std::string& self, DaemonHarness* daemon, int n) {
  EchoServer echo(self, daemon->dir());
  auto admin = daemon->Admin();
  Paired paired = echo.MeasureAgainst(daemon->pid(), n, [&] {
    procwarp::v1::GetStatusResponse response;
    admin->GetStatus(Ctx().get(), {}, &response);
  });
  Report("Admin.GetStatus (procwarpd)", paired.measured,
         "bare gRPC unary echo", paired.baseline, "<= 1.3x");
  printf("  server CPU per call: procwarpd %.1f us, echo %.1f us (%.2fx)\n",
         paired.measured_counter_per_op, paired.baseline_counter_per_op,
         paired.measured_counter_per_op / paired.baseline_counter_per_op);
}

void CompareSpawn(DaemonHarness* daemon, int n) {
  auto local = [] {
    pid_t pid;
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    char* envp[] = {nullptr};
    posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, envp);
    waitpid(pid, nullptr, 0);
  };
  auto stub = daemon->Processes();
  std::vector<std::string> ids;
  auto remote = [&] { ids.push_back(SpawnAndWait(stub.get(), "/bin/true")); };
  Paired paired = MeasurePaired(n, local, remote, [&] {
    return ProcessCpuMicros(daemon->pid());
  });
  for (const auto& id : ids) RemoveProcess(stub.get(), id);
  Report("Spawn+Wait /bin/true (procwarpd)", paired.measured,
         "posix_spawn+waitpid /bin/true", paired.baseline, "<= 1.3x");
  printf("  procwarpd CPU per spawn+wait: %.1f us\n",
         paired.measured_counter_per_op);
}

int Main(int argc, char** argv) {
  if (int code = MaybeServeEcho(argc, argv); code >= 0) return code;
  BenchOptions options = ParseBenchOptions(
      argc, argv, "Admin/Processes figures against same-run baselines",
      {"unary", "spawn"});
  std::string self = SelfPath();

  for (int cpu : options.Cpus()) {
    PinToCpu(cpu);
    printf("== %s ==\n", cpu >= 0 ? "pinned: client and servers on CPU 0"
                                  : "unpinned");
    auto daemon = DaemonHarness::Start();
    if (!daemon.ok()) {
      fprintf(stderr, "cannot start procwarpd: %s\n",
              daemon.status().ToString().c_str());
      return 1;
    }
    if (options.Wants("unary")) {
      CompareUnary(self, daemon->get(), options.iterations);
    }
    if (options.Wants("spawn")) {
      CompareSpawn(daemon->get(), options.iterations / 10);
    }
  }
  return 0;
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
