// See bench_util.h.
#include "bench/bench_util.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace procwarp::bench {

double Samples::Median() const {
  std::vector<double> sorted = micros;
  std::sort(sorted.begin(), sorted.end());
  return sorted.empty() ? 0 : sorted[sorted.size() / 2];
}

double Samples::Min() const {
  return micros.empty() ? 0 : *std::min_element(micros.begin(), micros.end());
}

Samples Measure(int n, int warmup, const std::function<void()>& op) {
  for (int i = 0; i < warmup; ++i) op();
  Samples s;
  s.micros.reserve(n);
  for (int i = 0; i < n; ++i) {
    auto start = std::chrono::steady_clock::now();
    op();
    auto end = std::chrono::steady_clock::now();
    s.micros.push_back(
        std::chrono::duration<double, std::micro>(end - start).count());
  }
  return s;
}

double ProcessCpuMicros(pid_t pid) {
  clockid_t clock;
  if (clock_getcpuclockid(pid, &clock) != 0) return -1;
  timespec ts{};
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

void PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0) {
    CPU_SET(cpu, &set);
  } else {
    for (int i = 0; i < CPU_SETSIZE; ++i) CPU_SET(i, &set);
  }
  sched_setaffinity(0, sizeof(set), &set);
}

double Report(const std::string& name, const Samples& measured,
              const std::string& baseline_name, const Samples& baseline,
              const std::string& target) {
  double ratio = measured.Median() / baseline.Median();
  printf("  %-34s median %9.1f us (min %9.1f)\n", name.c_str(),
         measured.Median(), measured.Min());
  printf("  %-34s median %9.1f us (min %9.1f)\n", baseline_name.c_str(),
         baseline.Median(), baseline.Min());
  printf("  => ratio %.2fx (target %s)\n", ratio, target.c_str());
  return ratio;
}

}  // namespace procwarp::bench
