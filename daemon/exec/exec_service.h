// ExecService: the procwarp.exec.v1.Exec RPCs — remote calls and library
// injection in processes procwarp did not spawn, and the preflight behind
// `procwarp doctor` (proto/procwarp/exec/v1/exec.proto, docs/attach.md).
//
// Each Call / InjectLibrary / UnloadLibrary attaches to its target for that
// one RPC (a ptrace::TracerThread) and detaches before it returns. The caller
// must pass the kernel's ptrace rule for the target (daemon/security/
// ptrace_access.h) before the attach and again inside the work, with the
// target stopped (authority at use; docs/security.md, "Exec"). The work is
// bounded by the call's deadline, capped at ExecLimits::max_operation_time
// (config exec_operation_timeout_ms), and cancelled when the client goes
// away. Every operation is audit-logged with its outcome.
#ifndef PROCWARP_DAEMON_EXEC_EXEC_SERVICE_H_
#define PROCWARP_DAEMON_EXEC_EXEC_SERVICE_H_

#include <cstddef>

#include "absl/time/time.h"
#include "daemon/exec/library_table.h"
#include "daemon/server/caller_context.h"
#include "proto/procwarp/exec/v1/exec.grpc.pb.h"

namespace procwarp::exec {

// Filled from the config's Limits (exec_operation_timeout_ms,
// max_library_handles_per_identity; defaults in daemon/config.cc).
struct ExecLimits {
  // The longest one operation (attach, call, detach) may take, whatever the
  // client's deadline.
  absl::Duration max_operation_time = absl::Seconds(60);
  // Library handles one identity may hold (each keeps a pidfd).
  size_t max_library_handles_per_identity = 64;
};

class ExecService final : public procwarp::exec::v1::Exec::Service {
 public:
  ExecService(const CallerResolver* callers, const ExecLimits& limits)
      : callers_(callers),
        limits_(limits),
        libraries_(limits.max_library_handles_per_identity) {}

  grpc::Status Call(grpc::ServerContext* context,
                    const procwarp::exec::v1::CallRequest* request,
                    procwarp::exec::v1::CallResponse* response) override;
  grpc::Status InjectLibrary(
      grpc::ServerContext* context,
      const procwarp::exec::v1::InjectLibraryRequest* request,
      procwarp::exec::v1::InjectLibraryResponse* response) override;
  grpc::Status UnloadLibrary(
      grpc::ServerContext* context,
      const procwarp::exec::v1::UnloadLibraryRequest* request,
      procwarp::exec::v1::UnloadLibraryResponse* response) override;
  grpc::Status Preflight(grpc::ServerContext* context,
                         const procwarp::exec::v1::PreflightRequest* request,
                         procwarp::exec::v1::PreflightResponse* response) override;
  // daemon/python/remote_exec.h; docs/python.md.
  grpc::Status RunPython(grpc::ServerContext* context,
                         const procwarp::exec::v1::RunPythonRequest* request,
                         procwarp::exec::v1::RunPythonResponse* response) override;

 private:
  absl::Time Deadline(const grpc::ServerContext* context) const;

  const CallerResolver* callers_;
  const ExecLimits limits_;
  LibraryTable libraries_;
};

}  // namespace procwarp::exec

#endif  // PROCWARP_DAEMON_EXEC_EXEC_SERVICE_H_
