// python_stack_bench: the stack half of issue 10's benchmark. A Python
// program 50 frames deep (tests/testcases/python_stack_target.py "deep 50",
// every frame with arguments and locals) is read through procwarpd with
// Snapshots.PythonStack(locals=true), against a GetStatus RPC to the same daemon
// measured in the same run (the floor of any RPC), under every CPython 3.8-3.13
// on the machine. Target: a stack dump with locals of a 50-frame stack in at
// most 2 ms. The consistent mode (every thread stopped and let go) is printed
// too. Runs pinned (everything on CPU 0) and unpinned.
//
//   bazel run -c opt //bench:python_stack_bench [-- --iterations N]
//       [--only stack|consistent]... [--placement pinned|unpinned]
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "daemon/ptrace/testing/target_process.h"
#include "grpcpp/client_context.h"
#include "proto/procwarp/snapshots/v1/snapshots.grpc.pb.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "tests/integration/daemon_harness.h"
#include "tests/testing/pythons.h"

namespace procwarp::bench {
namespace {

using procwarp::testing::Ctx;
using procwarp::testing::DaemonHarness;
using procwarp::testing::RunfilePath;

constexpr int kDepth = 50;

void Check(const grpc::Status& s, const char* what) {
  if (!s.ok()) {
    fprintf(stderr, "%s failed: %s\n", what, s.error_message().c_str());
    exit(1);
  }
}

void Compare(DaemonHarness& daemon, const std::string& python, bool consistent,
             int iterations) {
  procwarp::testing::ReadyTarget target = procwarp::testing::StartReady(
      {python, RunfilePath("tests/testcases/python_stack_target.py"), "deep",
       std::to_string(kDepth)});
  auto admin = daemon.Admin();
  auto snapshots = snapshots::v1::Snapshots::NewStub(daemon.NewChannel());
  snapshots::v1::PythonStackRequest request;
  request.set_pid(target.process.pid());
  request.set_locals(true);
  request.set_consistent(consistent);
  snapshots::v1::PythonStackResponse response;
  Check(snapshots->PythonStack(Ctx().get(), request, &response), "PythonStack");
  int frames = 0, locals = 0;
  for (const auto& thread : response.threads()) {
    frames += thread.frames_size();
    for (const auto& frame : thread.frames()) locals += frame.locals_size();
  }
  printf("%s: CPython %s, %d frames, %d locals\n", python.c_str(),
         response.interpreter().version().c_str(), frames, locals);
  Paired p = MeasurePaired(
      iterations,
      [&] {
        v1::GetStatusResponse status;
        Check(admin->GetStatus(Ctx().get(), {}, &status), "GetStatus");
      },
      [&] {
        snapshots::v1::PythonStackResponse r;
        Check(snapshots->PythonStack(Ctx().get(), request, &r), "PythonStack");
      });
  Report(consistent ? "  stack dump with locals, 50 frames, --consistent"
                    : "  stack dump with locals, 50 frames",
         p.measured, "Admin.GetStatus RPC", p.baseline,
         consistent ? "(no target)" : "median <= 2000 us");
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) {
  using namespace procwarp::bench;
  BenchOptions options = ParseBenchOptions(
      argc, argv, "Python stack snapshots through procwarpd", {"stack", "consistent"});
  std::vector<std::string> pythons;
  for (const procwarp::testing::PythonPath& python : procwarp::testing::SupportedPythons()) {
    pythons.push_back(python.path);
  }
  if (pythons.empty()) {
    fprintf(stderr, "no CPython 3.8-3.13 on this machine\n");
    return 1;
  }
  for (int cpu : options.Cpus()) {
    PinToCpu(cpu);
    printf("== %s ==\n", cpu >= 0 ? "pinned: everything on CPU 0" : "unpinned");
    auto daemon = DaemonHarness::Start();
    if (!daemon.ok()) {
      fprintf(stderr, "cannot start procwarpd: %s\n", daemon.status().ToString().c_str());
      return 1;
    }
    for (const std::string& python : pythons) {
      if (options.Wants("stack")) Compare(**daemon, python, false, options.iterations);
      if (options.Wants("consistent")) {
        Compare(**daemon, python, true, std::max(options.iterations / 10, 20));
      }
    }
  }
  return 0;
}
