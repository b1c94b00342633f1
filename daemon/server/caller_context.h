// Binds each gRPC call to the caller identity of its connection, once, when
// the call's initial metadata arrives, and lets handlers fetch it.
//
// Handlers never parse ServerContext::peer() themselves: they call
// CallerOf(context), which returns the identity bound at call start or
// UNAUTHENTICATED. Binding early matters because fd numbers are reused (see
// session_registry.h).
#ifndef PROCWARP_DAEMON_SERVER_CALLER_CONTEXT_H_
#define PROCWARP_DAEMON_SERVER_CALLER_CONTEXT_H_

#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/server/session_registry.h"
#include "grpcpp/server_context.h"
#include "daemon/server/grpc_status.h"
#include "grpcpp/support/server_interceptor.h"

namespace procwarp {

class CallerBindings {
 public:
  explicit CallerBindings(const SessionRegistry* sessions)
      : sessions_(sessions) {}

  // The interceptor factory to install on the ServerBuilder.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  MakeInterceptorFactory();

  // The session (and so the identity) bound to the call behind `context`.
  absl::StatusOr<std::shared_ptr<const Session>> SessionOf(
      const grpc::ServerContextBase* context) const;
  absl::StatusOr<Identity> CallerOf(
      const grpc::ServerContextBase* context) const;

  // Used by the interceptor.
  void Bind(const grpc::ServerContextBase* context);
  void Unbind(const grpc::ServerContextBase* context);

 private:
  const SessionRegistry* sessions_;
  mutable absl::Mutex mu_;
  std::map<const grpc::ServerContextBase*,
           absl::StatusOr<std::shared_ptr<const Session>>>
      bound_ ABSL_GUARDED_BY(mu_);
};

}  // namespace procwarp


namespace procwarp {

// Runs `body(const Identity& caller)` for the call behind `context` and turns
// its absl::Status into the call's grpc::Status. Every handler goes through
// this, so none can run without an authenticated caller.
template <typename Body>
grpc::Status WithCaller(const CallerBindings& bindings,
                        const grpc::ServerContextBase* context, Body&& body) {
  absl::StatusOr<Identity> caller = bindings.CallerOf(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  return ToGrpcStatus(body(*caller));
}

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_CALLER_CONTEXT_H_
