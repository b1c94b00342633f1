// load_bench: procwarpd under load (issue 12, "Load"). Three phases against
// one daemon it starts itself on a unix socket, each bounded in count and in
// time (--max_seconds per phase: a phase past it stops and reports what it
// did):
//   mixed     --clients concurrent clients, each on a connection of its own
//             with an agent thread and 4 KiB of memory in it, each making
//             --calls calls: 40% Admin.GetStatus, 10% Spawn+Wait+Remove of
//             /bin/true, 30% Threads.Syscall(getpid), 20% Memory Write/Read
//             of 64 bytes.
//   children  --children copies of `sleep` alive at once, then all killed,
//             waited for and removed.
//   spawns    --spawns sequential Spawn+Wait+Remove of /bin/true.
// Each prints p50/p99 latency, throughput, failures by status code, and the
// daemon's RSS and fd count before, at the peak and after: nothing may grow
// without bound (fds must come back to their count before the phase).
// The daemon's per-identity limits are raised by its flags to fit the load.
// Exits 1 when a call failed or a phase left fds behind.
//
//   bazel run -c opt //bench:load_bench                 # the full load
//   bazel run -c opt //bench:load_bench -- --quick      # small counts
//   bazel run -c opt //bench:load_bench -- --clients 200 --calls 100
//       --children 2000 --spawns 5000 --max_seconds 120   (one line)
//   bazel run -c opt //bench:load_bench -- --quick --only mixed --repeat 3
//       # the same phase again on the same daemon: RSS that grows on each
//       # run is a leak, RSS that stays at the first run's peak is heap the
//       # allocator keeps (README, "Performance")
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"
#include "proto/procwarp/v1/memory.grpc.pb.h"
#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "proto/procwarp/v1/threads.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace procwarp::bench {
namespace {

namespace v1 = procwarp::v1;
using procwarp::testing::Ctx;
using procwarp::testing::DaemonHarness;
using Clock = std::chrono::steady_clock;

struct LoadOptions {
  int clients = 1000;
  int calls = 1000;
  int children = 10000;
  int spawns = 100000;
  int max_seconds = 900;
  int repeat = 1;
  bool quick = false;
  std::vector<std::string> only;  // phases; empty: all
};

// Set when a call failed or a phase left fds behind: the exit status.
bool g_trouble = false;

double MicrosSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

// Latencies and failures of one phase (or one kind of call in it).
struct Tally {
  std::vector<double> micros;
  std::map<std::string, int> failures;  // by status code name

  void Add(const Tally& other) {
    micros.insert(micros.end(), other.micros.begin(), other.micros.end());
    for (const auto& [code, n] : other.failures) failures[code] += n;
  }
  void Note(const grpc::Status& status, Clock::time_point start) {
    micros.push_back(MicrosSince(start));
    if (!status.ok()) ++failures[procwarp::testing::CodeName(status)];
  }
  double Percentile(double p) {
    if (micros.empty()) return 0;
    std::sort(micros.begin(), micros.end());
    size_t i = std::min(micros.size() - 1, static_cast<size_t>(p * micros.size()));
    return micros[i];
  }
  void Print(const std::string& what, double seconds) {
    const size_t n = micros.size();
    printf("  %-22s %8zu calls  p50 %9.1f us  p99 %9.1f us  %9.0f /s", what.c_str(),
           n, Percentile(0.50), Percentile(0.99), seconds > 0 ? n / seconds : 0);
    for (const auto& [code, count] : failures) printf("  %s: %d", code.c_str(), count);
    printf("\n");
    if (!failures.empty()) g_trouble = true;
  }
};

struct DaemonUse {
  long rss_kb;
  int fds;
};

DaemonUse Use(const DaemonHarness& daemon) {
  return {daemon.RssKb(), daemon.CountFds()};
}

void PrintUse(const char* when, const DaemonUse& use) {
  printf("  daemon %-13s RSS %7.1f MiB  fds %6d\n", when, use.rss_kb / 1024.0, use.fds);
}

// One phase: its title, the daemon's use before it, its time bound.
class Phase {
 public:
  Phase(const DaemonHarness& daemon, const std::string& title, int max_seconds)
      : daemon_(daemon),
        before_(Use(daemon)),
        deadline_(Clock::now() + std::chrono::seconds(max_seconds)) {
    printf("== %s ==\n", title.c_str());
    PrintUse("before:", before_);
  }
  const DaemonUse& before() const { return before_; }
  Clock::time_point deadline() const { return deadline_; }
  bool InTime() const { return Clock::now() < deadline_; }
  void PrintDuration(double seconds) const {
    printf("  %.1f s%s\n", seconds, InTime() ? "" : " (stopped at --max_seconds)");
  }
  // What the phase held is let go (sessions end at hang-up, handlers at
  // their next check), then compared with before.
  ~Phase() {
    daemon_.AwaitFdsAtMost(before_.fds, absl::Seconds(30));
    DaemonUse after = Use(daemon_);
    PrintUse("after:", after);
    // (Fewer is no leak: the daemon may close a start-up fd meanwhile.)
    printf("  fds back to (at most) their count before: %s (%+d); RSS %+.1f MiB\n",
           after.fds <= before_.fds ? "yes" : "NO", after.fds - before_.fds,
           (after.rss_kb - before_.rss_kb) / 1024.0);
    if (after.fds > before_.fds) g_trouble = true;
    // The daemon gives freed heap back on its housekeeping tick after a big
    // drop (daemon/util/heap_trimmer.h): RSS once that has run.
    absl::SleepFor(absl::Seconds(3));
    printf("  RSS 3 s later: %+.1f MiB against before\n",
           (daemon_.RssKb() - before_.rss_kb) / 1024.0);
  }

