// Processes calls the benchmarks time, written once: spawn and wait for a
// program, remove a record.
#ifndef PROCWARP_BENCH_PROCESS_CALLS_H_
#define PROCWARP_BENCH_PROCESS_CALLS_H_

#include <string>

#include "proto/procwarp/v1/processes.grpc.pb.h"
#include "tests/integration/test_channel.h"

namespace procwarp::bench {

// Spawns `program` (no arguments) and waits for it; returns its id.
inline std::string SpawnAndWait(procwarp::v1::Processes::Stub* stub,
                                const std::string& program) {
  procwarp::v1::SpawnRequest spawn;
  spawn.add_argv(program);
  procwarp::v1::SpawnResponse spawned;
  stub->Spawn(procwarp::testing::Ctx().get(), spawn, &spawned);
  procwarp::v1::WaitRequest wait;
  wait.set_id(spawned.process().id());
  procwarp::v1::WaitResponse waited;
  stub->Wait(procwarp::testing::Ctx().get(), wait, &waited);
  return spawned.process().id();
}

// Forgets process `id` (killing it first with `force`).
inline void RemoveProcess(procwarp::v1::Processes::Stub* stub,
                          const std::string& id, bool force = false) {
  procwarp::v1::RemoveProcessRequest remove;
  remove.set_id(id);
  remove.set_force(force);
  procwarp::v1::RemoveProcessResponse removed;
  stub->Remove(procwarp::testing::Ctx().get(), remove, &removed);
}

}  // namespace procwarp::bench

#endif  // PROCWARP_BENCH_PROCESS_CALLS_H_
