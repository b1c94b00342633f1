// RemoteCallers: who calls on a TCP connection the TLS listener accepted
// (docs/remote.md, "The path of a remote connection").
//
// gRPC did the connection's TLS handshake and verified the client
// certificate against the CA bundle; the certificate is in each call's auth
// context. On a connection's first call it is mapped to an identity
// (cert_identity.h) and the connection, registered pending at accept, is
// bound to it in the session registry, under the same per-identity
// connection limit and fd reserve as a unix connection (AdmitConnection):
// a connection over them is closed, as the unix listener closes one at
// accept. Every later call gets that session, once it is checked to carry
// the same certificate.
//
// An unmapped certificate still gets a session, with no uid's rights and a
// refusal that every call on it returns (UNAUTHENTICATED naming its
// subject), so its owner learns what to ask the administrator for.
#ifndef PROCWARP_DAEMON_TLS_REMOTE_CALLERS_H_
#define PROCWARP_DAEMON_TLS_REMOTE_CALLERS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/server/caller_context.h"
#include "daemon/server/listener.h"
#include "daemon/server/session_registry.h"
#include "daemon/tls/cert_identity.h"

namespace procwarp {

class RemoteCallers final : public RemoteCallerSource {
 public:
  // `sessions` must outlive this.
  RemoteCallers(CertificateMapper mapper, ConnectionLimits limits,
                SessionRegistry* sessions);

  absl::StatusOr<std::shared_ptr<const Session>> SessionOf(
      const grpc::ServerContextBase& context,
      const std::string& peer_address) const override;

 private:
  // The first call on the connection from `peer_address`, verified with
  // `certificate`: maps it and binds the connection.
  absl::StatusOr<std::shared_ptr<const Session>> BindConnection(
      const std::string& peer_address, const std::string& certificate) const;

  const CertificateMapper mapper_;
  const ConnectionLimits limits_;
  SessionRegistry* sessions_;
  mutable RefusalLog refusals_;
};

}  // namespace procwarp

#endif  // PROCWARP_DAEMON_TLS_REMOTE_CALLERS_H_
