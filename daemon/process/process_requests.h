// The checks of Processes requests that need no process: pure functions of
// the request (and the caller's identity), run by each handler before it
// looks anything up, and fuzzed as they are (process_requests_fuzzer.cc).
// What needs the table (ids, ownership) is the table's; the full spawn
// check is BuildSpawnPlan (spawn_plan.h).
#ifndef PROCWARP_DAEMON_PROCESS_PROCESS_REQUESTS_H_
#define PROCWARP_DAEMON_PROCESS_PROCESS_REQUESTS_H_

#include "absl/status/status.h"
#include "daemon/server/identity.h"
#include "proto/procwarp/v1/processes.pb.h"

namespace procwarp {

// What a process record keeps of a spawn (labels, argv) is within
// record_bounds.h.
absl::Status CheckSpawnRequest(const procwarp::v1::SpawnRequest& request);

// The signal is 0 (a probe) or a real signal number.
absl::Status CheckSignalRequest(const procwarp::v1::SignalRequest& request);

// Both window dimensions are 1..65535.
absl::Status CheckResizePtyRequest(const procwarp::v1::ResizePtyRequest& request);

// Only admins list every identity's processes.
absl::Status CheckListProcessesRequest(
    const procwarp::v1::ListProcessesRequest& request, const Identity& caller);

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_PROCESS_PROCESS_REQUESTS_H_
