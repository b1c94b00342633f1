// foundation_bench: the foundation's two performance targets, each against a
// baseline measured in the same run (DESIGN.md, "Performance targets"):
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
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "bench/echo_server.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::bench {
namespace {

using procwarp::testing::Ctx;
using procwarp::testing::DaemonHarness;

void CompareUnary(const std::string& self, DaemonHarness* daemon, int n) {
  EchoServer echo(self, daemon->dir());
  auto admin = daemon->Admin();
  double echo_cpu = ProcessCpuMicros(echo.pid());
  Samples bare = Measure(n, n / 10, [&] {
    EchoRequest request;
    EchoResponse response;
    echo.stub()->Echo(Ctx().get(), request, &response);
  });
  echo_cpu = ProcessCpuMicros(echo.pid()) - echo_cpu;
  double daemon_cpu = ProcessCpuMicros(daemon->pid());
  Samples status = Measure(n, n / 10, [&] {
    procwarp::v1::GetStatusResponse response;
    admin->GetStatus(Ctx().get(), {}, &response);
  });
  daemon_cpu = ProcessCpuMicros(daemon->pid()) - daemon_cpu;
  Report("Admin.GetStatus (procwarpd)", status, "bare gRPC unary echo", bare,
         "<= 1.3x");
  printf("  server CPU per call: procwarpd %.1f us, echo %.1f us (%.2fx)\n",
         daemon_cpu / (n + n / 10), echo_cpu / (n + n / 10),
         daemon_cpu / echo_cpu);
}

void CompareSpawn(DaemonHarness* daemon, int n) {
  Samples local = Measure(n, n / 10, [] {
    pid_t pid;
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    char* envp[] = {nullptr};
    posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, envp);
    waitpid(pid, nullptr, 0);
  });
  auto stub = daemon->Processes();
  std::vector<std::string> ids;
  double daemon_cpu = ProcessCpuMicros(daemon->pid());
  Samples remote = Measure(n, n / 10, [&] {
    procwarp::v1::SpawnRequest spawn;
    spawn.add_argv("/bin/true");
    procwarp::v1::SpawnResponse spawned;
    stub->Spawn(Ctx().get(), spawn, &spawned);
    procwarp::v1::WaitRequest wait;
    wait.set_id(spawned.process().id());
    procwarp::v1::WaitResponse waited;
    stub->Wait(Ctx().get(), wait, &waited);
    ids.push_back(spawned.process().id());
  });
  daemon_cpu = ProcessCpuMicros(daemon->pid()) - daemon_cpu;
  for (const auto& id : ids) {
    procwarp::v1::RemoveProcessRequest remove;
    remove.set_id(id);
    procwarp::v1::RemoveProcessResponse removed;
    stub->Remove(Ctx().get(), remove, &removed);
  }
  Report("Spawn+Wait /bin/true (procwarpd)", remote,
         "posix_spawn+waitpid /bin/true", local, "<= 1.3x");
  printf("  procwarpd CPU per spawn+wait: %.1f us\n", daemon_cpu / (n + n / 10));
}

int Main(int argc, char** argv) {
  if (int code = MaybeServeEcho(argc, argv); code >= 0) return code;
  int iterations = 3000;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
      iterations = atoi(argv[++i]);
    }
  }
  std::string self = SelfPath();

  for (int cpu : {0, -1}) {
    PinToCpu(cpu);
    printf("== %s ==\n", cpu >= 0 ? "pinned: client and servers on CPU 0"
                                  : "unpinned");
    auto daemon = DaemonHarness::Start();
    if (!daemon.ok()) {
      fprintf(stderr, "cannot start procwarpd: %s\n",
              daemon.status().ToString().c_str());
      return 1;
    }
    CompareUnary(self, daemon->get(), iterations);
    CompareSpawn(daemon->get(), iterations / 10);
  }
  return 0;
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
