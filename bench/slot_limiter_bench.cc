// slot_limiter_bench: what the per-identity call limit adds to every call.
// Each RPC acquires and releases a call slot (SlotLimiter, in WithSession);
// this times that pair, in batches (one pair is far below the clock's
// resolution), against an uncontended absl::Mutex lock/unlock pair measured
// in the same run, single-threaded and with a second thread doing the same
// for another identity.
//
//   slot_limiter_bench [--rounds N]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "daemon/server/slot_limiter.h"

namespace {

constexpr int kBatch = 100000;

template <typename Op>
double NanosPerOp(Op op) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kBatch; ++i) op();
  auto end = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(end - start).count() / kBatch;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 20;
  if (argc == 3 && strcmp(argv[1], "--rounds") == 0) rounds = atoi(argv[2]);
  // As procwarpd's optimised build does (see daemon/main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  procwarp::SlotLimiter limiter("calls", {.per_identity = 64,
                                          .per_admin = 256,
                                          .non_admin_total = 256});
  procwarp::Identity user;
  user.uid = 65534;
  absl::Mutex mu;
  auto slot_pair = [&] {
    auto slot = limiter.Acquire(user);
    if (!slot.ok()) abort();
  };
  auto mutex_pair = [&] { absl::MutexLock lock(&mu); };
  for (int contended = 0; contended < 2; ++contended) {
    std::atomic<bool> stop{false};
    std::thread other;
    if (contended) {
      other = std::thread([&] {
        procwarp::Identity someone;
        someone.uid = 1000;
        while (!stop.load(std::memory_order_relaxed)) {
          auto slot = limiter.Acquire(someone);
        }
      });
    }
    double best_slot = 1e9, best_mutex = 1e9;
    for (int r = 0; r < rounds; ++r) {  // alternating rounds: the VM drifts
      best_mutex = std::min(best_mutex, NanosPerOp(mutex_pair));
      best_slot = std::min(best_slot, NanosPerOp(slot_pair));
    }
    stop = true;
    if (other.joinable()) other.join();
    printf("%s: call slot acquire+release %.0f ns (min of %d rounds), "
           "absl::Mutex lock+unlock %.0f ns\n",
           contended ? "another identity calling on a second thread"
                     : "single thread",
           best_slot, rounds, best_mutex);
  }
  return 0;
}
