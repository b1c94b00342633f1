// AdminService: the daemon's version and status.
#ifndef PROCWARP_DAEMON_ADMIN_ADMIN_SERVICE_H_
#define PROCWARP_DAEMON_ADMIN_ADMIN_SERVICE_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "daemon/process/process_table.h"
#include "daemon/server/caller_context.h"
#include "daemon/server/session_registry.h"
#include "proto/procwarp/v1/admin.grpc.pb.h"

namespace procwarp {

// The daemon's version string (also printed by `procwarpd --version`).
extern const char kProcwarpVersion[];

class AdminService final : public procwarp::v1::Admin::Service {
 public:
  AdminService(const CallerResolver* callers, const SessionRegistry* sessions,
               const ProcessTable* table)
      : callers_(callers),
        sessions_(sessions),
        table_(table),
        started_(absl::Now()) {}

  // The TLS listener's bound addresses, shown by GetStatus. Call before the
  // server starts.
  void SetTlsAddresses(std::vector<std::string> addresses) {
    tls_addresses_ = std::move(addresses);
  }

  grpc::Status GetVersion(grpc::ServerContext* context,
                          const procwarp::v1::GetVersionRequest* request,
                          procwarp::v1::GetVersionResponse* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context,
                         const procwarp::v1::GetStatusRequest* request,
                         procwarp::v1::GetStatusResponse* response) override;

 private:
  const CallerResolver* callers_;
  const SessionRegistry* sessions_;
  const ProcessTable* table_;
  const absl::Time started_;
  std::vector<std::string> tls_addresses_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_ADMIN_ADMIN_SERVICE_H_
