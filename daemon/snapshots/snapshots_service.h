// SnapshotsService: procwarp.snapshots.v1.Snapshots — reading a process's
// state without changing it (proto/procwarp/snapshots/v1/snapshots.proto).
// Today: PythonStack, every Python thread's frames and locals read from the
// target's memory (daemon/python/stack_*.h; docs/python.md, "Stack
// snapshots").
//
// Authorisation is the attach rule (docs/security.md, "Snapshots"): the
// caller must pass the kernel's ptrace rule for the target through its pidfd
// before anything is read and again after the read (a result is returned
// only if the caller could still have read it itself). The memory is read
// through /proc/PID/mem opened via the pidfd-confirmed /proc directory, so a
// recycled pid or an exec in between is never read. By default the target is
// not stopped; `consistent` stops every thread through a transient
// ptrace attachment (daemon/exec/transient_attach.h) and always detaches.
// `native` does the same and, in that stop, unwinds each Python thread's
// native stack (native_unwind.h), merged with its Python frames where
// daemon/python/native_merge.h finds them matching.
#ifndef PROCWARP_DAEMON_SNAPSHOTS_SNAPSHOTS_SERVICE_H_
#define PROCWARP_DAEMON_SNAPSHOTS_SNAPSHOTS_SERVICE_H_

#include "absl/time/time.h"
#include "daemon/python/stack_reader.h"
#include "daemon/server/caller_context.h"
#include "proto/procwarp/snapshots/v1/snapshots.grpc.pb.h"

namespace procwarp::snapshots {

class SnapshotsService final : public procwarp::snapshots::v1::Snapshots::Service {
 public:
  // `max_operation_time` bounds a consistent read's attachment whatever the
  // client's deadline (the Exec limit, config exec_operation_timeout_ms).
  SnapshotsService(const CallerResolver* callers, absl::Duration max_operation_time)
      : callers_(callers), max_operation_time_(max_operation_time) {}

  grpc::Status PythonStack(grpc::ServerContext* context,
                           const procwarp::snapshots::v1::PythonStackRequest* request,
                           procwarp::snapshots::v1::PythonStackResponse* response) override;

 private:
  const CallerResolver* callers_;
  const absl::Duration max_operation_time_;
  const python::StackLimits limits_;
};

}  // namespace procwarp::snapshots

#endif  // PROCWARP_DAEMON_SNAPSHOTS_SNAPSHOTS_SERVICE_H_
