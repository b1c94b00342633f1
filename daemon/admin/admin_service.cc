// See admin_service.h.
#include "daemon/admin/admin_service.h"

#include <unistd.h>

#include "absl/time/clock.h"

namespace procwarp {

const char kProcwarpVersion[] = "0.1.0";

grpc::Status AdminService::GetVersion(grpc::ServerContext* context,
                                      const procwarp::v1::GetVersionRequest*,
                                      procwarp::v1::GetVersionResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity&) {
    response->set_version(kProcwarpVersion);
    response->add_api_versions("procwarp.v1");
    return absl::OkStatus();
  });
}

grpc::Status AdminService::GetStatus(grpc::ServerContext* context,
                                     const procwarp::v1::GetStatusRequest*,
                                     procwarp::v1::GetStatusResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    response->set_uptime_ms(absl::ToInt64Milliseconds(absl::Now() - started_));
    if (caller.admin) {
      response->set_clients(sessions_->LiveSessions());
      response->set_processes(table_->size());
      response->set_running_processes(table_->running());
    } else {
      // Non-admins see nothing of other identities, counts included.
      response->set_clients(sessions_->SessionsOf(caller));
      int processes = 0, running = 0;
      for (const auto& process : table_->List(caller, /*all=*/false)) {
        ++processes;
        if (!process->exited()) ++running;
      }
      response->set_processes(processes);
      response->set_running_processes(running);
    }
    response->set_daemon_pid(getpid());
    *response->mutable_caller() = caller.ToProto();
    response->mutable_tls_addresses()->Add(tls_addresses_.begin(),
                                           tls_addresses_.end());
    return absl::OkStatus();
  });
}

}  // namespace procwarp
