// Fault points: named steps of the operations that create or move things
// (spawn, create, exec, transfer) where a test can have the daemon kill the
// process it is working on, to prove that every step fails cleanly
// (docs/architecture.md, "Faults at every step"; tests/integration/
// fault_steps_test.cc).
//
// In the procwarpd that ships, nothing ever installs a hook: a fault point
// is one relaxed atomic load. Only the test-only daemon binary
// (//daemon:procwarpd_with_faults, built from main.cc with
// PROCWARP_TEST_FAULTS defined) has the flag that installs one
// (daemon/testing/fault_injector.h); procwarpd itself refuses that flag as
// unknown.
#ifndef PROCWARP_DAEMON_UTIL_FAULT_POINT_H_
#define PROCWARP_DAEMON_UTIL_FAULT_POINT_H_

#include <atomic>

namespace procwarp {

// Called at step `step` (0, 1, ...) of `operation` with a pidfd of the
// process the operation works on at that step.
using FaultHook = void (*)(const char* operation, int step, int pidfd);

namespace fault_internal {
inline std::atomic<FaultHook> hook{nullptr};
}  // namespace fault_internal

// Installs `hook` for the rest of the process's life (test binaries only).
inline void InstallFaultHook(FaultHook hook) {
  fault_internal::hook.store(hook, std::memory_order_release);
}

inline void FaultPoint(const char* operation, int step, int pidfd) {
  FaultHook hook = fault_internal::hook.load(std::memory_order_acquire);
  if (hook != nullptr) [[unlikely]] hook(operation, step, pidfd);
}

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_UTIL_FAULT_POINT_H_
