// Implementation of the gRPC -> absl status conversion (see grpc_status.h).
#include "client/cc/grpc_status.h"

namespace procwarp {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace procwarp
