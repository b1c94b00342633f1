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

// CPU time (user+system) consumed so far by process `pid`, in microseconds.
double ProcessCpuMicros(pid_t pid);

// Restricts this process (and children started later) to CPU `cpu`, or lifts
// the restriction when cpu < 0.
void PinToCpu(int cpu);

// Prints "name: median X us (min Y us) vs baseline: median Z us → ratio R
// (target T)" and returns the ratio of medians.
double Report(const std::string& name, const Samples& measured,
              const std::string& baseline_name, const Samples& baseline,
              const std::string& target);

}  // namespace procwarp::bench

#endif  // PROCWARP_BENCH_BENCH_UTIL_H_
