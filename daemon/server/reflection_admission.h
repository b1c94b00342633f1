// ReflectionAdmission: gives gRPC's server-reflection streams the same
// per-identity call and stream slots as every other RPC.
//
// The reflection service is gRPC's own code: its handler does not run inside
// WithSession (caller_context.h), yet each ServerReflectionInfo stream holds
// a daemon thread for as long as the client keeps it open. This interceptor
// factory admits those calls instead; for every other method it returns no
// interceptor, so they pay only the factory's check of the method name.
// Over a limit the stream is cancelled (CANCELLED for the client; an
// interceptor cannot choose the status) and the daemon logs why.
#ifndef PROCWARP_DAEMON_SERVER_REFLECTION_ADMISSION_H_
#define PROCWARP_DAEMON_SERVER_REFLECTION_ADMISSION_H_

#include <memory>

#include "daemon/server/caller_context.h"
#include "grpcpp/support/server_interceptor.h"

namespace procwarp {

class ReflectionAdmission
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ReflectionAdmission(const CallerResolver* callers)
      : callers_(callers) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const CallerResolver* callers_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_REFLECTION_ADMISSION_H_
