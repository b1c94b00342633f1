// Converts gRPC call results into absl::Status, the error type of the whole
// client API. This is the one place where that conversion happens.
#ifndef PROCWARP_CLIENT_CC_GRPC_STATUS_H_
#define PROCWARP_CLIENT_CC_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace procwarp {

// Returns `status` as an absl::Status with the same code and message. gRPC and
// Abseil share the numeric codes (both follow google.rpc.Code), so the
// conversion is a cast, and an OK gRPC status becomes absl::OkStatus().
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace procwarp

#endif  // PROCWARP_CLIENT_CC_GRPC_STATUS_H_
