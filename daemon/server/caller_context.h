// Tells a handler who is calling: the session (and so the identity) of the
// connection its call arrived on.
//
// Handlers never parse ServerContext::peer() themselves; they run inside
// WithCaller(...), which resolves the caller first or fails the call with
// UNAUTHENTICATED, so no handler can run without one.
//
// Resolving inside the handler is safe from fd-number reuse (see
// session_registry.h) because a call pins its connection: every stream holds
// a reference on its HTTP/2 transport, and gRPC closes the transport's fd only
// when the last reference is gone. So while a handler runs, the "fd:N" in its
// peer() is still its own connection's socket, which Resolve() double-checks
// by inode. (An earlier version bound the caller in a server interceptor at
// POST_RECV_INITIAL_METADATA; the synchronous server runs that hook on the
// handler's thread just before the handler, so it gave no earlier binding
// and cost ~15-20 us of CPU per call.)
#ifndef PROCWARP_DAEMON_SERVER_CALLER_CONTEXT_H_
#define PROCWARP_DAEMON_SERVER_CALLER_CONTEXT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "daemon/server/grpc_status.h"
#include "daemon/server/session_registry.h"
#include "grpcpp/server_context.h"

namespace procwarp {

class CallerResolver {
 public:
  explicit CallerResolver(const SessionRegistry* sessions)
      : sessions_(sessions) {}

  // The session of the connection the call behind `context` arrived on.
  absl::StatusOr<std::shared_ptr<const Session>> SessionOf(
      const grpc::ServerContextBase* context) const;

 private:
  const SessionRegistry* sessions_;
};

// Runs `body(const Session& session)` for the call behind `context` and turns
// its absl::Status into the call's grpc::Status.
template <typename Body>
grpc::Status WithSession(const CallerResolver& callers,
                         const grpc::ServerContextBase* context, Body&& body) {
  absl::StatusOr<std::shared_ptr<const Session>> session =
      callers.SessionOf(context);
  if (!session.ok()) return ToGrpcStatus(session.status());
  return ToGrpcStatus(body(**session));
}

// Runs `body(const Identity& caller)`: WithSession for handlers that need only
// the caller's identity, which is most of them.
template <typename Body>
grpc::Status WithCaller(const CallerResolver& callers,
                        const grpc::ServerContextBase* context, Body&& body) {
  return WithSession(callers, context, [&](const Session& session) {
    return body(session.identity);
  });
}

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_CALLER_CONTEXT_H_
