// The one place absl::Status becomes grpc::Status (their codes are equal).
#ifndef PROCWARP_DAEMON_SERVER_GRPC_STATUS_H_
#define PROCWARP_DAEMON_SERVER_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace procwarp {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_GRPC_STATUS_H_
