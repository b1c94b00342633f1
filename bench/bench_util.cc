// See bench_util.h.
#include "bench/bench_util.h"

#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "CLI/CLI.hpp"

namespace procwarp::bench {

bool BenchOptions::Wants(const std::string& figure) const {
  return only.empty() ||
         std::find(only.begin(), only.end(), figure) != only.end();
}

std::vector<int> BenchOptions::Cpus() const {
  if (placement == "pinned") return {0};
  if (placement == "unpinned") return {-1};
  return {0, -1};
}

BenchOptions ParseBenchOptions(int argc, char** argv, const std::string& about,
                               const std::vector<std::string>& figures) {
  BenchOptions options;
  CLI::App app(about);
  app.add_option("--iterations", options.iterations,
                 "timed calls per latency figure")
      ->check(CLI::PositiveNumber);
  app.add_option("--only", options.only, "run only these figures")
      ->check(CLI::IsMember(figures));
  app.add_option("--placement", options.placement,
                 "pinned (everything on CPU 0), unpinned, or both")
      ->check(CLI::IsMember({"pinned", "unpinned", "both"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  return options;
}

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

namespace {

// Appends `n` timed runs of `op` to `samples`; returns the growth of
// `counter` over them (0 without one).
double TimeRound(int n, const std::function<void()>& op,
                 const std::function<double()>& counter, Samples* samples) {
  double before = counter ? counter() : 0;
  Samples round = Measure(n, 0, op);
  samples->micros.insert(samples->micros.end(), round.micros.begin(),
                         round.micros.end());
  return counter ? counter() - before : 0;
}

}  // namespace

Paired MeasurePaired(int n, const std::function<void()>& baseline,
                     const std::function<void()>& measured,
                     const std::function<double()>& measured_counter,
                     const std::function<double()>& baseline_counter) {
  constexpr int kRounds = 20;
  Measure(n / 10, 0, baseline);
  Measure(n / 10, 0, measured);
  Paired paired;
  double measured_total = 0;
  double baseline_total = 0;
  for (int round = 0; round < kRounds; ++round) {
    // This round's share of n, so the rounds add up to exactly n.
    int count = n * (round + 1) / kRounds - n * round / kRounds;
    baseline_total +=
        TimeRound(count, baseline, baseline_counter, &paired.baseline);
    measured_total +=
        TimeRound(count, measured, measured_counter, &paired.measured);
  }
  if (n > 0) {
    paired.measured_counter_per_op = measured_total / n;
    paired.baseline_counter_per_op = baseline_total / n;
  }
  return paired;
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

bool HaveGdb() { return access("/usr/bin/gdb", X_OK) == 0; }

void GdbAttachDetach(pid_t pid) {
  std::string pid_text = std::to_string(pid);
  const char* argv[] = {"/usr/bin/gdb", "-nx", "-batch", "-p", pid_text.c_str(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t child = 0;
  if (posix_spawn(&child, argv[0], &actions, nullptr, const_cast<char**>(argv), environ) != 0) {
    fprintf(stderr, "posix_spawn gdb failed\n");
    exit(1);
  }
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  waitpid(child, &status, 0);
}

void MeasureAgainstGdb(pid_t pid, int n, const std::function<void()>& ours,
                       Samples* ours_samples, Samples* gdb_samples) {
  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    Samples g = Measure(1, 0, [&] { GdbAttachDetach(pid); });
    gdb_samples->micros.insert(gdb_samples->micros.end(), g.micros.begin(), g.micros.end());
    Samples o = Measure(n / kRounds, round == 0 ? 5 : 0, ours);
    ours_samples->micros.insert(ours_samples->micros.end(), o.micros.begin(), o.micros.end());
  }
}

}  // namespace procwarp::bench
