// Tells a handler who is calling: the session (and so the identity) of the
// connection its call arrived on.
//
// Handlers never parse ServerContext::peer() themselves; they run inside
// WithCaller(...), which resolves the caller first or fails the call with
// UNAUTHENTICATED, so no handler can run without one.
//
// It is also the one choke point every call goes through, so it is where
// the per-identity call limit is applied: each handler runs holding a call
// slot (see slot_limiter.h), and RPCs that stay open (server, client and
// bidirectional streams, and unary calls that wait for a process, like
// Processes.Wait) run inside WithStreamCaller/WithStreamSession, which also
// takes a stream slot. Over a limit, the call ends with RESOURCE_EXHAUSTED
// before the handler runs.
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
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "daemon/server/grpc_status.h"
#include "daemon/server/session_registry.h"
#include "daemon/server/slot_limiter.h"
#include "grpcpp/server_context.h"

namespace procwarp {

// Who calls on a TCP connection whose TLS gRPC did: the session its client
// certificate binds it to (daemon/tls/remote_callers.h).
class RemoteCallerSource {
 public:
  virtual ~RemoteCallerSource() = default;
  // `peer_address` is the call's peer as PeerAddressOf formats it.
  virtual absl::StatusOr<std::shared_ptr<const Session>> SessionOf(
      const grpc::ServerContextBase& context,
      const std::string& peer_address) const = 0;
};

class CallerResolver {
 public:
  // `calls` and `streams` (either may be null: no limit) count the calls and
  // the long-lived streams each identity has in progress.
  explicit CallerResolver(const SessionRegistry* sessions,
                          SlotLimiter* calls = nullptr,
                          SlotLimiter* streams = nullptr)
      : sessions_(sessions), calls_(calls), streams_(streams) {}

  // Calls on TCP connections are resolved by `remote` (which must outlive
  // this); without one they are refused. Set before the server starts.
  void SetRemoteCallers(const RemoteCallerSource* remote) { remote_ = remote; }

  // The session of the connection the call behind `context` arrived on.
  absl::StatusOr<std::shared_ptr<const Session>> SessionOf(
      const grpc::ServerContextBase* context) const;

  // The slots a call of `caller` holds while its handler runs: a call slot,
  // and for a long-lived call (`stream`) a stream slot too.
  struct CallSlots {
    std::optional<SlotLimiter::Slot> call;
    std::optional<SlotLimiter::Slot> stream;
  };
  absl::StatusOr<CallSlots> Admit(const Identity& caller, bool stream) const;

 private:
  const SessionRegistry* sessions_;
  const RemoteCallerSource* remote_ = nullptr;
  SlotLimiter* calls_;
  SlotLimiter* streams_;
};

// OK for a caller on this host; FAILED_PRECONDITION for a remote (TLS)
// caller, naming `call` and the `alternative` that works remotely. For the
// RPCs that reach into the client's own process (ReadToClient,
// WriteFromClient, ExportFd, ImportFd): they have no meaning across hosts.
absl::Status RequireLocal(const Session& session, absl::string_view call,
                          absl::string_view alternative);

namespace internal {

template <typename Body>
grpc::Status RunAdmitted(const CallerResolver& callers,
                         const grpc::ServerContextBase* context, bool stream,
                         Body&& body) {
  absl::StatusOr<std::shared_ptr<const Session>> session =
      callers.SessionOf(context);
  if (!session.ok()) return ToGrpcStatus(session.status());
  absl::StatusOr<CallerResolver::CallSlots> slots =
      callers.Admit((*session)->identity, stream);
  if (!slots.ok()) return ToGrpcStatus(slots.status());
  return ToGrpcStatus(body(**session));
}

}  // namespace internal

// Runs `body(const Session& session)` for the call behind `context`, holding
// a call slot, and turns its absl::Status into the call's grpc::Status.
template <typename Body>
grpc::Status WithSession(const CallerResolver& callers,
                         const grpc::ServerContextBase* context, Body&& body) {
  return internal::RunAdmitted(callers, context, /*stream=*/false,
                               std::forward<Body>(body));
}

// WithSession for RPCs that stay open for long: they also hold a stream slot.
template <typename Body>
grpc::Status WithStreamSession(const CallerResolver& callers,
                               const grpc::ServerContextBase* context,
                               Body&& body) {
  return internal::RunAdmitted(callers, context, /*stream=*/true,
                               std::forward<Body>(body));
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

// WithCaller for RPCs that stay open for long (see WithStreamSession).
template <typename Body>
grpc::Status WithStreamCaller(const CallerResolver& callers,
                              const grpc::ServerContextBase* context,
                              Body&& body) {
  return WithStreamSession(callers, context, [&](const Session& session) {
    return body(session.identity);
  });
}

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_SERVER_CALLER_CONTEXT_H_