 private:
  const DaemonHarness& daemon_;
  const DaemonUse before_;
  const Clock::time_point deadline_;
};

grpc::Status SpawnWaitRemove(v1::Processes::Stub* stub, const std::string& program) {
  v1::SpawnRequest spawn;
  spawn.add_argv(program);
  v1::SpawnResponse spawned;
  grpc::Status s = stub->Spawn(Ctx().get(), spawn, &spawned);
  if (!s.ok()) return s;
  v1::WaitRequest wait;
  wait.set_id(spawned.process().id());
  v1::WaitResponse waited;
  s = stub->Wait(Ctx().get(), wait, &waited);
  v1::RemoveProcessRequest remove;
  remove.set_id(spawned.process().id());
  remove.set_force(true);
  v1::RemoveProcessResponse removed;
  grpc::Status r = stub->Remove(Ctx().get(), remove, &removed);
  return s.ok() ? r : s;
}

// One client of the mixed phase: its own connection, thread and memory.
void RunClient(const std::string& socket, int calls, Clock::time_point deadline,
               std::latch* connected, std::map<std::string, Tally>* tallies) {
  auto channel = procwarp::testing::NewUnixChannel(socket);
  auto admin = v1::Admin::NewStub(channel);
  auto processes = v1::Processes::NewStub(channel);
  auto threads = v1::Threads::NewStub(channel);
  auto memory = v1::Memory::NewStub(channel);
  v1::CreateThreadResponse created;
  grpc::Status setup = threads->CreateThread(Ctx().get(), {}, &created);
  v1::AllocateResponse allocated;
  if (setup.ok()) {
    v1::AllocateRequest allocate;
    allocate.set_thread_id(created.thread().id());
    allocate.set_size(4096);
    setup = memory->Allocate(Ctx().get(), allocate, &allocated);
  }
  if (!setup.ok()) (*tallies)["setup"].Note(setup, Clock::now());
  // Every client connected and set up before the first timed call.
  connected->arrive_and_wait();
  if (!setup.ok()) return;
  const std::string data(64, 'x');
  for (int i = 0; i < calls && Clock::now() < deadline; ++i) {
    const int kind = i % 10;
    const auto start = Clock::now();
    if (kind < 4) {
      v1::GetStatusResponse status;
      (*tallies)["status"].Note(admin->GetStatus(Ctx().get(), {}, &status), start);
    } else if (kind == 4) {
      (*tallies)["spawn+wait+remove"].Note(
          SpawnWaitRemove(processes.get(), "/bin/true"), start);
    } else if (kind < 8) {
      v1::SyscallRequest call;
      call.set_thread_id(created.thread().id());
      call.mutable_syscall()->set_number(SYS_getpid);
      v1::SyscallResponse answer;
      (*tallies)["syscall getpid"].Note(threads->Syscall(Ctx().get(), call, &answer),
                                        start);
    } else if (kind == 8) {
      v1::WriteMemoryRequest write;
      write.set_pointer_id(allocated.pointer().id());
      write.set_data(data);
      v1::WriteMemoryResponse written;
      (*tallies)["memory write 64 B"].Note(memory->Write(Ctx().get(), write, &written),
                                           start);
    } else {
      v1::ReadMemoryRequest read;
      read.set_pointer_id(allocated.pointer().id());
      read.set_length(data.size());
      v1::ReadMemoryResponse got;
      (*tallies)["memory read 64 B"].Note(memory->Read(Ctx().get(), read, &got), start);
    }
  }
  v1::ExitThreadRequest exit;
  exit.set_id(created.thread().id());
  v1::ExitThreadResponse exited;
  threads->ExitThread(Ctx().get(), exit, &exited);
}

void MixedPhase(const DaemonHarness& daemon, const LoadOptions& o) {
  Phase phase(daemon,
              absl::StrCat("mixed: ", o.clients, " concurrent clients x ", o.calls,
                           " calls"),
              o.max_seconds);
  std::vector<std::map<std::string, Tally>> tallies(o.clients);
  std::latch connected(o.clients + 1);
  std::vector<std::thread> clients;
  for (int c = 0; c < o.clients; ++c) {
    clients.emplace_back(RunClient, daemon.socket_path(), o.calls, phase.deadline(),
                         &connected, &tallies[c]);
  }
  connected.arrive_and_wait();
  const auto start = Clock::now();
  // The peak: every client connected with its thread and memory.
  const DaemonUse peak = Use(daemon);
  for (auto& t : clients) t.join();
  const double seconds = MicrosSince(start) / 1e6;
  std::map<std::string, Tally> merged;
  Tally all;
  for (const auto& per_client : tallies) {
    for (const auto& [kind, tally] : per_client) {
      merged[kind].Add(tally);
      if (kind != "setup") all.Add(tally);
    }
  }
  phase.PrintDuration(seconds);
  all.Print("all calls", seconds);
  for (auto& [kind, tally] : merged) tally.Print(kind, seconds);
  PrintUse("at the peak:", peak);
}

void ChildrenPhase(const DaemonHarness& daemon, const LoadOptions& o) {
  Phase phase(daemon,
              absl::StrCat("children: ", o.children, " managed children alive at once"),
              o.max_seconds);
  auto stub = daemon.Processes();
  std::vector<std::string> ids;
  Tally spawned;
  const auto start = Clock::now();
  for (int i = 0; i < o.children && phase.InTime(); ++i) {
    v1::SpawnRequest spawn;
    spawn.add_argv("/bin/sleep");
    spawn.add_argv("100000");
    v1::SpawnResponse response;
    const auto t = Clock::now();
    grpc::Status s = stub->Spawn(Ctx().get(), spawn, &response);
    spawned.Note(s, t);
    if (s.ok()) ids.push_back(response.process().id());
  }
  const double spawn_seconds = MicrosSince(start) / 1e6;
  v1::GetStatusResponse status;
  daemon.Admin()->GetStatus(Ctx().get(), {}, &status);
  printf("  alive at once: %zu (the daemon counts %d processes)\n", ids.size(),
         status.processes());
  const DaemonUse peak = Use(daemon);
  Tally ended;
  const auto end_start = Clock::now();
  for (const std::string& id : ids) {
    const auto t = Clock::now();
    v1::SignalRequest signal;
    signal.set_id(id);
    signal.set_signal(SIGKILL);
    v1::SignalResponse signalled;
    grpc::Status s = stub->Signal(Ctx().get(), signal, &signalled);
    v1::WaitRequest wait;
    wait.set_id(id);
    v1::WaitResponse waited;
    if (s.ok()) s = stub->Wait(Ctx().get(), wait, &waited);
    v1::RemoveProcessRequest remove;
    remove.set_id(id);
    v1::RemoveProcessResponse removed;
    if (s.ok()) s = stub->Remove(Ctx().get(), remove, &removed);
    ended.Note(s, t);
  }
  const double end_seconds = MicrosSince(end_start) / 1e6;
  spawned.Print("spawn (sleep)", spawn_seconds);
  ended.Print("kill+wait+remove", end_seconds);
  PrintUse("at the peak:", peak);
  const DaemonUse& before = phase.before();
  printf("  per child at the peak: %.1f KiB RSS, %.2f fds\n",
         ids.empty() ? 0.0 : double(peak.rss_kb - before.rss_kb) / ids.size(),
         ids.empty() ? 0.0 : double(peak.fds - before.fds) / ids.size());
}

void SpawnsPhase(const DaemonHarness& daemon, const LoadOptions& o) {
  Phase phase(daemon,
              absl::StrCat("spawns: ", o.spawns,
                           " sequential Spawn+Wait+Remove of /bin/true"),
              o.max_seconds);
  auto stub = daemon.Processes();
  Tally tally;
  const auto start = Clock::now();
  for (int i = 0; i < o.spawns && phase.InTime(); ++i) {
    const auto t = Clock::now();
    tally.Note(SpawnWaitRemove(stub.get(), "/bin/true"), t);
  }
  const double seconds = MicrosSince(start) / 1e6;
  phase.PrintDuration(seconds);
  tally.Print("spawn+wait+remove", seconds);
}

int Main(int argc, char** argv) {
  LoadOptions o;
  CLI::App app{"load_bench: procwarpd under load (mixed clients, many children, "
               "many spawns)"};
  app.add_option("--clients", o.clients, "concurrent clients in the mixed phase");
  app.add_option("--calls", o.calls, "calls per client in the mixed phase");
  app.add_option("--children", o.children, "children alive at once");
  app.add_option("--spawns", o.spawns, "sequential spawns");
  app.add_option("--max_seconds", o.max_seconds, "time bound of each phase");
  app.add_flag("--quick", o.quick,
               "small counts (50 clients x 50 calls, 500 children, 2000 "
               "spawns, 60 s a phase) unless given explicitly");
  app.add_option("--repeat", o.repeat,
                 "run the chosen phases this many times on one daemon")
      ->check(CLI::Range(1, 100));
  app.add_option("--only", o.only, "phases to run: mixed, children, spawns")
      ->check(CLI::IsMember({"mixed", "children", "spawns"}));
  CLI11_PARSE(app, argc, argv);
  if (o.quick) {
    auto small = [&](const char* flag, int* value, int quick) {
      if (app.count(flag) == 0) *value = quick;
    };
    small("--clients", &o.clients, 50);
    small("--calls", &o.calls, 50);
    small("--children", &o.children, 500);
    small("--spawns", &o.spawns, 2000);
    small("--max_seconds", &o.max_seconds, 60);
  }
  auto wants = [&](const std::string& phase) {
    return o.only.empty() ||
           std::find(o.only.begin(), o.only.end(), phase) != o.only.end();
  };

  // Room for the load in the limits that are per identity (the bench runs
  // as root, an admin) and in gRPC's thread pool; each client holds a
  // connection, a call (or a Wait, a long-lived call) and an agent thread.
  const int callers = o.clients + 16;
  DaemonHarness::Options options = DaemonHarness::Options::WithAgent();
  for (const auto& [flag, value] : std::vector<std::pair<std::string, int>>{
           {"max_connections_per_admin", callers},
           {"max_calls_per_admin", callers},
           {"max_streams_per_admin", callers},
           {"max_server_threads", callers + 300},
           {"max_threads_per_identity", callers},
           {"max_spawns_in_flight_per_identity", callers},
           {"max_processes_per_identity", std::max(o.children, callers) + 16},
       }) {
    options.flags.push_back(absl::StrCat("--", flag, "=", value));
  }
  auto daemon = DaemonHarness::Start(options);
  if (!daemon.ok()) {
    fprintf(stderr, "cannot start procwarpd: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  printf("procwarpd pid %d on %s; flags:", (*daemon)->daemon_pid(),
         (*daemon)->socket_path().c_str());
  for (const auto& f : options.flags) printf(" %s", f.c_str());
  printf("\n");
  for (int run = 1; run <= o.repeat; ++run) {
    if (o.repeat > 1) printf("=== run %d of %d ===\n", run, o.repeat);
    if (wants("mixed")) MixedPhase(**daemon, o);
    if (wants("children")) ChildrenPhase(**daemon, o);
    if (wants("spawns")) SpawnsPhase(**daemon, o);
  }
  // 1: a call failed or fds were left behind (see above).
  return g_trouble ? 1 : 0;
}

}  // namespace
}  // namespace procwarp::bench

int main(int argc, char** argv) { return procwarp::bench::Main(argc, argv); }
