// attach_bench: the attach backend's costs (daemon/ptrace), each against a
// baseline measured in the same run:
//   unary   an injected getpid, one ptrace stop per syscall (TracerThread::Run
//           with one Syscall) vs syscall(SYS_getpid) in this process
//   batch   injected getpids, 1000 per stop (one Run, one save/restore) vs the
//           same in-process syscall; target >= 100k injected syscalls/s
//   attach  attach + injected getpid + detach vs `gdb -p PID -batch`
//           (gdb's attach+detach alone, the floor of every gdb-based
//           injector); target >= 100x faster
// Each figure runs pinned (bench, tracer thread and target on CPU 0) and
// unpinned, with wall time per operation and this process's CPU time per
// operation (the tracer side; the target's share is its own).
#include <fcntl.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "daemon/ptrace/testing/target_process.h"
#include "daemon/ptrace/tracer_thread.h"

extern char** environ;

namespace procwarp::bench {
namespace {

using ptrace::Operation;
using ptrace::SyscallRequest;
using ptrace::SyscallResult;
using ptrace::TracerThread;
using testing::TargetProcess;

absl::Time Soon() { return absl::Now() + absl::Seconds(30); }

double CpuMicros() {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

std::unique_ptr<TracerThread> Attach(const TargetProcess& target) {
  auto tracer = TracerThread::Attach(target.OpenPidfd(), target.pid(), {}, Soon());
  if (!tracer.ok()) {
    fprintf(stderr, "attach: %s\n", tracer.status().ToString().c_str());
    exit(1);
  }
  return *std::move(tracer);
}

void Check(const absl::Status& st, const char* what) {
  if (!st.ok()) {
    fprintf(stderr, "%s: %s\n", what, st.ToString().c_str());
    exit(1);
  }
}

void Unary(const TargetProcess& target, int n) {
  auto tracer = Attach(target);
  Paired p = MeasurePaired(
      n, [] { syscall(SYS_getpid); },
      [&] {
        Check(tracer->Run([](Operation& op) { return op.Syscall(SYS_getpid).status(); },
                          Soon()),
              "unary");
      },
      CpuMicros, CpuMicros);
  Report("injected getpid, one stop each", p.measured, "in-process getpid", p.baseline,
         "(none; context)");
  printf("  => %.0f injected syscalls/s; CPU time per op %.1f us (bench process)\n",
         1e6 / p.measured.Median(), p.measured_counter_per_op);
}

void Batch(const TargetProcess& target, int rounds) {
  constexpr int kBatch = 1000;
  auto tracer = Attach(target);
  std::vector<SyscallRequest> batch(kBatch);
  for (SyscallRequest& r : batch) r.nr = SYS_getpid;
  std::vector<SyscallResult> results;
  Paired p = MeasurePaired(
      rounds,
      [] {
        for (int i = 0; i < kBatch; ++i) syscall(SYS_getpid);
      },
      [&] {
        Check(tracer->Run([&](Operation& op) { return op.Syscalls(batch, &results); },
                          Soon()),
              "batch");
      },
      CpuMicros, CpuMicros);
  double per_syscall = p.measured.Median() / kBatch;
  printf("  injected getpid, %d per stop: median %.2f us/syscall (min %.2f) => "
         "%.0f syscalls/s (target >= 100000); in-process %.3f us => ratio %.1fx; "
         "CPU %.2f us/syscall\n",
         kBatch, per_syscall, p.measured.Min() / kBatch, 1e6 / per_syscall,
         p.baseline.Median() / kBatch, p.measured.Median() / p.baseline.Median(),
         p.measured_counter_per_op / kBatch);
}

void AttachVsGdb(const TargetProcess& target, int n) {
  auto ours = [&] {
    auto tracer = Attach(target);
    Check(tracer->Run([](Operation& op) { return op.Syscall(SYS_getpid).status(); },
                      Soon()),
          "attach+getpid");
    tracer.reset();  // detach
  };
  if (!HaveGdb()) {
    Samples s = Measure(n, n / 10, ours);
    printf("  attach+getpid+detach: median %.1f us (min %.1f); gdb not installed: "
           "no baseline\n", s.Median(), s.Min());
    return;
  }
  Samples gdb, attach;
  MeasureAgainstGdb(target.pid(), n, ours, &attach, &gdb);
  double ratio = Report("attach+getpid+detach", attach, "gdb -p PID -batch", gdb,
                        "<= 0.01 (>= 100x faster)");
  printf("  => %.0fx faster than gdb's attach+detach\n", 1 / ratio);
}

int Main(int argc, char** argv) {
  BenchOptions options = ParseBenchOptions(
      argc, argv, "Attach backend (ptrace) figures against same-run baselines",
      {"unary", "batch", "attach"});
  for (int cpu : options.Cpus()) {
    PinToCpu(cpu);
    printf("== %s ==\n", cpu >= 0 ? "pinned: bench, tracer and target on CPU 0"
                                  : "unpinned");
    // Started after pinning, so the target inherits the placement.
    const std::string target_path = testing::RunfilePath("tests/testcases/attach_target");
    auto target = TargetProcess::Start({target_path, "read"});
    if (!target.ok() || !target->ReadLine().ok()) {
      fprintf(stderr, "cannot start %s\n", target_path.c_str());
      return 1;
    }
    if (options.Wants("unary")) Unary(*target, options.iterations);
    if (options.Wants("batch")) Batch(*target, std::max(20, options.iterations / 100));
    if (options.Wants("attach")) AttachVsGdb(*target, std::max(50, options.iterations / 10));
  }
  PinToCpu(-1);
  return 0;
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
