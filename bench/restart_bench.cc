// What restart safety costs a spawn (docs/architecture.md, "Restart without
// loss"): Processes.Spawn + Wait + Remove of /bin/true through a daemon that
// keeps a state file and a keeper (--state_dir) against the same through a
// daemon without them, in alternating rounds of one run, with a table of
// `--background` idle processes in each (every change rewrites the whole
// state file: its cost grows with the table).
//
//   bazel run -c opt //bench:restart_bench -- --iterations 3000 --background 0
//   bazel run -c opt //bench:restart_bench -- --iterations 3000 --background 500
//   bazel run -c opt //bench:restart_bench -- --state_root /dev/shm   # a tmpfs
#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "bench/process_calls.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::bench {
namespace {

using procwarp::testing::Ctx;
using procwarp::testing::DaemonHarness;
using procwarp::testing::MakeTempDir;

// Spawn + Wait + Remove of /bin/true.
void SpawnWaitRemove(procwarp::v1::Processes::Stub* stub) {
  RemoveProcess(stub, SpawnAndWait(stub, "/bin/true"));
}

std::vector<std::string> SpawnIdle(procwarp::v1::Processes::Stub* stub, int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    procwarp::v1::SpawnRequest spawn;
    spawn.add_argv("/bin/sleep");
    spawn.add_argv("100000");
    procwarp::v1::SpawnResponse spawned;
    if (stub->Spawn(Ctx().get(), spawn, &spawned).ok()) {
      ids.push_back(spawned.process().id());
    }
  }
  return ids;
}

void RemoveAll(procwarp::v1::Processes::Stub* stub, const std::vector<std::string>& ids) {
  for (const auto& id : ids) RemoveProcess(stub, id, /*force=*/true);
}

int Main(int argc, char** argv) {
  int background = 0;
  // Where the state directory goes: its file system decides what a rename
  // costs (/run is a tmpfs on most hosts; ext4 starts writeback on a
  // rename over an existing file).
  std::string state_root;
  // Our own flag first; bench_util parses the rest.
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--background" && i + 1 < argc) {
      background = atoi(argv[++i]);
    } else if (std::string(argv[i]) == "--state_root" && i + 1 < argc) {
      state_root = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  BenchOptions options = ParseBenchOptions(
      static_cast<int>(rest.size()), rest.data(),
      "Spawn+Wait+Remove with restart state vs without", {"spawn"});
  for (int cpu : options.Cpus()) {
    PinToCpu(cpu);
    printf("== %s, %d background processes ==\n",
           cpu >= 0 ? "pinned: client and daemons on CPU 0" : "unpinned", background);
    std::string state_parent =
        state_root.empty() ? MakeTempDir() : absl::StrCat(state_root, "/restart_bench");
    DaemonHarness::Options with_state;
    with_state.flags = {"--state_dir", state_parent + "/state",
                        "--max_processes_per_identity", "100000"};
    DaemonHarness::Options without_state;
    without_state.flags = {"--max_processes_per_identity", "100000"};
    auto plain = DaemonHarness::Start(without_state);
    auto kept = DaemonHarness::Start(with_state);
    if (!plain.ok() || !kept.ok()) {
      fprintf(stderr, "cannot start procwarpd\n");
      return 1;
    }
    auto plain_stub = (*plain)->Processes();
    auto kept_stub = (*kept)->Processes();
    auto plain_idle = SpawnIdle(plain_stub.get(), background);
    auto kept_idle = SpawnIdle(kept_stub.get(), background);
    const pid_t kept_pid = (*kept)->daemon_pid();
    const pid_t plain_pid = (*plain)->daemon_pid();
    Paired paired = MeasurePaired(
        options.iterations / 10, [&] { SpawnWaitRemove(plain_stub.get()); },
        [&] { SpawnWaitRemove(kept_stub.get()); },
        [&] { return ProcessCpuMicros(kept_pid); },
        [&] { return ProcessCpuMicros(plain_pid); });
    Report(absl::StrCat("Spawn+Wait+Remove with state file + keeper (", background,
                        " others)"),
           paired.measured, "the same without restart state", paired.baseline,
           "small; grows with the table");
    printf("  daemon CPU per spawn+wait+remove: %.1f us with state, %.1f us "
           "without (3 state writes each)\n",
           paired.measured_counter_per_op, paired.baseline_counter_per_op);
    RemoveAll(plain_stub.get(), plain_idle);
    RemoveAll(kept_stub.get(), kept_idle);
  }
  return 0;
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
