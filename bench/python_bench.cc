// python_bench: remote exec of `pass` into a busy CPython program through
// procwarpd (Exec.RunPython, docs/python.md) against the floor of every
// gdb-based injector (pyrasite, and debugpy/memray's gdb mode):
// `gdb -p PID -batch`, gdb's attach + detach alone, on the same target.
// Target: exec >= 100x faster. The stack-dump half belongs to
// Snapshots.PythonStack's bench.
//
//   bazel run -c opt //bench:python_bench -- [--iterations N] [--python PATH]
//
// gdb is not a procwarp dependency: install it to get the baseline
// (apt-get install gdb); without it only procwarp's figure is printed.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "bench/bench_util.h"
#include "client/cc/client.h"
#include "daemon/ptrace/testing/target_process.h"
#include "tests/integration/daemon_harness.h"
#include "tests/testing/pythons.h"

namespace procwarp::bench {
namespace {

// pyenv's 3.12 when present, else the first supported interpreter found.
std::string DefaultPython() {
  if (std::string python = procwarp::testing::PyenvPython("3.12"); !python.empty()) return python;
  std::vector<procwarp::testing::PythonPath> found = procwarp::testing::SupportedPythons();
  return found.empty() ? "python3" : found.front().path;
}

int Main(int argc, char** argv) {
  int iterations = 300;
  std::string python = DefaultPython();
  CLI::App app("Remote Python exec through procwarpd vs gdb's attach+detach");
  app.add_option("--iterations", iterations, "execs to time");
  app.add_option("--python", python, "the interpreter of the busy target");
  CLI11_PARSE(app, argc, argv);

  auto daemon = testing::DaemonHarness::Start();
  if (!daemon.ok()) {
    fprintf(stderr, "daemon: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  auto client = Client::Connect((*daemon)->socket_path());
  if (!client.ok()) return 1;
  testing::ReadyTarget target = testing::StartReady(
      {python, testing::RunfilePath("tests/testcases/python_target.py"), "busy"});
  const pid_t pid = target.process.pid();
  exec::v1::RunPythonRequest request;
  request.mutable_target()->set_pid(pid);
  request.set_code("pass");
  auto ours = [&] {
    auto r = client->RunPython(request);
    if (!r.ok()) {
      fprintf(stderr, "RunPython: %s\n", r.status().ToString().c_str());
      exit(1);
    }
  };
  printf("== remote exec of `pass` into a busy %s (pid %d) ==\n", python.c_str(), pid);
  if (!HaveGdb()) {
    Samples s = Measure(iterations, iterations / 10, ours);
    printf("  procwarp py exec: median %.1f us (min %.1f); gdb not installed: no "
           "baseline\n", s.Median(), s.Min());
    return 0;
  }
  Samples gdb, exec;
  MeasureAgainstGdb(pid, iterations, ours, &exec, &gdb);
  double ratio = Report("RunPython(pass), busy target", exec, "gdb -p PID -batch", gdb,
                        "<= 0.01 (>= 100x faster)");
  printf("  => %.0fx faster than gdb's attach+detach\n", 1 / ratio);
  return 0;
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
