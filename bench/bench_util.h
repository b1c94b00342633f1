// Small helpers shared by procwarp's benchmarks: timing samples, CPU pinning,
// per-process CPU time, and printing a figure against its baseline.
#ifndef PROCWARP_BENCH_BENCH_UTIL_H_
#define PROCWARP_BENCH_BENCH_UTIL_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace procwarp::bench {

struct Samples {
  std::vector<double> micros;  // one per operation
  double Median() const;
  double Min() const;
};

// Runs `op` `n` times (after `warmup` untimed runs) and times each run.
Samples Measure(int n, int warmup, const std::function<void()>& op);

// A figure and its baseline measured in alternating rounds, so that the
// machine's speed drifting during the run (other guests on a VM host, CPU
// frequency) affects both alike.
struct Paired {
  Samples baseline;
  Samples measured;
  // Sum of the `counter` increases over the measured rounds only (e.g. a
  // server's CPU time), divided by the number of measured operations.
  double measured_counter_per_op = 0;
  double baseline_counter_per_op = 0;
};

// Runs `baseline` and `measured` `n` times each (after n/10 warm-up runs of
// each) in 20 alternating rounds. `measured_counter` / `baseline_counter`,
// when given, are read around each round of their side.
Paired MeasurePaired(int n, const std::function<void()>& baseline,
                     const std::function<void()>& measured,
                     const std::function<double()>& measured_counter = nullptr,
                     const std::function<double()>& baseline_counter = nullptr);

// CPU time (user+system) consumed so far by process `pid`, in microseconds.
double ProcessCpuMicros(pid_t pid);

// Restricts this process (and children started later) to CPU `cpu`, or lifts
// the restriction when cpu < 0.
void PinToCpu(int cpu);

// Command-line options every benchmark takes.
struct BenchOptions {
  int iterations = 3000;
  // Figures to run (by the names the benchmark passes to Parse); empty: all.
  std::vector<std::string> only;
  // "pinned" (client, daemon and helpers on CPU 0), "unpinned" or "both".
  std::string placement = "both";

  bool Wants(const std::string& figure) const;
  // The CPU settings to run under: 0 for pinned, -1 for unpinned.
  std::vector<int> Cpus() const;
};

// Parses --iterations, --only (one of `figures`, repeatable) and --placement;
// on --help or a bad flag prints the message and exits.
BenchOptions ParseBenchOptions(int argc, char** argv, const std::string& about,
                               const std::vector<std::string>& figures);

// Prints "name: median X us (min Y us) vs baseline: median Z us → ratio R
// (target T)" and returns the ratio of medians.
double Report(const std::string& name, const Samples& measured,
              const std::string& baseline_name, const Samples& baseline,
              const std::string& target);

// gdb's attach + detach of `pid` (`gdb -nx -batch -p PID`, output dropped):
// the floor of every gdb-based injector. HaveGdb() says whether
// /usr/bin/gdb exists (benchmarks only; not a procwarp dependency).
bool HaveGdb();
void GdbAttachDetach(pid_t pid);

// `ours` n times against GdbAttachDetach(pid) in 5 alternating rounds (gdb
// takes ~0.3 s or more per attach: one of it per round).
void MeasureAgainstGdb(pid_t pid, int n, const std::function<void()>& ours,
                       Samples* ours_samples, Samples* gdb_samples);

}  // namespace procwarp::bench

#endif  // PROCWARP_BENCH_BENCH_UTIL_H_
